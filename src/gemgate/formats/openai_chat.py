"""OpenAI chat completions: `POST /v1/chat/completions`, streamed and not."""

from __future__ import annotations

import secrets
import time
from typing import Any

import orjson

from gemgate import ir, signatures
from gemgate.errors import GatewayError, InvalidRequest
from gemgate.formats.base import load_json_object

_FINISH = {
    "stop": "stop",
    "max_tokens": "length",
    "safety": "content_filter",
    "blocked": "content_filter",
    "other": "stop",
}
_ERROR_TYPE = {
    "invalid_request": "invalid_request_error",
    "authentication": "authentication_error",
    "permission": "permission_error",
    "not_found": "invalid_request_error",
    "too_large": "invalid_request_error",
    "rate_limit": "rate_limit_error",
}


class OpenAIChat:
    endpoint = "chat"
    stream_media_type = "text/event-stream"

    # -- request --------------------------------------------------------------------------

    def decode(self, body: bytes, path_model: str | None = None) -> ir.Request:
        data = load_json_object(body)
        model = data.get("model")
        if not isinstance(model, str) or not model:
            raise InvalidRequest("you must provide a model parameter", param="model")
        messages = data.get("messages")
        if not isinstance(messages, list) or not messages:
            raise InvalidRequest("messages must be a non-empty array", param="messages")
        system, converted = _messages(messages)
        return ir.Request(
            model=model,
            messages=converted,
            system=system,
            generation=_generation(data),
            stream=bool(data.get("stream")),
            client_options={"include_usage": _include_usage(data)},
        )

    # -- response -------------------------------------------------------------------------

    def encode(self, response: ir.Response, request: ir.Request) -> bytes:
        choices = []
        for cand in response.candidates:
            content, reasoning, tool_calls = _message_parts(cand.parts)
            message: dict[str, Any] = {"role": "assistant", "content": content, "refusal": None}
            if reasoning:
                message["reasoning_content"] = reasoning
            if tool_calls:
                message["tool_calls"] = tool_calls
            choices.append(
                {
                    "index": cand.index,
                    "message": message,
                    "logprobs": None,
                    "finish_reason": _finish(cand.finish, bool(tool_calls)),
                }
            )
        return orjson.dumps(
            {
                "id": _completion_id(response.response_id),
                "object": "chat.completion",
                "created": int(time.time()),
                "model": request.model,
                "choices": choices,
                "usage": usage(response.usage),
            }
        )

    def stream_encoder(self, request: ir.Request) -> ChatStream:
        return ChatStream(request)

    def error_body(self, error: GatewayError) -> bytes:
        return orjson.dumps({"error": _error(error)})


