"""Admission: whether a key's request may go upstream now, by its `--rpm`, `--tpm` and
`--quota-tokens`; and, when it ends, the settling of what it had reserved.

Without Redis the limits are held by this instance (`RequestRate`, `UsageMeter`), and over the
workers of one `serve --workers N` (store/host_state.py). With Redis they hold across every
instance together, in one script call per request; when Redis cannot answer, this instance
decides alone until it can. Keys without limits cost nothing here."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from gemgate.errors import RateLimited
from gemgate.ids import new_id
from gemgate.services.keys import ClientKey
from gemgate.services.limits import RequestRate
from gemgate.services.usage import UsageMeter


class Refused(Exception):
    """Admission refused by the shared limits: which limit, and how long to wait."""

    def __init__(self, limit: str, wait: float) -> None:
        super().__init__(limit)
        self.limit = limit
        self.wait = wait


class SharedLimits(Protocol):
    """Key limits counted over every instance (redis_state.py) or every worker of one server
    (host_state.py)."""

    up: bool

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
    ) -> None: ...

    def settle(self, key_id: int, request_id: str, tokens: int) -> None: ...


@dataclass(frozen=True, slots=True)
class Ticket:
    """What an admitted request holds until it settles."""

    tokens: int = 0
    request_id: str = ""
    shared: bool = False


FREE = Ticket()


class Admission:
    def __init__(self, rate: RequestRate, usage: UsageMeter, shared: SharedLimits | None) -> None:
        self.rate = rate
        self.usage = usage
        self.shared = shared

    async def admit(self, key: ClientKey, tokens: int) -> Ticket:
        """Admit a request that may spend about `tokens`, or raise 429 in words."""
        if key.rpm is None and key.tpm is None and key.quota_tokens is None:
            return FREE
        if self.shared is not None and self.shared.up:
            refused = self.usage.check(key)
            if refused is not None:
                raise refused
            request_id = new_id()
            try:
                await self.shared.admit(
                    key.id,
                    request_id,
                    rpm=key.rpm,
                    tpm=key.tpm,
                    tokens=tokens,
                    quota=key.quota_tokens,
                    used_total=self.usage.used(key),
                )
            except Refused as refusal:
                raise _refusal(key, refusal.limit, refusal.wait) from None
            except ConnectionError:
                pass  # Redis went away just now: decided here, as without it
            else:
                reserved = tokens if (key.tpm or key.quota_tokens) else 0
                return Ticket(reserved, request_id, shared=True)
        wait = self.rate.admit(key)
        if wait is not None:
            raise _refusal(key, "rpm", wait)
        return Ticket(self.usage.reserve(key, tokens))

    def settle(self, key: ClientKey, ticket: Ticket, used: int) -> None:
        """The request is over and spent `used` tokens: release what it reserved."""
        if ticket is FREE:
            return
        if ticket.shared and self.shared is not None:
            self.shared.settle(key.id, ticket.request_id, used)
        else:
            self.usage.release(key, ticket.tokens)


def _refusal(key: ClientKey, limit: str, wait: float) -> RateLimited:
    if limit == "rpm":
        return RateLimited(
            f"this key may make {key.rpm} requests per minute; try again in {wait:.0f}s",
            retry_after=wait,
        )
    if limit == "tpm":
        return RateLimited(
            f"this key may use {key.tpm} tokens per minute; try again in {wait:.0f}s",
            retry_after=max(wait, 1),
        )
    return RateLimited(
        f"this key has used its quota of {key.quota_tokens} tokens"
        if not wait
        else f"this key's quota of {key.quota_tokens} tokens is taken up by its requests "
        "under way; try again when they finish",
        code="insufficient_quota",
        retry_after=wait or None,
    )
