"""Per-credential pacing in the pool: a cap per credential and the next free one taken; over
the workers of one server, turns and spacing counted together."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

from gemgate.pool import Credential
from gemgate.pool.pacing import Pacer, Pacing
from gemgate.store.host_state import HostState

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


# -- over the workers of one server, without Redis (store/host_state.py) -----------------------

_CLAIM_AND_DIE = """
import asyncio, os, sys
from pathlib import Path
from gemgate.store.host_state import HostState
lease, _ = asyncio.run(HostState(Path(sys.argv[1])).claim_turn(1, 1, 0.0))
print(lease, flush=True)
os._exit(0)  # killed mid-answer: the turn is never ended
"""


async def test_a_turn_another_worker_holds_counts_until_that_worker_dies(tmp_path: Path) -> None:
    folder = tmp_path / "state"
    here = Pacer(Pacing(concurrency=1, spacing=0.0, max_wait=0.3), HostState(folder))
    other = HostState(folder)  # another worker, as far as the files tell
    lease, _ = await other.claim_turn(A.id, 1, 0.0)
    assert lease
    assert await here.take([A]) is None  # full on the other worker: refused past its wait
    other.end_turn(A.id, lease)
    assert await here.take([A]) is A
    here.release(A)
    # A worker that dies holding a turn frees it: the next claim finds it gone.
    died = await asyncio.create_subprocess_exec(
        sys.executable, "-c", _CLAIM_AND_DIE, str(folder), stdout=asyncio.subprocess.PIPE
    )
    held, _ = await died.communicate()
    assert died.returncode == 0 and held.strip()
    assert await here.take([A]) is A


async def test_spacing_holds_between_workers(tmp_path: Path) -> None:
    one, two = HostState(tmp_path / "state"), HostState(tmp_path / "state")
    assert (await one.claim_turn(A.id, 0, 1.0))[0]
    lease, wait = await two.claim_turn(A.id, 0, 1.0)
    assert lease is None and 0.9 < wait <= 1.0
    assert (await two.claim_turn(B.id, 0, 1.0))[0]  # another credential is not held back


async def test_turns_start_afresh_when_the_folder_is_cleaned_away(tmp_path: Path) -> None:
    """A cleaner of old files in /tmp may take the workers' folder on a long run: the next
    turn and the next refresh lock make it again rather than fail every request."""
    folder = tmp_path / "state"
    state = HostState(folder)
    lease, _ = await state.claim_turn(A.id, 1, 0.0)
    assert lease
    for path in folder.iterdir():
        path.unlink()
    folder.rmdir()
    assert (await state.claim_turn(A.id, 1, 0.0))[0]
    async with state.exclusive("oauth-refresh:1"):
        assert (folder / "lock-oauth-refresh_1").exists()
