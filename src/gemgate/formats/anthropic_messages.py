"""Anthropic Messages: `POST /v1/messages` (streamed and not) and `/v1/messages/count_tokens`.

Thought signatures ride where Anthropic clients keep them: a thinking block's `signature`
(prefixed, so a real Claude signature replayed to us is recognised and dropped) and, for tool
calls, the `tool_use` id (see `signatures`), which clients echo as `tool_use_id`.
"""

from __future__ import annotations

from typing import Any

import orjson

from gemgate import input_media, ir, json_depth, model_names, signatures
from gemgate.errors import GatewayError, InvalidRequest
from gemgate.formats.base import (
    array_field,
    boolean_field,
    integer_field,
    json_or_text,
    load_json_object,
    media_format,
    number_field,
    object_field,
    render_code,
    source_listing,
    string_field,
)
from gemgate.ids import new_id

SIGNATURE_PREFIX = "gmn1."
# Seconds of upstream silence after which a stream gets a `ping`, so that clients and proxies
# in between do not take a long thinking pause for a dead connection.
PING_INTERVAL = 10.0

_ERROR_TYPE = {
    "invalid_request": "invalid_request_error",
    "authentication": "authentication_error",
    "permission": "permission_error",
    "not_found": "not_found_error",
    "too_large": "request_too_large",
    "rate_limit": "rate_limit_error",
    "unavailable": "overloaded_error",
}
_STOP = {
    "stop": "end_turn",
    "max_tokens": "max_tokens",
    "safety": "refusal",
    "blocked": "refusal",
    "other": "end_turn",
}
# Anthropic's server tools and the Gemini built-in tool that does the same job.
_SERVER_TOOLS = {
    "web_search": "googleSearch",
    "code_execution": "codeExecution",
    "web_fetch": "urlContext",
}
# Request fields for features Gemini has no counterpart for: refused rather than dropped.
_REFUSED = {
    "mcp_servers": "remote MCP servers are not supported by gemgate; run the tools client-side",
    "container": "code execution containers are not supported by gemgate",
}
_IGNORED_BLOCKS = frozenset(
    {"redacted_thinking", "server_tool_use", "web_search_tool_result", "web_fetch_tool_result"}
)


class AnthropicMessages:
    endpoint = "messages"
    stream_media_type = "text/event-stream"

    def __init__(self, *, counting: bool = False) -> None:
        # count_tokens takes the same body without max_tokens.
        self.counting = counting

    # -- request --------------------------------------------------------------------------

    def decode(self, body: bytes, path_model: str | None = None) -> ir.Request:
        data = load_json_object(body)
        model = model_names.check(data.get("model"))
        max_tokens = None if self.counting else integer_field(data, "max_tokens")
        if not self.counting and (max_tokens is None or max_tokens < 1):
            raise InvalidRequest(
                "max_tokens is required"
                if max_tokens is None
                else "max_tokens must be a positive integer",
                param="max_tokens",
            )
        messages = data.get("messages")
        if not isinstance(messages, list) or not messages:
            raise InvalidRequest("messages: Field required (a non-empty array)")
        for field, why in _REFUSED.items():
            if data.get(field):
                raise InvalidRequest(f"{field}: {why}", param=field)
        schema = _output_schema(data)
        return ir.Request(
            model=model,
            messages=_messages(messages),
            system=_system(data.get("system")),
            tools=_tools(data.get("tools")),
            tool_choice=_tool_choice(data.get("tool_choice")),
            generation=ir.Generation(
                temperature=number_field(data, "temperature"),
                top_p=number_field(data, "top_p"),
                top_k=integer_field(data, "top_k"),
                max_tokens=max_tokens,
                stop=_stop_sequences(data.get("stop_sequences")),
                response_mime_type="application/json" if schema is not None else None,
                response_schema=schema,
            ),
            thinking=_thinking(data.get("thinking"), data.get("output_config")),
            stream=bool(boolean_field(data, "stream")) and not self.counting,
            client_options=media_format(data),
        )

    # -- response -------------------------------------------------------------------------

    def encode(self, response: ir.Response, request: ir.Request) -> bytes:
        cand = response.candidates[0]
        content = _blocks(cand.parts + _listing(cand.sources))
        has_tools = any(block["type"] == "tool_use" for block in content)
        text = "".join(block["text"] for block in content if block["type"] == "text")
        stop_reason, stop_sequence = _stop(cand.finish, has_tools, text, request.generation.stop)
        return orjson.dumps(
            {
                "id": _message_id(response.response_id),
                "type": "message",
                "role": "assistant",
                "model": request.model,
                "content": content,
                "stop_reason": stop_reason,
                "stop_sequence": stop_sequence,
                "usage": usage(response.usage),
            }
        )

    def encode_count(self, tokens: int) -> bytes:
        return orjson.dumps({"input_tokens": tokens})

    def stream_encoder(self, request: ir.Request) -> MessagesStream:
        return MessagesStream(request)

    def error_body(self, error: GatewayError) -> bytes:
        return orjson.dumps(error_object(error))


