"""An OpenAI Responses request body (`POST /v1/responses`) → the neutral request.

Pure and synchronous, like the chat decoder whose pieces it shares (media parts, tool-result
ordering). A continued conversation (`previous_response_id`) arrives here already expanded:
the stored items come first in `items`, so a `function_call_output` finds its call wherever
that call was made.

Fields OpenAI documents as hints with no effect on the answer's content (`metadata`, `user`,
`safety_identifier`, `prompt_cache_key`, `service_tier`...) are accepted and not forwarded;
fields that would change the answer and that Gemini cannot do are refused with a 400.
"""

from __future__ import annotations

from typing import Any

import orjson

from gemgate import input_media, ir, json_depth, model_names
from gemgate.errors import InvalidRequest
from gemgate.formats import responses_signatures
from gemgate.formats.base import (
    boolean_field,
    integer_field,
    json_or_text,
    media_format,
    narrow_tools,
    number_field,
    string_field,
)
from gemgate.formats.openai_chat_request import BUILTIN_TOOLS, THINKING_SUFFIX, _Conversation

_EFFORTS = frozenset({"none", "minimal", "low", "medium", "high", "xhigh", "max"})
_SUMMARIES = frozenset({"auto", "concise", "detailed"})
_WEB_SEARCH = frozenset(
    {"web_search", "web_search_preview", "web_search_2025_08_26", "web_search_preview_2025_03_11"}
)
# Items a client replays from earlier answers that carry nothing Gemini can use again.
_SKIPPED_ITEMS = frozenset({"web_search_call", "image_generation_call"})
# Fields that ask for something gemgate cannot do; each gets a 400 when set.
_REFUSED = {
    "background": "background responses are not supported; send the request without it",
    "conversation": "conversations are not supported; use previous_response_id",
    "prompt": "stored prompt templates are not supported; send the input itself",
    "max_tool_calls": "max_tool_calls cannot be enforced on Gemini's built-in tools",
    "context_management": "context_management is not supported",
}
ENCRYPTED_REASONING = "reasoning.encrypted_content"
# Between a tool namespace and a function's own name, in the name Gemini sees.
NAMESPACE_SEPARATOR = "."
LOGPROBS = "message.output_text.logprobs"


def decode(data: dict[str, Any], items: list[Any]) -> ir.Request:
    """`items` is the whole conversation as input items: stored history, then `input`."""
    model = model_names.check(data.get("model"))
    for field, why in _REFUSED.items():
        if data.get(field) not in (None, False, [], {}):
            raise InvalidRequest(why, param=field)
    if data.get("truncation") not in (None, "disabled"):
        raise InvalidRequest(
            "truncation 'auto' is not supported: gemgate never drops input; send less",
            param="truncation",
        )
    include = _include(data.get("include"))
    thinking_suffix = model.endswith(THINKING_SUFFIX)
    system, messages = _items(items, model.removesuffix(THINKING_SUFFIX))
    instructions = data.get("instructions")
    if instructions is not None and not isinstance(instructions, str):
        raise InvalidRequest("instructions must be a string", param="instructions")
    if instructions:
        system.insert(0, ir.Text(instructions))
    tools, choice = _tools(data.get("tools"), data.get("tool_choice"))
    mime, schema = _text_format(data.get("text"))
    if LOGPROBS in include or data.get("top_logprobs"):
        raise InvalidRequest(
            "log probabilities are not returned by gemgate; leave out top_logprobs and "
            f"{LOGPROBS!r}",
            param="top_logprobs",
        )
    return ir.Request(
        model=model.removesuffix(THINKING_SUFFIX) if thinking_suffix else model,
        messages=messages,
        system=system,
        tools=tools,
        tool_choice=choice,
        generation=ir.Generation(
            temperature=number_field(data, "temperature"),
            top_p=number_field(data, "top_p"),
            max_tokens=integer_field(data, "max_output_tokens"),
            response_mime_type=mime,
            response_schema=schema,
        ),
        thinking=_thinking(data.get("reasoning"), thinking_suffix),
        stream=bool(boolean_field(data, "stream")),
        client_options={
            "model": model,
            "encrypted_reasoning": ENCRYPTED_REASONING in include,
            "link_media": False,
            **media_format(data),
            "echo": _echo(data),
            "namespaces": _namespaces(data.get("tools")),
        },
    )


