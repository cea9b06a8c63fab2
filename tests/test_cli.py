"""The command line as an operator uses it: keys, credentials, settings, serve."""

from __future__ import annotations

import json
import signal
import threading
import time
from pathlib import Path

import openai
import pytest

from gemgate.config import Settings, SettingsError
from tests.conftest import start_gemgate
from tests.fakes.gemini_api import FakeGeminiAPI, Reply
from tests.harness import Gemgate


@pytest.fixture
def offline(tmp_path: Path) -> Gemgate:
    """A gemgate data folder used only through the CLI."""
    return Gemgate(tmp_path / "data")


def test_keys_create_prints_the_key_alone_on_the_last_line(offline: Gemgate) -> None:
    out = offline.cli(
        "keys",
        "create",
        "--name",
        "alice",
        "--channels",
        "gemini",
        "--endpoints",
        "chat,messages",
        "--rpm",
        "60",
    ).stdout
    key = out.strip().splitlines()[-1]
    assert key.startswith("gg-") and " " not in key and len(key) > 40
    listed = offline.cli("keys", "list").stdout
    assert "alice" in listed and key not in listed
    shown = json.loads(offline.cli("keys", "show", "alice").stdout)
    assert shown["channels"] == ["gemini"]
    assert shown["endpoints"] == ["chat", "messages"]
    assert shown["rpm"] == 60
    assert key not in json.dumps(shown)
    db = (offline.data_dir / "gemgate.db").read_bytes()
    assert key.encode() not in db


def test_keys_errors_are_clear(offline: Gemgate) -> None:
    offline.create_key("bob")
    again = offline.cli("keys", "create", "--name", "bob", check=False)
    assert again.returncode != 0 and "exists already" in again.stderr
    wrong = offline.cli("keys", "create", "--name", "x", "--channels", "gemni", check=False)
    assert wrong.returncode != 0 and "gemni" in wrong.stderr
    missing = offline.cli("keys", "revoke", "nobody", check=False)
    assert missing.returncode != 0 and "nobody" in missing.stderr


def test_keys_update_and_revoke(offline: Gemgate) -> None:
    offline.create_key("carol")
    updated = json.loads(offline.cli("keys", "update", "carol", "--models", "gemini-2.5-*").stdout)
    assert updated["models"] == ["gemini-2.5-*"]
    offline.cli("keys", "revoke", "carol")
    assert json.loads(offline.cli("keys", "show", "carol").stdout)["revoked"]


def test_credentials_are_masked_and_managed(offline: Gemgate) -> None:
    secret = "AIzaSyD-secret-value-1234567890"
    offline.cli(
        "credentials",
        "add",
        "gemini",
        "--api-key",
        secret,
        "--label",
        "main",
        "--proxy",
        "http://user:pw@proxy.local:3128",
    )
    listed = offline.cli("credentials", "list").stdout
    assert "main" in listed and secret not in listed
    as_json = json.loads(offline.cli("credentials", "list", "--json").stdout)
    assert as_json[0]["secret"]["api_key"] == "AIza…7890"
    assert as_json[0]["proxy"] == "http://***@proxy.local:3128"
    duplicate = offline.cli("credentials", "add", "gemini", "--api-key", secret, check=False)
    assert (
        duplicate.returncode != 0
        and "already" in duplicate.stderr
        and secret not in duplicate.stderr
    )
    cred_id = str(as_json[0]["id"])
    offline.cli("credentials", "disable", cred_id)
    assert json.loads(offline.cli("credentials", "list", "--json").stdout)[0]["enabled"] is False
    offline.cli("credentials", "enable", cred_id)
    offline.cli("credentials", "remove", cred_id)
    assert json.loads(offline.cli("credentials", "list", "--json").stdout) == []


def test_credentials_test_reports_why(tmp_path: Path, gemini: FakeGeminiAPI) -> None:
    server = start_gemgate(tmp_path, gemini)
    good = server.add_api_key("AIzaFakeKeyAlpha0001")
    bad = server.add_api_key("AIzaUnknownKey000000")
    assert "works" in server.cli("credentials", "test", str(good)).stdout
    failed = server.cli("credentials", "test", str(bad), check=False)
    assert failed.returncode != 0 and "API key not valid" in failed.stderr
    assert "AIzaUnknownKey000000" not in failed.stderr
    listed = json.loads(server.cli("credentials", "list", "--json").stdout)
    assert [c["status"] for c in listed] == ["ok", "invalid"]


