"""The one outbound HTTP client: a shared keep-alive pool with connect and read timeouts."""

from __future__ import annotations

from collections.abc import AsyncIterator

import aiohttp

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


async def sse_data(response: aiohttp.ClientResponse) -> AsyncIterator[bytes]:
    """The `data:` payload of each server-sent event, as soon as its blank line arrives.

    Lines are split by hand over raw chunks because a single event can carry megabytes of
    base64 (generated images), more than aiohttp's line reader allows.
    """
    pending = b""
    data: list[bytes] = []
    async for chunk in response.content.iter_any():
        pending += chunk
        *lines, pending = pending.split(b"\n")
        for line in lines:
            if line.endswith(b"\r"):
                line = line[:-1]
            if not line:
                if data:
                    yield b"\n".join(data)
                    data = []
            elif line.startswith(b"data:"):
                value = line[5:]
                data.append(value[1:] if value.startswith(b" ") else value)
    if pending.startswith(b"data:"):
        value = pending[5:].rstrip(b"\r")
        data.append(value[1:] if value.startswith(b" ") else value)
    if data:
        yield b"\n".join(data)
