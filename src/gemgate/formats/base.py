"""The format seam: what the pipeline asks of every client API."""

from __future__ import annotations

from typing import Any, Protocol

import orjson

from gemgate import ir, json_depth
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
            value = orjson.loads(stripped)
        except orjson.JSONDecodeError:
            return text
        # Too deep to forward as structure; as text it still says everything.
        return text if json_depth.deeper_than(value) else value
    return text


MEDIA_FORMATS = ("url", "b64_json")


def media_format(data: dict[str, Any]) -> dict[str, str]:
    """The `media_format` extra field (any front): generated media as gemgate links (`url`)
    or inline base64 (`b64_json`); as a client option, empty when not given."""
    value = string_field(data, "media_format")
    if value is None:
        return {}
    if value not in MEDIA_FORMATS:
        raise InvalidRequest("media_format must be 'url' or 'b64_json'", param="media_format")
    return {"media_format": value}


def sse_comment(progress: ir.Progress) -> bytes:
    """An SSE comment line: every SSE client skips it, and it keeps the connection alive."""
    text = " ".join(progress.message.split())
    return b": " + text.encode() + b"\n\n"


def render_code(part: ir.Part) -> str | None:
    """Executed code and its result as Markdown, for client APIs that have no field for them;
    None for any other part."""
    if isinstance(part, ir.CodeCall):
        return f"\n```{part.language.lower()}\n{part.code}\n```\n"
    if isinstance(part, ir.CodeResult):
        return f"\n```\n{part.output}\n```\n"
    return None


# Typed reads of optional fields: the value, None when absent (or null), else a 400 that names
# the field (`name` when the message should show a path rather than the bare key).


def number_field(data: dict[str, Any], key: str, name: str | None = None) -> float | None:
    """JSON booleans are not numbers."""
    value = data.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise InvalidRequest(f"{name or key} must be a number", param=name or key)
    return float(value)


def integer_field(data: dict[str, Any], key: str, name: str | None = None) -> int | None:
    value = data.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidRequest(f"{name or key} must be an integer", param=name or key)
    return value


def string_field(data: dict[str, Any], key: str, name: str | None = None) -> str | None:
    value = data.get(key)
    if value is None or isinstance(value, str):
        return value
    raise InvalidRequest(f"{name or key} must be a string", param=name or key)


def boolean_field(data: dict[str, Any], key: str, name: str | None = None) -> bool | None:
    value = data.get(key)
    if value is None or isinstance(value, bool):
        return value
    raise InvalidRequest(f"{name or key} must be true or false", param=name or key)


def array_field(data: dict[str, Any], key: str, name: str | None = None) -> list[Any] | None:
    value = data.get(key)
    if value is None or isinstance(value, list):
        return value
    raise InvalidRequest(f"{name or key} must be an array", param=name or key)


def object_field(data: dict[str, Any], key: str, name: str | None = None) -> dict[str, Any] | None:
    value = data.get(key)
    if value is None or isinstance(value, dict):
        return value
    raise InvalidRequest(f"{name or key} must be an object", param=name or key)


class EmbeddingFormat(Protocol):
    """A client API for embeddings: texts in, vectors out, no stream."""

    endpoint: str

    def decode(self, body: bytes) -> ir.EmbedRequest: ...

    def encode(self, result: ir.Embeddings, request: ir.EmbedRequest) -> bytes: ...

    def error_body(self, error: GatewayError) -> bytes: ...


def narrow_tools(
    tools: list[ir.Tool], choice: ir.ToolChoice | None
) -> tuple[list[ir.Tool], ir.ToolChoice | None]:
    """Tools and choice as Gemini can take them: a choice of allowed names under "auto"
    becomes offering only those functions; a name that is not among the tools is a 400."""
    if choice is not None and choice.mode == "auto" and choice.names is not None:
        # Gemini honours allowed names only when a call is required; for "auto" the other
        # functions are simply not offered.
        allowed = set(choice.names)
        tools = [t for t in tools if not isinstance(t, ir.FunctionTool) or t.name in allowed]
        choice = None
    declared = {t.name for t in tools if isinstance(t, ir.FunctionTool)}
    for name in (choice.names or []) if choice else []:
        if name not in declared:
            raise InvalidRequest(
                f"tool_choice names {name!r}, which is not among the tools", param="tool_choice"
            )
    return tools, choice


def source_listing(
    sources: list[ir.Source], offset: int
) -> tuple[str, list[tuple[ir.Source, int, int]]]:
    """A numbered Markdown list of sources, and where each line of it stands (start and end
    offsets into the whole text, which is `offset` characters long before the list): OpenAI's
    APIs cite each source by those offsets, each in its own annotation shape."""
    listing = "\n\nSources:\n"
    spans = []
    for number, source in enumerate(sources, 1):
        title = (source.title or source.url).replace("]", ")")
        line = f"{number}. [{title}]({source.url})"
        start = offset + len(listing)
        listing += line + "\n"
        spans.append((source, start, start + len(line)))
    return listing, spans
