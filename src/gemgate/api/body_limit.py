"""A request body larger than `GEMGATE_MAX_BODY_BYTES` is refused with 413 in the client's own
error shape, before it is read (by its Content-Length) or while it is read (a chunked body), so
an oversized upload never sits in memory."""

from __future__ import annotations

from starlette.types import Message, Receive

from gemgate.errors import RequestTooLarge


def too_large(limit: int) -> RequestTooLarge:
    return RequestTooLarge(f"the request is larger than the {limit} bytes this gateway accepts")


def declared_too_large(length: bytes, limit: int) -> bool:
    """Whether a Content-Length is unreadable or over the limit. The HTTP server holds the body
    to its declared length, so the header is enough."""
    return not length.isdigit() or int(length) > limit


def counted(receive: Receive, limit: int) -> Receive:
    """A chunked body, counted as it arrives; the reader gets a 413 error past the limit."""
    seen = 0

    async def counted() -> Message:
        nonlocal seen
        message = await receive()
        if message["type"] == "http.request":
            seen += len(message.get("body", b""))
            if seen > limit:
                raise too_large(limit)
        return message

    return counted
