"""Pure-ASGI middleware that finds the client key wherever a client's SDK puts it and answers
401 in that client's own error shape when it is missing, wrong or revoked."""

from __future__ import annotations

from urllib.parse import parse_qsl

from starlette.types import ASGIApp, Receive, Scope, Send

from gemgate.api.fronts import error_format, is_public
from gemgate.errors import AuthenticationFailed
from gemgate.gateway import Gateway
from gemgate.proxy import error_response


def find_secret(scope: Scope) -> str | None:
    headers = dict(scope["headers"])
    for name in (b"x-api-key", b"x-goog-api-key"):
        value = headers.get(name)
        if value:
            return value.decode("latin-1").strip()
    authorization = headers.get(b"authorization")
    if authorization:
        value = authorization.decode("latin-1").strip()
        scheme, _, rest = value.partition(" ")
        if scheme.lower() == "bearer":
            # "Bearer " with nothing after it is a client whose key variable was empty.
            return rest.strip() or None
        return value or None
    query = scope.get("query_string", b"")
    if b"key=" in query:
        for name, value in parse_qsl(query.decode("latin-1")):
            if name == "key" and value:
                return value
    return None


class ClientKeyAuth:
    def __init__(self, app: ASGIApp, gateway: Gateway) -> None:
        self.app = app
        self.gateway = gateway

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or is_public(scope["path"]):
            await self.app(scope, receive, send)
            return
        secret = find_secret(scope)
        key = self.gateway.keys.lookup(secret) if secret else None
        if key is None:
            message = (
                "no client key: send it as 'Authorization: Bearer <key>'"
                if not secret
                else "the client key is not valid or has been revoked"
            )
            response = error_response(error_format(scope["path"]), AuthenticationFailed(message))
            await response(scope, receive, send)
            return
        # A key known to be over its token limits is refused before its body is read; its
        # request rate is counted where its request is admitted (gemgate.services.admission).
        refused = self.gateway.usage.check(key)
        if refused is not None:
            await error_response(error_format(scope["path"]), refused)(scope, receive, send)
            return
        scope.setdefault("state", {})["client_key"] = key
        await self.app(scope, receive, send)
