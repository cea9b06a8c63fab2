"""An OpenAI chat-completions request body → the neutral request (protocol notes C.2).

Pure and synchronous: URLs in messages stay `ir.Media(uri=...)`; the pipeline's fetch step
turns them into bytes. Hints OpenAI has and Gemini lacks (`user`, `metadata`, `store`,
`service_tier`, `prediction`, `parallel_tool_calls`) are accepted and never forwarded; fields
that would change the answer (`logprobs`, `logit_bias`, `audio`) are refused with a 400.
"""

from __future__ import annotations

from typing import Any

import orjson

from gemgate import input_media, ir, json_depth, model_names, signatures
from gemgate.audio import audio_format
from gemgate.errors import InvalidRequest
from gemgate.formats.base import (
    array_field,
    boolean_field,
    integer_field,
    json_or_text,
    load_json_object,
    media_format,
    narrow_tools,
    number_field,
    object_field,
    string_field,
)
from gemgate.voices import gemini_voice

# Function names that ask for one of Gemini's own tools instead of a declared function.
BUILTIN_TOOLS: dict[str, ir.BuiltinTool] = {
    name: ir.BuiltinTool(kind)  # type: ignore[arg-type]
    for kind, names in (
        ("codeExecution", ("codeExecution", "code_execution")),
        ("googleSearch", ("googleSearch", "google_search")),
        ("urlContext", ("urlContext", "url_context")),
    )
    for name in names
}
THINKING_SUFFIX = "-thinking"
_EFFORTS = frozenset({"none", "minimal", "low", "medium", "high", "xhigh", "max"})
_AUDIO_TYPES = {"mp3": "audio/mp3", "m4a": "audio/mp4", "pcm16": "audio/pcm"}
_MEDIA_PARTS = ("image_url", "video_url", "audio_url")
_MISSING_RESULT = "tool result missing"
# Fields that would change the answer in ways Gemini cannot: refused rather than dropped.
_REFUSED = {
    "logprobs": "log probabilities are not returned by gemgate; leave out logprobs",
    "top_logprobs": "log probabilities are not returned by gemgate; leave out top_logprobs",
    "logit_bias": "Gemini has no logit bias; leave out logit_bias",
}


def decode(body: bytes) -> ir.Request:
    data = load_json_object(body)
    model = model_names.check(data.get("model"))
    messages = data.get("messages")
    if not isinstance(messages, list) or not messages:
        raise InvalidRequest("messages must be a non-empty array", param="messages")
    for field, why in _REFUSED.items():
        if data.get(field):
            raise InvalidRequest(why, param=field)
    # `gemini-2.5-flash-thinking`: the plain model, thinking with thoughts shown.
    thinking_suffix = model.endswith(THINKING_SUFFIX)
    system, converted = _messages(messages)
    tools, choice = _tools(data)
    google = _google_extras(data)
    generation = _generation(data)
    audio = _audio_out(data)
    if audio is not None:
        generation.speech = audio[0]
    return ir.Request(
        model=model.removesuffix(THINKING_SUFFIX) if thinking_suffix else model,
        messages=converted,
        system=system,
        tools=tools,
        tool_choice=choice,
        generation=generation,
        thinking=_thinking(data, google, thinking_suffix),
        safety=_safety(google),
        stream=bool(boolean_field(data, "stream")),
        client_options={
            "include_usage": _include_usage(data),
            # The response names the model the way the client did, suffix and all.
            "model": model,
            "link_media": True,
            **media_format(data),
            # Speech in the answer is encoded in this format (see gemgate.speech_out).
            **({"audio_format": audio[1]} if audio is not None else {}),
        },
    )


def _audio_out(data: dict[str, Any]) -> tuple[ir.Speech | None, str] | None:
    """`audio: {voice, format}` (or `modalities` with "audio"): the voice, and the format the
    answer's audio is encoded in (WAV by default)."""
    audio = object_field(data, "audio")
    modalities = data.get("modalities")
    wants = isinstance(modalities, list) and "audio" in modalities
    if audio is None:
        return (None, "wav") if wants else None
    fmt = audio_format(string_field(audio, "format", "audio.format") or "wav", "audio.format")
    voice = audio.get("voice")
    speech = ir.Speech(gemini_voice(voice, "audio.voice")) if voice is not None else None
    return speech, fmt.name