def _echo(data: dict[str, Any]) -> dict[str, Any]:
    """The request's settings as a response object repeats them."""
    reasoning = data.get("reasoning") if isinstance(data.get("reasoning"), dict) else {}
    return {
        "instructions": data.get("instructions"),
        "max_output_tokens": data.get("max_output_tokens"),
        "metadata": data.get("metadata") or {},
        "parallel_tool_calls": data.get("parallel_tool_calls", True),
        "previous_response_id": data.get("previous_response_id"),
        "reasoning": {
            "effort": reasoning.get("effort"),  # type: ignore[union-attr]
            "summary": reasoning.get("summary"),  # type: ignore[union-attr]
        },
        "store": data.get("store", True) is not False,
        "temperature": data.get("temperature"),
        "text": data.get("text") or {"format": {"type": "text"}},
        "tool_choice": data.get("tool_choice") or "auto",
        "tools": data.get("tools") or [],
        "top_p": data.get("top_p"),
        "truncation": data.get("truncation") or "disabled",
        "user": data.get("user"),
    }


def _namespaces(tools: Any) -> frozenset[str]:
    """Names of the tool namespaces declared, to split Gemini's calls back into both parts."""
    if not isinstance(tools, list):
        return frozenset()
    return frozenset(
        t["name"]
        for t in tools
        if isinstance(t, dict) and t.get("type") == "namespace" and isinstance(t.get("name"), str)
    )


def input_items(data: dict[str, Any]) -> list[Any]:
    """`input` as a list of items: a plain string is one user message."""
    value = data.get("input")
    if value is None:
        return []
    if isinstance(value, str):
        return [{"type": "message", "role": "user", "content": value}]
    if isinstance(value, list):
        return value
    raise InvalidRequest("input must be a string or an array of items", param="input")


def _include(value: Any) -> frozenset[str]:
    if value is None:
        return frozenset()
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise InvalidRequest("include must be an array of strings", param="include")
    return frozenset(value)


# -- items ------------------------------------------------------------------------------------


class _Turns:
    """Items in order, made into Gemini turns: the model side of a turn (reasoning, message,
    function calls) is gathered into one message; function outputs follow their calls."""

    def __init__(self, model: str) -> None:
        self.model_name = model
        self.talk = _Conversation()
        self.model_parts: list[ir.Part] | None = None
        # Signatures a replayed reasoning item carried, for the calls that follow it.
        self.signatures: dict[str, str] = {}

    def model(self, part: ir.Part | None) -> None:
        if self.model_parts is None:
            self.model_parts = []
        if part is not None:
            self.model_parts.append(part)

    def end_model(self) -> None:
        if self.model_parts is not None:
            self.talk.add("assistant", self.model_parts)
            self.model_parts = None

    def user(self, parts: list[ir.Part]) -> None:
        self.end_model()
        self.talk.add("user", parts)

    def result(self, result: ir.ToolResult) -> None:
        self.end_model()
        self.talk.add_result(result)


def _items(items: list[Any], model: str) -> tuple[list[ir.Text], list[ir.Message]]:
    turns = _Turns(model)
    for position, item in enumerate(items):
        where = f"input[{position}]"
        if not isinstance(item, dict):
            raise InvalidRequest(f"{where} must be an object", param="input")
        kind = string_field(item, "type", f"{where}.type") or (
            "message" if "role" in item else None
        )
        if kind == "message":
            _message(item, where, turns)
        elif kind == "function_call":
            turns.model(_function_call(item, where, turns.signatures))
        elif kind == "function_call_output":
            turns.end_model()  # so that its calls are known by id
            turns.result(_function_output(item, where, turns.talk.call_names))
        elif kind == "reasoning":
            _reasoning(item, where, turns)
        elif kind in _SKIPPED_ITEMS:
            continue
        elif kind == "item_reference":
            raise InvalidRequest(
                f"{where}: item references are not supported; send the item itself or use "
                "previous_response_id",
                param="input",
            )
        else:
            raise InvalidRequest(f"{where}: item type {kind!r} is not supported", param="input")
    turns.end_model()
    turns.talk.finish()
    return turns.talk.system, turns.talk.messages