def error_object(error: GatewayError) -> dict[str, Any]:
    kind = _ERROR_TYPE.get(error.kind, "api_error")
    return {"type": "error", "error": {"type": kind, "message": error.message}}


class MessagesStream:
    """Anthropic's event sequence for one answer: message_start, one open content block at a
    time, message_delta with the stop reason and final usage, message_stop."""

    ping_interval = PING_INTERVAL

    def __init__(self, request: ir.Request) -> None:
        self.model = request.model
        self.stop_sequences = request.generation.stop
        self.id = _message_id(None)
        # The latest usage event; read when the usage is shown (see UsageEvent).
        self.usage_event = ir.UsageEvent(ir.Usage())
        self.finish: ir.FinishReason | None = None
        self.started = False
        # The first parts wait for the first usage, so message_start can report the prompt
        # size: every channel gives it with its first upstream read (the Gemini API in each
        # chunk, the web app as an estimate with its first words).
        self.held: list[ir.PartEvent] = []
        self.index = -1
        self.open: str | None = None
        self.thinking_signature: str | None = None
        self.has_tools = False
        self.tail = ""  # the end of the answer text, to tell which stop sequence ended it
        self.sources: list[ir.Source] = []

    def event(self, event: ir.Event) -> bytes:
        if isinstance(event, ir.Start):
            if event.response_id:
                self.id = _message_id(event.response_id)
            return b""
        if isinstance(event, ir.PartEvent):
            if event.index != 0:
                return b""  # Anthropic has one candidate
            if not self.started:
                self.held.append(event)
                return b""
            return self._part(event.part)
        if isinstance(event, ir.Finish):
            # Not the start: the answer's usage may come after its finish, in the same read.
            if event.index == 0:
                self.finish = event.reason
            return b""
        if isinstance(event, ir.UsageEvent):
            self.usage_event = event
            return self._start()
        if isinstance(event, ir.Progress):
            return self.ping()  # Anthropic's keep-alive has no room for words
        if isinstance(event, ir.Grounding) and event.index == 0:
            ir.add_sources(self.sources, event.sources)
        return b""

    def ping(self) -> bytes:
        return self._start() + _sse("ping", {"type": "ping"})

    def end(self) -> bytes:
        out = self._start()
        for part in _listing(self.sources):
            out += self._part(part)
        out += self._close()
        stop_reason, stop_sequence = _stop(
            self.finish, self.has_tools, self.tail, self.stop_sequences
        )
        out += _sse(
            "message_delta",
            {
                "type": "message_delta",
                "delta": {"stop_reason": stop_reason, "stop_sequence": stop_sequence},
                "usage": usage(self.usage_event.usage),
            },
        )
        return out + _sse("message_stop", {"type": "message_stop"})

    def error(self, error: GatewayError) -> bytes:
        # Words held for the prompt's size are the client's all the same.
        started = self._start() if self.held else b""
        return started + _sse("error", error_object(error))

    def _start(self) -> bytes:
        if self.started:
            return b""
        self.started = True
        message: dict[str, Any] = {
            "id": self.id,
            "type": "message",
            "role": "assistant",
            "model": self.model,
            "content": [],
            "stop_reason": None,
            "stop_sequence": None,
            "usage": {**usage(self.usage_event.usage), "output_tokens": 0},
        }
        out = _sse("message_start", {"type": "message_start", "message": message})
        held, self.held = self.held, []
        for event in held:
            out += self._part(event.part)
        return out

    def _part(self, part: ir.Part) -> bytes:
        if isinstance(part, ir.Text) and part.thought:
            out = b"" if self.open == "thinking" else self._close() + self._open("thinking")
            if part.signature:
                self.thinking_signature = part.signature
            if part.text:
                out += self._delta({"type": "thinking_delta", "thinking": part.text})
            return out
        image = _image_block(part)
        if image is not None:
            # Whole in its content_block_start: an image has no deltas.
            return self._close() + self._open("image", image) + self._close()
        if isinstance(part, ir.ToolCall):
            self.has_tools = True
            block = {
                "type": "tool_use",
                "id": signatures.embed(part.id, part.signature),
                "name": part.name,
                "input": {},
            }
            out = self._close() + self._open("tool_use", block)
            arguments = orjson.dumps(part.arguments).decode()
            out += self._delta({"type": "input_json_delta", "partial_json": arguments})
            return out + self._close()
        if isinstance(part, ir.Text):
            if self.open == "thinking" and not self.thinking_signature and part.signature:
                # Gemini often signs the thought run on the part right after it.
                self.thinking_signature = part.signature
            text = part.text
        else:
            text = _render(part)
        if not text:
            return b""
        out = b"" if self.open == "text" else self._close() + self._open("text")
        self.tail = (self.tail + text)[-200:]
        return out + self._delta({"type": "text_delta", "text": text})

    def _open(self, kind: str, block: dict[str, Any] | None = None) -> bytes:
        self.index += 1
        self.open = kind
        if block is None:
            block = (
                {"type": "thinking", "thinking": "", "signature": ""}
                if kind == "thinking"
                else {"type": "text", "text": ""}
            )
        start = {"type": "content_block_start", "index": self.index, "content_block": block}
        return _sse("content_block_start", start)

    def _delta(self, delta: dict[str, Any]) -> bytes:
        event = {"type": "content_block_delta", "index": self.index, "delta": delta}
        return _sse("content_block_delta", event)

    def _close(self) -> bytes:
        if self.open is None:
            return b""
        out = b""
        if self.open == "thinking" and self.thinking_signature:
            signature = SIGNATURE_PREFIX + self.thinking_signature
            out = self._delta({"type": "signature_delta", "signature": signature})
        self.thinking_signature = None
        self.open = None
        stop = {"type": "content_block_stop", "index": self.index}
        return out + _sse("content_block_stop", stop)


