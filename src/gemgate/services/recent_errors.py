"""The last errors this instance saw, for the operator: failed requests with their request id,
and failed upstream attempts (also those that a failover hid from the client)."""

from __future__ import annotations

import time
from collections import deque
from dataclasses import asdict, dataclass
from typing import Any

KEEP = 500


@dataclass(frozen=True, slots=True)
class ErrorEntry:
    at: float
    # "request": a client got an error; "upstream": one attempt on one credential failed.
    source: str
    status: int
    message: str
    request_id: str | None = None
    key: str | None = None
    channel: str | None = None
    model: str | None = None
    credential_id: int | None = None
    # For upstream failures, what the pool made of it: rate_limited, credential_rejected, ...
    kind: str | None = None


class RecentErrors:
    def __init__(self, keep: int = KEEP) -> None:
        self._entries: deque[ErrorEntry] = deque(maxlen=keep)

    def add(self, source: str, status: int, message: str, **context: Any) -> None:
        self._entries.append(ErrorEntry(time.time(), source, status, message, **context))

    def latest(self, limit: int = 100) -> list[dict[str, Any]]:
        """Newest first."""
        out: list[dict[str, Any]] = []
        for entry in reversed(self._entries):
            if len(out) >= limit:
                break
            out.append(asdict(entry))
        return out
