"""Cooldowns are visible: a 429 seen by a running server shows in `credentials list` and `show`
run in another process, with the model and the end time, and other instances honour it."""

from __future__ import annotations

import json
import time
from datetime import datetime
from pathlib import Path

import openai

from tests.conftest import start_gemgate
from tests.fakes.gemini_api import FakeGeminiAPI, Reply
from tests.harness import Gemgate

ALPHA, BRAVO = "AIzaFakeKeyAlpha0001", "AIzaFakeKeyBravo0002"


def ask(server: Gemgate, key: str) -> str:
    sdk = openai.OpenAI(base_url=server.url + "/v1", api_key=key, max_retries=0)
    answer = sdk.chat.completions.create(
        model="gemini-2.5-flash", messages=[{"role": "user", "content": "hi"}]
    )
    return answer.choices[0].message.content or ""


def listed_cooldowns(server: Gemgate) -> dict[str, list[dict[str, str]]]:
    """Each credential's cooldowns as `credentials list --json` shows them, once one shows
    (the server writes them off the request path, so they may take a moment)."""
    deadline = time.monotonic() + 10
    while True:
        listed = json.loads(server.cli("credentials", "list", "--json").stdout)
        found = {c["label"]: c["cooldowns"] for c in listed}
        if any(found.values()) or time.monotonic() > deadline:
            return found
        time.sleep(0.2)


def test_a_429_shows_in_credentials_list_and_show_with_its_end(
    tmp_path: Path, gemini: FakeGeminiAPI
) -> None:
    server = start_gemgate(tmp_path / "a", gemini)
    key = server.create_key("k")
    server.add_api_key(ALPHA, "--label", "alpha")
    server.add_api_key(BRAVO, "--label", "bravo")
    server.start()
    try:
        gemini.always(Reply.error(429, retry_delay="120s"), key=ALPHA)
        before = time.time()
        # Round-robin: of two requests one starts on alpha, which rests, and moves to bravo.
        assert ask(server, key) and ask(server, key)
        cooldowns = listed_cooldowns(server)
        assert cooldowns["bravo"] == []
        [alpha] = cooldowns["alpha"]
        assert alpha["model"] == "gemini-2.5-flash"
        until = datetime.fromisoformat(alpha["until"]).timestamp()
        assert before + 110 < until < time.time() + 130
        assert ALPHA not in json.dumps(cooldowns)

        text = server.cli("credentials", "list").stdout
        alpha_lines = text.split("alpha", 1)[1].split("bravo", 1)[0]
        assert "cooling down for gemini-2.5-flash until" in alpha_lines
        assert "s left" in alpha_lines
        shown = json.loads(server.cli("credentials", "show", "alpha").stdout)
        assert [c["model"] for c in shown["cooldowns"]] == ["gemini-2.5-flash"]

        # A second instance on the same store does not ask alpha while it rests.
        second = Gemgate(server.data_dir, dict(server.env))
        second.log_path = tmp_path / "second.log"
        second.start()
        try:
            asked_alpha = sum(r.api_key == ALPHA for r in gemini.requests)
            for _ in range(4):
                assert ask(second, key)
            assert sum(r.api_key == ALPHA for r in gemini.requests) == asked_alpha
        finally:
            assert second.stop()
    finally:
        assert server.stop()


def test_a_removed_credential_takes_its_cooldowns_along(
    tmp_path: Path, gemini: FakeGeminiAPI
) -> None:
    server = start_gemgate(tmp_path, gemini)
    key = server.create_key("k")
    server.add_api_key(ALPHA, "--label", "alpha")
    server.add_api_key(BRAVO, "--label", "bravo")
    server.start()
    try:
        gemini.always(Reply.error(429, retry_delay="300s"), key=ALPHA)
        assert ask(server, key) and ask(server, key)
        assert listed_cooldowns(server)["alpha"]
        server.cli("credentials", "remove", "alpha")
        new_id = server.add_api_key(ALPHA, "--label", "alpha again")
        shown = json.loads(server.cli("credentials", "show", str(new_id)).stdout)
        assert shown["label"] == "alpha again" and shown["cooldowns"] == []
    finally:
        assert server.stop()
