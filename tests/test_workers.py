"""`gemgate serve --workers N`: several server processes on one port. Requests reach every
worker; SIGTERM to the parent drains the streams of all of them; a worker that dies is
replaced, workers that cannot start stop the server; startup work happens once, in the
parent; with Redis a key's rpm holds across the workers, and without it the workers still
pace a web account together and refresh an account's token once. Real `gemgate serve`
processes; which process answered is read from the JSON log lines (their `pid`), never from an
answer."""

from __future__ import annotations

import contextlib
import http.client
import itertools
import json
import os
import re
import secrets
import signal
import sqlite3
import threading
import time
import urllib.request
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import start_gemgate
from tests.fakes.code_assist import FakeCodeAssist
from tests.fakes.gemini_api import FakeGeminiAPI, Reply
from tests.fakes.gemini_web import FakeGeminiWeb, WebReply
from tests.gemini_cli_setup import add_oauth, cli_gemgate, write_oauth_file
from tests.harness import Gemgate
from tests.services import REDIS_URL, require

USAGE = {"promptTokenCount": 5, "candidatesTokenCount": 10, "totalTokenCount": 15}
CHAT = {"model": "gemini-2.5-flash", "messages": [{"role": "user", "content": "x"}]}
JSON_LOGS = {"GEMGATE_LOG_FORMAT": "json"}


@pytest.fixture
def launched() -> Iterator[list[Gemgate]]:
    """Servers a test starts, stopped even when it fails (a lost parent takes its workers)."""
    servers: list[Gemgate] = []
    yield servers
    for server in servers:
        if server.process is not None and server.process.poll() is None:
            server.process.kill()
            server.process.wait()


def _gemgate(
    launched: list[Gemgate],
    data_dir: Path,
    gemini: FakeGeminiAPI,
    env: dict[str, str] | None = None,
    init_store: bool = True,
) -> Gemgate:
    server = start_gemgate(data_dir, gemini, env, init_store=init_store)
    launched.append(server)
    return server


def _lines(server: Gemgate) -> list[dict[str, Any]]:
    out = []
    for line in server.log().splitlines():
        if line.startswith("{"):
            out.append(json.loads(line))
    return out


def _serving(server: Gemgate, count: int, timeout: float = 30) -> list[int]:
    """The pids of the workers that have finished starting, once there are `count`."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        pids = [
            line["pid"]
            for line in _lines(server)
            if line.get("message") == "Application startup complete."
        ]
        if len(pids) >= count:
            return pids
        time.sleep(0.1)
    raise AssertionError(f"{count} workers did not start:\n{server.log()}")


def _holder(workers: list[int], server_port: int, client_port: int) -> int:
    """Which worker holds the server side of a connection, from /proc (Linux)."""
    wanted = f":{server_port:04X} 0100007F:{client_port:04X} "
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        inode = next(
            (
                line.split()[9]
                for line in Path("/proc/net/tcp").read_text().splitlines()
                if wanted in line
            ),
            None,
        )
        for pid in workers:
            for fd in Path(f"/proc/{pid}/fd").iterdir():
                with contextlib.suppress(OSError):
                    if inode and os.readlink(fd) == f"socket:[{inode}]":
                        return pid
        time.sleep(0.05)
    raise AssertionError(f"no worker holds the connection from port {client_port}")


def _post(
    server: Gemgate, key: str, workers: list[int] | None = None
) -> tuple[int, str, int | None]:
    """One request on a connection of its own (the kernel spreads connections, not requests):
    its status, its request id and, given the workers, the one that held the connection."""
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=20)
    try:
        conn.request(
            "POST",
            "/v1/chat/completions",
            body=json.dumps(CHAT),
            headers={"authorization": f"Bearer {key}", "content-type": "application/json"},
        )
        response = conn.getresponse()
        response.read()
        holder = _holder(workers, server.port, conn.sock.getsockname()[1]) if workers else None
        return response.status, response.getheader("x-request-id") or "", holder
    finally:
        conn.close()


def _answered_by(server: Gemgate, request_ids: list[str]) -> dict[str, int]:
    """Which pid wrote each request's log line."""
    deadline = time.monotonic() + 5
    while True:
        seen = {
            line["request_id"]: line["pid"]
            for line in _lines(server)
            if line.get("request_id") in request_ids and "status" in line
        }
        if len(seen) == len(request_ids) or time.monotonic() > deadline:
            return seen
        time.sleep(0.05)