# -- messages ---------------------------------------------------------------------------------


class _Conversation:
    """Messages in Gemini's order: each assistant turn's tool results gathered into one user
    turn, ordered like its tool calls, with a placeholder for any the client left out (Gemini
    wants exactly one response per call)."""

    def __init__(self) -> None:
        self.system: list[ir.Text] = []
        self.messages: list[ir.Message] = []
        self.call_names: dict[str, str] = {}
        self._open_calls: list[ir.ToolCall] = []
        self._results: dict[str, ir.ToolResult] | None = None

    def add(self, role: str, parts: list[ir.Part]) -> None:
        self.close_results()
        self.messages.append(ir.Message("model" if role == "assistant" else "user", parts))
        if role == "assistant":
            self._open_calls = [p for p in parts if isinstance(p, ir.ToolCall)]
            for call in self._open_calls:
                self.call_names[call.id] = call.name

    def add_result(self, result: ir.ToolResult) -> None:
        if self._results is None:
            self._results = {}
        self._results[result.call_id] = result

    def finish(self) -> None:
        # A conversation ending on tool calls (no results yet) is left as it is.
        if self._results is not None:
            self.close_results()

    def close_results(self) -> None:
        if not self._open_calls and self._results is None:
            return
        results = self._results or {}
        ordered: list[ir.Part] = []
        for call in self._open_calls:
            missing = ir.ToolResult(call.id, call.name, _MISSING_RESULT, is_error=True)
            ordered.append(results.pop(call.id, missing))
        ordered.extend(results.values())  # answers to calls of earlier turns, as sent
        self.messages.append(ir.Message("user", ordered))
        self._open_calls, self._results = [], None


def _messages(messages: list[Any]) -> tuple[list[ir.Text], list[ir.Message]]:
    talk = _Conversation()
    for position, message in enumerate(messages):
        if not isinstance(message, dict):
            raise InvalidRequest(f"messages[{position}] must be an object", param="messages")
        role = message.get("role")
        content = message.get("content")
        if role in ("system", "developer"):
            talk.system.extend(ir.Text(t) for t in _texts(content, position))
        elif role == "user":
            talk.add("user", _user_parts(content, position))
        elif role == "assistant":
            # reasoning_content echoed back carries no signature; Gemini would ignore it.
            parts: list[ir.Part] = [ir.Text(t) for t in _texts(content, position)]
            calls = array_field(message, "tool_calls", f"messages[{position}].tool_calls")
            parts.extend(_read_tool_call(c, position) for c in calls or ())
            talk.add("assistant", parts)
        elif role in ("tool", "function"):
            talk.add_result(_tool_result(message, position, talk.call_names))
        else:
            raise InvalidRequest(
                f"messages[{position}].role {_shown(role)} is not supported", param="messages"
            )
    talk.finish()
    return talk.system, talk.messages


def _tool_result(message: dict[str, Any], position: int, names: dict[str, str]) -> ir.ToolResult:
    given = string_field(message, "tool_call_id", f"messages[{position}].tool_call_id")
    named = string_field(message, "name", f"messages[{position}].name")
    call_id = signatures.split(given or named or "")[0]
    name = names.get(call_id) or named
    if not name:
        raise InvalidRequest(
            f"messages[{position}]: tool_call_id {call_id!r} matches no earlier tool call",
            param="messages",
        )
    output = "".join(_texts(message.get("content"), position))
    return ir.ToolResult(call_id, name, json_or_text(output))


def _texts(content: Any, position: int) -> list[str]:
    if content is None:
        return []
    if isinstance(content, str):
        return [content] if content else []
    if isinstance(content, list):
        texts = []
        for item in content:
            if isinstance(item, str):
                texts.append(item)
            elif isinstance(item, dict) and item.get("type") == "text":
                texts.append(string_field(item, "text", f"messages[{position}].content") or "")
        return texts
    raise InvalidRequest(
        f"messages[{position}].content must be a string or an array", param="messages"
    )