def _message(item: dict[str, Any], where: str, turns: _Turns) -> None:
    role = item.get("role")
    content = item.get("content")
    if role in ("system", "developer"):
        turns.talk.system.extend(ir.Text(t) for t in _texts(content, where))
    elif role == "user":
        turns.user(_user_parts(content, where))
    elif role == "assistant":
        for text in _texts(content, where):
            turns.model(ir.Text(text))
        turns.model(None)
    else:
        raise InvalidRequest(f"{where}.role {role!r} is not supported", param="input")


def _texts(content: Any, where: str) -> list[str]:
    """Text of a system, developer or assistant message (output_text, input_text, refusal)."""
    if content is None:
        return []
    if isinstance(content, str):
        return [content] if content else []
    if not isinstance(content, list):
        raise InvalidRequest(f"{where}.content must be a string or an array", param="input")
    texts = []
    for i, part in enumerate(content):
        if not isinstance(part, dict):
            raise InvalidRequest(f"{where}.content[{i}] must be an object", param="input")
        kind = part.get("type")
        if kind in ("input_text", "output_text", "text"):
            text = part.get("text")
            if not isinstance(text, str):
                raise InvalidRequest(f"{where}.content[{i}].text must be a string", param="input")
            if text:
                texts.append(text)
        elif kind == "refusal":
            if isinstance(part.get("refusal"), str) and part["refusal"]:
                texts.append(part["refusal"])
        else:
            raise InvalidRequest(
                f"{where}.content[{i}]: part type {kind!r} is not allowed here", param="input"
            )
    return texts


def _user_parts(content: Any, where: str) -> list[ir.Part]:
    if isinstance(content, str):
        return [ir.Text(content)] if content else []
    if not isinstance(content, list):
        raise InvalidRequest(f"{where}.content must be a string or an array", param="input")
    parts: list[ir.Part] = []
    for i, part in enumerate(content):
        parts.extend(_content_part(part, f"{where}.content[{i}]"))
    return parts


def _content_part(part: Any, where: str) -> list[ir.Part]:
    if not isinstance(part, dict):
        raise InvalidRequest(f"{where} must be an object", param="input")
    kind = part.get("type")
    if kind in ("input_text", "output_text", "text"):
        text = part.get("text")
        if not isinstance(text, str):
            raise InvalidRequest(f"{where}.text must be a string", param="input")
        return [ir.Text(text)] if text else []
    if kind == "input_image":
        if part.get("file_id"):
            raise InvalidRequest(
                f"{where}: file ids are not supported; send image_url (a data: or https URL)",
                param="input",
            )
        return [_url_media(part.get("image_url"), where)]
    if kind == "input_file":
        return [_input_file(part, where)]
    raise InvalidRequest(f"{where}: content type {kind!r} is not supported", param="input")


def _input_file(part: dict[str, Any], where: str) -> ir.Media:
    name = part.get("filename") if isinstance(part.get("filename"), str) else None
    data = part.get("file_data")
    if isinstance(data, str) and data:
        if data.startswith("data:"):
            return input_media.data_url(data, where, name)
        return input_media.inline("", data, where, name)
    if isinstance(part.get("file_url"), str):
        return _url_media(part["file_url"], where)
    if part.get("file_id"):
        raise InvalidRequest(
            f"{where}: file ids are not supported; send the file as file_data", param="input"
        )
    raise InvalidRequest(f"{where}: an input_file needs file_data or file_url", param="input")


def _url_media(url: Any, where: str) -> ir.Media:
    if not isinstance(url, str) or not url:
        raise InvalidRequest(f"{where}: the part needs a URL", param="input")
    if url.startswith("data:"):
        return input_media.data_url(url, where)
    return input_media.web_url(url, where)


def _function_call(item: dict[str, Any], where: str, known: dict[str, str]) -> ir.ToolCall:
    call_id = item.get("call_id")
    name = item.get("name")
    if not isinstance(call_id, str) or not call_id or not isinstance(name, str) or not name:
        raise InvalidRequest(f"{where}: a function_call needs call_id and name", param="input")
    if isinstance(item.get("namespace"), str) and item["namespace"]:
        name = f"{item['namespace']}{NAMESPACE_SEPARATOR}{name}"
    raw = item.get("arguments") or "{}"
    try:
        arguments = orjson.loads(raw) if isinstance(raw, str) else raw
    except orjson.JSONDecodeError:
        raise InvalidRequest(f"{where}: arguments are not valid JSON", param="input") from None
    if not isinstance(arguments, dict):
        raise InvalidRequest(f"{where}: arguments must be a JSON object", param="input")
    json_depth.check(arguments, f"{where}: arguments", "input")
    return ir.ToolCall(call_id, name, arguments, known.pop(call_id, None))