class ChatStream:
    """Turns IR events into `chat.completion.chunk` frames for one request."""

    def __init__(self, request: ir.Request) -> None:
        self.model = request.model
        self.created = int(time.time())
        self.id = _completion_id(None)
        self.include_usage = bool(request.client_options.get("include_usage"))
        self._roles_sent: set[int] = set()
        self._tool_calls: dict[int, int] = {}
        self._usage: ir.Usage | None = None

    def event(self, event: ir.Event) -> bytes:
        if isinstance(event, ir.PartEvent):
            return self._part(event)
        if isinstance(event, ir.Finish):
            has_tools = event.index in self._tool_calls
            return self._chunk(event.index, {}, _finish(event.reason, has_tools))
        if isinstance(event, ir.UsageEvent):
            self._usage = event.usage
            return b""
        if isinstance(event, ir.Start):
            if event.response_id:
                self.id = _completion_id(event.response_id)
            return self._chunk(0, self._role_delta(0, {"content": ""}))
        return b""

    def _part(self, event: ir.PartEvent) -> bytes:
        part, index = event.part, event.index
        delta: dict[str, Any]
        if isinstance(part, ir.Text):
            if not part.text:
                return b""
            delta = {"reasoning_content": part.text} if part.thought else {"content": part.text}
        elif isinstance(part, ir.ToolCall):
            position = self._tool_calls.get(index, 0)
            self._tool_calls[index] = position + 1
            delta = {"tool_calls": [{"index": position, **_tool_call(part)}]}
        else:
            text = _render(part)
            if not text:
                return b""
            delta = {"content": text}
        return self._chunk(index, self._role_delta(index, delta))

    def _role_delta(self, index: int, delta: dict[str, Any]) -> dict[str, Any]:
        if index in self._roles_sent:
            return delta
        self._roles_sent.add(index)
        return {"role": "assistant", **delta}

    def _chunk(self, index: int, delta: dict[str, Any], finish: str | None = None) -> bytes:
        chunk: dict[str, Any] = {
            "id": self.id,
            "object": "chat.completion.chunk",
            "created": self.created,
            "model": self.model,
            "choices": [
                {"index": index, "delta": delta, "logprobs": None, "finish_reason": finish}
            ],
        }
        if self.include_usage:
            chunk["usage"] = None
        return b"data: " + orjson.dumps(chunk) + b"\n\n"

    def end(self) -> bytes:
        tail = b""
        if self.include_usage:
            chunk = {
                "id": self.id,
                "object": "chat.completion.chunk",
                "created": self.created,
                "model": self.model,
                "choices": [],
                "usage": usage(self._usage or ir.Usage()),
            }
            tail = b"data: " + orjson.dumps(chunk) + b"\n\n"
        return tail + b"data: [DONE]\n\n"

    def error(self, error: GatewayError) -> bytes:
        # OpenAI's SDKs raise on a chunk with an `error` key; no [DONE] follows.
        return b"data: " + orjson.dumps({"error": _error(error)}) + b"\n\n"


# -- decoding helpers -------------------------------------------------------------------------


def _messages(messages: list[Any]) -> tuple[list[ir.Text], list[ir.Message]]:
    system: list[ir.Text] = []
    out: list[ir.Message] = []
    call_names: dict[str, str] = {}
    for position, message in enumerate(messages):
        if not isinstance(message, dict):
            raise InvalidRequest(f"messages[{position}] must be an object", param="messages")
        role = message.get("role")
        content = message.get("content")
        if role in ("system", "developer"):
            system.extend(ir.Text(t) for t in _texts(content, position))
        elif role == "user":
            out.append(ir.Message("user", _user_parts(content, position)))
        elif role == "assistant":
            parts: list[ir.Part] = [ir.Text(t) for t in _texts(content, position)]
            for call in message.get("tool_calls") or ():
                tool_call = _read_tool_call(call, position)
                call_names[tool_call.id] = tool_call.name
                parts.append(tool_call)
            out.append(ir.Message("model", parts))
        elif role in ("tool", "function"):
            call_id = signatures.split(
                str(message.get("tool_call_id") or message.get("name") or "")
            )[0]
            name = call_names.get(call_id) or message.get("name")
            if not name:
                raise InvalidRequest(
                    f"messages[{position}]: tool_call_id {call_id!r} matches no earlier tool call",
                    param="messages",
                )
            output = "".join(_texts(content, position))
            out.append(ir.Message("user", [ir.ToolResult(call_id, name, _json_or_text(output))]))
        else:
            raise InvalidRequest(
                f"messages[{position}].role {role!r} is not supported", param="messages"
            )
    return system, out


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
                texts.append(str(item.get("text", "")))
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
    for item in content:
        kind = item.get("type") if isinstance(item, dict) else None
        if kind == "text":
            parts.append(ir.Text(str(item.get("text", ""))))
        else:
            raise InvalidRequest(
                f"messages[{position}]: content part type {kind!r} is not supported",
                param="messages",
            )
    return parts


def _read_tool_call(call: Any, position: int) -> ir.ToolCall:
    if not isinstance(call, dict) or not isinstance(call.get("function"), dict):
        raise InvalidRequest(
            f"messages[{position}].tool_calls entries need a function", param="messages"
        )
    function = call["function"]
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
    call_id, signature = signatures.split(str(call.get("id") or ""))
    return ir.ToolCall(call_id, str(function.get("name", "")), arguments, signature)


def _include_usage(data: dict[str, Any]) -> bool:
    options = data.get("stream_options")
    return isinstance(options, dict) and bool(options.get("include_usage"))