def _user_parts(content: Any, position: int) -> list[ir.Part]:
    if content is None or isinstance(content, str):
        return [ir.Text(content)] if content else []
    if not isinstance(content, list):
        raise InvalidRequest(
            f"messages[{position}].content must be a string or an array", param="messages"
        )
    parts: list[ir.Part] = []
    for i, item in enumerate(content):
        where = f"messages[{position}].content[{i}]"
        kind = item.get("type") if isinstance(item, dict) else None
        if not isinstance(kind, str):
            raise InvalidRequest(f"{where}: every part needs a type (a string)", param="messages")
        if kind == "text":
            parts.append(ir.Text(string_field(item, "text", f"{where}.text") or ""))
        elif kind in _MEDIA_PARTS:
            ref = item.get(kind)
            url = ref.get("url") if isinstance(ref, dict) else ref
            parts.append(_url_media(url, where))
        elif kind == "input_audio":
            parts.append(_input_audio(item.get("input_audio"), where))
        elif kind == "file":
            parts.append(_file(item.get("file"), where))
        else:
            raise InvalidRequest(f"{where}: content part type {kind!r} is not supported")
    return parts


def _url_media(url: Any, where: str) -> ir.Media:
    if not isinstance(url, str) or not url:
        raise InvalidRequest(f"{where}: the part needs a url", param="messages")
    if url.startswith("data:"):
        return input_media.data_url(url, where)
    return input_media.web_url(url, where)


def _input_audio(audio: Any, where: str) -> ir.Media:
    if not isinstance(audio, dict) or not isinstance(audio.get("data"), str):
        raise InvalidRequest(f"{where}: input_audio needs data and format", param="messages")
    fmt = (string_field(audio, "format", f"{where}.input_audio.format") or "wav").lower()
    return input_media.inline(_AUDIO_TYPES.get(fmt, f"audio/{fmt}"), audio["data"], where)


def _file(file: Any, where: str) -> ir.Media:
    if not isinstance(file, dict):
        raise InvalidRequest(f"{where}: a file part needs a file object", param="messages")
    name = file.get("filename") if isinstance(file.get("filename"), str) else None
    data = file.get("file_data")
    if isinstance(data, str) and data:
        if data.startswith("data:"):
            return input_media.data_url(data, where, name)
        return input_media.inline("", data, where, name)
    if isinstance(file.get("file_url"), str):
        return _url_media(file["file_url"], where)
    if file.get("file_id"):
        raise InvalidRequest(
            f"{where}: file ids are not supported here; send the file as file_data",
            param="messages",
        )
    raise InvalidRequest(f"{where}: a file part needs file_data", param="messages")


def _read_tool_call(call: Any, position: int) -> ir.ToolCall:
    if not isinstance(call, dict) or not isinstance(call.get("function"), dict):
        raise InvalidRequest(
            f"messages[{position}].tool_calls entries need a function", param="messages"
        )
    function = call["function"]
    where = f"messages[{position}].tool_calls"
    raw = function.get("arguments") or "{}"
    try:
        arguments = orjson.loads(raw) if isinstance(raw, str) else raw
    except orjson.JSONDecodeError:
        raise InvalidRequest(
            f"messages[{position}]: tool call arguments are not valid JSON", param="messages"
        ) from None
    if not isinstance(arguments, dict):
        raise InvalidRequest(
            f"messages[{position}]: tool call arguments must be an object", param="messages"
        )
    json_depth.check(arguments, f"messages[{position}]: tool call arguments", "messages")
    call_id, embedded = signatures.split(string_field(call, "id", f"{where}.id") or "")
    signature = _explicit_signature(call) or embedded
    return ir.ToolCall(
        call_id,
        string_field(function, "name", f"{where}.function.name") or "",
        arguments,
        signature,
    )


def _explicit_signature(call: dict[str, Any]) -> str | None:
    """A signature the client kept in one of the fields clients use for it (E.3)."""
    function = call.get("function") or {}
    for holder in (call.get("extra_content"), function.get("extra_content")):
        if isinstance(holder, dict):
            for vendor in ("google", "vertex"):
                extra = holder.get(vendor)
                found = extra.get("thought_signature") if isinstance(extra, dict) else None
                if isinstance(found, str) and found:
                    return found
    for key in ("thought_signature", "thoughtSignature"):
        if isinstance(call.get(key), str) and call[key]:
            return str(call[key])
    return None


# -- tools ------------------------------------------------------------------------------------


