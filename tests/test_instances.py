"""Several gemgate instances on one PostgreSQL and one Redis behave as one: cooldowns, rate
limits, thought signatures and key changes hold across them, and Redis going away stops
nothing. Real `gemgate serve` processes, real PostgreSQL and Redis (tests/services.py)."""

from __future__ import annotations

import json
import secrets
import shutil
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import openai
import pytest
from cryptography.fernet import Fernet

from tests.conftest import start_gemgate
from tests.fakes.gemini_api import FakeGeminiAPI, Reply
from tests.fakes.gemini_web import FakeGeminiWeb, WebReply
from tests.harness import Gemgate, free_port
from tests.services import REDIS_URL, postgres_database, require

ALPHA, BRAVO = "AIzaFakeKeyAlpha0001", "AIzaFakeKeyBravo0002"
HI: Any = [{"role": "user", "content": "hi"}]


def _pair(
    tmp_path: Path, gemini: FakeGeminiAPI, database: str, redis_url: str
) -> tuple[Gemgate, Gemgate]:
    env = {
        "GEMGATE_DATABASE_URL": database,
        "GEMGATE_REDIS_URL": redis_url,
        "GEMGATE_REDIS_NAMESPACE": "gg-test-" + secrets.token_hex(4),
        # Long enough that only Redis can explain a change seen within a second.
        "GEMGATE_RELOAD_INTERVAL": "30",
        # Every instance opens the secrets the others sealed: one key for all (README).
        "GEMGATE_SECRET_KEY": Fernet.generate_key().decode(),
    }
    a = start_gemgate(tmp_path / "a", gemini, env)
    b = start_gemgate(tmp_path / "b", gemini, env)
    return a, b


@pytest.fixture
def pair(tmp_path: Path, gemini: FakeGeminiAPI) -> Iterator[tuple[Gemgate, Gemgate]]:
    require(6379, "Redis")
    with postgres_database() as database:
        a, b = _pair(tmp_path, gemini, database, REDIS_URL)
        a.client_key = a.create_key("shared")  # type: ignore[attr-defined]
        b.client_key = a.client_key  # type: ignore[attr-defined]
        a.add_api_key(ALPHA, "--label", "alpha")
        a.add_api_key(BRAVO, "--label", "bravo")
        a.start()
        b.start()
        yield a, b
        a.stop()
        b.stop()


def sdk(server: Gemgate, key: str | None = None) -> openai.OpenAI:
    return openai.OpenAI(
        base_url=server.url + "/v1",
        api_key=key or server.client_key,  # type: ignore[attr-defined]
        max_retries=0,
        timeout=10,
    )


def test_a_429_seen_by_one_instance_keeps_the_other_off_that_key(
    pair: tuple[Gemgate, Gemgate], gemini: FakeGeminiAPI
) -> None:
    a, b = pair
    gemini.always(Reply.error(429, retry_delay="60s"), key=ALPHA, model="gemini-2.5-pro")
    # Round-robin: within two requests, instance A tries alpha once and rests it.
    for _ in range(2):
        sdk(a).chat.completions.create(model="gemini-2.5-pro", messages=HI)
    assert [r.api_key for r in gemini.requests].count(ALPHA) == 1
    time.sleep(0.3)
    gemini.requests.clear()
    for _ in range(4):
        sdk(b).chat.completions.create(model="gemini-2.5-pro", messages=HI)
    assert {r.api_key for r in gemini.requests} == {BRAVO}
    # Other models are not affected.
    gemini.requests.clear()
    for _ in range(4):
        sdk(b).chat.completions.create(model="gemini-2.5-flash", messages=HI)
    assert ALPHA in {r.api_key for r in gemini.requests}


def test_rpm_holds_across_instances(pair: tuple[Gemgate, Gemgate]) -> None:
    a, b = pair
    key = a.create_key("ten-a-minute", "--rpm", "10")
    time.sleep(0.5)
    outcomes = []
    for i in range(14):
        try:
            sdk(a if i % 2 else b, key).chat.completions.create(
                model="gemini-2.5-flash", messages=HI
            )
            outcomes.append("ok")
        except openai.RateLimitError as refused:
            assert "10 requests per minute" in refused.message
            outcomes.append("refused")
    assert outcomes.count("ok") == 10


