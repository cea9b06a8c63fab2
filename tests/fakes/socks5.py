"""A SOCKS5 proxy on 127.0.0.1 (RFC 1928; with RFC 1929 username and password when it is given
them), for the per-credential proxy tests: it relays CONNECTs, both IP and domain name ones,
and records where each went and under which user. A client that offers no method the proxy
takes, or a wrong password, is turned away as the RFCs say.

    with FakeSocks5(username="me", password="pw") as proxy:
        proxy.url  # socks5://me:pw@127.0.0.1:<port>
        proxy.connects  # [("127.0.0.1", 9100, "me"), ...]
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import socket
import threading
from typing import Self
from urllib.parse import quote

_NO_AUTH, _USER_PASSWORD, _NO_METHOD = 0x00, 0x02, 0xFF
_CONNECT = 0x01
_IPV4, _DOMAIN, _IPV6 = 0x01, 0x03, 0x04
_SUCCEEDED, _REFUSED, _COMMAND, _ADDRESS = 0, 5, 7, 8


class FakeSocks5:
    def __init__(self, username: str | None = None, password: str | None = None) -> None:
        self.username, self.password = username, password
        # (host as asked, port, user) for every CONNECT relayed.
        self.connects: list[tuple[str, int, str | None]] = []
        # Clients turned away: "no method" or "bad password".
        self.refused: list[str] = []
        self.port = 0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._server: asyncio.Server | None = None

    @property
    def url(self) -> str:
        user = ""
        if self.username is not None:
            user = f"{quote(self.username, safe='')}:{quote(self.password or '', safe='')}@"
        return f"socks5://{user}127.0.0.1:{self.port}"

    def __enter__(self) -> Self:
        ready = threading.Event()
        self._loop = asyncio.new_event_loop()

        def run() -> None:
            assert self._loop is not None
            asyncio.set_event_loop(self._loop)
            self._server = self._loop.run_until_complete(
                asyncio.start_server(self._serve, "127.0.0.1", 0)
            )
            self.port = self._server.sockets[0].getsockname()[1]
            ready.set()
            self._loop.run_forever()

        self._thread = threading.Thread(target=run, name="fake-socks5", daemon=True)
        self._thread.start()
        ready.wait(10)
        return self

    def __exit__(self, *exc_info: object) -> None:
        assert self._loop is not None and self._thread is not None
        if self._server is not None:
            self._loop.call_soon_threadsafe(self._server.close)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            accepted, user = await self._greet(reader, writer)
            if not accepted:
                return
            target = await self._connect(reader, writer, user)
            if target is None:
                return
            upstream_reader, upstream_writer = target
            await asyncio.gather(_pipe(reader, upstream_writer), _pipe(upstream_reader, writer))
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()

    async def _greet(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> tuple[bool, str | None]:
        """The method negotiation (and the password check): whether the client may go on,
        and as which user."""
        version, count = await reader.readexactly(2)
        if version != 5:
            return False, None
        offered = await reader.readexactly(count)
        wanted = _USER_PASSWORD if self.username is not None else _NO_AUTH
        if wanted not in offered:
            self.refused.append("no method")
            writer.write(bytes([5, _NO_METHOD]))
            await writer.drain()
            return False, None
        writer.write(bytes([5, wanted]))
        if wanted == _NO_AUTH:
            return True, None
        _, length = await reader.readexactly(2)
        user = (await reader.readexactly(length)).decode()
        (length,) = await reader.readexactly(1)
        password = (await reader.readexactly(length)).decode()
        good = user == self.username and password == self.password
        writer.write(bytes([1, 0 if good else 1]))
        await writer.drain()
        if not good:
            self.refused.append("bad password")
            return False, None
        return True, user

    async def _connect(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, user: str | None
    ) -> tuple[asyncio.StreamReader, asyncio.StreamWriter] | None:
        version, command, _, kind = await reader.readexactly(4)
        if kind == _IPV4:
            host = str(ipaddress.IPv4Address(await reader.readexactly(4)))
        elif kind == _IPV6:
            host = str(ipaddress.IPv6Address(await reader.readexactly(16)))
        elif kind == _DOMAIN:
            (length,) = await reader.readexactly(1)
            host = (await reader.readexactly(length)).decode()
        else:
            await _reply(writer, _ADDRESS)
            return None
        port = int.from_bytes(await reader.readexactly(2), "big")
        if version != 5 or command != _CONNECT:
            await _reply(writer, _COMMAND)
            return None
        try:
            upstream = await asyncio.open_connection(host, port)
        except OSError:
            await _reply(writer, _REFUSED)
            return None
        self.connects.append((host, port, user))
        await _reply(writer, _SUCCEEDED)
        return upstream


async def _reply(writer: asyncio.StreamWriter, code: int) -> None:
    writer.write(bytes([5, code, 0, _IPV4]) + socket.inet_aton("0.0.0.0") + b"\x00\x00")
    await writer.drain()


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    with contextlib.suppress(ConnectionError):
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    with contextlib.suppress(OSError):
        if writer.can_write_eof():
            writer.write_eof()