def _sse(name: str, data: dict[str, Any]) -> bytes:
    return b"event: " + name.encode() + b"\ndata: " + orjson.dumps(data) + b"\n\n"


# -- decoding helpers -------------------------------------------------------------------------


def _system(system: Any) -> list[ir.Text]:
    if system is None:
        return []
    if isinstance(system, str):
        return [ir.Text(system)] if system else []
    if not isinstance(system, list):
        raise InvalidRequest("system: must be a string or an array of text blocks")
    out = []
    for block in system:
        if not isinstance(block, dict) or block.get("type") != "text":
            raise InvalidRequest("system: only text blocks are allowed")
        text = string_field(block, "text", "system.text")
        if text:
            out.append(ir.Text(text))
    return out


def _messages(messages: list[Any]) -> list[ir.Message]:
    out: list[ir.Message] = []
    call_names: dict[str, str] = {}
    for position, message in enumerate(messages):
        if not isinstance(message, dict) or message.get("role") not in ("user", "assistant"):
            raise InvalidRequest(f"messages.{position}: role must be 'user' or 'assistant'")
        role = "user" if message["role"] == "user" else "model"
        content = message.get("content")
        if isinstance(content, str):
            blocks: list[Any] = [{"type": "text", "text": content}]
        elif isinstance(content, list):
            blocks = content
        else:
            raise InvalidRequest(f"messages.{position}.content: must be a string or an array")
        parts: list[ir.Part] = []
        for block in blocks:
            part = _block(block, position, call_names)
            if part is not None:
                parts.append(part)
        out.append(ir.Message(role, parts))  # type: ignore[arg-type]
    return out


