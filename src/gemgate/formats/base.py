"""The format seam: what the pipeline asks of every client API."""

from __future__ import annotations

from typing import Any, Protocol

import orjson

from gemgate import ir
from gemgate.errors import GatewayError, InvalidRequest


class StreamEncoder(Protocol):
    """Per-request: holds the stream's state (open block, tool-call index, usage seen)."""

    def event(self, event: ir.Event) -> bytes: ...

    def end(self) -> bytes: ...

    def error(self, error: GatewayError) -> bytes: ...


class Format(Protocol):
    # The key scope this front belongs to: chat, messages, native or images.
    endpoint: str
    stream_media_type: str

    def decode(self, body: bytes, path_model: str | None = None) -> ir.Request: ...

    def encode(self, response: ir.Response, request: ir.Request) -> bytes: ...

    def stream_encoder(self, request: ir.Request) -> StreamEncoder: ...

    def error_body(self, error: GatewayError) -> bytes: ...


def load_json_object(body: bytes) -> dict[str, Any]:
    """The request body as a JSON object, or a 400 that says what is wrong with it."""
    if not body:
        raise InvalidRequest("the request body is empty; send a JSON object")
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise InvalidRequest(f"the request body is not valid JSON: {exc}") from None
    if not isinstance(data, dict):
        raise InvalidRequest("the request body must be a JSON object")
    return data


def json_or_text(text: str) -> Any:
    """A tool's output as the JSON value it spells, when it is a JSON object or array, else
    the text itself: Gemini reads structured results better than quoted JSON."""
    stripped = text.strip()
    if stripped[:1] in ("{", "["):
        try:
            return orjson.loads(stripped)
        except orjson.JSONDecodeError:
            pass
    return text


def render_code(part: ir.Part) -> str | None:
    """Executed code and its result as Markdown, for client APIs that have no field for them;
    None for any other part."""
    if isinstance(part, ir.CodeCall):
        return f"\n```{part.language.lower()}\n{part.code}\n```\n"
    if isinstance(part, ir.CodeResult):
        return f"\n```\n{part.output}\n```\n"
    return None


def number_field(data: dict[str, Any], key: str) -> float | None:
    """An optional numeric field, or a 400 naming it; JSON booleans are not numbers."""
    value = data.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise InvalidRequest(f"{key} must be a number", param=key)
    return float(value)


def integer_field(data: dict[str, Any], key: str) -> int | None:
    value = data.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidRequest(f"{key} must be an integer", param=key)
    return value


class EmbeddingFormat(Protocol):
    """A client API for embeddings: texts in, vectors out, no stream."""

    endpoint: str

    def decode(self, body: bytes) -> ir.EmbedRequest: ...

    def encode(self, result: ir.Embeddings, request: ir.EmbedRequest) -> bytes: ...

    def error_body(self, error: GatewayError) -> bytes: ...
