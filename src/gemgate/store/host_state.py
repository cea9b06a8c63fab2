"""What the workers of one `gemgate serve --workers N` agree on when there is no Redis: the
turns of a paced credential (its cap on answers at once and the spacing between two starts),
one refresh of an account at a time, and each key's `--rpm`, `--tpm` and `--quota-tokens`.
N workers must not mean N times the pace an operator set for an account, or for a client.

Each credential's turns, each key's windows, and each refresh are a small file in a folder of
the parent's, held under `flock` only while it is read and written (or for the length of the
refresh). The kernel lets go of a dead worker's locks; a turn names the worker that holds it,
and a key's reservation ends by itself, so a worker that dies mid-answer holds nothing for long.

With Redis (GEMGATE_REDIS_URL) the same is shared over every instance (redis_state.py), and
this is not used.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import os
import re
import secrets
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import orjson

from gemgate.services.admission import Refused

# How often a worker waiting for another worker's refresh looks again.
_LOOK = 0.05
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]")
# A key's windows, in seconds; counted by the second, so their state stays 60 numbers at most
# whatever the limit (a request may get in up to a second early at the window's edge).
WINDOW = 60
# A reservation whose request never settled (its worker died) stops counting after this.
RESERVATION_TTL = 600.0


class HostState:
    # Admission asks whether Redis answers; these files always do.
    up = True

    def __init__(self, folder: Path) -> None:
        folder.mkdir(mode=0o700, exist_ok=True)
        self.folder = folder
        self.pid = os.getpid()

    # -- pacing (pool/pacing.py's SharedTurns) --------------------------------------------

    async def claim_turn(self, cred_id: int, cap: int, spacing: float) -> tuple[str | None, float]:
        """A turn on a paced credential counted over every worker: (its lease, 0), or (None,
        seconds to wait; 0 while the credential is full)."""
        with self._held(f"turns-{cred_id}") as (state, save):
            # time.monotonic() is the machine's clock since boot: the same in every worker.
            now = time.monotonic()
            turns = {lease: pid for lease, pid in state.get("turns", {}).items() if _alive(pid)}
            if cap and len(turns) >= cap:
                return None, 0.0
            last = state.get("last")
            if spacing and last is not None and last + spacing > now:
                return None, last + spacing - now
            lease = f"{self.pid}:{secrets.token_hex(6)}"
            turns[lease] = self.pid
            save({"turns": turns, "last": now if spacing else last})
        return lease, 0.0

    def end_turn(self, cred_id: int, lease: str) -> None:
        with self._held(f"turns-{cred_id}") as (state, save):
            turns = state.get("turns", {})
            if turns.pop(lease, None) is not None:
                save(state)

    # -- key limits (services/admission.py's SharedLimits) -------------------------------

    async def admit(
        self,
        key_id: int,
        request_id: str,
        *,
        rpm: int | None,
        tpm: int | None,
        tokens: int,
        quota: int | None,
        used_total: int,
    ) -> None:
        """Count the request against the key's limits over every worker, or raise `Refused`
        (the same rules as redis_state.py's script)."""
        tokens = tokens if (tpm or quota) else 0
        with self._held(f"key-{key_id}") as (state, save):
            now = time.time()
            second = int(now)
            requests = _window(state.get("rpm"), second)
            if rpm and sum(count for _, count in requests) >= rpm:
                raise Refused("rpm", requests[0][0] + WINDOW - now)
            held = {
                rid: pair
                for rid, pair in (state.get("held") or {}).items()
                if isinstance(pair, list) and pair[1] >= now
            }
            reserved = sum(amount for amount, _ in held.values())
            spent = _window(state.get("tpm"), second)
            if tpm:
                used = sum(count for _, count in spent)
                if used >= tpm:
                    raise Refused("tpm", spent[0][0] + WINDOW - now)
                if reserved and used + reserved + tokens > tpm:
                    raise Refused("tpm", 1.0)
            if quota:
                if used_total >= quota:
                    raise Refused("quota", 0.0)
                if reserved and used_total + reserved + tokens > quota:
                    raise Refused("quota", 1.0)
            if rpm:
                _count(requests, second, 1)
            if tokens:
                held[request_id] = [tokens, now + RESERVATION_TTL]
            save({"rpm": requests, "tpm": spent, "held": held})

    def settle(self, key_id: int, request_id: str, tokens: int) -> None:
        """Release a request's reservation and count what it really used."""
        with self._held(f"key-{key_id}") as (state, save):
            held = state.get("held") or {}
            held.pop(request_id, None)
            second = int(time.time())
            spent = _window(state.get("tpm"), second)
            if tokens > 0:
                _count(spent, second, tokens)
            save({**state, "tpm": spent, "held": held})

    @contextlib.contextmanager
    def _held(self, name: str) -> Iterator[tuple[dict[str, Any], Any]]:
        """A file's JSON under an exclusive lock, and a function that replaces it. The lock is
        held for a read and a write of a few bytes, never across an await: taking it blocks
        the event loop for microseconds at most."""
        fd = self._open(name)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            raw = os.pread(fd, 1 << 16, 0)
            try:
                state = orjson.loads(raw) if raw else {}
            except orjson.JSONDecodeError:
                state = {}  # a worker killed mid-write: start the credential afresh

            def save(new: dict[str, Any]) -> None:
                data = orjson.dumps(new)
                os.ftruncate(fd, 0)
                os.pwrite(fd, data, 0)

            yield (state if isinstance(state, dict) else {}), save
        finally:
            os.close(fd)  # and with it the lock

    def _open(self, name: str) -> int:
        try:
            return os.open(self.folder / name, os.O_RDWR | os.O_CREAT, 0o600)
        except FileNotFoundError:
            # A cleaner of old files in /tmp took the folder: the state starts afresh.
            self.folder.mkdir(mode=0o700, parents=True, exist_ok=True)
            return os.open(self.folder / name, os.O_RDWR | os.O_CREAT, 0o600)

    # -- one at a time --------------------------------------------------------------------

    @contextlib.asynccontextmanager
    async def exclusive(self, name: str, hold: float = 30.0) -> AsyncIterator[None]:
        """Run the body in one worker at a time (an OAuth refresh, a cookie rotation): the
        others wait for it, then find its result in the store. Past `hold` seconds of waiting
        the body runs anyway, as with Redis: a stuck refresh must not stop the others."""
        fd = self._open(f"lock-{_UNSAFE.sub('_', name)}")
        try:
            deadline = time.monotonic() + hold
            while True:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except BlockingIOError:
                    if time.monotonic() >= deadline:
                        break
                    await asyncio.sleep(_LOOK)
            yield
        finally:
            os.close(fd)


def _window(pairs: Any, second: int) -> list[list[int]]:
    """A window's [second, count] pairs still inside it, oldest first."""
    if not isinstance(pairs, list):
        return []
    return [pair for pair in pairs if pair[0] > second - WINDOW]


def _count(pairs: list[list[int]], second: int, amount: int) -> None:
    if pairs and pairs[-1][0] == second:
        pairs[-1][1] += amount
    else:
        pairs.append([second, amount])


def _alive(pid: Any) -> bool:
    """Whether the worker that took a turn still runs (a dead one's turns are over)."""
    if not isinstance(pid, int):
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
