"""What an operator trips over on the command line: --config on every command, databases that
are only opened (never quietly created), scopes and limits that can be taken back, clear
one-line errors."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import openai
import pytest

from tests.conftest import start_gemgate
from tests.fakes.gemini_api import FakeGeminiAPI
from tests.harness import Gemgate, free_port
from tests.services import PG_HOST, PG_PORT, PG_USER, require


def gemgate(
    cwd: Path, *args: str, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """The CLI run from a folder, with no GEMGATE_* setting but those given."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith("GEMGATE_")}
    return subprocess.run(
        [sys.executable, "-m", "gemgate", *args],
        cwd=cwd,
        env={**clean, **(env or {})},
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_config_flag_works_before_and_after_every_command(tmp_path: Path) -> None:
    data = tmp_path / "elsewhere"
    port = free_port()
    config = tmp_path / "gemgate.toml"
    config.write_text(f'data_dir = "{data}"\nport = {port}\nreload_interval = 0.2\n')
    work = tmp_path / "work"
    work.mkdir()
    assert gemgate(work, "--config", str(config), "db", "migrate").returncode == 0
    created = gemgate(work, "--config", str(config), "keys", "create", "--name", "a")
    assert created.returncode == 0, created.stderr
    assert str(data / "gemgate.db") in created.stderr
    for args in (
        ("keys", "list", "--config", str(config)),
        (f"--config={config}", "keys", "list"),
        ("keys", "show", "a", "--config", str(config)),
        ("usage", "--config", str(config)),
    ):
        result = gemgate(work, *args)
        assert result.returncode == 0, (args, result.stderr)
    assert "a" in gemgate(work, "keys", "list", "--config", str(config)).stdout
    assert not (work / "gemgate-data").exists()
    added = gemgate(
        work, "credentials", "add", "gemini", "--api-key", "AIzaFakeKeyAlpha0001",
        "--config", str(config),
    )
    assert added.returncode == 0, added.stderr

    # `gemgate --config FILE` alone is serve, on the port and data folder the file gives.
    log = (tmp_path / "serve.log").open("wb")
    clean = {k: v for k, v in os.environ.items() if not k.startswith("GEMGATE_")}
    server = subprocess.Popen(
        [sys.executable, "-m", "gemgate", "--config", str(config)],
        cwd=work, env=clean, stdout=log, stderr=subprocess.STDOUT,
    )
    try:
        deadline = time.monotonic() + 20
        while True:
            assert server.poll() is None, (tmp_path / "serve.log").read_text()
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=1):
                    break
            except OSError:
                assert time.monotonic() < deadline, (tmp_path / "serve.log").read_text()
                time.sleep(0.1)
    finally:
        server.terminate()
        server.wait(timeout=30)
    assert f"store: {data / 'gemgate.db'}" in (tmp_path / "serve.log").read_text()


def test_a_bad_setting_is_one_clear_line(tmp_path: Path) -> None:
    for args in (("keys", "list"), ("serve",), ()):
        result = gemgate(tmp_path, *args, env={"GEMGATE_PORT": "abc"})
        assert result.returncode != 0
        assert result.stderr.strip().splitlines() == [
            "Error: setting GEMGATE_PORT: expected a whole number (got 'abc')"
        ]
    config = tmp_path / "bad.toml"
    config.write_text('read_timeout = "slow"\n')
    result = gemgate(tmp_path, "--config", str(config), "keys", "list")
    assert result.returncode != 0
    [line] = result.stderr.strip().splitlines()
    assert "GEMGATE_READ_TIMEOUT" in line and f"`read_timeout` in {config}" in line
    assert "validation error" not in line and "pydantic" not in line
    missing = gemgate(tmp_path, "--config", str(tmp_path / "nope.toml"), "keys", "list")
    assert missing.returncode != 0 and "config file not found" in missing.stderr
    assert list(tmp_path.iterdir()) == [config]