def test_requests_reach_both_workers_and_startup_work_happens_once(
    tmp_path: Path, gemini: FakeGeminiAPI, launched: list[Gemgate]
) -> None:
    # No `db migrate` first: serve creates the database, as on a first start.
    server = _gemgate(launched, tmp_path, gemini, JSON_LOGS, init_store=False)
    server.start("--workers", "2")
    workers = _serving(server, 2)
    assert server.process is not None and server.process.pid not in workers
    key = server.create_key("k")
    server.add_api_key("AIzaFakeKeyAlpha0001")
    server.wait_reload()
    ids = []
    for _ in range(40):
        status, request_id, _ = _post(server, key)
        assert status == 200
        ids.append(request_id)
        if len(set(_answered_by(server, ids).values())) == 2:
            break
    answered = _answered_by(server, ids)
    assert set(answered.values()) == set(workers), (answered, workers)
    # /metrics counts every worker's requests, whichever worker takes the scrape.
    server.wait_reload()
    for _ in range(6):
        with urllib.request.urlopen(server.url + "/metrics", timeout=5) as response:
            text = response.read().decode()
        counted = sum(
            float(line.rsplit(" ", 1)[1])
            for line in text.splitlines()
            if line.startswith("gemgate_requests_total{")
        )
        assert counted == len(ids), text

    log = server.log()
    # The first start's admin token is made and printed once, by the parent.
    assert log.count("admin token (shown only now") == 1
    # One warning line: without Redis some limits hold per worker.
    assert len(re.findall(r"warning: 2 workers without GEMGATE_REDIS_URL", log)) == 1
    # The migrations were applied by the parent, before any worker existed.
    with sqlite3.connect(tmp_path / "gemgate.db") as db:
        applied = [row[0] for row in db.execute("SELECT applied_at FROM schema_migrations")]
    first_worker = min(
        datetime.strptime(line["time"], "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=UTC).timestamp()
        for line in _lines(server)
        if str(line.get("message", "")).startswith("Started server process")
    )
    assert applied and max(applied) < first_worker
    assert server.stop()


def test_sigterm_drains_the_streams_of_every_worker(
    tmp_path: Path, gemini: FakeGeminiAPI, launched: list[Gemgate]
) -> None:
    server = _gemgate(launched, tmp_path, gemini, {**JSON_LOGS, "GEMGATE_DRAIN_SECONDS": "1"})
    key = server.create_key("k")
    server.add_api_key("AIzaFakeKeyAlpha0001")
    server.start("--workers", "2")
    workers = _serving(server, 2)
    gemini.always(Reply.text(" ".join("abcdefghijklmnopqrst"), chunks=20, delay=0.4, usage=USAGE))
    # Streams on connections of their own until both workers have some (the kernel spreads
    # connections at random).
    streams = []
    holders: set[int] = set()
    while len(holders) < 2:
        assert len(streams) < 20, "the connections all went to one worker"
        conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=20)
        conn.request(
            "POST",
            "/v1/chat/completions",
            body=json.dumps({**CHAT, "stream": True}),
            headers={"authorization": f"Bearer {key}", "content-type": "application/json"},
        )
        response = conn.getresponse()
        assert response.status == 200
        streams.append((response, response.read1(), response.getheader("x-request-id")))
        holders.add(_holder(workers, server.port, conn.sock.getsockname()[1]))
    assert server.process is not None
    server.process.send_signal(signal.SIGTERM)
    began = time.monotonic()
    tails: list[str] = [""] * len(streams)

    def finish(at: int) -> None:
        response, first, _ = streams[at]
        tails[at] = (first + response.read()).decode()

    readers = [threading.Thread(target=finish, args=(at,)) for at in range(len(streams))]
    for reader in readers:
        reader.start()
    for reader in readers:
        reader.join(10)
    # Every stream was cut at the end of the one-second window, with the format's error event.
    assert time.monotonic() - began < 5
    for tail in tails:
        last = [line for line in tail.splitlines() if line.startswith("data:")][-1]
        assert json.loads(last[5:])["error"]["type"] == "server_error", tail
    assert server.process.wait(timeout=20) == 0
    server.process = None
    log = server.log()
    assert "Traceback" not in log
    rows = server.usage("k")
    count = len(streams)
    assert rows and rows[0]["requests"] == count and rows[0]["errors"] == count, (rows, log)


