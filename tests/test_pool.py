"""Failover across the credential pool, seen by a real client."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import openai
import pytest

from tests.conftest import start_gemgate
from tests.fakes.gemini_api import FakeGeminiAPI, Reply
from tests.harness import Gemgate

ALPHA, BRAVO, CHARLIE = "AIzaFakeKeyAlpha0001", "AIzaFakeKeyBravo0002", "AIzaFakeKeyCharlie03"
BROKEN = "AIzaRevokedKey999999"


@pytest.fixture
def pooled(tmp_path: Path, gemini: FakeGeminiAPI) -> Iterator[Gemgate]:
    """A fresh gemgate whose pool holds a broken key and three good ones, in that order."""
    server = start_gemgate(tmp_path, gemini, {"GEMGATE_READ_TIMEOUT": "1"})
    server.client_key = server.create_key("pool")  # type: ignore[attr-defined]
    server.add_api_key(BROKEN, "--label", "broken")
    for key, label in ((ALPHA, "alpha"), (BRAVO, "bravo"), (CHARLIE, "charlie")):
        server.add_api_key(key, "--label", label)
    server.start()
    yield server
    server.stop()


def ask(server: Gemgate, model: str = "gemini-2.5-flash", stream: bool = False) -> str:
    sdk = openai.OpenAI(base_url=server.url + "/v1", api_key=server.client_key, max_retries=0)  # type: ignore[attr-defined]
    if stream:
        chunks = sdk.chat.completions.create(
            model=model, messages=[{"role": "user", "content": "hi"}], stream=True
        )
        return "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    answer = sdk.chat.completions.create(model=model, messages=[{"role": "user", "content": "hi"}])
    return answer.choices[0].message.content or ""


def credential_states(server: Gemgate) -> dict[str, dict[str, object]]:
    listed = json.loads(server.cli("credentials", "list", "--json").stdout)
    return {c["label"]: c for c in listed}


def test_invalid_key_and_429_fail_over_to_a_good_key(
    pooled: Gemgate, gemini: FakeGeminiAPI
) -> None:
    gemini.script(Reply.error(429, retry_delay="30s"), key=ALPHA)
    gemini.script(Reply.text("from bravo"), key=BRAVO)
    gemini.script(Reply.text("from charlie"), key=CHARLIE)
    # The order among good keys is round-robin; the answer comes from one of them.
    assert ask(pooled) in {"from bravo", "from charlie"}
    tried = {r.api_key for r in gemini.requests}
    assert BROKEN in tried
    pooled.wait_reload()
    states = credential_states(pooled)
    assert states["broken"]["status"] == "invalid"
    assert "API key not valid" in str(states["broken"]["status_reason"])
    assert BROKEN not in json.dumps(states)
    assert states["alpha"]["status"] == "ok"


def test_cooled_down_key_is_skipped_for_that_model_only(
    pooled: Gemgate, gemini: FakeGeminiAPI
) -> None:
    gemini.always(Reply.error(429, retry_delay="60s"), key=ALPHA, model="gemini-2.5-pro")
    for _ in range(4):
        ask(pooled, "gemini-2.5-pro")
    pro_calls = [r.api_key for r in gemini.requests if r.model == "gemini-2.5-pro"]
    assert pro_calls.count(ALPHA) == 1
    gemini.requests.clear()
    for _ in range(4):
        ask(pooled, "gemini-2.5-flash")
    assert ALPHA in {r.api_key for r in gemini.requests}


def test_all_cooling_down_is_429_with_retry_after(pooled: Gemgate, gemini: FakeGeminiAPI) -> None:
    for key in (ALPHA, BRAVO, CHARLIE):
        gemini.always(Reply.error(429, retry_delay="42s"), key=key)
    with pytest.raises(openai.RateLimitError) as caught:
        ask(pooled)
    assert 38 <= int(caught.value.response.headers["retry-after"]) <= 42
    gemini.requests.clear()
    with pytest.raises(openai.RateLimitError) as again:
        ask(pooled)
    # Every credential is known to be cooling down: the upstream is not even asked.
    assert gemini.requests == []
    assert "rate limited" in str(again.value)


def test_server_errors_and_stalls_move_on(pooled: Gemgate, gemini: FakeGeminiAPI) -> None:
    gemini.always(Reply.error(503), key=ALPHA)
    gemini.always(Reply.stall(5), key=BRAVO)
    gemini.always(Reply.text("charlie answers"), key=CHARLIE)
    for stream in (False, True):
        assert ask(pooled, stream=stream) == "charlie answers"


def test_failure_after_first_byte_is_an_in_stream_error(
    pooled: Gemgate, gemini: FakeGeminiAPI
) -> None:
    for key in (ALPHA, BRAVO, CHARLIE):
        gemini.always(Reply.disconnect_after(2), key=key)
    with pytest.raises(openai.APIError):
        ask(pooled, stream=True)
    # Only one upstream attempt: once text reached the client, no other credential is tried.
    assert len([r for r in gemini.requests if r.api_key != BROKEN]) == 1


def test_failover_skips_a_credential_that_cooled_down_meanwhile(
    tmp_path: Path, gemini: FakeGeminiAPI
) -> None:
    """A request decides its order at the start; by the time its first credential has timed
    out, another request may have put the second one on cooldown. It must not be asked again."""
    server = start_gemgate(tmp_path, gemini, {"GEMGATE_READ_TIMEOUT": "1"})
    server.client_key = server.create_key("pool")  # type: ignore[attr-defined]
    server.add_api_key(ALPHA, "--label", "alpha")
    server.add_api_key(BRAVO, "--label", "bravo")
    server.start()
    try:
        gemini.always(Reply.stall(1.5), key=ALPHA)
        gemini.always(Reply.error(429, retry_delay="60s"), key=BRAVO)
        with ThreadPoolExecutor(2) as workers:
            first = workers.submit(_outcome, server)  # tries alpha, then bravo
            time.sleep(0.3)
            second = workers.submit(_outcome, server)  # tries bravo (429), then alpha
            outcomes = {first.result(), second.result()}
        assert outcomes <= {"error"}
        bravo_calls = [r for r in gemini.requests if r.api_key == BRAVO]
        assert len(bravo_calls) == 1
    finally:
        server.stop()


def _outcome(server: Gemgate) -> str:
    try:
        return ask(server)
    except openai.APIError:
        return "error"