def test_only_serve_and_db_migrate_create_a_database(tmp_path: Path) -> None:
    for args in (
        ("keys", "list"),
        ("keys", "create", "--name", "x"),
        ("credentials", "list"),
        ("credentials", "add", "gemini", "--api-key", "AIzaFakeKeyAlpha0001"),
        ("credentials", "test", "1"),
        ("usage",),
    ):
        result = gemgate(tmp_path, *args)
        assert result.returncode == 1, (args, result.stdout)
        message = result.stderr
        assert str(tmp_path / "gemgate-data" / "gemgate.db") in message, (args, message)
        assert "GEMGATE_DATA_DIR" in message and "GEMGATE_DATABASE_URL" in message
        assert "Traceback" not in message
    assert list(tmp_path.iterdir()) == []

    made = gemgate(tmp_path, "db", "migrate")
    assert made.returncode == 0 and "created" in made.stdout
    opened = gemgate(tmp_path, "keys", "list")
    assert opened.returncode == 0
    assert f"database: {tmp_path / 'gemgate-data' / 'gemgate.db'}" in opened.stderr
    again = gemgate(tmp_path, "db", "migrate")
    assert "up to date" in again.stdout


def test_a_postgresql_database_that_is_not_there_is_a_clear_error(tmp_path: Path) -> None:
    require(PG_PORT, "PostgreSQL")
    url = f"postgresql://{PG_USER}:hunter2@{PG_HOST}:{PG_PORT}/gemgate_no_such_database"
    result = gemgate(tmp_path, "keys", "list", env={"GEMGATE_DATABASE_URL": url})
    assert result.returncode == 1
    assert "gemgate_no_such_database" in result.stderr and "does not exist" in result.stderr
    assert "hunter2" not in result.stderr and "Traceback" not in result.stderr


def test_usage_prints_a_header_row(tmp_path: Path, gemini: FakeGeminiAPI) -> None:
    server = start_gemgate(tmp_path, gemini)
    key = server.create_key("k")
    assert server.cli("usage").stdout.strip() == "no usage recorded yet"
    server.add_api_key("AIzaFakeKeyAlpha0001")
    server.start()
    try:
        sdk = openai.OpenAI(base_url=server.url + "/v1", api_key=key, max_retries=0)
        sdk.chat.completions.create(
            model="gemini-2.5-flash", messages=[{"role": "user", "content": "x"}]
        )
    finally:
        assert server.stop()  # usage is written at the latest on shutdown
    header, row = server.cli("usage").stdout.strip().splitlines()
    assert header.split() == [
        "KEY", "CHANNEL", "MODEL", "REQUESTS", "ERRORS", "PROMPT", "OUTPUT", "THINKING", "TOTAL"
    ]
    assert row.split()[:5] == ["k", "gemini", "gemini-2.5-flash", "1", "0"]


def test_scopes_and_limits_go_back_to_unrestricted(tmp_path: Path, gemini: FakeGeminiAPI) -> None:
    server = start_gemgate(tmp_path, gemini)
    key = server.create_key(
        "k", "--models", "gemini-2.5-pro", "--channels", "gemini", "--endpoints", "messages",
        "--rpm", "5", "--tpm", "1000", "--quota-tokens", "100000",
    )
    server.add_api_key("AIzaFakeKeyAlpha0001")
    server.start()
    try:
        sdk = openai.OpenAI(base_url=server.url + "/v1", api_key=key, max_retries=0)

        def chat() -> int:
            try:
                sdk.chat.completions.create(
                    model="gemini-2.5-flash", messages=[{"role": "user", "content": "x"}]
                )
            except openai.APIStatusError as error:
                return error.status_code
            return 200

        assert chat() == 403
        for models in ("all", "*"):
            shown = json.loads(server.cli("keys", "update", "k", "--models", models).stdout)
            assert shown["models"] == "all"
        shown = json.loads(
            server.cli("keys", "update", "k", "--channels", "all", "--endpoints", "ALL").stdout
        )
        assert shown["channels"] == shown["endpoints"] == "all"
        shown = json.loads(
            server.cli("keys", "update", "k", "--no-rpm", "--no-tpm", "--no-quota-tokens").stdout
        )
        assert shown["rpm"] is None and shown["tpm"] is None and shown["quota_tokens"] is None
        server.wait_reload()
        assert chat() == 200
        # And back to a limit again.
        shown = json.loads(server.cli("keys", "update", "k", "--rpm", "7").stdout)
        assert shown["rpm"] == 7
    finally:
        assert server.stop()

    for args, says in (
        (("--models", ""), "'all'"),
        (("--models", " , "), "'all'"),
        (("--channels", "all,gemini"), "stands alone"),
        (("--rpm", "5", "--no-rpm"), "contradict"),
        (("--rpm", "0"), "--no-rpm"),
    ):
        refused = server.cli("keys", "update", "k", *args, check=False)
        assert refused.returncode != 0 and says in refused.stderr, (args, refused.stderr)
    help_text = server.cli("keys", "update", "--help").stdout
    for flag in ("--no-rpm", "--no-tpm", "--no-quota-tokens", "'all'"):
        assert flag in help_text


