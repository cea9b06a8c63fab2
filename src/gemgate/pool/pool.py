"""The credential pool: picks a credential per attempt, records every outcome, and fails over
until the first event of an answer has been produced."""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable, Iterable
from typing import TypeVar

from gemgate.errors import GatewayError, RateLimited, Unavailable
from gemgate.pool.credential import ANY_MODEL, Credential, CredentialState
from gemgate.pool.outcome import Failure, UpstreamFailed
from gemgate.pool.pacing import Pacer, Pacing, SharedTurns
from gemgate.pool.selector import RoundRobin

log = logging.getLogger("gemgate.pool")

T = TypeVar("T")
# Called when a credential is found broken, so the reason can be stored for the operator.
InvalidHook = Callable[[Credential, str], Awaitable[None]]
# Called on every failed attempt (metrics, the operator's list of recent errors).
FailureHook = Callable[[Credential, str, Failure], None]
# Called when a credential starts resting for a model: (credential, model, seconds).
CooldownHook = Callable[[Credential, str, float], None]


class Pool:
    def __init__(
        self,
        on_invalid: InvalidHook | None = None,
        on_cooldown: CooldownHook | None = None,
        on_failure: FailureHook | None = None,
    ) -> None:
        self._by_channel: dict[str, list[Credential]] = {}
        self._states: dict[int, CredentialState] = {}
        self._selectors: dict[str, RoundRobin] = {}
        self._on_invalid = on_invalid
        self._on_cooldown = on_cooldown
        self._on_failure = on_failure
        self._pacers: dict[str, Pacer] = {}

    def pace(self, channel: str, pacing: Pacing, shared: SharedTurns | None = None) -> None:
        """Pace every credential of `channel` (a concurrency cap and a minimum spacing), over
        every instance when they share turns."""
        self._pacers[channel] = Pacer(pacing, shared)

    # -- configuration --------------------------------------------------------------------

    def load(self, credentials: Iterable[Credential], invalid: dict[int, str]) -> None:
        """Replace the configured credentials; runtime state of the ones kept survives."""
        by_channel: dict[str, list[Credential]] = {}
        for cred in credentials:
            by_channel.setdefault(cred.channel, []).append(cred)
            state = self._states.setdefault(cred.id, CredentialState())
            # The store is the truth for "invalid": an operator who re-enables or replaces a
            # credential clears it there.
            state.invalid_reason = invalid.get(cred.id)
        kept = {c.id for creds in by_channel.values() for c in creds}
        self._states = {k: v for k, v in self._states.items() if k in kept}
        self._by_channel = by_channel

    def channels(self) -> list[str]:
        return list(self._by_channel)

    def credentials(self, channel: str) -> list[Credential]:
        return list(self._by_channel.get(channel, ()))

    def state(self, cred_id: int) -> CredentialState:
        state = self._states.get(cred_id)
        if state is None:
            state = self._states[cred_id] = CredentialState()
        return state

    def rest(self, cred_id: int, model: str, seconds: float) -> None:
        """Keep a credential off `model` for `seconds` (learnt here, or from another instance)."""
        until = time.monotonic() + seconds
        cooling = self.state(cred_id).cooldown_until
        cooling[model] = max(until, cooling.get(model, 0.0))

    def has_usable(self, channel: str) -> bool:
        return any(self._usable(c) for c in self._by_channel.get(channel, ()))

    def _usable(self, cred: Credential) -> bool:
        return self._usable_state(cred) is not None

    def _usable_state(self, cred: Credential) -> CredentialState | None:
        """The runtime state of a credential that may serve (enabled, not found broken)."""
        state = self.state(cred.id)
        return state if cred.enabled and state.invalid_reason is None else None

    def _ready(self, cred: Credential, model: str) -> bool:
        """Checked again just before each attempt: while a request waited on one credential,
        another request may have put the next one on cooldown or found it broken."""
        state = self._usable_state(cred)
        return state is not None and state.cooling(model) == 0.0

    # -- serving --------------------------------------------------------------------------

    def attempts(self, channel: str, model: str) -> tuple[list[Credential], float | None]:
        """Credentials to try in order, and the earliest cooldown end among those left out."""
        now = time.monotonic()
        ready, soonest = [], None
        for cred in self._by_channel.get(channel, ()):
            state = self._usable_state(cred)
            if state is None:
                continue
            left = state.cooling(model, now)
            if left > 0:
                soonest = left if soonest is None else min(soonest, left)
            else:
                ready.append(cred)
        selector = self._selectors.get(channel)
        if selector is None:
            selector = self._selectors[channel] = RoundRobin()
        return selector.order(ready), soonest

    async def stream(
        self,
        channel: str,
        model: str,
        attempt: Callable[[Credential], AsyncIterator[T]],
        prefer: int | None = None,
    ) -> AsyncGenerator[T, None]:
        """Run `attempt` on one credential after another until one produces a first event;
        from then on the answer belongs to that credential and its errors reach the client.
        The `prefer`red credential, when usable, goes first."""
        order, _ = self.attempts(channel, model)
        if prefer is not None:
            order.sort(key=lambda cred: cred.id != prefer)
        last: Failure | None = None
        pacer = self._pacers.get(channel)
        while order:
            if pacer is None:
                cred = order.pop(0)
            else:
                # The pacer picks among those still ready: the wait for a turn can be long.
                order = [c for c in order if self._ready(c, model)]
                if not order:
                    break
                taken = await pacer.take(order)
                if taken is None:
                    raise RateLimited(
                        f"every {channel} credential is busy (pacing keeps the accounts safe); "
                        "try again shortly",
                        retry_after=pacer.pacing.spacing,
                    )
                cred = taken
                order.remove(cred)
            try:
                if not self._ready(cred, model):
                    continue  # it cooled or broke while this request waited for its turn
                events = attempt(cred)
                try:
                    first = await anext(events)
                except StopAsyncIteration:
                    self._succeeded(cred)
                    return
                except UpstreamFailed as failed:
                    last = failed.failure
                    await self._failed(cred, model, last)
                    if last.action == "final":
                        raise last.error from None
                    continue
                self._succeeded(cred)
                # No other credential will be tried: the attempt, and the request it holds (a
                # whole conversation), need not live as long as the answer streams.
                del attempt
                yield first
                del first  # not kept for as long as the answer streams
                try:
                    async for event in events:
                        yield event
                        del event
                except GatewayError as exc:
                    state = self.state(cred.id)
                    state.last_error = exc.message
                    state.last_error_at = time.time()
                    raise
                return
            finally:
                if pacer is not None:
                    pacer.release(cred)
        raise self._exhausted(channel, model, last)

    async def call(
        self, channel: str, model: str, attempt: Callable[[Credential], Awaitable[T]]
    ) -> T:
        """The same failover for a single request/response call (countTokens, model lists)."""
        order, _ = self.attempts(channel, model)
        last: Failure | None = None
        for cred in order:
            if not self._ready(cred, model):
                continue
            try:
                result = await attempt(cred)
            except UpstreamFailed as failed:
                last = failed.failure
                await self._failed(cred, model, last)
                if last.action == "final":
                    raise last.error from None
                continue
            self._succeeded(cred)
            return result
        raise self._exhausted(channel, model, last)

    def _exhausted(self, channel: str, model: str, last: Failure | None) -> GatewayError:
        _, soonest = self.attempts(channel, model)
        if soonest is not None and (last is None or last.action == "cooldown"):
            return RateLimited(
                f"every {channel} credential is rate limited for {model}; "
                f"the first is free again in {soonest:.0f}s",
                retry_after=soonest,
            )
        if last is not None:
            return last.error
        return Unavailable(f"no usable {channel} credential: add one or re-enable one")

    def _succeeded(self, cred: Credential) -> None:
        state = self.state(cred.id)
        state.successes += 1
        state.note(True)

    async def _failed(self, cred: Credential, model: str, failure: Failure) -> None:
        state = self.state(cred.id)
        state.failures += 1
        state.last_error = failure.reason or failure.error.message
        state.note(False)
        if self._on_failure is not None:
            self._on_failure(cred, model, failure)
        if failure.action == "cooldown":
            seconds = failure.cooldown if failure.cooldown is not None else 60.0
            rested = ANY_MODEL if failure.whole_credential else model
            self.rest(cred.id, rested, seconds)
            log.warning(
                "credential %s (%s) cooling down for %s: %.1fs: %s",
                cred.id,
                cred.label,
                rested,
                seconds,
                state.last_error,
            )
            if self._on_cooldown is not None:
                self._on_cooldown(cred, rested, seconds)
        elif failure.action == "invalidate":
            state.invalid_reason = failure.reason or failure.error.message
            log.warning(
                "credential %s (%s) is invalid: %s", cred.id, cred.label, state.invalid_reason
            )
            if self._on_invalid is not None:
                await self._on_invalid(cred, state.invalid_reason)
        elif failure.action == "retry":
            log.warning(
                "credential %s (%s) failed, trying another: %s",
                cred.id,
                cred.label,
                state.last_error,
            )