def _function_output(item: dict[str, Any], where: str, names: dict[str, str]) -> ir.ToolResult:
    call_id = item.get("call_id")
    if not isinstance(call_id, str) or not call_id:
        raise InvalidRequest(f"{where}: a function_call_output needs call_id", param="input")
    name = names.get(call_id)
    if name is None:
        raise InvalidRequest(
            f"{where}: call_id {call_id!r} matches no earlier function_call", param="input"
        )
    output = item.get("output")
    media: list[ir.Media] = []
    if isinstance(output, list):
        texts = []
        for i, part in enumerate(output):
            for found in _content_part(part, f"{where}.output[{i}]"):
                if isinstance(found, ir.Media):
                    media.append(found)
                elif isinstance(found, ir.Text):
                    texts.append(found.text)
        output = "\n".join(texts)
    elif not isinstance(output, str):
        raise InvalidRequest(f"{where}.output must be a string or an array", param="input")
    return ir.ToolResult(call_id, name, json_or_text(output), media=media)


def _reasoning(item: dict[str, Any], where: str, turns: _Turns) -> None:
    """A reasoning item replayed: its summary is only worth sending back with a signature;
    the signatures it carries (ours, see `responses_signatures`) go to their parts."""
    turns.model(None)
    found = responses_signatures.unpack(item.get("encrypted_content"))
    if found is None or found.model != turns.model_name:
        # Foreign, absent, or issued by another model: Gemini would refuse it.
        return
    summary = item.get("summary")
    text = ""
    if isinstance(summary, list):
        text = "\n\n".join(str(s.get("text") or "") for s in summary if isinstance(s, dict))
    if found.thought:
        turns.model(ir.Text(text, True, found.thought))
    turns.signatures.update(found.calls)


# -- tools ------------------------------------------------------------------------------------


def _tools(raw: Any, choice_raw: Any) -> tuple[list[ir.Tool], ir.ToolChoice | None]:
    if raw is None:
        raw = []
    if not isinstance(raw, list):
        raise InvalidRequest("tools must be an array", param="tools")
    tools: list[ir.Tool] = []
    for i, tool in enumerate(raw):
        if not isinstance(tool, dict):
            raise InvalidRequest(f"tools[{i}] must be an object", param="tools")
        if tool.get("type") == "namespace":
            tools.extend(_namespace(tool, i))
        elif _kind(tool, f"tools[{i}]") in _WEB_SEARCH and tool.get("external_web_access") is False:
            # Search restricted to cached pages: Google Search is always live, so the
            # restriction is kept by not offering search at all.
            continue
        else:
            tools.append(_tool(tool, i))
    choice = _tool_choice(choice_raw)
    return narrow_tools(tools, choice)


def _kind(data: dict[str, Any], where: str) -> str | None:
    return string_field(data, "type", f"{where}.type")


def _tool(tool: dict[str, Any], i: int) -> ir.Tool:
    kind = _kind(tool, f"tools[{i}]")
    if kind in _WEB_SEARCH:
        return ir.BuiltinTool("googleSearch")
    if kind == "code_interpreter":
        return ir.BuiltinTool("codeExecution")
    if kind != "function":
        raise InvalidRequest(
            f"tools[{i}]: tool type {kind!r} is not supported (function and web_search are)",
            param="tools",
        )
    name = tool.get("name")
    if not isinstance(name, str) or not name:
        raise InvalidRequest(f"tools[{i}]: a function tool needs a name", param="tools")
    if name in BUILTIN_TOOLS:
        return BUILTIN_TOOLS[name]
    parameters = tool.get("parameters")
    if parameters is not None and not isinstance(parameters, dict):
        raise InvalidRequest(f"tools[{i}].parameters must be an object", param="tools")
    json_depth.check(parameters, f"tools[{i}].parameters", "tools")
    description = tool.get("description")
    return ir.FunctionTool(name, str(description) if description else None, parameters or None)


