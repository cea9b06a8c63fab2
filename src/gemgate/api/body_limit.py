"""Pure-ASGI middleware: a request body larger than `GEMGATE_MAX_BODY_BYTES` is refused with 413
in the client's own error shape, before it is read (by its Content-Length) or while it is read
(a chunked body), so an oversized upload never sits in memory."""

from __future__ import annotations

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from gemgate.api.fronts import error_format
from gemgate.errors import RequestTooLarge
from gemgate.proxy import error_response


def too_large(limit: int) -> RequestTooLarge:
    return RequestTooLarge(f"the request is larger than the {limit} bytes this gateway accepts")


class BodyLimit:
    def __init__(self, app: ASGIApp, limit: int) -> None:
        self.app = app
        self.limit = limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        length = None
        for name, value in scope["headers"]:
            if name == b"content-length":
                length = value
                break
        if length is not None:
            # The HTTP server holds the body to its declared length, so the header is enough.
            if not length.isdigit() or int(length) > self.limit:
                await error_response(error_format(scope["path"]), too_large(self.limit))(
                    scope, receive, send
                )
                return
            await self.app(scope, receive, send)
            return
        await self.app(scope, _counted(receive, self.limit), send)


def _counted(receive: Receive, limit: int) -> Receive:
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
