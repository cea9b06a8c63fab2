"""OpenAI chat completions: `POST /v1/chat/completions`, streamed and not.

Requests are read by `openai_chat_request`; this module writes answers (protocol notes C.3,
C.4). What OpenAI has no field for is written where a chat client shows it: executed code as
fenced blocks, generated images as Markdown images (plus OpenRouter's `message.images`),
search sources as a numbered list (plus `annotations` of type `url_citation`).
"""

from __future__ import annotations

import base64
import time
from typing import Any

import orjson

from gemgate import ir, signatures
from gemgate.errors import GatewayError
from gemgate.formats import openai_chat_request
from gemgate.formats.base import render_code, source_listing, sse_comment
from gemgate.ids import new_id

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

    def decode(self, body: bytes, path_model: str | None = None) -> ir.Request:
        return openai_chat_request.decode(body)

    def encode(self, response: ir.Response, request: ir.Request) -> bytes:
        choices = []
        for cand in response.candidates:
            message = _Message(request)
            for part in cand.parts:
                message.add(part)
            choices.append(
                {
                    "index": cand.index,
                    "message": message.to_json(cand.sources),
                    "logprobs": None,
                    "finish_reason": _finish(cand.finish, bool(message.tool_calls)),
                    **_native_finish(cand.finish_detail),
                }
            )
        return orjson.dumps(
            {
                "id": _completion_id(response.response_id),
                "object": "chat.completion",
                "created": int(time.time()),
                "model": _client_model(request),
                "choices": choices,
                "usage": usage(response.usage),
            }
        )

    def stream_encoder(self, request: ir.Request) -> ChatStream:
        return ChatStream(request)

    def error_body(self, error: GatewayError) -> bytes:
        return orjson.dumps({"error": error_object(error)})


class _Message:
    """One choice's message, gathered part by part."""

    def __init__(self, request: ir.Request) -> None:
        self.request = request
        self.content: list[str] = []
        self.reasoning: list[str] = []
        self.tool_calls: list[dict[str, Any]] = []
        self.images: list[dict[str, Any]] = []
        self.audio: list[str] = []

    def add(self, part: ir.Part) -> None:
        if isinstance(part, ir.Text):
            (self.reasoning if part.thought else self.content).append(part.text)
        elif isinstance(part, ir.ToolCall):
            self.tool_calls.append(_tool_call(part))
        elif isinstance(part, ir.Media) and part.mime_type.startswith("audio/") and part.data:
            self.audio.append(part.data)
        elif isinstance(part, ir.Media) and part.mime_type.startswith("image/"):
            self.images.append(_image(part, len(self.images)))
            self.content.append(_render(part))
        else:
            self.content.append(_render(part))

    def to_json(self, sources: list[ir.Source]) -> dict[str, Any]:
        content = "".join(self.content)
        annotations: list[dict[str, Any]] = []
        if sources:
            listing, annotations = _sources(sources, len(content))
            content += listing
        message: dict[str, Any] = {
            "role": "assistant",
            "content": content or None,
            "refusal": None,
        }
        if self.audio:
            # OpenAI's audio answers carry their words as the transcript, not as content.
            message["content"] = None
            message["audio"] = {
                "id": _audio_id(),
                "data": _join_base64(self.audio),
                "transcript": content or ir.spoken_text(self.request),
                "expires_at": int(time.time()),
            }
        if self.reasoning:
            message["reasoning_content"] = "".join(self.reasoning)
        if self.tool_calls:
            message["tool_calls"] = self.tool_calls
        if self.images:
            message["images"] = self.images
        if annotations:
            message["annotations"] = annotations
        return message


