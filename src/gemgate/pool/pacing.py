"""Per-credential pacing: at most N answers at once on one credential and at least M seconds
between two starts, for accounts a consumer service bans when they look like a bot.

A request waits for the first credential whose turn comes, re-checking all of them whenever
one frees up, and gives up at its deadline; it never sleeps on one credential while another is
free. With several instances on one Redis, a turn this instance grants is also claimed there,
so the cap and the spacing hold for the account, whichever instance serves it.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from gemgate.pool.credential import Credential


@dataclass(frozen=True, slots=True)
class Pacing:
    concurrency: int  # answers at once per credential; 0 = no cap
    spacing: float  # seconds between two starts on one credential
    max_wait: float  # seconds a request may wait for a turn before it is refused


class SharedTurns(Protocol):
    """Turns counted over every instance (store/redis_state.py's SharedState)."""

    async def claim_turn(
        self, cred_id: int, cap: int, spacing: float
    ) -> tuple[str | None, float]: ...

    def end_turn(self, cred_id: int, lease: str) -> None: ...


# How often a request that found a credential full on other instances looks again: they do
# not tell this one when a turn ends.
_REMOTE_LOOK = 0.25


class Pacer:
    def __init__(self, pacing: Pacing, shared: SharedTurns | None = None) -> None:
        self.pacing = pacing
        self.shared = shared
        self._active: dict[int, int] = {}
        self._last_start: dict[int, float] = {}
        self._leases: dict[int, list[str]] = {}
        self._waiters: set[asyncio.Future[None]] = set()

    def _wait_for(self, cred: Credential, now: float) -> float | None:
        """Seconds until `cred` may start (0 = now), or None while it is full."""
        cap = self.pacing.concurrency
        if cap and self._active.get(cred.id, 0) >= cap:
            return None
        last = self._last_start.get(cred.id)
        return 0.0 if last is None else max(0.0, last + self.pacing.spacing - now)

    async def take(self, candidates: Sequence[Credential]) -> Credential | None:
        """The first of `candidates` to get a turn, or None at the deadline."""
        deadline = time.monotonic() + self.pacing.max_wait
        loop = asyncio.get_running_loop()
        while True:
            now = time.monotonic()
            soonest: float | None = None
            for cred in candidates:
                wait = self._wait_for(cred, now)
                if wait == 0.0:
                    previous = self._last_start.get(cred.id)
                    self._active[cred.id] = self._active.get(cred.id, 0) + 1
                    self._last_start[cred.id] = now
                    if self.shared is None or not (self.pacing.concurrency or self.pacing.spacing):
                        return cred
                    lease, wait = await self.shared.claim_turn(
                        cred.id, self.pacing.concurrency, self.pacing.spacing
                    )
                    if lease is not None:
                        self._leases.setdefault(cred.id, []).append(lease)
                        return cred
                    # Busy on another instance: this one's turn is given back.
                    self._give_back(cred, previous)
                    wait = wait or _REMOTE_LOOK
                if wait is not None:
                    soonest = wait if soonest is None else min(soonest, wait)
            left = deadline - time.monotonic()
            if left <= 0:
                return None
            waiter: asyncio.Future[None] = loop.create_future()
            self._waiters.add(waiter)
            try:
                await asyncio.wait({waiter}, timeout=min(left, soonest if soonest else left))
            finally:
                self._waiters.discard(waiter)

    def _give_back(self, cred: Credential, previous: float | None) -> None:
        self._count_down(cred)
        if previous is None:
            self._last_start.pop(cred.id, None)
        else:
            self._last_start[cred.id] = previous

    def release(self, cred: Credential) -> None:
        self._count_down(cred)
        leases = self._leases.get(cred.id)
        if leases:
            lease = leases.pop()
            if not leases:
                del self._leases[cred.id]
            if self.shared is not None:
                self.shared.end_turn(cred.id, lease)
        for waiter in self._waiters:
            if not waiter.done():
                waiter.set_result(None)

    def _count_down(self, cred: Credential) -> None:
        count = self._active.get(cred.id, 0) - 1
        if count > 0:
            self._active[cred.id] = count
        else:
            self._active.pop(cred.id, None)
