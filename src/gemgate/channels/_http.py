"""The one outbound HTTP client: a shared keep-alive pool with connect and read timeouts."""

from __future__ import annotations

from collections.abc import AsyncIterator

import aiohttp

from gemgate import sse
from gemgate.config import Settings


class Http:
    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self._session: aiohttp.ClientSession | None = None
        # sock_read bounds the silence between two reads, not the length of a long stream.
        self.timeout = aiohttp.ClientTimeout(
            total=None, sock_connect=settings.connect_timeout, sock_read=settings.read_timeout
        )

    @property
    def session(self) -> aiohttp.ClientSession:
        if self._session is None:
            connector = aiohttp.TCPConnector(limit=0, ttl_dns_cache=300, keepalive_timeout=60)
            self._session = aiohttp.ClientSession(
                connector=connector,
                timeout=self.timeout,
                auto_decompress=True,
                # Upstream error bodies are read as bytes; never raise on status.
                raise_for_status=False,
            )
        return self._session

    def proxy_for(self, credential_proxy: str | None) -> str | None:
        return credential_proxy or self._settings.proxy

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None


def sse_data(response: aiohttp.ClientResponse) -> AsyncIterator[list[bytes]]:
    """The `data:` payloads of a response's server-sent events, as soon as they are whole: all
    that each read completed, together."""
    return sse.data(response.content.iter_any())
