"""Credentials behind a SOCKS5 proxy (`--proxy socks5://user:password@host:port`), on each
channel: every upstream call of that credential goes through the proxy, as its user, and the
other credentials' never; a proxy that turns gemgate away fails that credential over to the
next, and with no other, is the client's error in its API's shape. A real SOCKS5 server
(tests/fakes/socks5.py) relays to the fakes."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import urlsplit

import anthropic
import openai
import pytest

from tests.conftest import start_gemgate
from tests.fakes.code_assist import FakeCodeAssist
from tests.fakes.gemini_api import FakeGeminiAPI, Reply
from tests.fakes.gemini_web import FakeGeminiWeb
from tests.fakes.socks5 import FakeSocks5
from tests.gemini_cli_setup import add_oauth, cli_gemgate, write_oauth_file
from tests.harness import Gemgate

HI = [{"role": "user", "content": "hi"}]


def _chat(server: Gemgate, key: str, prefix: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{server.url}{prefix}/v1", api_key=key, max_retries=0)


def test_an_api_key_behind_a_socks5_proxy(tmp_path: Path, gemini: FakeGeminiAPI) -> None:
    """Its calls go through the proxy, as its user (a password with URL-quoted characters);
    the key without a proxy goes direct."""
    fake = urlsplit(gemini.base_url)
    with FakeSocks5("me", "p@ss:w/rd") as proxy:
        server = start_gemgate(tmp_path, gemini)
        key = server.create_key("k")
        server.add_api_key("AIzaFakeKeyAlpha0001", "--proxy", proxy.url)
        server.start()
        try:
            sdk = _chat(server, key, "/gemini")
            gemini.script(Reply.text("through the proxy"))
            answer = sdk.chat.completions.create(model="gemini-2.5-flash", messages=HI)
            assert answer.choices[0].message.content == "through the proxy"
            gemini.script(Reply.text("streamed through it"))
            stream = sdk.chat.completions.create(model="gemini-2.5-flash", messages=HI, stream=True)
            assert "".join(c.choices[0].delta.content or "" for c in stream if c.choices) == (
                "streamed through it"
            )
            assert proxy.connects and set(proxy.connects) == {(fake.hostname, fake.port, "me")}
            assert {r.api_key for r in gemini.requests} == {"AIzaFakeKeyAlpha0001"}
            # Another key, with no proxy, goes direct: the proxy sees no more connections.
            server.cli("credentials", "disable", "1")
            server.add_api_key("AIzaFakeKeyBravo0002")
            server.wait_reload()
            seen = len(proxy.connects)
            gemini.script(Reply.text("direct"))
            answer = sdk.chat.completions.create(model="gemini-2.5-flash", messages=HI)
            assert answer.choices[0].message.content == "direct"
            assert gemini.requests[-1].api_key == "AIzaFakeKeyBravo0002"
            assert len(proxy.connects) == seen
        finally:
            server.stop()


def test_a_proxy_that_turns_gemgate_away_fails_over_then_is_the_clients_error(
    tmp_path: Path, gemini: FakeGeminiAPI
) -> None:
    with FakeSocks5("me", "right") as proxy:
        wrong = proxy.url.replace("right", "wrong")
        server = start_gemgate(tmp_path, gemini)
        key = server.create_key("k")
        server.add_api_key("AIzaFakeKeyAlpha0001", "--proxy", wrong, "--label", "behind")
        server.add_api_key("AIzaFakeKeyBravo0002", "--label", "direct")
        server.start()
        try:
            # Whichever key comes first, the answer comes from the one that can be reached.
            for _ in range(2):
                gemini.script(Reply.text("from the direct key"))
                answer = _chat(server, key, "/gemini").chat.completions.create(
                    model="gemini-2.5-flash", messages=HI
                )
                assert answer.choices[0].message.content == "from the direct key"
            assert "bad password" in proxy.refused
            assert {r.api_key for r in gemini.requests} == {"AIzaFakeKeyBravo0002"}
            # With only the key behind the proxy left: an Anthropic-shaped 502 that says why.
            server.cli("credentials", "disable", "direct")
            server.wait_reload()
            messages = anthropic.Anthropic(
                base_url=server.url + "/gemini", api_key=key, max_retries=0
            )
            with pytest.raises(anthropic.APIStatusError) as failed:
                messages.messages.create(model="gemini-2.5-flash", max_tokens=20, messages=HI)
            assert failed.value.status_code == 502
            assert "could not reach the Gemini API" in failed.value.message
            assert "right" not in server.log() and "wrong" not in server.log()
        finally:
            server.stop()


def test_a_gemini_cli_account_behind_a_socks5_proxy(tmp_path: Path) -> None:
    """The token refresh and the Code Assist calls all go through the proxy; with socks5h,
    the proxy looks the upstream's host name up, not gemgate."""
    with FakeCodeAssist() as code_assist, FakeSocks5() as proxy:
        code_assist.account("fred@example.com", project="proj-fred")
        expired = code_assist.oauth_file("fred@example.com", expired=True)
        by_name = {
            "GEMGATE_CODE_ASSIST_BASE": code_assist.base_url.replace("127.0.0.1", "localhost"),
            "GEMGATE_OAUTH_TOKEN_URL": code_assist.token_url.replace("127.0.0.1", "localhost"),
        }
        server = cli_gemgate(tmp_path, code_assist, by_name)
        key = server.create_key("k")
        socks5h = proxy.url.replace("socks5://", "socks5h://")
        add_oauth(
            server, write_oauth_file(tmp_path, "fred.json", expired), "--no-check",
            "--proxy", socks5h,
        )  # fmt: skip
        server.start()
        try:
            answer = _chat(server, key, "/gemini_cli").chat.completions.create(
                model="gemini-2.5-pro", messages=HI
            )
            assert answer.choices[0].message.content == "Hello from gemini-2.5-pro"
        finally:
            server.stop()
        port = urlsplit(code_assist.base_url).port
        assert proxy.connects and {(h, p) for h, p, _ in proxy.connects} == {("localhost", port)}
        assert code_assist.accounts["fred@example.com"].refreshes == 1


