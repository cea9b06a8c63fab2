"""The streamed POST of StreamGenerate: one curl_cffi handle with the browser impersonation,
run on the web session's own multi handle, its body handed over as it arrives.

curl_cffi's `AsyncSession` would cost about 0.3 ms of CPU more per answer: it rebuilds its
header, cookie and proxy options from scratch for every request, reads every field of the
reply and passes each network read through a queue. This is gemgate's hottest path on the
channel, so it sets only what the call needs, with the same meaning as the session's requests:
the impersonated browser (TLS and HTTP/2 fingerprint and default headers, from
`Curl.impersonate`), proxy, timeouts and redirects. Everything else goes through the session.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import AsyncGenerator
from dataclasses import dataclass
from typing import Any

from curl_cffi import AsyncCurl, Curl, CurlError, CurlInfo, CurlOpt

try:  # "chrome" means the newest Chrome the session knows, as AsyncSession reads it
    from curl_cffi.requests.impersonate import resolve_latest_browser_type
except ImportError:  # pragma: no cover - an older curl_cffi takes the name as it is

    def resolve_latest_browser_type(item: Any) -> Any:
        return item


# Handles kept for reuse, as many as the session's own pool.
_KEEP = 64


@dataclass(slots=True)
class Head:
    """The reply's status and the cookies it sets (of the last reply, after redirects)."""

    status: int
    set_cookies: list[str]


class StreamFailed(Exception):
    """The transfer failed (connection, timeout, proxy). Named by curl's error code only:
    curl's text may name a proxy with its credentials."""

    def __init__(self, error: BaseException | None) -> None:
        self.code = getattr(error, "code", None)
        super().__init__(f"curl error {self.code}" if self.code else type(error).__name__)


class _Sink:
    """Where curl writes: the head's lines and the body's pieces, kept until the reader takes
    them; the reader is woken once for all that arrived in one turn of the event loop."""

    __slots__ = ("head", "pieces", "waiter")

    def __init__(self) -> None:
        self.head: list[bytes] = []
        self.pieces: list[bytes] = []
        self.waiter: asyncio.Future[None] | None = None

    def header(self, line: bytes) -> int:
        self.head.append(line)
        return len(line)

    def write(self, data: bytes) -> int:
        self.pieces.append(data)
        self.wake()
        return len(data)

    def wake(self, *_: Any) -> None:
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_result(None)

    async def wait(self) -> None:
        self.waiter = asyncio.get_running_loop().create_future()
        try:
            await self.waiter
        finally:
            self.waiter = None

    def set_cookies(self) -> list[str]:
        """The Set-Cookie values of the last reply's head (after any redirect)."""
        last = 0
        for i, line in enumerate(self.head):
            if line.startswith(b"HTTP/"):
                last = i
        out = []
        for line in self.head[last:]:
            name, sep, value = line.partition(b":")
            if sep and name.strip().lower() == b"set-cookie":
                text = value.strip().decode("latin-1")
                if text:
                    out.append(text)
        return out


class StreamingPost:
    """Streamed POSTs on the multi handle of a curl_cffi session, with its handles reused."""

    def __init__(self, impersonate: str, connect_timeout: float, read_timeout: float) -> None:
        self.target = resolve_latest_browser_type(impersonate)
        self.connect_ms = int(connect_timeout * 1000)
        # As the session does for streams: no total limit, but no more than this without a byte.
        self.stall_s = math.ceil(connect_timeout + read_timeout)
        self._handles: list[Curl] = []

    def close(self) -> None:
        for curl in self._handles:
            curl.close()
        self._handles.clear()

    async def post(
        self,
        acurl: AsyncCurl,
        url: str,
        headers: dict[str, str],
        body: bytes,
        proxy: str | None,
    ) -> AsyncGenerator[Head | bytes, None]:
        """The reply's head, then its body: all that has come by each wake-up in one piece."""
        curl = self._handles.pop() if self._handles else self._new_handle()
        sink = _Sink()
        self._options(curl, url, headers, body, proxy, sink)
        done = acurl.add_handle(curl)
        done.add_done_callback(sink.wake)
        try:
            while not sink.pieces and not done.done():
                await sink.wait()
            if done.done() and done.exception() is not None:
                raise StreamFailed(done.exception())
            status = curl.getinfo(CurlInfo.RESPONSE_CODE)
            assert isinstance(status, int)
            yield Head(status, sink.set_cookies())
            while True:
                if sink.pieces:
                    pieces, sink.pieces = sink.pieces, []
                    yield pieces[0] if len(pieces) == 1 else b"".join(pieces)
                elif done.done():
                    if done.exception() is not None:
                        raise StreamFailed(done.exception())
                    return
                else:
                    await sink.wait()
        finally:
            self._release(acurl, curl, done)

    def _new_handle(self) -> Curl:
        """A handle with what every StreamGenerate call shares, set once: it keeps its
        options between calls (curl's own way to reuse a handle), so only what differs is
        set per call."""
        curl = Curl()
        if curl.impersonate(self.target, default_headers=True) != 0:
            raise ValueError(f"curl_cffi cannot impersonate {self.target!r}")
        curl.setopt(CurlOpt.POST, 1)
        curl.setopt(CurlOpt.ACCEPT_ENCODING, b"gzip, deflate, br")
        curl.setopt(CurlOpt.CONNECTTIMEOUT_MS, self.connect_ms)
        curl.setopt(CurlOpt.LOW_SPEED_LIMIT, 1)
        curl.setopt(CurlOpt.LOW_SPEED_TIME, self.stall_s)
        curl.setopt(CurlOpt.FOLLOWLOCATION, 1)
        curl.setopt(CurlOpt.MAXREDIRS, 30)
        # The environment's proxy settings are not ours to follow (trust_env=False).
        curl.setopt(CurlOpt.NOPROXY, "")
        return curl

    def _options(
        self,
        curl: Curl,
        url: str,
        headers: dict[str, str],
        body: bytes,
        proxy: str | None,
        sink: _Sink,
    ) -> None:
        curl.setopt(CurlOpt.URL, url.encode())
        curl.setopt(CurlOpt.POSTFIELDS, body)
        curl.setopt(CurlOpt.POSTFIELDSIZE, len(body))
        # `Expect:` off, as the session sends it: no 100-continue round trip.
        lines = [f"{name}: {value}".encode() for name, value in headers.items()]
        curl.setopt(CurlOpt.HTTPHEADER, [*lines, b"Expect:"])
        curl.setopt(CurlOpt.PROXY, proxy or "")
        curl.setopt(CurlOpt.PROXY_CREDENTIAL_NO_REUSE, 1 if proxy else 0)
        tunnel = proxy is not None and url.startswith("https://") and not proxy.startswith("socks")
        curl.setopt(CurlOpt.HTTPPROXYTUNNEL, 1 if tunnel else 0)
        curl.setopt(CurlOpt.WRITEDATA, sink)
        curl.setopt(CurlOpt.HEADERFUNCTION, sink.header)

    def _release(self, acurl: AsyncCurl, curl: Curl, done: asyncio.Future[Any]) -> None:
        # Taken off the multi handle: a transfer still running (the reader stopped early)
        # ends here, with its connection.
        try:
            acurl.remove_handle(curl)
        except CurlError:
            curl.close()
            return
        if done.done() and not done.cancelled():
            done.exception()  # retrieved: a failure after the reader left is not "unhandled"
        # Its header list and callbacks go; the options shared by every call stay.
        curl.clean_handles_and_buffers()
        if len(self._handles) < _KEEP:
            self._handles.append(curl)
        else:
            curl.close()