def test_key_names_cannot_be_empty(tmp_path: Path) -> None:
    server = Gemgate(tmp_path)
    for name in ("", "   "):
        refused = server.cli("keys", "create", "--name", name, check=False)
        assert refused.returncode == 1 and "needs a name" in refused.stderr
    assert "no keys yet" in server.cli("keys", "list").stdout


def test_proxy_urls_are_checked_when_added(tmp_path: Path) -> None:
    server = Gemgate(tmp_path)
    for proxy in (
        "proxy.local:3128",
        "ftp://proxy.local:21",
        "http://",
        "http://:3128",
        "http://proxy.local:port",
        "http://proxy.local:3128/path?x=1",
        "ftp://user:s3cret@proxy.local",
        "socks4://proxy.local:1080",
    ):
        refused = server.cli(
            "credentials", "add", "gemini", "--api-key", "AIzaFakeKeyAlpha0001",
            "--proxy", proxy, check=False,
        )
        assert refused.returncode == 1 and "--proxy" in refused.stderr, proxy
        assert "s3cret" not in refused.stderr
    assert json.loads(server.cli("credentials", "list", "--json").stdout) == []
    accepted = ("http://p:3128", "https://u:pw@p", "HTTP://p", "socks5h://u:pw@p:1080")
    for n, proxy in enumerate(accepted, 1):
        server.add_api_key(f"AIzaFakeKeyAlpha000{n}", "--proxy", proxy)


def test_credential_ids_are_never_reused_and_labels_name_credentials(tmp_path: Path) -> None:
    server = Gemgate(tmp_path)
    first = server.add_api_key("AIzaFakeKeyAlpha0001", "--label", "same")
    second = server.add_api_key("AIzaFakeKeyBravo0002", "--label", "same")
    server.cli("credentials", "remove", str(second))
    third = server.add_api_key("AIzaFakeKeyCharlie03", "--label", "same")
    assert (first, second, third) == (1, 2, 3)

    ambiguous = server.cli("credentials", "disable", "same", check=False)
    assert ambiguous.returncode == 1
    assert "2 credentials are labelled 'same'" in ambiguous.stderr
    assert "1, 3" in ambiguous.stderr
    missing = server.cli("credentials", "show", "other", check=False)
    assert missing.returncode == 1 and "no credential with id or label 'other'" in missing.stderr

    server.add_api_key("AIzaFakeKeyDelta0004", "--label", "solo")
    assert "disabled credential 4 (solo)" in server.cli("credentials", "disable", "solo").stdout
    assert json.loads(server.cli("credentials", "show", "solo").stdout)["enabled"] is False
    server.cli("credentials", "enable", "solo")
    assert "removed credential 4" in server.cli("credentials", "remove", "solo").stdout


def test_an_empty_bearer_is_a_missing_key(tmp_path: Path, gemini: FakeGeminiAPI) -> None:
    server = start_gemgate(tmp_path, gemini).start()
    try:
        for header in ("Bearer ", "Bearer", "bearer   "):
            request = urllib.request.Request(
                server.url + "/v1/chat/completions",
                data=b'{"model": "gemini-2.5-flash", "messages": []}',
                headers={"Authorization": header, "Content-Type": "application/json"},
            )
            with pytest.raises(urllib.error.HTTPError) as caught:
                urllib.request.urlopen(request, timeout=10)
            assert caught.value.code == 401
            message = json.loads(caught.value.read())["error"]["message"]
            assert message.startswith("no client key"), (header, message)
    finally:
        assert server.stop()
