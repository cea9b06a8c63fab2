"""Usage: what each key consumed, recorded off the request path and checked against the key's
tokens-per-minute limit and total token quota before a request is admitted.

A request that will spend tokens first reserves an estimate of them (its prompt and its output
cap); the reservation counts against the limits until the real usage settles it. So a burst of
concurrent requests cannot all slip in under a limit that only counts finished requests."""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from dataclasses import dataclass

from gemgate import ir
from gemgate.errors import GatewayError, RateLimited
from gemgate.services.keys import ClientKey
from gemgate.store import Store
from gemgate.store.schema import UsageRow

log = logging.getLogger("gemgate.usage")
WINDOW = 60.0
# Seconds between full re-reads of every key's total.
RESUM_INTERVAL = 300.0
# Output reserved for a request that sets no output cap: a typical answer, not the model's
# maximum, so that a limited key still runs a few requests at once. Settled at the end.
DEFAULT_OUTPUT_RESERVATION = 1024
# A rough token count of a request body: about four bytes per token.
BYTES_PER_TOKEN = 4
# A key's last minute is kept in buckets of this many seconds, not one entry a request: its
# window holds about 60 of them however fast it is used (an entry a request held ~10 MB at
# 3,000 requests a second, for a minute after the burst).
BUCKET = 1.0


@dataclass(slots=True)
class _Bucket:
    """Tokens recorded from `first` to `last`; they count until a minute after `last`, so a
    limit is held up to a bucket longer than each request's own minute, never shorter."""

    first: float
    last: float
    tokens: int


def estimate(body_size: int, max_output: int | None) -> int:
    """The tokens a request may spend: its prompt, guessed from its size, and its output cap."""
    return body_size // BYTES_PER_TOKEN + (max_output or DEFAULT_OUTPUT_RESERVATION)