def test_settings_env_overrides_toml(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    config = tmp_path / "gemgate.toml"
    config.write_text(
        'port = 9001\nread_timeout = 5.5\n[aliases]\n"fast" = "gemini/gemini-2.5-flash"\n'
    )
    monkeypatch.setenv("GEMGATE_PORT", "9002")
    settings = Settings.load(config)
    assert settings.port == 9002
    assert settings.read_timeout == 5.5
    assert settings.aliases == {"fast": "gemini/gemini-2.5-flash"}
    assert Settings.load(config, port=9003).port == 9003
    with pytest.raises(FileNotFoundError):
        Settings.load(tmp_path / "missing.toml")


def test_settings_are_read_as_an_operator_writes_them(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("GEMGATE_ACCESS_LOG", "yes")
    monkeypatch.setenv("gemgate_read_timeout", "2.5")  # variable names in any case
    monkeypatch.setenv("GEMGATE_SECRET_KEY", "k" * 44)
    monkeypatch.setenv("GEMGATE_ADMIN_TOKEN", "admin-secret-token")
    monkeypatch.setenv("GEMGATE_METRICS_TOKEN", "metrics-secret-token")
    monkeypatch.setenv("GEMGATE_ALIASES", '{"fast": "gemini-2.5-flash"}')
    settings = Settings.load()
    assert settings.access_log is True and settings.read_timeout == 2.5
    assert settings.aliases == {"fast": "gemini-2.5-flash"}
    assert settings.secret_key is not None and settings.secret_key.get_secret_value() == "k" * 44
    assert settings.admin_token and settings.metrics_token
    assert settings.metrics_token.get_secret_value() == "metrics-secret-token"
    shown = repr(settings)
    assert "k" * 44 not in shown and "secret-token" not in shown
    # An empty variable sets nothing: the admin token then comes from the data folder.
    monkeypatch.setenv("GEMGATE_ADMIN_TOKEN", "")
    assert not Settings.load().admin_token
    monkeypatch.delenv("GEMGATE_METRICS_TOKEN")

    # Every bad value at once, each named as it can be set, and no secret quoted.
    monkeypatch.setenv("GEMGATE_LOG_FORMAT", "xml")
    monkeypatch.setenv("GEMGATE_ACCESS_LOG", "maybe")
    monkeypatch.setenv("GEMGATE_ALIASES", "fast=flash")
    config = tmp_path / "gemgate.toml"
    config.write_text("metrics_token = 7\ndata_dir = 7\n")
    with pytest.raises(SettingsError) as raised:
        Settings.load(config)
    problems = str(raised.value).split("; ")
    assert sorted(problems) == [
        f"setting GEMGATE_ACCESS_LOG (or `access_log` in {config}): expected true or false"
        " (got 'maybe')",
        f"setting GEMGATE_ALIASES (or `aliases` in {config}): expected names and their values"
        " (a TOML table, or a JSON object) (got 'fast=flash')",
        f"setting GEMGATE_DATA_DIR (or `data_dir` in {config}): expected a path (got 7)",
        f"setting GEMGATE_LOG_FORMAT (or `log_format` in {config}): expected one of 'text',"
        " 'json' (got 'xml')",
        f"setting GEMGATE_METRICS_TOKEN (or `metrics_token` in {config}): expected text",
    ]
    config.write_text("port = \n")
    with pytest.raises(SettingsError, match=r"config file .*gemgate\.toml: "):
        Settings.load(config)


def test_changes_from_the_cli_reach_a_running_server(tmp_path: Path, gemini: FakeGeminiAPI) -> None:
    server = start_gemgate(tmp_path, gemini).start()
    try:
        key = server.create_key("late")
        server.wait_reload()
        sdk = openai.OpenAI(base_url=server.url + "/v1", api_key=key, max_retries=0)
        with pytest.raises(openai.APIStatusError) as caught:
            sdk.chat.completions.create(
                model="gemini-2.5-flash", messages=[{"role": "user", "content": "x"}]
            )
        assert caught.value.status_code == 503
        assert "credential" in caught.value.message
        server.add_api_key("AIzaFakeKeyAlpha0001")
        server.wait_reload()
        answer = sdk.chat.completions.create(
            model="gemini-2.5-flash", messages=[{"role": "user", "content": "x"}]
        )
        assert answer.choices[0].message.content
    finally:
        assert server.stop()


def test_sigterm_lets_a_running_stream_finish(tmp_path: Path, gemini: FakeGeminiAPI) -> None:
    server = start_gemgate(tmp_path, gemini)
    key = server.create_key("k")
    server.add_api_key("AIzaFakeKeyAlpha0001")
    server.start()
    gemini.script(Reply.text("a b c d e f", chunks=6, delay=0.3))
    sdk = openai.OpenAI(base_url=server.url + "/v1", api_key=key, max_retries=0)
    stream = sdk.chat.completions.create(
        model="gemini-2.5-flash", messages=[{"role": "user", "content": "x"}], stream=True
    )
    first = next(iter(stream))
    assert server.process is not None
    threading.Timer(0.2, server.process.send_signal, (signal.SIGTERM,)).start()
    rest = [c.choices[0].delta.content or "" for c in stream if c.choices]
    text = (first.choices[0].delta.content or "") + "".join(rest)
    assert text == "a b c d e f"
    started = time.monotonic()
    assert server.process.wait(timeout=10) in (0, -signal.SIGTERM)
    assert time.monotonic() - started < 10
    assert "Finished server process" in server.log()


def test_db_check_says_what_needs_doing(offline: Gemgate) -> None:
    offline.data_dir.mkdir(parents=True)
    behind = offline.cli("db", "check", check=False)
    assert behind.returncode == 1 and "run gemgate db migrate" in behind.stderr
    offline.cli("db", "migrate")
    current = offline.cli("db", "check")
    assert "schema up to date" in current.stdout
    offline.env["GEMGATE_REDIS_URL"] = "redis://:secretpass@127.0.0.1:1/0"
    no_redis = offline.cli("db", "check", check=False)
    assert no_redis.returncode == 1 and "does not answer" in no_redis.stderr
    assert "secretpass" not in no_redis.stderr + no_redis.stdout