def _block(block: Any, position: int, call_names: dict[str, str]) -> ir.Part | None:
    where = f"messages.{position}.content"
    if not isinstance(block, dict):
        raise InvalidRequest(f"{where}: blocks must be objects")
    kind = block.get("type")
    if not isinstance(kind, str):
        raise InvalidRequest(f"{where}: every block needs a type (a string)")
    if kind == "text":
        text = string_field(block, "text", f"{where}.text") or ""
        return ir.Text(text) if text else None
    if kind in ("image", "document"):
        return _source(block.get("source"), where)
    if kind == "tool_use":
        call_id, signature = signatures.split(string_field(block, "id", f"{where}.id") or "")
        name = string_field(block, "name", f"{where}.name") or ""
        call_names[call_id] = name
        arguments = object_field(block, "input", f"{where}.input") or {}
        json_depth.check(arguments, f"{where}.input")
        return ir.ToolCall(call_id, name, arguments, signature)
    if kind == "tool_result":
        return _tool_result(block, where, call_names)
    if kind == "thinking":
        signature = string_field(block, "signature", f"{where}.signature") or ""
        if not signature.startswith(SIGNATURE_PREFIX):
            return None  # Claude's own signature, or none: Gemini cannot use it
        thought = string_field(block, "thinking", f"{where}.thinking") or ""
        return ir.Text(thought, True, signature[len(SIGNATURE_PREFIX) :])
    if kind in _IGNORED_BLOCKS:
        return None
    raise InvalidRequest(f"{where}: block type {kind!r} is not supported")


def _source(source: Any, where: str) -> ir.Part:
    if not isinstance(source, dict):
        raise InvalidRequest(f"{where}: source is required")
    kind = source.get("type")
    if kind == "base64":
        data = string_field(source, "data", f"{where}.source.data") or ""
        declared = string_field(source, "media_type", f"{where}.source.media_type")
        return input_media.inline(declared, data, where)
    if kind == "url":
        url = string_field(source, "url", f"{where}.source.url") or ""
        # Fetched (safely) by the pipeline before it goes upstream.
        return input_media.web_url(url, where)
    if kind == "text":
        return ir.Text(string_field(source, "data", f"{where}.source.data") or "")
    if kind == "content":
        blocks = array_field(source, "content", f"{where}.source.content") or ()
        texts = [
            string_field(b, "text", f"{where}.source.content.text") or ""
            for b in blocks
            if isinstance(b, dict)
        ]
        return ir.Text("\n".join(texts))
    shown = repr(kind) if isinstance(kind, str) else "(not a string)"
    raise InvalidRequest(f"{where}: source type {shown} is not supported")