class UsageMeter:
    def __init__(self, store: Store) -> None:
        self._store = store
        self._pending: list[UsageRow] = []
        # Held while records are being written: a report waits for a write under way.
        self._writing = asyncio.Lock()
        self._minute: dict[int, deque[_Bucket]] = {}
        # Tokens used by each key over its lifetime: the store's totals plus what this
        # process recorded since it last read them.
        self._total: dict[int, int] = {}
        # Tokens reserved by each key's requests still under way.
        self._reserved: dict[int, int] = {}
        # The store's totals as last read, up to record `_seen_id`: each flush adds only the
        # records after it (every instance's), so the cost does not grow with the table.
        self._stored: dict[int, int] = {}
        self._seen_id = 0
        self._summed_at = -RESUM_INTERVAL

    def check(self, key: ClientKey) -> GatewayError | None:
        """Why this key may not make a request now, or None."""
        if key.quota_tokens is not None and self._total.get(key.id, 0) >= key.quota_tokens:
            return RateLimited(
                f"this key has used its quota of {key.quota_tokens} tokens",
                code="insufficient_quota",
            )
        if key.tpm is not None:
            now = time.monotonic()
            recent = self._recent(key.id, now)
            used = sum(bucket.tokens for bucket in recent)
            if used >= key.tpm:
                wait = recent[0].last + WINDOW - now
                return RateLimited(
                    f"this key may use {key.tpm} tokens per minute; try again in {wait:.0f}s",
                    retry_after=wait,
                )
        return None

    def reserve(self, key: ClientKey, tokens: int) -> int:
        """Hold `tokens` against the key's limits for a request about to go upstream; return
        what was reserved (0 for a key without token limits), to hand back to `release`.

        A request is admitted when it fits beside what is used and reserved, or when nothing
        else is under way and the limit is not yet reached: so a lone request always runs
        while any quota is left, and concurrent ones overshoot by at most one reservation."""
        if key.quota_tokens is None and key.tpm is None:
            return 0
        refused = self.check(key)
        if refused is not None:
            raise refused
        reserved = self._reserved.get(key.id, 0)
        if reserved:
            if key.quota_tokens is not None:
                used = self._total.get(key.id, 0)
                if used + reserved + tokens > key.quota_tokens:
                    raise RateLimited(
                        f"this key's quota of {key.quota_tokens} tokens is taken up by its "
                        "requests under way; try again when they finish",
                        code="insufficient_quota",
                        retry_after=1,
                    )
            if key.tpm is not None:
                now = time.monotonic()
                used = sum(bucket.tokens for bucket in self._recent(key.id, now))
                if used + reserved + tokens > key.tpm:
                    raise RateLimited(
                        f"this key may use {key.tpm} tokens per minute, and its requests under "
                        "way may use them up; try again when they finish",
                        retry_after=1,
                    )
        self._reserved[key.id] = reserved + tokens
        return tokens

    def release(self, key: ClientKey, tokens: int) -> None:
        """A request's reservation ends (its real usage is recorded apart)."""
        if tokens:
            left = self._reserved.get(key.id, 0) - tokens
            if left > 0:
                self._reserved[key.id] = left
            else:
                self._reserved.pop(key.id, None)

    def used(self, key: ClientKey) -> int:
        """Tokens the key has used over its life, as far as this instance knows."""
        return self._total.get(key.id, 0)

    def record(
        self, key: ClientKey, channel: str, model: str, endpoint: str, status: int, usage: ir.Usage
    ) -> int:
        """Record a finished request's real usage; return its total tokens."""
        total = usage.total_tokens or (
            usage.prompt_tokens + usage.output_tokens + usage.thought_tokens
        )
        self._pending.append(
            UsageRow(
                key_id=key.id,
                channel=channel,
                model=model,
                endpoint=endpoint,
                status=status,
                prompt_tokens=usage.prompt_tokens + usage.tool_prompt_tokens,
                output_tokens=usage.output_tokens,
                thought_tokens=usage.thought_tokens,
                total_tokens=total,
                created_at=time.time(),
            )
        )
        if total:
            now = time.monotonic()
            recent = self._recent(key.id, now)
            if recent and now - recent[-1].first < BUCKET:
                recent[-1].last = now
                recent[-1].tokens += total
            else:
                recent.append(_Bucket(now, now, total))
            self._total[key.id] = self._total.get(key.id, 0) + total
        return total

    def _recent(self, key_id: int, now: float) -> deque[_Bucket]:
        recent = self._minute.setdefault(key_id, deque())
        while recent and recent[0].last <= now - WINDOW:
            recent.popleft()
        return recent

    async def written(self) -> None:
        """Every record made so far is in the store once this returns: it waits for a write
        under way (whose records have left `_pending` but may not be committed yet), then
        writes what is left. A report read after it misses nothing this process recorded."""
        async with self._writing:
            if self._pending:
                await self._flush()

    async def flush(self) -> None:
        """Write what was recorded, then re-read every key's total so that usage recorded by
        other instances counts against quotas here too."""
        async with self._writing:
            await self._flush()

    async def _flush(self) -> None:
        pending, self._pending = self._pending, []
        try:
            await self._store.add_usage(pending)
        except Exception:
            self._pending = pending + self._pending
            raise
        now = time.monotonic()
        if now - self._summed_at > RESUM_INTERVAL:
            # Now and then from scratch: records committed out of id order (PostgreSQL
            # sequences) would otherwise be missed for good.
            self._stored, self._seen_id = await self._store.tokens_by_key_after(0)
            self._summed_at = now
        else:
            added, self._seen_id = await self._store.tokens_by_key_after(self._seen_id)
            for key_id, tokens in added.items():
                self._stored[key_id] = self._stored.get(key_id, 0) + tokens
        totals = dict(self._stored)
        for row in self._pending:  # recorded while the write was under way
            totals[row.key_id] = totals.get(row.key_id, 0) + row.total_tokens
        self._total = totals