class ChatStream:
    """Turns IR events into `chat.completion.chunk` frames for one request."""

    def __init__(self, request: ir.Request) -> None:
        self.model = _client_model(request)
        self.created = int(time.time())
        self.id = _completion_id(None)
        self.include_usage = bool(request.client_options.get("include_usage"))
        self._roles_sent: set[int] = set()
        self._tool_calls: dict[int, int] = {}
        self._images: dict[int, int] = {}
        self._sources: dict[int, list[ir.Source]] = {}
        self._length: dict[int, int] = {}  # content characters sent, for annotation offsets
        # What an audio answer's transcript says: the text, not the whole conversation.
        self._spoken = ir.spoken_text(request)
        self._audio: dict[int, str] = {}  # the audio id of each candidate that has sent audio
        # The latest usage event; read when the usage is shown (see UsageEvent).
        self.usage_event = ir.UsageEvent(ir.Usage())
        # Each candidate's chunk up to its delta, and what follows a delta that ends nothing:
        # most chunks are one text delta, and they differ in the delta alone.
        self._heads: dict[int, bytes] = {}
        self._tail = b',"logprobs":null,"finish_reason":null}]'
        self._tail += b',"usage":null}\n\n' if self.include_usage else b"}\n\n"

    def event(self, event: ir.Event) -> bytes:
        if isinstance(event, ir.PartEvent):
            return self._part(event)
        if isinstance(event, ir.Grounding):
            ir.add_sources(self._sources.setdefault(event.index, []), event.sources)
            return b""
        if isinstance(event, ir.Finish):
            return self._finish(event)
        if isinstance(event, ir.UsageEvent):
            self.usage_event = event
            return b""
        if isinstance(event, ir.Start):
            if event.response_id:
                self.id = _completion_id(event.response_id)
                self._heads.clear()
            return self._chunk(0, self._role_delta(0, {"content": ""}))
        if isinstance(event, ir.Progress):
            return sse_comment(event)
        return b""

    def _part(self, event: ir.PartEvent) -> bytes:
        part, index = event.part, event.index
        delta: dict[str, Any]
        if isinstance(part, ir.Text):
            if not part.text:
                return b""  # a signature-only part: nothing to show
            if part.thought:
                delta = {"reasoning_content": part.text}
            else:
                delta = self._content(index, part.text)
        elif isinstance(part, ir.ToolCall):
            position = self._tool_calls.get(index, 0)
            self._tool_calls[index] = position + 1
            delta = {"tool_calls": [{"index": position, **_tool_call(part)}]}
        elif isinstance(part, ir.Media) and part.mime_type.startswith("audio/") and part.data:
            audio_id = self._audio.setdefault(index, _audio_id())
            delta = {"audio": {"id": audio_id, "data": part.data}}
        elif isinstance(part, ir.Media) and part.mime_type.startswith("image/"):
            position = self._images.get(index, 0)
            self._images[index] = position + 1
            delta = {**self._content(index, _render(part)), "images": [_image(part, position)]}
        else:
            text = _render(part)
            if not text:
                return b""
            delta = self._content(index, text)
        return self._chunk(index, self._role_delta(index, delta))

    def _content(self, index: int, text: str) -> dict[str, Any]:
        self._length[index] = self._length.get(index, 0) + len(text)
        return {"content": text}

    def _finish(self, event: ir.Finish) -> bytes:
        index = event.index
        frames = b""
        sources = self._sources.pop(index, None)
        if sources:
            # Sources go last, like footnotes, once the answer they support is complete.
            listing, annotations = _sources(sources, self._length.get(index, 0))
            delta = {**self._content(index, listing), "annotations": annotations}
            frames += self._chunk(index, self._role_delta(index, delta))
        audio_id = self._audio.pop(index, None)
        if audio_id is not None:
            # The last audio update: its words and (gemgate keeps no audio) its expiry, now.
            spoken = {
                "id": audio_id,
                "transcript": self._spoken,
                "expires_at": int(time.time()),
            }
            frames += self._chunk(index, self._role_delta(index, {"audio": spoken}))
        reason = _finish(event.reason, index in self._tool_calls)
        return frames + self._chunk(index, {}, reason, _native_finish(event.detail))

    def _role_delta(self, index: int, delta: dict[str, Any]) -> dict[str, Any]:
        if index in self._roles_sent:
            return delta
        self._roles_sent.add(index)
        return {"role": "assistant", **delta}

    def _chunk(
        self,
        index: int,
        delta: dict[str, Any],
        finish: str | None = None,
        extra: dict[str, Any] | None = None,
    ) -> bytes:
        if finish is None and extra is None:
            head = self._heads.get(index)
            if head is None:
                head = self._heads[index] = self._head(index)
            return head + orjson.dumps(delta) + self._tail
        choice = {"index": index, "delta": delta, "logprobs": None, "finish_reason": finish}
        chunk: dict[str, Any] = {
            "id": self.id,
            "object": "chat.completion.chunk",
            "created": self.created,
            "model": self.model,
            "choices": [{**choice, **(extra or {})}],
        }
        if self.include_usage:
            chunk["usage"] = None
        return b"data: " + orjson.dumps(chunk) + b"\n\n"

    def _head(self, index: int) -> bytes:
        return (
            b'data: {"id":'
            + orjson.dumps(self.id)
            + b',"object":"chat.completion.chunk","created":'
            + str(self.created).encode()
            + b',"model":'
            + orjson.dumps(self.model)
            + b',"choices":[{"index":'
            + str(index).encode()
            + b',"delta":'
        )

    def end(self) -> bytes:
        tail = b""
        if self.include_usage:
            chunk = {
                "id": self.id,
                "object": "chat.completion.chunk",
                "created": self.created,
                "model": self.model,
                "choices": [],
                "usage": usage(self.usage_event.usage),
            }
            tail = b"data: " + orjson.dumps(chunk) + b"\n\n"
        return tail + b"data: [DONE]\n\n"

    def error(self, error: GatewayError) -> bytes:
        # OpenAI's SDKs raise on a chunk with an `error` key; no [DONE] follows.
        return b"data: " + orjson.dumps({"error": error_object(error)}) + b"\n\n"


