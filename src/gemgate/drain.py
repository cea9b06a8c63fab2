"""Streams under way, so that a shutdown ends the ones that outlast its drain window with the
client format's error event (and their usage recorded) rather than cutting them mid-answer."""

from __future__ import annotations

import asyncio
import logging

log = logging.getLogger("gemgate")


class Drain:
    def __init__(self) -> None:
        self._streams: set[asyncio.Task[object]] = set()
        # Set once the drain window is over: a stream cancelled from then on is being cut.
        self.cutting = False

    def enter(self) -> None:
        task = asyncio.current_task()
        if task is not None:
            self._streams.add(task)

    def leave(self) -> None:
        task = asyncio.current_task()
        if task is not None:
            self._streams.discard(task)

    def begin(self, seconds: float) -> None:
        """Shutdown has begun: streams still running `seconds` from now are cut."""
        if self._streams:
            log.info("waiting up to %gs for %d stream(s) to finish", seconds, len(self._streams))
        asyncio.get_running_loop().call_later(seconds, self._cut)

    def _cut(self) -> None:
        self.cutting = True
        if self._streams:
            log.warning("ending %d stream(s) still running at shutdown", len(self._streams))
        for task in list(self._streams):
            task.cancel()