def _json_or_text(text: str) -> Any:
    stripped = text.strip()
    if stripped[:1] in ("{", "["):
        try:
            return orjson.loads(stripped)
        except orjson.JSONDecodeError:
            pass
    return text


def _generation(data: dict[str, Any]) -> ir.Generation:
    stop = data.get("stop")
    if isinstance(stop, str):
        stop = [stop]
    elif stop is not None and not (
        isinstance(stop, list) and all(isinstance(s, str) for s in stop)
    ):
        raise InvalidRequest("stop must be a string or an array of strings", param="stop")
    max_tokens = data.get("max_completion_tokens")
    if max_tokens is None:
        max_tokens = data.get("max_tokens")
    generation = ir.Generation(
        temperature=_number(data, "temperature"),
        top_p=_number(data, "top_p"),
        top_k=_integer(data, "top_k"),
        max_tokens=_integer({"max_tokens": max_tokens}, "max_tokens"),
        stop=stop or [],
        candidates=_integer(data, "n"),
        seed=_integer(data, "seed"),
        presence_penalty=_number(data, "presence_penalty"),
        frequency_penalty=_number(data, "frequency_penalty"),
    )
    return generation


def _number(data: dict[str, Any], key: str) -> float | None:
    value = data.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise InvalidRequest(f"{key} must be a number", param=key)
    return float(value)


def _integer(data: dict[str, Any], key: str) -> int | None:
    value = data.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidRequest(f"{key} must be an integer", param=key)
    return value


# -- encoding helpers -------------------------------------------------------------------------


def _message_parts(parts: list[ir.Part]) -> tuple[str | None, str | None, list[dict[str, Any]]]:
    content: list[str] = []
    reasoning: list[str] = []
    tool_calls: list[dict[str, Any]] = []
    for part in parts:
        if isinstance(part, ir.Text):
            (reasoning if part.thought else content).append(part.text)
        elif isinstance(part, ir.ToolCall):
            tool_calls.append(_tool_call(part))
        else:
            text = _render(part)
            if text:
                content.append(text)
    return ("".join(content) or None, "".join(reasoning) or None, tool_calls)


def _tool_call(call: ir.ToolCall) -> dict[str, Any]:
    out: dict[str, Any] = {
        "id": signatures.embed(call.id, call.signature),
        "type": "function",
        "function": {"name": call.name, "arguments": orjson.dumps(call.arguments).decode()},
    }
    if call.signature:
        out["extra_content"] = {"google": {"thought_signature": call.signature}}
    return out


def _render(part: ir.Part) -> str:
    """Parts OpenAI has no field for, written into the answer text so nothing is lost."""
    if isinstance(part, ir.CodeCall):
        return f"\n```{part.language.lower()}\n{part.code}\n```\n"
    if isinstance(part, ir.CodeResult):
        return f"\n```\n{part.output}\n```\n"
    return ""


def _finish(reason: ir.FinishReason | None, has_tool_calls: bool) -> str | None:
    if reason is None:
        return None
    if has_tool_calls and reason == "stop":
        return "tool_calls"
    return _FINISH[reason]


def usage(u: ir.Usage) -> dict[str, Any]:
    prompt = u.prompt_tokens + u.tool_prompt_tokens
    completion = u.output_tokens + u.thought_tokens
    return {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": u.total_tokens or prompt + completion,
        "prompt_tokens_details": {"cached_tokens": u.cached_tokens},
        "completion_tokens_details": {"reasoning_tokens": u.thought_tokens},
    }


def _completion_id(response_id: str | None) -> str:
    return "chatcmpl-" + (response_id or secrets.token_hex(12))


def _error(error: GatewayError) -> dict[str, Any]:
    code = error.code
    if code is None and error.status == 404:
        code = "model_not_found"
    if code is None and error.status == 429:
        code = "rate_limit_exceeded"
    if code is None and error.status == 401:
        code = "invalid_api_key"
    return {
        "message": error.message,
        "type": _ERROR_TYPE.get(error.kind, "server_error"),
        "param": error.param,
        "code": code,
    }
