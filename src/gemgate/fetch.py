"""Fetching the URLs clients put in their messages (images, audio, video, PDFs), safely.

A client-given URL must never let a caller reach what only the gateway can reach: the
loopback interface, the private network, a cloud metadata service. Every address a host name
resolves to is checked before connecting, on every redirect, and the connection goes to
exactly the address that was checked, so a DNS answer that changes between check and connect
(rebinding) gains nothing. Hosts the operator allow-lists skip the address check.
"""

from __future__ import annotations

import asyncio
import base64
import ipaddress
import socket
from urllib.parse import urljoin, urlsplit

import aiohttp
from aiohttp.abc import AbstractResolver, ResolveResult

from gemgate import input_media, ir
from gemgate.allow_list import AllowList
from gemgate.config import Settings
from gemgate.errors import InvalidRequest, RequestTooLarge

MAX_REDIRECTS = 5
_ENCODE_IN_THREAD = 1024 * 1024
_YOUTUBE_HOSTS = frozenset({"youtube.com", "www.youtube.com", "m.youtube.com", "youtu.be"})
_FILES_API_PREFIX = "https://generativelanguage.googleapis.com/"


class FetchRefused(Exception):
    """Why a URL was not fetched, in words for the client."""


def is_public(address: str) -> bool:
    """Whether an IP address is one anyone on the internet could reach."""
    ip = ipaddress.ip_address(address.split("%", 1)[0])
    if isinstance(ip, ipaddress.IPv6Address):
        # An IPv4 address in IPv6 clothing is judged as the IPv4 address it is.
        embedded = ip.ipv4_mapped or ip.sixtofour or (ip.teredo[1] if ip.teredo else None)
        if embedded is not None:
            return is_public(str(embedded))
    return ip.is_global and not (
        ip.is_multicast
        or ip.is_private
        or ip.is_loopback
        or ip.is_link_local
        or ip.is_reserved
        or ip.is_unspecified
    )


def stays_upstream(uri: str) -> bool:
    """URIs Gemini fetches itself (YouTube videos, its own Files API): sent as `fileData`."""
    host = (urlsplit(uri).hostname or "").lower()
    return host in _YOUTUBE_HOSTS or uri.startswith(_FILES_API_PREFIX)


class _CheckedResolver(AbstractResolver):
    """Resolves a host and refuses it unless every address is public (or the host and port are
    allow-listed). aiohttp connects to the addresses returned here and nothing else."""

    def __init__(self, allow: AllowList) -> None:
        self.allow = allow

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        loop = asyncio.get_running_loop()
        try:
            infos = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM, family=family)
        except socket.gaierror as exc:
            raise FetchRefused(f"the host {host} does not resolve") from exc
        results: list[ResolveResult] = []
        for fam, _, proto, _, sockaddr in infos:
            address = str(sockaddr[0])
            if not self.allow.allows(host, port) and not is_public(address):
                raise FetchRefused(f"{host} resolves to {address}, which is not a public address")
            results.append(
                ResolveResult(
                    hostname=host,
                    host=address,
                    port=int(sockaddr[1]),
                    family=fam,
                    proto=proto,
                    flags=socket.AI_NUMERICHOST | socket.AI_NUMERICSERV,
                )
            )
        return results

    async def close(self) -> None:
        return None