def test_a_worker_that_dies_is_replaced(
    tmp_path: Path, gemini: FakeGeminiAPI, launched: list[Gemgate]
) -> None:
    server = _gemgate(launched, tmp_path, gemini, JSON_LOGS)
    key = server.create_key("k")
    server.add_api_key("AIzaFakeKeyAlpha0001")
    server.start("--workers", "2")
    first, second = _serving(server, 2)
    os.kill(first, signal.SIGKILL)
    replacement = [pid for pid in _serving(server, 3) if pid not in (first, second)]
    assert len(replacement) == 1
    assert f"(pid {first}) exited (signal 9); starting another" in server.log()
    ids = []
    for _ in range(40):
        status, request_id, _ = _post(server, key)
        assert status == 200
        ids.append(request_id)
        if len(set(_answered_by(server, ids).values())) == 2:
            break
    assert set(_answered_by(server, ids).values()) == {second, *replacement}
    assert server.stop()


def test_workers_that_cannot_start_stop_the_server(
    tmp_path: Path, gemini: FakeGeminiAPI, launched: list[Gemgate]
) -> None:
    # A Python that dies as soon as it starts as a worker: a broken environment, not gemgate.
    site = tmp_path / "site"
    site.mkdir()
    (site / "sitecustomize.py").write_text(
        "import os, sys\nif '--multiprocessing-fork' in sys.argv:\n    os._exit(7)\n"
    )
    server = _gemgate(launched, tmp_path / "data", gemini, {"PYTHONPATH": str(site)})
    server.cli("db", "migrate")
    with pytest.raises(AssertionError, match="gemgate exited"):
        server.start("--workers", "2")
    assert server.process is not None and server.process.wait(timeout=20) == 1
    log = server.log()
    assert "exited before serving (code 7); stopping" in log
    # It gave up after a few tries instead of restarting forever.
    assert log.count("starting another") <= 2, log


def test_port_in_use_is_one_clear_line(
    tmp_path: Path, gemini: FakeGeminiAPI, launched: list[Gemgate]
) -> None:
    first = _gemgate(launched, tmp_path / "a", gemini).start("--workers", "2")
    second = _gemgate(launched, tmp_path / "b", gemini)
    second.port = first.port
    with pytest.raises(AssertionError, match="gemgate exited"):
        second.start("--workers", "2")
    assert second.process is not None and second.process.wait(timeout=10) == 1
    assert f"cannot listen on 127.0.0.1:{first.port}: Address already in use" in second.log()
    assert first.stop()


def test_a_keys_rpm_holds_across_workers_with_redis(
    tmp_path: Path, gemini: FakeGeminiAPI, launched: list[Gemgate]
) -> None:
    require(6379, "Redis")
    env = {
        **JSON_LOGS,
        "GEMGATE_REDIS_URL": REDIS_URL,
        "GEMGATE_REDIS_NAMESPACE": "gg-test-" + secrets.token_hex(4),
    }
    server = _gemgate(launched, tmp_path, gemini, env)
    key = server.create_key("limited", "--rpm", "4")
    server.add_api_key("AIzaFakeKeyAlpha0001")
    server.start("--workers", "2")
    workers = _serving(server, 2)
    assert "without GEMGATE_REDIS_URL" not in server.log()
    results = [_post(server, key, workers) for _ in range(12)]
    statuses = [status for status, _, _ in results]
    # Both workers took requests: each alone would have let 4 through, 5 or more in all.
    assert {holder for _, _, holder in results} == set(workers), results
    assert statuses.count(200) == 4 and statuses.count(429) == 8, statuses
    assert server.stop()


def test_a_keys_rpm_and_tpm_hold_across_workers_without_redis(
    tmp_path: Path, gemini: FakeGeminiAPI, launched: list[Gemgate]
) -> None:
    """Without Redis the workers still count a key's requests and tokens together: each
    worker alone would let every request of these through."""
    server = _gemgate(launched, tmp_path, gemini, JSON_LOGS)
    rpm_key = server.create_key("by-requests", "--rpm", "4")
    tpm_key = server.create_key("by-tokens", "--tpm", "30")
    server.add_api_key("AIzaFakeKeyAlpha0001")
    server.start("--workers", "2")
    workers = _serving(server, 2)
    results = [_post(server, rpm_key, workers) for _ in range(12)]
    statuses = [status for status, _, _ in results]
    assert {holder for _, _, holder in results} == set(workers), results
    assert statuses.count(200) == 4 and statuses.count(429) == 8, statuses
    # 15 tokens an answer: two answers use the key's 30 a minute, on whichever workers.
    gemini.always(Reply.text("fifteen tokens", usage=USAGE))
    results = [_post(server, tpm_key, workers) for _ in range(8)]
    statuses = [status for status, _, _ in results]
    assert {holder for _, _, holder in results} == set(workers), results
    assert statuses[:2] == [200, 200] and set(statuses[2:]) == {429}, statuses
    assert server.stop()


