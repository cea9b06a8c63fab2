"""The one outbound HTTP client: a shared keep-alive pool with connect and read timeouts, and
one more pool per SOCKS5 proxy a credential goes through."""

from __future__ import annotations

from collections.abc import AsyncIterator

import aiohttp

from gemgate import sse
from gemgate.config import Settings


class Http:
    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self._session: aiohttp.ClientSession | None = None
        # By proxy URL: aiohttp speaks only HTTP to a proxy named per request, so a SOCKS5
        # proxy needs a connector (and so a session) of its own.
        self._socks: dict[str, aiohttp.ClientSession] = {}
        # sock_read bounds the silence between two reads, not the length of a long stream.
        self.timeout = aiohttp.ClientTimeout(
            total=None, sock_connect=settings.connect_timeout, sock_read=settings.read_timeout
        )

    @property
    def session(self) -> aiohttp.ClientSession:
        if self._session is None:
            connector = aiohttp.TCPConnector(limit=0, ttl_dns_cache=300, keepalive_timeout=60)
            self._session = self._new_session(connector)
        return self._session

    def via(self, credential_proxy: str | None) -> tuple[aiohttp.ClientSession, str | None]:
        """Where a credential's requests go out: the session to send them on, and the proxy to
        name in each (`proxy=`). An HTTP(S) proxy rides on the shared pool; a SOCKS5 one has a
        pool of its own, whose connections it opens."""
        proxy = credential_proxy or self._settings.proxy
        if proxy is None or proxy[:6].lower() != "socks5":
            return self.session, proxy
        session = self._socks.get(proxy)
        if session is None:
            from gemgate.channels import _socks  # loaded only when a credential needs it

            session = self._socks[proxy] = self._new_session(_socks.connector(proxy))
        return session, None

    def _new_session(self, connector: aiohttp.BaseConnector) -> aiohttp.ClientSession:
        return aiohttp.ClientSession(
            connector=connector,
            timeout=self.timeout,
            auto_decompress=True,
            # Upstream error bodies are read as bytes; never raise on status.
            raise_for_status=False,
        )

    async def close(self) -> None:
        for session in (self._session, *self._socks.values()):
            if session is not None:
                await session.close()
        self._session = None
        self._socks.clear()


def sse_data(response: aiohttp.ClientResponse) -> AsyncIterator[list[bytes]]:
    """The `data:` payloads of a response's server-sent events, as soon as they are whole: all
    that each read completed, together."""
    return sse.data(response.content.iter_any())