class Fetcher:
    """Turns every http(s) `ir.Media` of a request into inline bytes before it goes upstream."""

    def __init__(self, settings: Settings) -> None:
        self.allow = AllowList(settings.fetch_allow_hosts)
        self.max_bytes = settings.fetch_max_bytes
        self.max_request = settings.max_body_bytes
        self.timeout = aiohttp.ClientTimeout(total=settings.fetch_timeout)
        self._session: aiohttp.ClientSession | None = None

    @property
    def session(self) -> aiohttp.ClientSession:
        # Not the shared upstream session (channels/_http.py): this one needs its own resolver
        # (the address check), no DNS cache (every connection re-checked) and no outbound
        # proxy (a proxy would resolve names itself, past the check).
        if self._session is None:
            connector = aiohttp.TCPConnector(
                resolver=_CheckedResolver(self.allow), use_dns_cache=False, limit=32
            )
            self._session = aiohttp.ClientSession(
                connector=connector, timeout=self.timeout, auto_decompress=True
            )
        return self._session

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def resolve(self, request: ir.Request, body_size: int = 0, uploads: bool = False) -> None:
        """Inline every fetchable URL in the request's messages, all at once. What is fetched
        counts against the request size limit, as the base64 it becomes upstream, unless the
        channel `uploads` media too large to go inline (then each file is bounded by
        `fetch_max_bytes` alone, and the channel keeps its own request small)."""
        pending = [media for media in _media_of(request) if _needs_fetch(media)]
        if not pending:
            return
        await asyncio.gather(*(self._inline(media) for media in pending))
        if uploads:
            return
        size = body_size + sum(len(media.data or "") for media in pending)
        if size > self.max_request:
            raise RequestTooLarge(
                f"with the media fetched for it, the request is {size} bytes, more than the "
                f"{self.max_request} bytes this gateway accepts"
            )

    async def _inline(self, media: ir.Media) -> None:
        assert media.uri is not None
        url = media.uri
        try:
            data, declared = await self.fetch(url)
        except FetchRefused as why:
            raise InvalidRequest(f"could not fetch {url}: {why}", param="messages") from None
        media.mime_type = input_media.checked_type(
            declared or media.mime_type, data[:24], urlsplit(url).path, f"the file at {url}"
        )
        if len(data) > _ENCODE_IN_THREAD:
            # Tens of megabytes of base64 would hold up every other request on the loop.
            media.data = (await asyncio.to_thread(base64.b64encode, data)).decode()
        else:
            media.data = base64.b64encode(data).decode()
        media.uri = None

    async def fetch(self, url: str) -> tuple[bytes, str | None]:
        """The body and Content-Type at `url`, following redirects, each one checked."""
        for _ in range(MAX_REDIRECTS + 1):
            self._check_url(url)
            try:
                async with self.session.get(url, allow_redirects=False) as response:
                    if response.status in (301, 302, 303, 307, 308):
                        location = response.headers.get("location")
                        if not location:
                            raise FetchRefused(f"HTTP {response.status} without a Location")
                        url = urljoin(url, location)
                        continue
                    if response.status != 200:
                        raise FetchRefused(f"the server answered HTTP {response.status}")
                    return await self._read(response), response.headers.get("content-type")
            except FetchRefused:
                raise
            except TimeoutError:
                raise FetchRefused(
                    f"no complete answer within {self.timeout.total:g} seconds"
                ) from None
            except aiohttp.ClientConnectorError as exc:
                # The resolver's refusal arrives wrapped in the connector's error.
                cause = exc.__cause__ or exc.os_error
                if isinstance(cause, FetchRefused):
                    raise cause from None
                raise FetchRefused(f"cannot connect ({exc.os_error})") from None
            except aiohttp.ClientError as exc:
                raise FetchRefused(f"download failed ({type(exc).__name__})") from None
        raise FetchRefused(f"more than {MAX_REDIRECTS} redirects")

    def _check_url(self, url: str) -> None:
        try:
            parts = urlsplit(url)
            port = parts.port or (443 if parts.scheme == "https" else 80)
        except ValueError:
            raise FetchRefused("the URL is malformed") from None
        if parts.scheme not in ("http", "https"):
            raise FetchRefused("only http and https URLs can be fetched")
        host = (parts.hostname or "").lower()
        if not host:
            raise FetchRefused("the URL has no host")
        # aiohttp does not ask the resolver about IP literals, so they are checked here.
        try:
            ipaddress.ip_address(host)
        except ValueError:
            return
        if not self.allow.allows(host, port) and not is_public(host):
            raise FetchRefused(f"{host} is not a public address")

    async def _read(self, response: aiohttp.ClientResponse) -> bytes:
        length = response.content_length
        if length is not None and length > self.max_bytes:
            raise FetchRefused(f"it is {length} bytes, more than the {self.max_bytes} allowed")
        body = bytearray()
        async for chunk in response.content.iter_chunked(65536):
            body += chunk
            if len(body) > self.max_bytes:
                raise FetchRefused(f"it is more than the {self.max_bytes} bytes allowed")
        return bytes(body)


def _needs_fetch(media: ir.Media) -> bool:
    return (
        media.data is None
        and media.uri is not None
        and media.uri.startswith(("http://", "https://"))
        and not stays_upstream(media.uri)
    )


def _media_of(request: ir.Request) -> list[ir.Media]:
    found: list[ir.Media] = []
    for message in request.messages:
        for part in message.parts:
            if isinstance(part, ir.Media):
                found.append(part)
            elif isinstance(part, ir.ToolResult):
                found.extend(part.media)
    return found
