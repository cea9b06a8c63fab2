"""Connections through a SOCKS5 proxy for the aiohttp channels (aiohttp names only HTTP(S)
proxies per request). Imported by `Http.via` for the first credential that needs it."""

from __future__ import annotations

import errno
from typing import Any
from urllib.parse import unquote, urlsplit

import aiohttp
from aiohttp_socks import (
    ProxyConnectionError,
    ProxyConnector,
    ProxyError,
    ProxyTimeoutError,
    ProxyType,
)


class SocksConnector(ProxyConnector):
    """aiohttp_socks's connector, whose failures are aiohttp's own: every channel already
    reads those as an upstream it could not reach (and tries another credential)."""

    async def connect(self, req: Any, traces: Any, timeout: Any) -> Any:  # noqa: ASYNC109 (aiohttp's signature)
        try:
            return await super().connect(req, traces, timeout)
        except ProxyTimeoutError:
            raise aiohttp.ConnectionTimeoutError("the SOCKS5 proxy did not answer") from None
        except (ProxyError, ProxyConnectionError) as exc:
            # python_socks's words: "Username and password authentication failure", say.
            why = OSError(errno.ECONNREFUSED, f"SOCKS5 proxy: {exc}")
            raise aiohttp.ClientProxyConnectionError(req.connection_key, why) from None


def connector(proxy: str) -> aiohttp.BaseConnector:
    """A pool of connections through `proxy`: `socks5h://` has the proxy look up the
    upstream's name (as curl reads the scheme), `socks5://` looks it up here."""
    parts = urlsplit(proxy)
    return SocksConnector(
        host=parts.hostname or "",
        port=parts.port or 1080,
        proxy_type=ProxyType.SOCKS5,
        username=unquote(parts.username) if parts.username is not None else None,
        password=unquote(parts.password) if parts.password is not None else None,
        rdns=parts.scheme.lower() == "socks5h",
        limit=0,
        ttl_dns_cache=300,
        keepalive_timeout=60,
    )