def _tool_result(block: dict[str, Any], where: str, call_names: dict[str, str]) -> ir.ToolResult:
    call_id = signatures.split(string_field(block, "tool_use_id", f"{where}.tool_use_id") or "")[0]
    name = call_names.get(call_id)
    if name is None:
        raise InvalidRequest(f"{where}: tool_use_id {call_id!r} matches no earlier tool_use block")
    content = block.get("content")
    media: list[ir.Media] = []
    if isinstance(content, list):
        texts = []
        for item in content:
            if not isinstance(item, dict):
                continue
            if item.get("type") == "text":
                texts.append(string_field(item, "text", f"{where}.content.text") or "")
            elif item.get("type") in ("image", "document"):
                part = _source(item.get("source"), where)
                if isinstance(part, ir.Media):
                    media.append(part)
                elif isinstance(part, ir.Text):
                    texts.append(part.text)
        output: Any = "\n".join(texts)
    elif content is None or isinstance(content, str):
        output = content or ""
    else:
        raise InvalidRequest(f"{where}: tool_result content must be a string or an array")
    is_error = bool(boolean_field(block, "is_error", f"{where}.is_error"))
    return ir.ToolResult(call_id, name, json_or_text(output), is_error, media)


def _tools(tools: Any) -> list[ir.Tool]:
    if tools is None:
        return []
    if not isinstance(tools, list):
        raise InvalidRequest("tools: must be an array")
    out: list[ir.Tool] = []
    for tool in tools:
        if not isinstance(tool, dict):
            raise InvalidRequest("tools: entries must be objects")
        kind = string_field(tool, "type", "tools.type") or "custom"
        builtin = next((v for k, v in _SERVER_TOOLS.items() if kind.startswith(k)), None)
        if builtin is not None:
            out.append(ir.BuiltinTool(builtin))  # type: ignore[arg-type]
        elif kind == "custom" or "input_schema" in tool:
            # cache_control, strict, input_examples & co. mean nothing to Gemini.
            schema = object_field(tool, "input_schema", "tools.input_schema")
            out.append(
                ir.FunctionTool(
                    string_field(tool, "name", "tools.name") or "",
                    string_field(tool, "description", "tools.description"),
                    schema,
                )
            )
        else:
            raise InvalidRequest(f"tools: tool type {kind!r} is not supported by Gemini")
    return out


def _tool_choice(choice: Any) -> ir.ToolChoice | None:
    if not isinstance(choice, dict):
        return None
    kind = choice.get("type")
    if kind == "any":
        return ir.ToolChoice("required")
    if kind == "tool":
        return ir.ToolChoice("required", [string_field(choice, "name", "tool_choice.name") or ""])
    if kind == "none":
        return ir.ToolChoice("none")
    return ir.ToolChoice("auto")


def _output_schema(data: dict[str, Any]) -> dict[str, Any] | None:
    """The JSON schema of structured output: `output_config.format`, or `output_format` from
    the structured-outputs beta; the answer is then JSON text matching it."""
    config = data.get("output_config")
    if config is not None and not isinstance(config, dict):
        raise InvalidRequest("output_config: must be an object")
    where = "output_config.format"
    spec = (config or {}).get("format")
    if spec is None:
        where, spec = "output_format", data.get("output_format")
    if spec is None:
        return None
    if not isinstance(spec, dict) or spec.get("type") != "json_schema":
        raise InvalidRequest(f"{where}: only type 'json_schema' is supported", param=where)
    schema = spec.get("schema")
    if not isinstance(schema, dict):
        raise InvalidRequest(f"{where}.schema: Field required (a JSON schema object)", param=where)
    return schema


def _thinking(thinking: Any, output_config: Any) -> ir.Thinking:
    if not isinstance(thinking, dict):
        thinking = {}
    kind = thinking.get("type")
    if kind == "enabled":
        budget = integer_field(thinking, "budget_tokens", "thinking.budget_tokens")
        return ir.Thinking(budget=-1 if budget is None else budget, include_thoughts=True)
    if kind == "adaptive":
        effort = (
            string_field(output_config, "effort", "output_config.effort")
            if isinstance(output_config, dict)
            else None
        )
        return ir.Thinking(effort=effort, include_thoughts=True)
    if kind == "disabled":
        return ir.Thinking(budget=0, include_thoughts=False)
    # Absent: the model thinks as it likes, but Anthropic clients expect no thinking blocks.
    return ir.Thinking(include_thoughts=False)