def test_a_tool_round_begun_on_one_instance_completes_on_the_other(
    pair: tuple[Gemgate, Gemgate], gemini: FakeGeminiAPI
) -> None:
    a, b = pair
    model = "gemini-3-flash-preview"
    question = {"role": "user", "content": "Weather in Paris?"}
    tool = {
        "type": "function",
        "function": {
            "name": "get_weather",
            "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
        },
    }
    gemini.script(
        Reply.parts([{"functionCall": {"name": "get_weather", "args": {"city": "Paris"}}}])
    )
    first = sdk(a).chat.completions.create(model=model, messages=[question], tools=[tool])
    call = first.choices[0].message.tool_calls[0]  # type: ignore[index]
    # A client that keeps short ids and no extra fields: only a shared cache can help B.
    short = call.id.split("__sig_")[0]
    replayed = {
        "id": short,
        "type": "function",
        "function": {"name": "get_weather", "arguments": call.function.arguments},  # type: ignore[union-attr]
    }
    gemini.script(Reply.text("It is sunny in Paris."))
    second = sdk(b).chat.completions.create(
        model=model,
        messages=[
            question,
            {"role": "assistant", "content": None, "tool_calls": [replayed]},
            {"role": "tool", "tool_call_id": short, "content": "sunny"},
        ],
        tools=[tool],
    )
    assert second.choices[0].message.content == "It is sunny in Paris."
    sent = gemini.requests[-1].body["contents"][1]["parts"][0]["thoughtSignature"]
    assert sent != "skip_thought_signature_validator"


def test_a_revoked_key_is_refused_by_every_instance_within_a_second(
    pair: tuple[Gemgate, Gemgate],
) -> None:
    a, b = pair
    key = a.create_key("short-lived")
    time.sleep(0.5)
    for server in (a, b):
        sdk(server, key).models.list()
    a.cli("keys", "revoke", "short-lived")
    time.sleep(1.0)
    for server in (a, b):
        with pytest.raises(openai.AuthenticationError):
            sdk(server, key).models.list()


# -- Redis going away ---------------------------------------------------------------------------


class PrivateRedis:
    """A redis-server of the test's own, so it can be stopped without touching anyone else."""

    def __init__(self, data: Path) -> None:
        self.port = free_port()
        self.data = data
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        self.process = subprocess.Popen(
            [
                "redis-server",
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                str(self.data),
            ],
            stdout=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.2).close()
                return
            except OSError:
                time.sleep(0.05)
        raise AssertionError("redis-server did not start")

    def stop(self) -> None:
        if self.process is not None:
            self.process.terminate()
            self.process.wait(5)
            self.process = None


def test_redis_going_away_and_coming_back_fails_no_request(
    tmp_path: Path, gemini: FakeGeminiAPI
) -> None:
    if shutil.which("redis-server") is None:
        pytest.skip("redis-server is not installed")
    redis = PrivateRedis(tmp_path)
    redis.start()
    try:
        with postgres_database() as database:
            a, b = _pair(tmp_path, gemini, database, redis.url)
            # A limited key: its every request goes through the shared admission.
            key = a.create_key("steady", "--rpm", "10000")
            a.add_api_key(ALPHA)
            a.start()
            b.start()
            try:
                failures: list[str] = []
                done = threading.Event()

                def traffic(server: Gemgate) -> int:
                    sent = 0
                    while not done.is_set():
                        try:
                            sdk(server, key).chat.completions.create(
                                model="gemini-2.5-flash", messages=HI
                            )
                        except openai.APIError as error:
                            failures.append(f"{server.url}: {error}")
                        sent += 1
                    return sent

                counts: list[int] = []
                threads = [
                    threading.Thread(target=lambda s=s: counts.append(traffic(s))) for s in (a, b)
                ]
                for thread in threads:
                    thread.start()
                time.sleep(1.0)
                redis.stop()
                time.sleep(2.0)
                redis.start()
                time.sleep(2.5)
                done.set()
                for thread in threads:
                    thread.join(15)
                assert failures == []
                assert sum(counts) > 20
                log = a.log() + b.log()
                assert "Redis is unreachable" in log and "Redis is back" in log
                assert "Traceback" not in log
            finally:
                a.stop()
                b.stop()
    finally:
        redis.stop()


def test_instances_without_redis_still_serve(tmp_path: Path, gemini: FakeGeminiAPI) -> None:
    """GEMGATE_REDIS_URL pointing nowhere at start: the instance serves on its own state."""
    server = start_gemgate(
        tmp_path, gemini, {"GEMGATE_REDIS_URL": f"redis://127.0.0.1:{free_port()}/0"}
    )
    key = server.create_key("k", "--rpm", "2")
    server.add_api_key(ALPHA)
    server.start()
    try:
        for _ in range(2):
            sdk(server, key).chat.completions.create(model="gemini-2.5-flash", messages=HI)
        with pytest.raises(openai.RateLimitError):
            sdk(server, key).chat.completions.create(model="gemini-2.5-flash", messages=HI)
        assert json.dumps(server.log()).count("Redis is unreachable") == 1
    finally:
        server.stop()