# -- helpers ----------------------------------------------------------------------------------


def _client_model(request: ir.Request) -> str:
    return str(request.client_options.get("model") or request.model)


def _tool_call(call: ir.ToolCall) -> dict[str, Any]:
    out: dict[str, Any] = {
        "id": signatures.embed(call.id, call.signature),
        "type": "function",
        "function": {"name": call.name, "arguments": orjson.dumps(call.arguments).decode()},
    }
    if call.signature:
        # Google's own OpenAI-compatible field; clients that keep unknown fields send it back.
        out["extra_content"] = {"google": {"thought_signature": call.signature}}
    return out


def _media_url(media: ir.Media) -> str:
    return media.uri or f"data:{media.mime_type};base64,{media.data or ''}"


def _image(media: ir.Media, index: int) -> dict[str, Any]:
    return {"type": "image_url", "image_url": {"url": _media_url(media)}, "index": index}


def _render(part: ir.Part) -> str:
    """Parts OpenAI has no field for, written into the answer text so nothing is lost."""
    code = render_code(part)
    if code is not None:
        return code
    if isinstance(part, ir.Media):
        kind = part.mime_type.split("/")[0]
        if kind == "image":
            return f"\n![image]({_media_url(part)})\n"
        return f"\n[{kind}]({_media_url(part)})\n"
    return ""


def _sources(sources: list[ir.Source], offset: int) -> tuple[str, list[dict[str, Any]]]:
    """The source listing, and a chat `url_citation` annotation for each of its lines."""
    listing, spans = source_listing(sources, offset)
    return listing, [
        {
            "type": "url_citation",
            "url_citation": {
                "url": source.url,
                "title": source.title or source.url,
                "start_index": begin,
                "end_index": stop,
            },
        }
        for source, begin, stop in spans
    ]


def _finish(reason: ir.FinishReason | None, has_tool_calls: bool) -> str | None:
    if reason is None:
        return None
    if has_tool_calls and reason == "stop":
        return "tool_calls"
    return _FINISH[reason]


def _native_finish(detail: str | None) -> dict[str, str]:
    """Google's own reason when it says more than OpenAI's word (SAFETY, a block reason...)."""
    if detail is None or detail == "STOP":
        return {}
    return {"native_finish_reason": detail}


def usage(u: ir.Usage) -> dict[str, Any]:
    prompt = u.prompt_tokens + u.tool_prompt_tokens
    completion = u.output_tokens + u.thought_tokens
    out: dict[str, Any] = {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": u.total_tokens or prompt + completion,
        "prompt_tokens_details": {"cached_tokens": u.cached_tokens},
        "completion_tokens_details": {"reasoning_tokens": u.thought_tokens},
    }
    if u.estimated:
        out["estimated"] = True  # counted by gemgate; the upstream gave no counts
    return out


def _audio_id() -> str:
    return "audio_" + new_id()


def _join_base64(pieces: list[str]) -> str:
    if len(pieces) == 1:
        return pieces[0]
    return base64.b64encode(b"".join(base64.b64decode(p) for p in pieces)).decode()


def _completion_id(response_id: str | None) -> str:
    return "chatcmpl-" + (response_id or new_id())


def error_object(error: GatewayError) -> dict[str, Any]:
    code = error.code
    if code is None and error.status == 429:
        code = "rate_limit_exceeded"
    if code is None and error.status == 401:
        code = "invalid_api_key"
    if code is None and error.status == 413:
        code = "request_too_large"
    return {
        "message": error.message,
        "type": _ERROR_TYPE.get(error.kind, "server_error"),
        "param": error.param,
        "code": code,
    }