def _stop_sequences(value: Any) -> list[str]:
    if value is None:
        return []
    if not isinstance(value, list) or not all(isinstance(s, str) for s in value):
        raise InvalidRequest("stop_sequences: must be an array of strings")
    return value


# -- encoding helpers -------------------------------------------------------------------------


def _blocks(parts: list[ir.Part]) -> list[dict[str, Any]]:
    """Content blocks in order; a thinking block carries its run's signature, or the one
    Gemini put on the part right after the thoughts."""
    blocks: list[dict[str, Any]] = []
    for part in parts:
        last = blocks[-1] if blocks else None
        if isinstance(part, ir.Text) and part.thought:
            if last is None or last["type"] != "thinking":
                last = {"type": "thinking", "thinking": "", "signature": ""}
                blocks.append(last)
            last["thinking"] += part.text
            if part.signature:
                last["signature"] = SIGNATURE_PREFIX + part.signature
        elif (image := _image_block(part)) is not None:
            blocks.append(image)
        elif isinstance(part, ir.ToolCall):
            blocks.append(
                {
                    "type": "tool_use",
                    "id": signatures.embed(part.id, part.signature),
                    "name": part.name,
                    "input": part.arguments,
                }
            )
        else:
            if isinstance(part, ir.Text):
                if last and last["type"] == "thinking" and not last["signature"] and part.signature:
                    last["signature"] = SIGNATURE_PREFIX + part.signature
                text = part.text
            else:
                text = _render(part)
            if not text:
                continue
            if last and last["type"] == "text":
                last["text"] += text
            else:
                blocks.append({"type": "text", "text": text})
    return blocks


def _listing(sources: list[ir.Source]) -> list[ir.Part]:
    """Sources as a Markdown list after the answer: Anthropic's citation blocks need the
    cited passages, which a Gemini answer does not give."""
    return [ir.Text(source_listing(sources, 0)[0])] if sources else []


def _image_block(part: ir.Part) -> dict[str, Any] | None:
    """A generated image as the image block Anthropic clients already read in requests."""
    if not isinstance(part, ir.Media) or not part.mime_type.startswith("image/"):
        return None
    if part.data:
        source = {"type": "base64", "media_type": part.mime_type, "data": part.data}
    elif part.uri:
        source = {"type": "url", "url": part.uri}
    else:
        return None
    return {"type": "image", "source": source}


def _render(part: ir.Part) -> str:
    """Parts Anthropic has no response block for, written into the text so nothing is lost."""
    code = render_code(part)
    if code is not None:
        return code
    if isinstance(part, ir.Media):
        kind = part.mime_type.split("/")[0]
        shown = "!" if kind == "image" else ""
        if part.uri:
            return f"\n{shown}[{kind}]({part.uri})\n"
        if part.data:
            return f"\n{shown}[{kind}](data:{part.mime_type};base64,{part.data})\n"
    return ""


def _stop(
    finish: ir.FinishReason | None, has_tools: bool, text: str, stop: list[str]
) -> tuple[str, str | None]:
    if has_tools and finish in (None, "stop"):
        return "tool_use", None
    if finish in (None, "stop"):
        # Gemini says only STOP; when the text still ends with a requested sequence (an
        # upstream that keeps it), that sequence is what ended it.
        for sequence in stop:
            if sequence and text.endswith(sequence):
                return "stop_sequence", sequence
        return "end_turn", None
    return _STOP[finish], None


def usage(u: ir.Usage) -> dict[str, Any]:
    out: dict[str, Any] = {
        "input_tokens": max(0, u.prompt_tokens - u.cached_tokens) + u.tool_prompt_tokens,
        "output_tokens": u.output_tokens + u.thought_tokens,
        "cache_creation_input_tokens": 0,
        "cache_read_input_tokens": u.cached_tokens,
    }
    if u.estimated:
        out["estimated"] = True  # counted by gemgate; the upstream gave no counts
    return out


def _message_id(response_id: str | None) -> str:
    return "msg_" + (response_id or new_id())
