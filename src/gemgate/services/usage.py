"""Usage: what each key consumed, recorded off the request path and checked against the key's
tokens-per-minute limit and total token quota before a request is admitted."""

from __future__ import annotations

import logging
import time
from collections import deque
from typing import Any

from gemgate import ir
from gemgate.errors import GatewayError, RateLimited
from gemgate.services.keys import ClientKey
from gemgate.store import Store

log = logging.getLogger("gemgate.usage")
WINDOW = 60.0


class UsageMeter:
    def __init__(self, store: Store) -> None:
        self._store = store
        self._pending: list[dict[str, Any]] = []
        self._minute: dict[int, deque[tuple[float, int]]] = {}
        # Tokens used by each key over its lifetime: the store's totals plus what this
        # process recorded since it last read them.
        self._total: dict[int, int] = {}

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
            used = sum(tokens for _, tokens in recent)
            if used >= key.tpm:
                wait = recent[0][0] + WINDOW - now
                return RateLimited(
                    f"this key may use {key.tpm} tokens per minute; try again in {wait:.0f}s",
                    retry_after=wait,
                )
        return None

    def record(
        self, key: ClientKey, channel: str, model: str, endpoint: str, status: int, usage: ir.Usage
    ) -> None:
        total = usage.total_tokens or (
            usage.prompt_tokens + usage.output_tokens + usage.thought_tokens
        )
        self._pending.append(
            {
                "key_id": key.id,
                "channel": channel,
                "model": model,
                "endpoint": endpoint,
                "status": status,
                "prompt_tokens": usage.prompt_tokens + usage.tool_prompt_tokens,
                "output_tokens": usage.output_tokens,
                "thought_tokens": usage.thought_tokens,
                "total_tokens": total,
                "created_at": time.time(),
            }
        )
        if total:
            self._recent(key.id, time.monotonic()).append((time.monotonic(), total))
            self._total[key.id] = self._total.get(key.id, 0) + total

    def _recent(self, key_id: int, now: float) -> deque[tuple[float, int]]:
        recent = self._minute.setdefault(key_id, deque())
        while recent and recent[0][0] <= now - WINDOW:
            recent.popleft()
        return recent

    async def flush(self) -> None:
        """Write what was recorded, then re-read every key's total so that usage recorded by
        other instances counts against quotas here too."""
        pending, self._pending = self._pending, []
        try:
            await self._store.add_usage(pending)
        except Exception:
            self._pending = pending + self._pending
            raise
        totals = await self._store.tokens_by_key()
        for row in self._pending:  # recorded while the write was under way
            totals[row["key_id"]] = totals.get(row["key_id"], 0) + row["total_tokens"]
        self._total = totals
