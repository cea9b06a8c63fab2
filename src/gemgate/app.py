"""build_app(settings): routes, middleware and lifespan, assembled explicitly; no globals."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ASGIApp

from gemgate.api.body_limit import BodyLimit
from gemgate.api.client_key import ClientKeyAuth
from gemgate.api.endpoints import routes
from gemgate.api.fronts import error_format
from gemgate.api.request_id import RequestId
from gemgate.api.uncaught import Uncaught, starlette_handler
from gemgate.config import Settings
from gemgate.errors import GatewayError, InvalidRequest, NotFound
from gemgate.gateway import Gateway
from gemgate.proxy import error_response


def build_app(settings: Settings, gateway: Gateway | None = None) -> ASGIApp:
    """The ASGI app; `gateway` is given by a caller that needs it too (the server's shutdown)."""
    gateway = gateway or Gateway(settings)

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        await gateway.start()
        try:
            yield
        finally:
            await gateway.stop()

    async def http_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, HTTPException)
        error: GatewayError
        if exc.status_code == 404:
            error = NotFound(f"no route {request.method} {request.url.path}", code="not_found")
        else:
            error = InvalidRequest(exc.detail or "bad request", status=exc.status_code)
        return error_response(error_format(request.url.path), error)

    app = Starlette(
        routes=routes(),
        lifespan=lifespan,
        exception_handlers={HTTPException: http_error, Exception: starlette_handler},
    )
    app.state.gateway = gateway
    # Built inside out: RequestId wraps everything, so even a 401 or a 413 carries the request
    # id, and Uncaught turns whatever escapes below it into a JSON error. Lifespan messages pass
    # through them all to Starlette.
    return RequestId(Uncaught(BodyLimit(ClientKeyAuth(app, gateway), settings.max_body_bytes)))