@pytest.mark.parametrize("value", ["0", "two", "-1"])
def test_a_bad_workers_value_is_one_clear_line(tmp_path: Path, value: str) -> None:
    server = Gemgate(tmp_path, init_store=False)
    result = server.cli("serve", "--workers", value, check=False)
    assert result.returncode != 0 and server.process is None
    assert (
        f"setting GEMGATE_WORKERS: workers is a whole number of 1 or more, or auto (got '{value}')"
        in result.stderr
    ), result.stderr


def test_workers_whose_parent_is_killed_drain_and_exit(
    tmp_path: Path, gemini: FakeGeminiAPI, launched: list[Gemgate]
) -> None:
    server = _gemgate(launched, tmp_path, gemini, JSON_LOGS)
    server.start("--workers", "2")
    workers = _serving(server, 2)
    assert server.process is not None
    server.process.kill()
    server.process.wait()
    deadline = time.monotonic() + 15
    while any(Path(f"/proc/{pid}").exists() for pid in workers):
        assert time.monotonic() < deadline, "workers kept running without their parent"
        time.sleep(0.1)
    finished = [
        line["pid"]
        for line in _lines(server)
        if str(line.get("message")).startswith("Finished server process")
    ]
    # Each shut down as on SIGTERM, rather than being cut off.
    assert sorted(finished) == sorted(workers)
    with pytest.raises(OSError):
        urllib.request.urlopen(server.url + "/healthz", timeout=2)


# -- accounts paced together without Redis ------------------------------------------------------


def _connections(
    server: Gemgate, workers: list[int], per_worker: int = 1
) -> list[http.client.HTTPConnection]:
    """Open connections, `per_worker` held by each worker (the kernel picks a worker for each
    new connection; the rest are closed)."""
    held: dict[int, list[http.client.HTTPConnection]] = {pid: [] for pid in workers}
    for _ in range(40 * per_worker):
        conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)
        conn.connect()
        pid = _holder(workers, server.port, conn.sock.getsockname()[1])
        if len(held[pid]) < per_worker:
            held[pid].append(conn)
        else:
            conn.close()
        if all(len(conns) == per_worker for conns in held.values()):
            return [conn for conns in held.values() for conn in conns]
    raise AssertionError(f"the kernel gave every connection to one worker: {held}")


def _chat(
    conn: http.client.HTTPConnection,
    key: str,
    channel: str = "gemini_official",
    model: str = "gemini-3-fast",
    stream: bool = False,
) -> http.client.HTTPResponse:
    body = {"model": model, "messages": [{"role": "user", "content": "hi"}], "stream": stream}
    conn.request(
        "POST",
        f"/{channel}/v1/chat/completions",
        body=json.dumps(body),
        headers={"authorization": f"Bearer {key}", "content-type": "application/json"},
    )
    return conn.getresponse()


def _web_server(
    tmp_path: Path,
    gemini: FakeGeminiAPI,
    web: FakeGeminiWeb,
    launched: list[Gemgate],
    pacing: dict[str, str],
) -> tuple[Gemgate, str, list[int]]:
    """`serve --workers 2` without Redis, on one web account: the server, a key, the workers."""
    psid = "g.a000psid-workers"
    account = web.add_account(psid, tier=2)
    env = {**JSON_LOGS, **web.env(), "GEMGATE_WEB_ROTATE_INTERVAL": "86400", **pacing}
    server = _gemgate(launched, tmp_path, gemini, env)
    key = server.create_key("k")
    server.cli("credentials", "add", "gemini_official", "--psid", psid, "--psidts", account.psidts)
    server.start("--workers", "2")
    return server, key, _serving(server, 2)


