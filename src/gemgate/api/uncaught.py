"""The last line of defence: an exception nothing expected still answers in the client's own
error shape, as JSON with the request id, never as a plain-text 500. Decoders refuse bad input
themselves; this is for the bugs they miss, so each one is logged with its traceback, once."""

from __future__ import annotations

import logging

from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from gemgate.api.fronts import error_format
from gemgate.errors import InternalError
from gemgate.proxy import error_response

log = logging.getLogger("gemgate")


def internal_error(scope: Scope) -> Response:
    request_id = scope.get("state", {}).get("request_id", "")
    error = InternalError(
        f"gemgate failed on this request (request id {request_id}); its log has the details"
    )
    return error_response(error_format(scope["path"]), error)


async def starlette_handler(request: Request, exc: Exception) -> Response:
    """Starlette's own last handler answers with this; it then re-raises to `Uncaught`."""
    return internal_error(request.scope)


class Uncaught:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = False

        async def watched_send(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, receive, watched_send)
        except Exception:
            # The query string is left out: it may hold a client key.
            log.exception("unexpected error on %s %s", scope.get("method"), scope["path"])
            if not started:
                await internal_error(scope)(scope, receive, send)