def _tools(data: dict[str, Any]) -> tuple[list[ir.Tool], ir.ToolChoice | None]:
    raw = array_field(data, "tools") or []
    tools: list[ir.Tool] = []
    for i, tool in enumerate(raw):
        if not isinstance(tool, dict):
            raise InvalidRequest(f"tools[{i}] must be an object", param="tools")
        tools.append(_tool(tool, i))
    if data.get("web_search_options") is not None:
        tools.append(ir.BuiltinTool("googleSearch"))
    choice = _tool_choice(data.get("tool_choice"))
    return narrow_tools(tools, choice)


def _tool(tool: dict[str, Any], i: int) -> ir.Tool:
    for key in tool:
        if key in BUILTIN_TOOLS:  # {"google_search": {}} and friends
            return BUILTIN_TOOLS[key]
    kind = tool.get("type")
    if kind in ("web_search", "web_search_preview"):
        return ir.BuiltinTool("googleSearch")
    function = tool.get("function")
    if kind != "function" or not isinstance(function, dict) or not function.get("name"):
        raise InvalidRequest(
            f"tools[{i}]: only function tools are supported (type {_shown(kind)})", param="tools"
        )
    name = string_field(function, "name", f"tools[{i}].function.name") or ""
    if name in BUILTIN_TOOLS:
        return BUILTIN_TOOLS[name]
    parameters = object_field(function, "parameters", f"tools[{i}].function.parameters")
    description = string_field(function, "description", f"tools[{i}].function.description")
    return ir.FunctionTool(name, description or None, parameters or None)


def _tool_choice(choice: Any) -> ir.ToolChoice | None:
    if choice is None or choice == "auto":
        return None
    if choice in ("none", "required"):
        return ir.ToolChoice(choice)
    if isinstance(choice, dict):
        if choice.get("type") == "function" and isinstance(choice.get("function"), dict):
            name = choice["function"].get("name")
            if isinstance(name, str) and name in BUILTIN_TOOLS:
                return None  # a built-in tool cannot be forced; it is offered
            if isinstance(name, str) and name:
                return ir.ToolChoice("required", [name])
        allowed = choice.get("allowed_tools")
        if choice.get("type") == "allowed_tools" and isinstance(allowed, dict):
            names = []
            for t in array_field(allowed, "tools", "tool_choice.allowed_tools.tools") or ():
                function = t.get("function") if isinstance(t, dict) else None
                name = function.get("name") if isinstance(function, dict) else None
                if name is None and isinstance(t, dict):
                    name = t.get("name")
                if not isinstance(name, str) or not name:
                    raise InvalidRequest(
                        "tool_choice.allowed_tools.tools entries need a function name",
                        param="tool_choice",
                    )
                names.append(name)
            names = [n for n in names if n not in BUILTIN_TOOLS]
            if allowed.get("mode") == "required":
                return ir.ToolChoice("required", names)
            return ir.ToolChoice("auto", names)
    raise InvalidRequest(
        "tool_choice must be auto, none, required, a function or allowed_tools",
        param="tool_choice",
    )


# -- generation and thinking ------------------------------------------------------------------


def _generation(data: dict[str, Any]) -> ir.Generation:
    stop = data.get("stop")
    if isinstance(stop, str):
        stop = [stop]
    elif stop is not None and not (
        isinstance(stop, list) and all(isinstance(s, str) for s in stop)
    ):
        raise InvalidRequest("stop must be a string or an array of strings", param="stop")
    max_tokens = integer_field(data, "max_completion_tokens")
    if max_tokens is None:
        max_tokens = integer_field(data, "max_tokens")
    mime, schema = _response_format(data.get("response_format"))
    return ir.Generation(
        temperature=number_field(data, "temperature"),
        top_p=number_field(data, "top_p"),
        top_k=integer_field(data, "top_k"),
        max_tokens=max_tokens,
        stop=stop or [],
        candidates=integer_field(data, "n"),
        seed=integer_field(data, "seed"),
        presence_penalty=number_field(data, "presence_penalty"),
        frequency_penalty=number_field(data, "frequency_penalty"),
        logprobs=(integer_field(data, "top_logprobs") or 0)
        if boolean_field(data, "logprobs")
        else None,
        response_mime_type=mime,
        response_schema=schema,
        response_modalities=_modalities(data.get("modalities")),
        image_config=_image_config(data.get("image_config")),
    )