def test_a_web_account_answers_once_at_a_time_over_the_workers_without_redis(
    tmp_path: Path, gemini: FakeGeminiAPI, launched: list[Gemgate]
) -> None:
    """GEMGATE_WEB_CONCURRENCY=1 is one chat at a time on the account, whichever worker takes
    the request: while one worker streams, the other waits its turn and, past its wait,
    refuses rather than open a second chat; once the answer ends, it gets the turn."""
    pacing = {
        "GEMGATE_WEB_CONCURRENCY": "1",
        "GEMGATE_WEB_MIN_INTERVAL_MS": "0",
        "GEMGATE_PACING_MAX_WAIT": "1",
    }
    with FakeGeminiWeb() as web:
        server, key, workers = _web_server(tmp_path, gemini, web, launched, pacing)
        first, second = _connections(server, workers)
        gate = threading.Event()
        web.script(WebReply(text="held answer", chunks=3, gate=gate))
        held = _chat(first, key, stream=True)
        assert held.status == 200
        while b'"content"' not in held.readline():
            pass  # the first worker's answer is under way, and held
        busy = _chat(second, key)
        assert busy.status == 429
        assert "busy" in json.loads(busy.read())["error"]["message"]
        assert len(web.chats()) == 1  # no second chat on the account
        gate.set()
        assert held.read().endswith(b"data: [DONE]\n\n")
        answer = _chat(second, key)
        assert answer.status == 200
        assert json.loads(answer.read())["choices"][0]["message"]["content"].startswith("You said")
        assert len(web.chats()) == 2
    assert server.stop()


def test_a_web_accounts_spacing_holds_over_the_workers_without_redis(
    tmp_path: Path, gemini: FakeGeminiAPI, launched: list[Gemgate]
) -> None:
    """GEMGATE_WEB_MIN_INTERVAL_MS between two chats on the account, whichever workers send
    them: four requests at once, two on each worker, reach the web app that far apart."""
    spacing = 0.7
    pacing = {
        "GEMGATE_WEB_CONCURRENCY": "0",
        "GEMGATE_WEB_MIN_INTERVAL_MS": str(int(spacing * 1000)),
        "GEMGATE_PACING_MAX_WAIT": "10",
    }
    with FakeGeminiWeb() as web:
        server, key, workers = _web_server(tmp_path, gemini, web, launched, pacing)
        conns = _connections(server, workers, per_worker=2)
        with ThreadPoolExecutor(len(conns)) as pool:
            statuses = list(pool.map(lambda conn: _chat(conn, key).status, conns))
        assert statuses == [200] * 4
        starts = sorted(chat.at for chat in web.chats())
    assert len(starts) == 4
    gaps = [later - earlier for earlier, later in itertools.pairwise(starts)]
    # The spacing is kept where a worker starts a turn; the chat reaches the web app after the
    # turn's other work (a worker's first loads the page), which moves it by tens of ms. Two
    # workers pacing the account apart would send chats a few ms apart.
    assert min(gaps) > spacing - 0.15, gaps
    assert server.stop()


def test_the_workers_refresh_an_expired_token_once_between_them_without_redis(
    tmp_path: Path, launched: list[Gemgate]
) -> None:
    """A gemini_cli account whose access token expired, asked on both workers at once: one
    worker refreshes it, the other waits and takes the new token from the store."""
    with FakeCodeAssist() as code_assist:
        fred = code_assist.account("fred@example.com", project="proj-fred")
        expired = code_assist.oauth_file("fred@example.com", expired=True)
        code_assist.refresh_delay = 0.3  # both workers ask while the first refresh is under way
        # Neither worker sees the other's write-back by reloading: only the lock helps.
        env = {**JSON_LOGS, "GEMGATE_RELOAD_INTERVAL": "30"}
        server = cli_gemgate(tmp_path, code_assist, env)
        launched.append(server)
        key = server.create_key("k")
        add_oauth(server, write_oauth_file(tmp_path, "fred.json", expired), "--no-check")
        server.start("--workers", "2")
        conns = _connections(server, _serving(server, 2), per_worker=3)

        def ask(conn: http.client.HTTPConnection) -> str:
            response = _chat(conn, key, "gemini_cli", "gemini-2.5-pro")
            assert response.status == 200
            return str(json.loads(response.read())["choices"][0]["message"]["content"])

        with ThreadPoolExecutor(len(conns)) as pool:
            answers = list(pool.map(ask, conns))
        assert answers == ["Hello from gemini-2.5-pro"] * 6
        assert fred.refreshes == 1
    assert server.stop()