def _namespace(tool: dict[str, Any], i: int) -> list[ir.Tool]:
    """A namespace of functions (as Codex groups its sub-agent tools): each is declared to
    Gemini as `namespace.name`, which Gemini's function names allow."""
    prefix = tool.get("name")
    inner = tool.get("tools")
    if not isinstance(prefix, str) or not prefix or not isinstance(inner, list):
        raise InvalidRequest(f"tools[{i}]: a namespace needs a name and tools", param="tools")
    out: list[ir.Tool] = []
    for member in inner:
        if not isinstance(member, dict):
            raise InvalidRequest(f"tools[{i}].tools entries must be objects", param="tools")
        found = _tool(member, i)
        if isinstance(found, ir.FunctionTool):
            found.name = f"{prefix}{NAMESPACE_SEPARATOR}{found.name}"
        out.append(found)
    return out


def _tool_choice(choice: Any) -> ir.ToolChoice | None:
    if choice is None or choice == "auto":
        return None
    if choice in ("none", "required"):
        return ir.ToolChoice(choice)
    if isinstance(choice, dict):
        kind = _kind(choice, "tool_choice")
        if kind == "function" and isinstance(choice.get("name"), str) and choice["name"]:
            if choice["name"] in BUILTIN_TOOLS:
                return None  # a built-in tool cannot be forced; it is offered
            return ir.ToolChoice("required", [choice["name"]])
        if kind in _WEB_SEARCH:
            return None  # offered, as Gemini cannot be made to search
        if kind == "allowed_tools" and isinstance(choice.get("tools"), list):
            names = [
                str(t.get("name"))
                for t in choice["tools"]
                if isinstance(t, dict) and t.get("type") == "function" and t.get("name")
            ]
            names = [n for n in names if n not in BUILTIN_TOOLS]
            return ir.ToolChoice("required" if choice.get("mode") == "required" else "auto", names)
    raise InvalidRequest(
        "tool_choice must be auto, none, required, a function or allowed_tools",
        param="tool_choice",
    )


# -- text format and reasoning ----------------------------------------------------------------


def _text_format(text: Any) -> tuple[str | None, dict[str, Any] | None]:
    if text is None:
        return None, None
    if not isinstance(text, dict):
        raise InvalidRequest("text must be an object", param="text")
    verbosity = text.get("verbosity")
    if verbosity not in (None, "medium"):
        raise InvalidRequest(
            "text.verbosity cannot be honoured by Gemini; leave it out or use 'medium'",
            param="text.verbosity",
        )
    fmt = text.get("format")
    if fmt is None:
        return None, None
    kind = fmt.get("type") if isinstance(fmt, dict) else None
    if kind == "text":
        return None, None
    if kind == "json_object":
        return "application/json", None
    if kind == "json_schema":
        schema = fmt.get("schema")  # type: ignore[union-attr]
        if not isinstance(schema, dict):
            raise InvalidRequest("text.format.schema must be an object", param="text.format")
        json_depth.check(schema, "text.format.schema", "text.format")
        return "application/json", schema
    raise InvalidRequest(
        "text.format.type must be text, json_object or json_schema", param="text.format"
    )


def _thinking(reasoning: Any, suffix: bool) -> ir.Thinking | None:
    if reasoning is None:
        return ir.Thinking(include_thoughts=True) if suffix else None
    if not isinstance(reasoning, dict):
        raise InvalidRequest("reasoning must be an object", param="reasoning")
    effort = string_field(reasoning, "effort", "reasoning.effort")
    if effort is not None and effort not in _EFFORTS:
        raise InvalidRequest(
            "reasoning.effort must be none, minimal, low, medium or high", param="reasoning.effort"
        )
    summary = string_field(reasoning, "summary", "reasoning.summary") or string_field(
        reasoning, "generate_summary", "reasoning.generate_summary"
    )
    if summary is not None and summary not in _SUMMARIES:
        raise InvalidRequest(
            "reasoning.summary must be auto, concise or detailed", param="reasoning.summary"
        )
    # Gemini's thought summaries are what OpenAI calls a reasoning summary: shown when asked.
    include = (summary is not None or suffix) and effort != "none"
    if effort is None and not include:
        return None
    return ir.Thinking(effort=effort, include_thoughts=include)