def _response_format(value: Any) -> tuple[str | None, dict[str, Any] | None]:
    if value is None:
        return None, None
    kind = value.get("type") if isinstance(value, dict) else None
    if kind == "text":
        return None, None
    if kind == "json_object":
        return "application/json", None
    if kind == "json_schema":
        spec = value.get("json_schema")
        schema = spec.get("schema") if isinstance(spec, dict) else None
        if schema is not None and not isinstance(schema, dict):
            raise InvalidRequest("json_schema.schema must be an object", param="response_format")
        return "application/json", schema
    raise InvalidRequest(
        "response_format.type must be text, json_object or json_schema", param="response_format"
    )


def _modalities(value: Any) -> list[str] | None:
    if value is None:
        return None
    if not isinstance(value, list) or not all(isinstance(m, str) for m in value):
        raise InvalidRequest("modalities must be an array of strings", param="modalities")
    return [m.upper() for m in value] or None


def _image_config(value: Any) -> dict[str, Any] | None:
    if not isinstance(value, dict):
        return None
    config = {}
    for snake, camel in (("aspect_ratio", "aspectRatio"), ("image_size", "imageSize")):
        found = value.get(snake, value.get(camel))
        if isinstance(found, str):
            config[camel] = found
    return config or None


def _google_extras(data: dict[str, Any]) -> dict[str, Any]:
    """`google` options, placed at the top level (the SDK's extra_body merges them there) or
    nested once more in `extra_body` (as Google's docs show); the top level wins."""
    nested = data.get("extra_body")
    nested = nested.get("google") if isinstance(nested, dict) else None
    top = data.get("google")
    return {
        **(nested if isinstance(nested, dict) else {}),
        **(top if isinstance(top, dict) else {}),
    }


def _thinking(data: dict[str, Any], google: dict[str, Any], suffix: bool) -> ir.Thinking | None:
    effort = data.get("reasoning_effort")
    reasoning = data.get("reasoning")
    if effort is None and isinstance(reasoning, dict):
        effort = reasoning.get("effort")  # OpenRouter's spelling
    if effort is not None and (not isinstance(effort, str) or effort not in _EFFORTS):
        raise InvalidRequest(
            "reasoning_effort must be none, minimal, low, medium or high", param="reasoning_effort"
        )
    config = google.get("thinking_config") or google.get("thinkingConfig") or {}
    if not isinstance(config, dict):
        raise InvalidRequest("google.thinking_config must be an object", param="extra_body")
    budget = config.get("thinking_budget", config.get("thinkingBudget"))
    level = config.get("thinking_level", config.get("thinkingLevel"))
    include = config.get("include_thoughts", config.get("includeThoughts"))
    if budget is not None and (isinstance(budget, bool) or not isinstance(budget, int)):
        raise InvalidRequest("thinking_budget must be an integer", param="extra_body")
    if level is not None and not isinstance(level, str):
        raise InvalidRequest("thinking_level must be a string", param="extra_body")
    if include is not None and not isinstance(include, bool):
        raise InvalidRequest("include_thoughts must be true or false", param="extra_body")
    if effort is None and budget is None and level is None and include is None and not suffix:
        return None
    if budget is not None or level is not None:
        effort = None  # an explicit thinking_config wins over reasoning_effort
    if include is None and (suffix or (effort is not None and effort != "none")):
        # Whoever asks for reasoning wants to see it (C.2.4).
        include = True
    return ir.Thinking(effort=effort, budget=budget, level=level, include_thoughts=include)


def _safety(google: dict[str, Any]) -> list[dict[str, Any]] | None:
    settings = google.get("safety_settings", google.get("safetySettings"))
    if settings is None:
        return None
    if not isinstance(settings, list) or not all(
        isinstance(s, dict)
        and isinstance(s.get("category"), str)
        and isinstance(s.get("threshold"), str)
        for s in settings
    ):
        raise InvalidRequest(
            "safety_settings must be a list of {category, threshold}", param="extra_body"
        )
    return [{"category": s["category"], "threshold": s["threshold"]} for s in settings]


def _include_usage(data: dict[str, Any]) -> bool:
    options = data.get("stream_options")
    return isinstance(options, dict) and bool(options.get("include_usage"))


def _shown(value: Any) -> str:
    """A client's value for an error message; only strings are worth quoting back."""
    return repr(value[:40]) if isinstance(value, str) else f"({type(value).__name__})"
