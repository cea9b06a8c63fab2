"""Cooldowns made visible: each one the pool starts is written to the store off the request
path, so `credentials list` and other instances see which credential rests for which model and
until when. The running pool keeps its own in-memory cooldowns as the fast path; this only
records them and brings in the ones other instances started."""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

from gemgate.pool import Credential, Pool
from gemgate.services.credentials import cooldown_row
from gemgate.store import Store

log = logging.getLogger("gemgate.cooldowns")


class CooldownLog:
    def __init__(self, store: Store) -> None:
        self._store = store
        self._pending: list[dict[str, Any]] = []
        self._writer: asyncio.Task[None] | None = None

    def note(self, credential: Credential, model: str, seconds: float, reason: str) -> None:
        """Called by the pool as a cooldown starts; the write happens in a task of its own."""
        self._pending.append(cooldown_row(credential.id, model, seconds, reason))
        if self._writer is None or self._writer.done():
            self._writer = asyncio.create_task(self._write(), name="gemgate-cooldown-write")

    async def _write(self) -> None:
        while self._pending:
            rows, self._pending = self._pending, []
            try:
                await self._store.record_cooldowns(rows)
            except Exception:
                # Informational only: the pool has already acted on these cooldowns.
                log.exception("could not record %d cooldowns", len(rows))

    async def flush(self) -> None:
        if self._writer is not None:
            await self._writer

    async def load_into(self, pool: Pool) -> None:
        """Bring cooldowns other instances recorded into this pool (the later end wins)."""
        now = time.time()
        for row in await self._store.cooldowns(now):
            pool.rest(row["credential_id"], row["model"], row["until"] - now)
