"""A streamed answer as a pure ASGI response: each frame goes to the client the moment it is
made, with a keep-alive frame during long upstream silences, and the stream is stopped when the
client goes away.

Starlette's StreamingResponse runs each stream in an anyio task group with a second task
listening for the disconnect, and gemgate's pings used to wrap every upstream read in a future:
per chunk, that was more CPU than the rest of the gateway. Here the stream runs in the request's
own task; the disconnect is one plain `receive()` task per stream, and pings are one timer that
looks at the time of the last frame, not a future per event."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator, Callable, Sequence
from typing import Any

from starlette.types import Receive, Scope, Send


class EventStream:
    def __init__(
        self,
        frames: AsyncGenerator[bytes, None],
        headers: Sequence[tuple[bytes, bytes]],
        *,
        ping: Callable[[], bytes] | None = None,
        ping_interval: float = 0.0,
    ) -> None:
        self.frames = frames
        self.raw_headers = list(headers)  # the front door adds the request id to these
        self.ping = ping if ping_interval > 0 else None
        self.ping_interval = ping_interval
        self.status_code = 200

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        task = asyncio.current_task()
        assert task is not None
        run = _Run(task, send, self.ping, self.ping_interval)
        listener = asyncio.ensure_future(receive())
        listener.add_done_callback(run.client_message)
        await send({"type": "http.response.start", "status": 200, "headers": self.raw_headers})
        try:
            async for frame in self.frames:
                await run.send(frame)
                del frame  # not kept while the next one is made
            run.ended = True
            await send({"type": "http.response.body", "body": b"", "more_body": False})
        except asyncio.CancelledError:
            # Our own cancellation, because the client left: the stream is simply over.
            if not run.client_left or task.uncancel() > 0:
                raise
        finally:
            run.ended = True
            run.stop()
            if not listener.done():
                listener.cancel()
            # Cancelled while a frame was being sent, the frames are still open: closing them
            # now records the answer's usage at once rather than whenever they are collected.
            await self.frames.aclose()


class _Run:
    """One stream under way: its keep-alive timer and whether its client is still there."""

    __slots__ = (
        "_send",
        "client_left",
        "ended",
        "interval",
        "last",
        "loop",
        "ping",
        "pinging",
        "sending",
        "task",
        "timer",
    )

    def __init__(
        self,
        task: asyncio.Task[object],
        send: Send,
        ping: Callable[[], bytes] | None,
        interval: float,
    ) -> None:
        self.task = task
        self.loop = asyncio.get_running_loop()
        self._send = send
        self.ping = ping
        self.interval = interval
        self.ended = False
        self.client_left = False
        self.sending = False
        # A ping being written; the next frame waits for it so that frames keep their order.
        self.pinging: asyncio.Future[None] | None = None
        self.timer: asyncio.TimerHandle | None = None
        self.last = 0.0
        if ping is not None:
            self.last = self.loop.time()
            self.timer = self.loop.call_later(interval, self._due)

    async def send(self, frame: bytes) -> None:
        if self.pinging is not None:
            await self.pinging
            self.pinging = None
        self.sending = True
        await self._send({"type": "http.response.body", "body": frame, "more_body": True})
        self.sending = False
        if self.timer is not None:
            self.last = self.loop.time()

    def _due(self) -> None:
        """The timer: a ping if nothing was sent for a whole interval, else wait for the rest."""
        if self.ended or self.ping is None:
            return
        loop = self.loop
        idle = loop.time() - self.last
        if idle >= self.interval and not self.sending and self.pinging is None:
            # Made now, while the stream waits on its upstream, so it comes before the next
            # frame in the encoder's order too (an Anthropic ping may open the message).
            frame = self.ping()
            message = {"type": "http.response.body", "body": frame, "more_body": True}
            self.pinging = asyncio.ensure_future(self._send(message))
            self.pinging.add_done_callback(_retrieved)
            self.last, idle = loop.time(), 0.0
        self.timer = loop.call_later(max(self.interval - idle, 0.01), self._due)

    def client_message(self, listener: asyncio.Future[Any]) -> None:
        """What `receive()` gave while the stream ran: only a disconnect can come now."""
        if self.ended or listener.cancelled() or listener.exception() is not None:
            return
        self.client_left = True
        self.task.cancel()

    def stop(self) -> None:
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None


def _retrieved(future: asyncio.Future[None]) -> None:
    """A ping that failed (the client went away) is not an error of its own: the stream's next
    frame, or the disconnect, ends the stream."""
    if not future.cancelled():
        future.exception()
