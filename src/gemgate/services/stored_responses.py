"""Responses API answers kept for later (`store: true`, OpenAI's default): for
`previous_response_id`, `GET /v1/responses/{id}` and `DELETE`.

Each answer is kept with its own turn (the new input and the output, as input items) and the
id of the answer it continued, so a conversation is a chain and no turn is stored twice. An
answer is seen only by the key that made it, for `ttl` seconds, and only when it is at most
`max_bytes` long. Keeping is called from a format's encoder, which cannot wait: the answer
goes into a small in-memory map at once (so the client's next turn on this instance finds it)
and into the store by one writer task, which writes whatever has queued up in one transaction
(so a burst of answers costs one write, not one each); `delete` waits for it. The map keeps
each turn, what a conversation's next turn reads; the whole answer, read only by `GET`, stays
in memory only until it is written (512 of them were ~4 MB more).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

import orjson

from gemgate.store import Store

log = logging.getLogger("gemgate.responses")
# Recent answers kept in memory as well, for the next turn of a conversation under way.
_RECENT = 512
# Expired answers are deleted from the store at most this often (seconds).
_PURGE_EVERY = 600.0
# The longest chain of turns followed back from one previous_response_id.
MAX_TURNS = 10_000


@dataclass(frozen=True, slots=True)
class _Record:
    key_id: int
    items: bytes
    previous_id: str | None
    expires: float


class StoredResponses:
    def __init__(self, store: Store, ttl: float, max_bytes: int) -> None:
        self.store = store
        self.ttl = ttl
        self.max_bytes = max_bytes
        self._recent: OrderedDict[str, _Record] = OrderedDict()
        # Answers (JSON) kept but not yet written: the store has the others.
        self._unwritten: dict[str, bytes] = {}
        self._queue: list[dict[str, Any]] = []
        self._writer: asyncio.Task[None] | None = None
        self._purged = 0.0

    def keep(
        self,
        key_id: int,
        response_id: str,
        response: bytes,
        items: bytes,
        previous_id: str | None,
    ) -> bool:
        """Keep an answer; False when it is too large to keep (it is still answered)."""
        if len(response) + len(items) > self.max_bytes:
            log.info(
                "response %s not stored: %d bytes is over the limit of %d",
                response_id,
                len(response) + len(items),
                self.max_bytes,
            )
            return False
        now = time.time()
        record = _Record(key_id, items, previous_id, now + self.ttl)
        self._recent[response_id] = record
        self._unwritten[response_id] = response
        while len(self._recent) > _RECENT:
            self._recent.popitem(last=False)
        self._queue.append(
            {
                "id": response_id,
                "key_id": key_id,
                "response": response.decode(),
                "turn": items.decode(),
                "previous_id": previous_id,
                "created_at": now,
                "expires_at": record.expires,
            }
        )
        if self._writer is None or self._writer.done():
            self._writer = asyncio.get_running_loop().create_task(self._write())
        return True

    async def response(self, key_id: int, response_id: str) -> dict[str, Any] | None:
        answer = self._unwritten.get(response_id)
        if answer is not None:
            record = self._recent.get(response_id)
            if record is not None:
                return orjson.loads(answer) if self._valid(record, key_id) else None
            await self._written()  # a burst pushed it out of the map before its write
        row = await self.store.get_response(response_id, key_id)
        return orjson.loads(row["response"]) if row else None

    async def conversation(self, key_id: int, response_id: str) -> list[Any] | None:
        """Every turn up to and including that answer, as input items; None when it, or an
        answer it continued, is unknown, expired or deleted."""
        turns: list[bytes] = []
        wanted: str | None = response_id
        while wanted is not None and len(turns) < MAX_TURNS:
            record = await self._get(key_id, wanted)
            if record is None:
                return None
            turns.append(record.items)
            wanted = record.previous_id
        items: list[Any] = []
        for turn in reversed(turns):
            items.extend(orjson.loads(turn))
        return items

    async def delete(self, key_id: int, response_id: str) -> bool:
        recent = self._recent.get(response_id)
        if recent is not None and recent.key_id != key_id:
            return False
        await self._written()
        self._recent.pop(response_id, None)
        deleted = await self.store.delete_response(response_id, key_id)
        return deleted or recent is not None

    async def close(self) -> None:
        await self._written()

    async def _written(self) -> None:
        """Once every answer kept so far is in the store."""
        if self._writer is not None and not self._writer.done():
            await asyncio.shield(self._writer)

    async def _get(self, key_id: int, response_id: str) -> _Record | None:
        record = self._recent.get(response_id)
        if record is None:
            row = await self.store.get_response(response_id, key_id)
            if row is None:
                return None
            return _Record(key_id, row["turn"].encode(), row["previous_id"], 0.0)
        return record if self._valid(record, key_id) else None

    @staticmethod
    def _valid(record: _Record, key_id: int) -> bool:
        return record.key_id == key_id and record.expires > time.time()

    async def _write(self) -> None:
        while self._queue:
            batch, self._queue = self._queue, []
            try:
                await self.store.put_responses(batch)
            except Exception:
                log.exception("could not store %d responses", len(batch))
            for row in batch:
                self._unwritten.pop(row["id"], None)
        now = time.time()
        if now - self._purged > _PURGE_EVERY:
            self._purged = now
            try:
                await self.store.purge_responses(now)
            except Exception:
                log.exception("could not delete expired responses")
