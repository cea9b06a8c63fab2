"""The one ASGI entry. Every HTTP request passes here once: it gets its request id, its body
limit and its client key, and an unexpected exception becomes a JSON error in the client's
shape. The API's POST routes (chat, messages, responses, native actions...) are then dispatched
straight from the route table by path; the rest (model lists, admin, media, metrics) goes
through Starlette's router.

One layer instead of four middlewares, each wrapping `send`, and Starlette's router and two
exception middlewares on every request: on the hot path that was a third of gemgate's CPU
(bench/README.md)."""

from __future__ import annotations

import logging
from collections.abc import AsyncGenerator, Awaitable, Callable
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.routing import BaseRoute, Route
from starlette.types import Message, Receive, Scope, Send

from gemgate.api.body_limit import counted, declared_too_large, too_large
from gemgate.api.client_key import authenticate
from gemgate.api.fronts import error_format, is_public
from gemgate.api.request_id import CURRENT, id_headers, request_id
from gemgate.api.uncaught import internal_error
from gemgate.errors import GatewayError
from gemgate.gateway import Gateway
from gemgate.proxy import error_response

log = logging.getLogger("gemgate")

Endpoint = Callable[[Request], Awaitable[Any]]
_PATH_PARAM = "{target:path}"


class FrontDoor:
    def __init__(self, app: Starlette, gateway: Gateway, max_body: int) -> None:
        self.app = app
        self.gateway = gateway
        self.limit = max_body
        self.exact, self.under = hot_routes(app.routes)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)  # lifespan
            return
        headers = dict(scope["headers"])
        rid = request_id(headers.get(b"x-request-id"))
        text = rid.decode("latin-1")
        scope.setdefault("state", {})["request_id"] = text
        CURRENT.set(text)
        path: str = scope["path"]
        try:
            length = headers.get(b"content-length")
            if length is not None and declared_too_large(length, self.limit):
                raise too_large(self.limit)
            if not is_public(path):
                query = scope.get("query_string", b"")
                scope["state"]["client_key"] = authenticate(self.gateway, headers, query)
            endpoint = self._endpoint(scope, path) if scope["method"] == "POST" else None
            if endpoint is None:
                if length is None:
                    receive = counted(receive, self.limit)
                await self._routed(scope, receive, send, rid)
                return
            body = await read_body(receive, self.limit)
            if body is None:
                return  # the client left before its request was whole: nobody to answer
            scope["app"] = self.app  # what request.app reads
            response = await endpoint(ReadRequest(scope, body))
            # A stream runs on for minutes and its body (a whole conversation, maybe
            # megabytes) is not needed by then.
            del body
        except GatewayError as error:
            response = error_response(error_format(path), error)
        except Exception:
            # The query string is left out: it may hold a client key.
            log.exception("unexpected error on %s %s", scope["method"], path)
            response = internal_error(scope)
        response.raw_headers += id_headers(rid)
        del headers  # a stream runs on in this frame for minutes
        await response(scope, receive, send)

    def _endpoint(self, scope: Scope, path: str) -> Endpoint | None:
        endpoint = self.exact.get(path)
        if endpoint is not None:
            return endpoint
        cut = path.find("/models/")
        if cut >= 0:
            endpoint = self.under.get(path[: cut + 8])
            if endpoint is not None:
                scope["path_params"] = {"target": path[cut + 8 :]}
        return endpoint

    async def _routed(self, scope: Scope, receive: Receive, send: Send, rid: bytes) -> None:
        """Starlette's routing for everything that is not a hot route."""
        started = False
        ids = id_headers(rid)

        async def send_with_id(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
                message["headers"] = [*message.get("headers", ()), *ids]
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        except Exception:
            log.exception("unexpected error on %s %s", scope["method"], scope["path"])
            if not started:
                await internal_error(scope)(scope, receive, send_with_id)


class ReadRequest(Request):
    """A request whose body the front door has already read, in one loop that also holds it
    to the size limit (Starlette's reader is a generator per request)."""

    def __init__(self, scope: Scope, body: bytes) -> None:
        super().__init__(scope)
        self._read = body

    async def body(self) -> bytes:
        return self._read

    async def stream(self) -> AsyncGenerator[bytes, None]:
        yield self._read
        yield b""


async def read_body(receive: Receive, limit: int) -> bytes | None:
    """The whole body (None when the client left first); a 413 error once it passes `limit`,
    whatever its Content-Length said."""
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] != "http.request":
            return None
        chunk: bytes = message.get("body", b"")
        if chunk:
            size += len(chunk)
            if size > limit:
                raise too_large(limit)
            chunks.append(chunk)
        if not message.get("more_body", False):
            return chunks[0] if len(chunks) == 1 else b"".join(chunks)


def hot_routes(table: list[BaseRoute]) -> tuple[dict[str, Endpoint], dict[str, Endpoint]]:
    """The POST-only routes of the table: those with a fixed path by path, and those ending in
    `{target:path}` after `/models/` (the native actions) by the path before it."""
    exact: dict[str, Endpoint] = {}
    under: dict[str, Endpoint] = {}
    for route in table:
        if not isinstance(route, Route) or route.methods != {"POST"}:
            continue
        if not route.param_convertors:
            exact[route.path] = route.endpoint
        elif route.path.endswith("/models/" + _PATH_PARAM):
            under[route.path.removesuffix(_PATH_PARAM)] = route.endpoint
    return exact, under
