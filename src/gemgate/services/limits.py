"""Per-key request rate limits (`--rpm`), over a sliding one-minute window."""

from __future__ import annotations

import time
from collections import deque

from gemgate.services.keys import ClientKey

WINDOW = 60.0


class RequestRate:
    def __init__(self) -> None:
        self._seen: dict[int, deque[float]] = {}

    def admit(self, key: ClientKey, now: float | None = None) -> float | None:
        """Count one request; None when it may go ahead, else seconds until it may."""
        if key.rpm is None:
            return None
        now = time.monotonic() if now is None else now
        seen = self._seen.setdefault(key.id, deque())
        while seen and seen[0] <= now - WINDOW:
            seen.popleft()
        if len(seen) >= key.rpm:
            return seen[0] + WINDOW - now
        seen.append(now)
        return None