def test_a_web_cookie_rotated_by_one_instance_is_used_by_the_other(
    tmp_path: Path, gemini: FakeGeminiAPI
) -> None:
    """Instance A renews the account's 1PSIDTS on its schedule; B, started before that with
    the old value, takes A's from the store instead of renewing (or dropping) it again."""
    require(6379, "Redis")
    psid = "g.a000psid-shared-rotation"
    with postgres_database() as database, FakeGeminiWeb() as web:
        account = web.add_account(psid, tier=2)
        first = account.psidts
        a, b = _pair(tmp_path, gemini, database, REDIS_URL)
        a.env.update(web.env() | {"GEMGATE_WEB_ROTATE_INTERVAL": "0"})
        b.env.update(web.env() | {"GEMGATE_WEB_ROTATE_INTERVAL": "86400"})
        a.client_key = a.create_key("shared")  # type: ignore[attr-defined]
        b.client_key = a.client_key  # type: ignore[attr-defined]
        a.cli("credentials", "add", "gemini_official", "--psid", psid, "--psidts", first)
        a.start()
        b.start()
        try:

            def chat(server: Gemgate) -> str:
                client = openai.OpenAI(
                    base_url=server.url + "/gemini_official/v1",
                    api_key=server.client_key,  # type: ignore[attr-defined]
                    max_retries=0,
                    timeout=20,
                )
                answer = client.chat.completions.create(model="gemini-3-fast", messages=HI)
                return answer.choices[0].message.content or ""

            assert chat(a).startswith("You said: hi")
            assert web.rotations == 1 and account.psidts != first
            # From now on only A's new value opens the account.
            account.issued, account.previous = [account.psidts], None
            web.reset()
            for _ in range(2):
                assert chat(b).startswith("You said: hi")
            assert web.rotations == 0
            assert {r.cookies["__Secure-1PSIDTS"] for r in web.chats()} == {account.psidts}
            listing = b.cli("credentials", "list").stdout
            assert "signed out" not in listing
        finally:
            a.stop()
            b.stop()


def test_a_web_account_paced_on_one_instance_is_busy_on_the_other(
    tmp_path: Path, gemini: FakeGeminiAPI
) -> None:
    """One chat at a time per account, over both instances: while A streams on the only
    account, B waits for its turn and, past its wait, refuses rather than open a second."""
    require(6379, "Redis")
    psid = "g.a000psid-shared-pacing"
    pacing = {"GEMGATE_WEB_CONCURRENCY": "1", "GEMGATE_WEB_MIN_INTERVAL_MS": "0",
              "GEMGATE_PACING_MAX_WAIT": "1", "GEMGATE_WEB_ROTATE_INTERVAL": "86400"}  # fmt: skip
    with postgres_database() as database, FakeGeminiWeb() as web:
        account = web.add_account(psid, tier=2)
        a, b = _pair(tmp_path, gemini, database, REDIS_URL)
        for server in (a, b):
            server.env.update(web.env() | pacing)
        a.client_key = a.create_key("shared")  # type: ignore[attr-defined]
        b.client_key = a.client_key  # type: ignore[attr-defined]
        a.cli("credentials", "add", "gemini_official", "--psid", psid, "--psidts", account.psidts)
        a.start()
        b.start()
        try:

            def client(server: Gemgate) -> openai.OpenAI:
                return openai.OpenAI(
                    base_url=server.url + "/gemini_official/v1",
                    api_key=server.client_key,  # type: ignore[attr-defined]
                    max_retries=0,
                    timeout=20,
                )

            gate = threading.Event()
            web.script(WebReply(text="held answer", chunks=3, gate=gate))
            held = client(a).chat.completions.create(
                model="gemini-3-fast", messages=HI, stream=True
            )
            first = next(c for c in held if c.choices and c.choices[0].delta.content)
            assert first.choices[0].delta.content  # A's turn is under way, its answer held
            with pytest.raises(openai.RateLimitError) as busy:
                client(b).chat.completions.create(model="gemini-3-fast", messages=HI)
            assert "busy" in busy.value.message
            assert len(web.chats()) == 1  # no second chat on the account
            gate.set()
            assert "".join(c.choices[0].delta.content or "" for c in held if c.choices)
            # A's turn is over: B gets one now.
            answer = client(b).chat.completions.create(model="gemini-3-fast", messages=HI)
            assert (answer.choices[0].message.content or "").startswith("You said: hi")
        finally:
            a.stop()
            b.stop()
