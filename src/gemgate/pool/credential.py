"""A credential's configuration (immutable, from the store) apart from its runtime state."""

from __future__ import annotations

import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any

# The cooldown key of a rest that covers every model of a credential (an IP block, say).
ANY_MODEL = "*"


@dataclass(frozen=True, slots=True)
class Credential:
    id: int
    channel: str
    label: str
    secret: dict[str, Any]
    proxy: str | None = None
    enabled: bool = True

    def __repr__(self) -> str:
        # The secret never reaches a log line through a repr.
        return f"Credential(id={self.id}, channel={self.channel!r}, label={self.label!r})"


@dataclass(slots=True)
class CredentialState:
    """What the pool has learnt about a credential while serving."""

    invalid_reason: str | None = None
    # Upstream model -> monotonic time at which the credential may serve it again.
    cooldown_until: dict[str, float] = field(default_factory=dict)
    last_error: str | None = None
    successes: int = 0
    failures: int = 0
    # Wall-clock times, for the operator.
    last_success_at: float | None = None
    last_error_at: float | None = None
    # [minute, requests, errors] for each of the last 60 minutes that saw a request.
    minutes: deque[list[int]] = field(default_factory=lambda: deque(maxlen=60))

    def note(self, ok: bool, now: float | None = None) -> None:
        """Count one attempt on this credential, for its last hour."""
        now = time.time() if now is None else now
        minute = int(now // 60)
        minutes = self.minutes
        if not minutes or minutes[-1][0] != minute:
            minutes.append([minute, 0, 0])
        bucket = minutes[-1]
        bucket[1] += 1
        if ok:
            self.last_success_at = now
        else:
            bucket[2] += 1
            self.last_error_at = now

    def last_hour(self, now: float | None = None) -> tuple[int, int]:
        """Attempts and failed attempts in the last 60 minutes."""
        start = int((time.time() if now is None else now) // 60) - 59
        fresh = [b for b in self.minutes if b[0] >= start]
        return sum(b[1] for b in fresh), sum(b[2] for b in fresh)

    def cooling(self, model: str, now: float | None = None) -> float:
        """Seconds left before this credential may serve `model` again (0 when free); a rest
        of the whole credential is kept under `ANY_MODEL`."""
        if not self.cooldown_until:
            return 0.0  # the common case, on every attempt
        now = time.monotonic() if now is None else now
        return max(self._left(model, now), self._left(ANY_MODEL, now))

    def _left(self, model: str, now: float) -> float:
        until = self.cooldown_until.get(model)
        if until is None:
            return 0.0
        left = until - now
        if left <= 0:
            del self.cooldown_until[model]
            return 0.0
        return left
