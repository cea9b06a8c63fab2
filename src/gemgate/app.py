"""build_app(settings): routes, middleware and lifespan, assembled explicitly; no globals."""

from __future__ import annotations

import hmac
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Mount, Route
from starlette.types import ASGIApp

from gemgate.admin import api as admin_api
from gemgate.admin import pages as admin_pages
from gemgate.admin.auth import AdminAuth
from gemgate.api.endpoints import routes
from gemgate.api.front_door import FrontDoor
from gemgate.api.fronts import error_format
from gemgate.api.uncaught import starlette_handler
from gemgate.config import Settings
from gemgate.errors import GatewayError, InvalidRequest, NotFound
from gemgate.gateway import Gateway
from gemgate.proxy import error_response
from gemgate.services.quota_readings import QuotaReadings


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

    # What a scraper sends, made once; compared in constant time.
    expected = (
        f"Bearer {settings.metrics_token.get_secret_value()}".encode()
        if settings.metrics_token
        else None
    )

    async def metrics(request: Request) -> Response:
        sent = request.headers.get("authorization", "").encode()
        if expected is not None and not hmac.compare_digest(sent, expected):
            return Response(
                b"send the metrics token as 'Authorization: Bearer <token>'\n",
                status_code=401,
                media_type="text/plain",
                headers={"www-authenticate": "Bearer"},
            )
        return Response(gateway.metrics.render(), media_type="text/plain; version=0.0.4")

    app = Starlette(
        routes=[
            *routes(),
            Route("/metrics", metrics, methods=["GET"]),
            # /admin is public to the front door's key check: the admin has its own token.
            Mount("/admin/api", routes=admin_api.routes()),
            Mount("/admin", routes=admin_pages.routes()),
        ],
        lifespan=lifespan,
        exception_handlers={HTTPException: http_error, Exception: starlette_handler},
    )
    app.state.gateway = gateway
    app.state.admin_auth = AdminAuth.from_settings(settings)
    app.state.quota_readings = QuotaReadings()
    return FrontDoor(app, gateway, settings.max_body_bytes)
