"""The client key, wherever a client's SDK puts it: checked before anything else is read."""

from __future__ import annotations

from urllib.parse import parse_qsl

from gemgate.errors import AuthenticationFailed, GatewayError
from gemgate.gateway import Gateway
from gemgate.services.keys import ClientKey


def find_secret(headers: dict[bytes, bytes], query: bytes) -> str | None:
    for header in (b"x-api-key", b"x-goog-api-key"):
        raw = headers.get(header)
        if raw:
            return raw.decode("latin-1").strip()
    authorization = headers.get(b"authorization")
    if authorization:
        text = authorization.decode("latin-1").strip()
        scheme, _, rest = text.partition(" ")
        if scheme.lower() == "bearer":
            # "Bearer " with nothing after it is a client whose key variable was empty.
            return rest.strip() or None
        return text or None
    if b"key=" in query:
        for name, value in parse_qsl(query.decode("latin-1")):
            if name == "key" and value:
                return value
    return None


def authenticate(gateway: Gateway, headers: dict[bytes, bytes], query: bytes) -> ClientKey:
    """The request's key, or the error that refuses it: missing, wrong or revoked (401), or
    known to be over its token limits (refused before its body is read; its request rate is
    counted where the request is admitted, in gemgate.services.admission)."""
    secret = find_secret(headers, query)
    key = gateway.keys.lookup(secret) if secret else None
    if key is None:
        raise AuthenticationFailed(
            "no client key: send it as 'Authorization: Bearer <key>'"
            if not secret
            else "the client key is not valid or has been revoked"
        )
    refused: GatewayError | None = gateway.usage.check(key)
    if refused is not None:
        raise refused
    return key