def test_a_web_account_behind_a_socks5_proxy(tmp_path: Path) -> None:
    with FakeGeminiWeb() as web, FakeSocks5("me", "pw") as proxy:
        psid = "g.a000psid-socks"
        account = web.add_account(psid, tier=2)
        server = Gemgate(tmp_path, {**web.env(), "GEMGATE_WEB_MIN_INTERVAL_MS": "0"})
        key = server.create_key("k")
        server.cli("credentials", "add", "gemini_official", "--psid", psid,
                   "--psidts", account.psidts, "--proxy", proxy.url)  # fmt: skip
        server.start()
        try:
            answer = _chat(server, key, "/gemini_official").chat.completions.create(
                model="gemini-3-fast", messages=HI
            )
            assert (answer.choices[0].message.content or "").startswith("You said: hi")
        finally:
            server.stop()
        port = urlsplit(web.base_url).port
        assert proxy.connects and {(p, u) for _, p, u in proxy.connects} == {(port, "me")}
        assert web.chats()


def test_gemgate_proxy_is_the_proxy_of_credentials_without_their_own(
    tmp_path: Path, gemini: FakeGeminiAPI
) -> None:
    """GEMGATE_PROXY (here SOCKS5) carries the calls of a credential with no proxy; one with
    its own goes through that one instead."""
    fake = urlsplit(gemini.base_url)
    with FakeSocks5("all", "pw") as everyone, FakeSocks5("own", "pw") as own:
        server = start_gemgate(tmp_path, gemini, {"GEMGATE_PROXY": everyone.url})
        key = server.create_key("k")
        server.add_api_key("AIzaFakeKeyAlpha0001", "--label", "plain")
        server.add_api_key("AIzaFakeKeyBravo0002", "--label", "own", "--proxy", own.url)
        server.start()
        try:
            sdk = _chat(server, key, "/gemini")
            for label in ("own", "plain"):  # each key serves once, the other disabled
                server.cli("credentials", "disable", label)
                server.wait_reload()
                gemini.script(Reply.text("proxied"))
                answer = sdk.chat.completions.create(model="gemini-2.5-flash", messages=HI)
                assert answer.choices[0].message.content == "proxied"
                server.cli("credentials", "enable", label)
        finally:
            server.stop()
    assert [r.api_key for r in gemini.requests] == [
        "AIzaFakeKeyAlpha0001",
        "AIzaFakeKeyBravo0002",
    ]
    assert set(own.connects) == {(fake.hostname, fake.port, "own")}
    assert set(everyone.connects) == {(fake.hostname, fake.port, "all")}
