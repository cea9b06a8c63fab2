"""Per-credential pacing in the pool: a cap per credential and the next free one taken."""

from __future__ import annotations

import asyncio

from gemgate.pool import Credential
from gemgate.pool.pacing import Pacer, Pacing

A = Credential(1, "gemini_official", "a", {})
B = Credential(2, "gemini_official", "b", {})


async def test_a_full_credential_sends_the_next_request_to_another() -> None:
    pacer = Pacer(Pacing(concurrency=1, spacing=0.0, max_wait=5.0))
    assert await pacer.take([A, B]) is A
    assert await pacer.take([A, B]) is B  # A holds its one answer


async def test_a_waiting_request_takes_the_first_credential_freed() -> None:
    pacer = Pacer(Pacing(concurrency=1, spacing=0.0, max_wait=30.0))
    await pacer.take([A])
    waiting = asyncio.ensure_future(pacer.take([A]))
    await asyncio.sleep(0)
    assert not waiting.done()
    pacer.release(A)
    assert await waiting is A


async def test_spacing_prefers_a_credential_whose_turn_has_come() -> None:
    pacer = Pacer(Pacing(concurrency=0, spacing=3600.0, max_wait=5.0))
    assert await pacer.take([A, B]) is A
    pacer.release(A)
    # A started a moment ago and must keep its spacing; B is free now.
    assert await pacer.take([A, B]) is B


async def test_no_turn_within_the_wait_is_refused() -> None:
    pacer = Pacer(Pacing(concurrency=1, spacing=0.0, max_wait=0.0))
    await pacer.take([A])
    assert await pacer.take([A]) is None
