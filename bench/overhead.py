"""What gemgate costs on top of a direct call to the Gemini API, measured in one run.

Starts the fake Gemini API, the fake Code Assist (for the `gemini_cli` channel) and a real
`gemgate serve` side by side (gemgate alone on core 0, the fakes and this load generator on
core 1), drives both with the same realistic requests,
prints a table with PASS/FAIL against the targets and writes bench/results/latest.json.
The worker rows run `gemgate serve --workers N` on both cores, driven by wrk against nginx
(bench/wrk_nginx.py) where those are installed.

    /tmp/probe/bin/python bench/overhead.py [--duration 6] [--profile]

See bench/README.md for what each number means.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import math
import os
import platform
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlencode, urlsplit

import aiohttp
import orjson

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # `bench` as a package when run as a script
from bench import wrk_nginx  # noqa: E402

RESULTS = ROOT / "bench" / "results"
MODEL = "gemini-2.5-flash"
UPSTREAM_KEY = "k1"
SYSTEM = "You are a helpful assistant."
PROMPT = "Hi! Tell me one fun fact about octopuses."
GEMGATE_CORE, CLIENT_CORE = 0, 1
# The same conversation in both dialects: what gemgate forwards is what the direct call sends.
CHAT_BODY: dict[str, Any] = {
    "model": MODEL,
    "messages": [{"role": "system", "content": SYSTEM}, {"role": "user", "content": PROMPT}],
    "temperature": 0.7,
    "max_tokens": 256,
}
# The same again through the Responses API; `store: false` as chat completions keeps nothing
# (the `responses-store` row measures keeping answers too).
RESPONSES_BODY: dict[str, Any] = {
    "model": MODEL,
    "instructions": SYSTEM,
    "input": PROMPT,
    "temperature": 0.7,
    "max_output_tokens": 256,
    "store": False,
}
GEMINI_BODY: dict[str, Any] = {
    "contents": [{"role": "user", "parts": [{"text": PROMPT}]}],
    "systemInstruction": {"parts": [{"text": SYSTEM}]},
    "generationConfig": {"temperature": 0.7, "maxOutputTokens": 256},
}
# (name, measured value) -> verdict; the values are filled in by `derive`.
TARGETS: dict[str, tuple[str, Callable[[float], bool]]] = {
    "throughput_ratio_nonstream": (">= 40 %", lambda v: v >= 0.40),
    "throughput_ratio_stream": (">= 40 %", lambda v: v >= 0.40),
    # Speed, second round (#14): gemgate's own CPU per request, and what it adds to latency.
    "cpu_ms_nonstream_openai": ("<= 0.25", lambda v: 0 < v <= 0.25),
    "cpu_ms_stream_openai": ("<= 0.5", lambda v: 0 < v <= 0.5),
    "cpu_ms_stream_anthropic": ("<= 0.6", lambda v: 0 < v <= 0.6),
    "cpu_ms_stream_native": ("<= 0.3", lambda v: 0 < v <= 0.3),
    "added_p50_ms_c1": ("<= 0.3 ms", lambda v: v <= 0.3),
    "added_ttfc_ms_c1": ("<= 0.5 ms", lambda v: v <= 0.5),
    "rss_mb_1000_streams": ("<= 110 MB", lambda v: 0 < v <= 110),
    "idle_rss_mb": ("< 80 MB", lambda v: v < 80),
    "startup_s": ("< 1.5 s", lambda v: v < 1.5),
    "web_stream_cpu_vs_gemini": ("<= 2x", lambda v: 0 < v <= 2.0),
    # gemini_cli's CPU per request against the gemini channel's, same load and same answer.
    "cli_cpu_ratio_nonstream": ("<= 120 %", lambda v: 0 < v <= 1.20),
    "cli_cpu_ratio_stream": ("<= 120 %", lambda v: 0 < v <= 1.20),
    # Responses API CPU per request against chat completions', same load and same answer.
    "responses_cpu_ratio_nonstream": ("<= 120 %", lambda v: 0 < v <= 1.20),
    "responses_cpu_ratio_stream": ("<= 120 %", lambda v: 0 < v <= 1.20),
    # `--workers 2` over 1 worker at c=32 (see measure_workers for what each ratio means).
    "throughput_ratio_workers2": (">= 170 %", lambda v: v >= 1.70),
    "throughput_ratio_workers2_by_cpu": (">= 170 %", lambda v: v >= 1.70),
}
# What the bare relay (bench/floor_app.py: uvicorn and one aiohttp call, nothing of gemgate's)
# measures for the same figure in the same run: how much of each target the stack leaves.
FLOORS: dict[str, str] = {
    "cpu_ms_nonstream_openai": "cpu_ms_nonstream_floor",
    "cpu_ms_stream_openai": "cpu_ms_stream_floor",
    "cpu_ms_stream_anthropic": "cpu_ms_stream_floor",
    "cpu_ms_stream_native": "cpu_ms_stream_floor",
    "added_p50_ms_c1": "added_p50_ms_c1_floor",
    "added_ttfc_ms_c1": "added_ttfc_ms_c1_floor",
    "rss_mb_1000_streams": "rss_mb_1000_streams_floor",
    "idle_rss_mb": "idle_rss_mb_floor",
}
# Figures before the speed round (#14, measured independently), shown beside today's.
PREVIOUS: dict[str, float] = {
    "cpu_ms_nonstream_openai": 0.51,
    "cpu_ms_stream_openai": 1.10,
    "cpu_ms_stream_anthropic": 1.96,
    "cpu_ms_stream_native": 0.58,
    "cpu_ms_nonstream_native": 0.34,
    "added_p50_ms_c1": 0.69,
    "added_ttfc_ms_c1": 1.7,
    "rss_mb_1000_streams": 126.0,
}
# A model the fake answers a chunk every SLOW_DELAY seconds: streams that stay open, for the
# memory of OPEN_STREAMS streams under way at once.
SLOW_MODEL, SLOW_DELAY, OPEN_STREAMS = "gemini-2.5-pro", 0.5, 1000
# A model the fake streams a chunk every PACED_DELAY seconds, as a real model streams: each
# chunk reaches gemgate in a read of its own. Unpaced, the fake writes a whole answer faster
# than a busy gemgate reads, and most answers arrive in one read (the `paced` rows).
PACED_MODEL, PACED_DELAY = "gemini-2.5-flash-lite", 0.002
# gemini_official: one account for gemgate, another for the direct calls (a page fetch by one
# side would otherwise make the other side's token stale).
WEB_MODEL = "gemini-3-fast"
WEB_PSID, WEB_DIRECT_PSID, WEB_PSIDTS = "bench-psid", "bench-direct-psid", "bench-sidts"
WEB_STREAM = "/_/BardChatUi/data/assistant.lamda.BardFrontendService/StreamGenerate"


@dataclass
class Target:
    """One way to ask for an answer: gemgate's OpenAI endpoint or the fake's own."""

    name: str
    url: str
    headers: dict[str, str]
    body: bytes
    stream: bool
    check: Callable[[int, bytes], bool]
    # A fresh URL per request, for upstreams that want a new request counter every time.
    next_url: Callable[[], str] | None = None


@dataclass
class Result:
    scenario: str
    target: str
    concurrency: int
    seconds: float
    requests: int = 0
    errors: int = 0
    rps: float = 0.0
    p50_ms: float = 0.0
    p99_ms: float = 0.0
    ttfc_p50_ms: float | None = None
    ttfc_p99_ms: float | None = None
    cpu_ms_per_request: float | None = None  # gemgate's own CPU time, gemgate targets only
    # Core 0 busy with anything but gemgate, in % of the run: other work skewing the numbers.
    core0_other_pct: float = 0.0
    latencies: list[float] = field(default_factory=list, repr=False)
    ttfcs: list[float] = field(default_factory=list, repr=False)


def percentile(values: list[float], q: float) -> float:
    if not values:
        return 0.0
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


# -- load generator -------------------------------------------------------------------------


async def drive(target: Target, concurrency: int, warmup: float, duration: float) -> Result:
    """`concurrency` workers loop requests over one keep-alive pool for warmup + duration
    seconds; only requests that finish inside the measured window count."""
    result = Result("", target.name, concurrency, duration)
    connector = aiohttp.TCPConnector(limit=concurrency, force_close=False)
    timeout = aiohttp.ClientTimeout(total=10)
    start = time.perf_counter() + warmup
    end = start + duration

    async def worker(session: aiohttp.ClientSession) -> None:
        while (sent := time.perf_counter()) < end:
            first: float | None = None
            ok = False
            try:
                url = target.next_url() if target.next_url else target.url
                async with session.post(url, data=target.body) as resp:
                    if target.stream:
                        body = bytearray()
                        async for chunk in resp.content.iter_any():
                            if first is None:
                                first = time.perf_counter()
                            body += chunk
                    else:
                        body = bytearray(await resp.read())
                    ok = target.check(resp.status, bytes(body))
            except (aiohttp.ClientError, TimeoutError):
                pass
            done = time.perf_counter()
            if start <= done <= end:
                if not ok:
                    result.errors += 1
                    continue
                result.latencies.append(done - sent)
                if first is not None:
                    result.ttfcs.append(first - sent)

    async with aiohttp.ClientSession(
        connector=connector, timeout=timeout, headers=target.headers
    ) as session:
        workers = [asyncio.create_task(worker(session)) for _ in range(concurrency)]
        try:
            await asyncio.wait(workers, timeout=warmup + duration + 15)
        finally:  # on Ctrl-C, or if requests hang past their own timeout
            for task in workers:
                task.cancel()
            await asyncio.gather(*workers, return_exceptions=True)

    result.requests = len(result.latencies)
    result.rps = result.requests / duration
    result.p50_ms = percentile(result.latencies, 0.50) * 1000
    result.p99_ms = percentile(result.latencies, 0.99) * 1000
    if result.ttfcs:
        result.ttfc_p50_ms = percentile(result.ttfcs, 0.50) * 1000
        result.ttfc_p99_ms = percentile(result.ttfcs, 0.99) * 1000
    return result


# -- processes --------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def proc_status(pid: int) -> dict[str, float]:
    """VmRSS and VmHWM of a process, in MiB."""
    out: dict[str, float] = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        name, _, value = line.partition(":")
        if name in ("VmRSS", "VmHWM"):
            out[name] = int(value.split()[0]) / 1024
    return out


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def core_busy_seconds(core: int) -> float:
    """Time one core has spent doing anything but idling, per /proc/stat."""
    for line in Path("/proc/stat").read_text().splitlines():
        if line.startswith(f"cpu{core} "):
            ticks = [int(v) for v in line.split()[1:9]]
            return (sum(ticks) - ticks[3] - ticks[4]) / os.sysconf("SC_CLK_TCK")
    return 0.0


def wait_http(url: str, process: subprocess.Popen[bytes], limit: float = 20.0) -> float:
    """Poll `url` until it answers 200; the seconds that took."""
    parts = urlsplit(url)
    path = f"{parts.path}?{parts.query}" if parts.query else parts.path
    request = f"GET {path} HTTP/1.1\r\nHost: {parts.netloc}\r\nConnection: close\r\n\r\n".encode()
    began = time.perf_counter()
    while time.perf_counter() - began < limit:
        if process.poll() is not None:
            raise RuntimeError(f"{process.args!r} exited with {process.returncode}")
        try:
            with socket.create_connection((parts.hostname, parts.port), timeout=0.5) as sock:
                sock.sendall(request)
                if sock.recv(64).startswith(b"HTTP/1.1 200"):
                    return time.perf_counter() - began
        except OSError:
            pass
        time.sleep(0.005)
    raise RuntimeError(f"{url} did not answer within {limit:.0f}s")


class Stack:
    """The fake Gemini API and gemgate, configured in a throwaway data dir; always cleaned up."""

    def __init__(self, chunks: int) -> None:
        self.chunks = chunks
        self.tmp = Path(tempfile.mkdtemp(prefix="gemgate-bench-"))
        self.fake_port, self.port, self.web_port = free_port(), free_port(), free_port()
        self.fake_url = f"http://127.0.0.1:{self.fake_port}"
        self.web_url = f"http://127.0.0.1:{self.web_port}"
        self.cli_fake_url = f"http://127.0.0.1:{free_port()}"
        self.cli_token = ""  # the fake Code Assist account's access token, for direct calls
        self.url = f"http://127.0.0.1:{self.port}"
        self.floor_url = f"http://127.0.0.1:{free_port()}"
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("GEMGATE_")} | {
            "GEMGATE_DATA_DIR": str(self.tmp / "data"),
            "GEMGATE_GEMINI_API_BASE": self.fake_url,
            "GEMGATE_GEMINI_WEB_BASE": self.web_url,
            "GEMGATE_GOOGLE_ACCOUNTS_BASE": self.web_url,
            "GEMGATE_WEB_UPLOAD_BASE": self.web_url,
            # Pacing protects real accounts; here it would only measure the wait.
            "GEMGATE_WEB_CONCURRENCY": "0",
            "GEMGATE_WEB_MIN_INTERVAL_MS": "0",
            "GEMGATE_WEB_ROTATE_INTERVAL": "86400",
            "GEMGATE_CODE_ASSIST_BASE": self.cli_fake_url,
            "GEMGATE_OAUTH_TOKEN_URL": f"{self.cli_fake_url}/token",
            "GEMGATE_LOG_LEVEL": "warning",
            "GEMGATE_HOST": "127.0.0.1",
            "GEMGATE_PORT": str(self.port),
        }
        self.processes: list[subprocess.Popen[bytes]] = []
        self.server: subprocess.Popen[bytes]  # gemgate itself, once started
        self.fake: subprocess.Popen[bytes]  # the fake Gemini API, once started
        self.client_key = ""
        self.startup_s = 0.0
        self.idle: dict[str, float] = {}
        self.floor_idle: dict[str, float] = {}

    def _spawn(self, core: int, *args: str, log: str) -> subprocess.Popen[bytes]:
        process = subprocess.Popen(
            ["taskset", "-c", str(core), sys.executable, *args],
            cwd=ROOT,
            env=self.env,
            stdout=(self.tmp / log).open("wb"),
            stderr=subprocess.STDOUT,
            start_new_session=True,  # Ctrl-C reaches only us; we stop the children ourselves
        )
        self.processes.append(process)
        return process

    def _cli(self, *args: str) -> str:
        done = subprocess.run(
            [sys.executable, "-m", "gemgate", *args],
            env=self.env,
            capture_output=True,
            text=True,
            timeout=60,
            check=True,
        )
        return done.stdout.strip().splitlines()[-1]

    def start(self) -> None:
        self._cli("db", "migrate")  # the CLI configures only an existing database
        self.client_key = self._cli("keys", "create", "--name", "bench")
        self._cli("credentials", "add", "gemini", "--api-key", UPSTREAM_KEY)
        self._cli(
            "credentials", "add", "gemini_official", "--psid", WEB_PSID, "--psidts", WEB_PSIDTS
        )
        web = self._spawn(
            CLIENT_CORE,
            *("-m", "tests.fakes.gemini_web", "--port", str(self.web_port)),
            *("--accounts", f"{WEB_PSID},{WEB_DIRECT_PSID}", "--chunks", str(self.chunks)),
            log="fake-web.log",
        )
        wait_http(f"{self.web_url}/app", web)
        self.web_direct = web_page(self.web_url)
        self.fake = fake = self._spawn(
            CLIENT_CORE,
            *("-m", "tests.fakes.gemini_api", "--port", str(self.fake_port)),
            *("--keys", UPSTREAM_KEY, "--chunks", str(self.chunks)),
            *("--slow", f"{SLOW_MODEL}={SLOW_DELAY}", "--slow", f"{PACED_MODEL}={PACED_DELAY}"),
            log="fake.log",
        )
        wait_http(f"{self.fake_url}/v1beta/models?key={UPSTREAM_KEY}", fake)
        self._start_code_assist()
        # The bare relay (bench/floor_app.py): idle on gemgate's core until its rows run.
        self.floor = self._spawn(
            GEMGATE_CORE,
            str(ROOT / "bench" / "floor_app.py"),
            *("--port", str(urlsplit(self.floor_url).port)),
            *("--upstream", self.fake_url, "--key", UPSTREAM_KEY),
            log="floor.log",
        )
        wait_http(f"{self.floor_url}/healthz", self.floor)
        self.floor_idle = proc_status(self.floor.pid)
        self.server = self._spawn(GEMGATE_CORE, "-m", "gemgate", "serve", log="gemgate.log")
        self.startup_s = wait_http(f"{self.url}/healthz", self.server)
        time.sleep(0.5)  # let start-up work (store load, first reload tick) settle
        self.idle = proc_status(self.server.pid)

    def restart_server(self) -> None:
        """gemgate stopped and started again on the same data: a figure taken next is not
        skewed by what the rows before left in its memory."""
        self.server.terminate()
        self.server.wait(30)
        self.processes.remove(self.server)
        self.server = self._spawn(GEMGATE_CORE, "-m", "gemgate", "serve", log="gemgate-fresh.log")
        wait_http(f"{self.url}/healthz", self.server)
        time.sleep(0.5)  # as at the first start: let start-up work settle

    def _start_code_assist(self) -> None:
        """The fake Code Assist prints its account's oauth_creds.json once it listens; gemgate
        imports it as an operator would."""
        port = str(urlsplit(self.cli_fake_url).port)
        fake = self._spawn(
            CLIENT_CORE,
            *("-m", "tests.fakes.code_assist", "--port", port, "--chunks", str(self.chunks)),
            log="code_assist.log",
        )
        log, began = self.tmp / "code_assist.log", time.perf_counter()
        while not log.read_bytes().strip():
            if fake.poll() is not None or time.perf_counter() - began > 20:
                raise RuntimeError(f"the fake Code Assist did not start: {log.read_text()}")
            time.sleep(0.01)
        creds = log.read_bytes().splitlines()[0]
        self.cli_token = orjson.loads(creds)["access_token"]
        (self.tmp / "oauth_creds.json").write_bytes(creds)
        self._cli(
            "credentials", "add", "gemini_cli", "--oauth-file", str(self.tmp / "oauth_creds.json")
        )

    def stop(self) -> None:
        for process in reversed(self.processes):
            if process.poll() is None:
                process.terminate()
        for process in self.processes:
            try:
                process.wait(5)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(5)
        shutil.rmtree(self.tmp, ignore_errors=True)

    def targets(self) -> dict[str, Target]:
        auth = {"authorization": f"Bearer {self.client_key}", "content-type": "application/json"}
        direct = {"x-goog-api-key": UPSTREAM_KEY, "content-type": "application/json"}
        base = f"{self.fake_url}/v1beta/models/{MODEL}"
        n = self.chunks
        web = self.web_direct
        web_chat = {
            "model": WEB_MODEL,
            "messages": [{"role": "user", "content": PROMPT}],
            "stream": True,
        }
        cli_direct = {
            "authorization": f"Bearer {self.cli_token}",
            "content-type": "application/json",
        }
        wrapped = orjson.dumps({"model": MODEL, "project": "bench-project", "request": GEMINI_BODY})
        native = f"{self.url}/v1beta/models/{MODEL}"
        native_auth = {"x-goog-api-key": self.client_key, "content-type": "application/json"}
        floor_auth = {"content-type": "application/json"}  # the floor holds the upstream key
        anthropic = {
            "model": MODEL,
            "system": SYSTEM,
            "messages": [{"role": "user", "content": PROMPT}],
            "temperature": 0.7,
            "max_tokens": 256,
            "stream": True,
        }

        def gemini_sse(name: str, server: str, model: str, headers: dict[str, str]) -> Target:
            """A Gemini API SSE stream of `model` from `server`: right with all its chunks."""
            return Target(
                name,
                f"{server}/v1beta/models/{model}:streamGenerateContent?alt=sse",
                headers,
                orjson.dumps(GEMINI_BODY),
                True,
                lambda status, body: status == 200 and body.count(b"data: ") == n,
            )

        return {
            "anthropic-stream": Target(
                "anthropic",
                f"{self.url}/v1/messages",
                {**auth, "anthropic-version": "2023-06-01"},
                orjson.dumps(anthropic),
                True,
                lambda status, body: (
                    status == 200
                    and body.endswith(b'data: {"type":"message_stop"}\n\n')
                    and body.count(b"text_delta") >= n
                ),
            ),
            "native": Target(
                "native",
                f"{native}:generateContent",
                native_auth,
                orjson.dumps(GEMINI_BODY),
                False,
                lambda status, body: status == 200 and b'"candidates"' in body,
            ),
            "native-stream": gemini_sse("native", self.url, MODEL, native_auth),
            "web-gemgate-stream": Target(
                "gemgate",
                f"{self.url}/gemini_official/v1/chat/completions",
                auth,
                orjson.dumps(web_chat),
                True,
                lambda status, body: status == 200 and body.endswith(b"data: [DONE]\n\n"),
            ),
            "web-direct-stream": Target(
                "direct",
                web.url(),
                web.headers(),
                web.body(),
                True,
                lambda status, body: status == 200 and b"af.httprm" in body,
                next_url=web.url,
            ),
            "gemgate": Target(
                "gemgate",
                f"{self.url}/v1/chat/completions",
                auth,
                orjson.dumps(CHAT_BODY),
                False,
                lambda status, body: status == 200 and b'"choices"' in body,
            ),
            "floor": Target(
                "floor",
                f"{self.floor_url}/v1beta/models/{MODEL}:generateContent",
                floor_auth,
                orjson.dumps(GEMINI_BODY),
                False,
                lambda status, body: status == 200 and b'"candidates"' in body,
            ),
            "direct": Target(
                "direct",
                f"{base}:generateContent",
                direct,
                orjson.dumps(GEMINI_BODY),
                False,
                lambda status, body: status == 200 and b'"candidates"' in body,
            ),
            "gemgate-stream": Target(
                "gemgate",
                f"{self.url}/v1/chat/completions",
                auth,
                orjson.dumps({**CHAT_BODY, "stream": True}),
                True,
                lambda status, body: (
                    status == 200
                    and body.endswith(b"data: [DONE]\n\n")
                    and body.count(b"data: ") >= n
                ),
            ),
            "responses": Target(
                "responses",
                f"{self.url}/v1/responses",
                auth,
                orjson.dumps(RESPONSES_BODY),
                False,
                lambda status, body: status == 200 and b'"output_text"' in body,
            ),
            "responses-store": Target(
                "resp+store",
                f"{self.url}/v1/responses",
                auth,
                orjson.dumps({**RESPONSES_BODY, "store": True}),
                False,
                lambda status, body: status == 200 and b'"output_text"' in body,
            ),
            "responses-stream": Target(
                "responses",
                f"{self.url}/v1/responses",
                auth,
                orjson.dumps({**RESPONSES_BODY, "stream": True}),
                True,
                lambda status, body: (
                    status == 200
                    and b"event: response.completed" in body
                    and body.count(b"response.output_text.delta") >= n
                ),
            ),
            "direct-stream": gemini_sse("direct", self.fake_url, MODEL, direct),
            "paced-gemgate-stream": Target(
                "gemgate",
                f"{self.url}/v1/chat/completions",
                auth,
                orjson.dumps({**CHAT_BODY, "model": PACED_MODEL, "stream": True}),
                True,
                lambda status, body: (
                    status == 200
                    and body.endswith(b"data: [DONE]\n\n")
                    and body.count(b"data: ") >= n
                ),
            ),
            "paced-native-stream": gemini_sse("native", self.url, PACED_MODEL, native_auth),
            "floor-stream": gemini_sse("floor", self.floor_url, MODEL, floor_auth),
            "paced-floor-stream": gemini_sse("floor", self.floor_url, PACED_MODEL, floor_auth),
            "paced-direct-stream": gemini_sse("direct", self.fake_url, PACED_MODEL, direct),
            "gemgate-cli": Target(
                "gemgate",
                f"{self.url}/gemini_cli/v1/chat/completions",
                auth,
                orjson.dumps(CHAT_BODY),
                False,
                lambda status, body: status == 200 and b'"choices"' in body,
            ),
            "direct-cli": Target(
                "direct",
                f"{self.cli_fake_url}/v1internal:generateContent",
                cli_direct,
                wrapped,
                False,
                lambda status, body: status == 200 and b'"candidates"' in body,
            ),
            "gemgate-cli-stream": Target(
                "gemgate",
                f"{self.url}/gemini_cli/v1/chat/completions",
                auth,
                orjson.dumps({**CHAT_BODY, "stream": True}),
                True,
                lambda status, body: (
                    status == 200
                    and body.endswith(b"data: [DONE]\n\n")
                    and body.count(b"data: ") >= n
                ),
            ),
            "direct-cli-stream": Target(
                "direct",
                f"{self.cli_fake_url}/v1internal:streamGenerateContent?alt=sse",
                cli_direct,
                wrapped,
                True,
                lambda status, body: status == 200 and body.count(b"data: ") == n,
            ),
        }


class WebDirect:
    """What a direct StreamGenerate call needs: the page values of its own account, and a
    request counter that moves on by 100000 per request as the web app expects."""

    def __init__(self, base: str, at: str, build: str, session_id: str) -> None:
        self.base, self.at, self.build, self.session_id = base, at, build, session_id
        self.reqid = 12345

    def url(self) -> str:
        self.reqid += 100000
        query = urlencode({"hl": "en", "_reqid": self.reqid, "rt": "c", "bl": self.build,
                           "f.sid": self.session_id})  # fmt: skip
        return f"{self.base}{WEB_STREAM}?{query}"

    def body(self) -> bytes:
        inner: list[Any] = [None] * 98
        inner[0] = [PROMPT, 0, None, None, None, None, 0]
        inner[1], inner[2] = ["en"], ["", "", "", None, None, None, None, None, None, ""]
        inner[7], inner[59], inner[79], inner[80] = 1, "BENCH-REQUEST", 1, 1
        f_req = orjson.dumps([None, orjson.dumps(inner).decode()]).decode()
        return urlencode({"at": self.at, "f.req": f_req}).encode()

    def headers(self) -> dict[str, str]:
        model = [1, None, None, None, "fbb127bbb056c959", None, None, 0, [4, 5, 6, 8], None,
                 None, 1, None, None, 1, 1, "BENCH-SESSION"]  # fmt: skip
        return {
            "Content-Type": "application/x-www-form-urlencoded;charset=utf-8",
            "Cookie": f"__Secure-1PSID={WEB_DIRECT_PSID}; __Secure-1PSIDTS={WEB_PSIDTS}",
            "X-Same-Domain": "1",
            "x-goog-ext-525001261-jspb": orjson.dumps(model).decode(),
            "x-goog-ext-525005358-jspb": '["BENCH-REQUEST",1]',
        }


def web_page(base: str) -> WebDirect:
    cookie = f"__Secure-1PSID={WEB_DIRECT_PSID}; __Secure-1PSIDTS={WEB_PSIDTS}"
    request = urllib.request.Request(f"{base}/app", headers={"Cookie": cookie})
    with urllib.request.urlopen(request, timeout=10) as response:
        html = response.read().decode()

    def value(key: str) -> str:
        found = re.search(rf'"{key}":"(.*?)"', html)
        return found.group(1) if found else ""

    return WebDirect(base, value("SNlM0e"), value("cfb2h"), value("FdrFJe"))


@contextlib.contextmanager
def running(chunks: int) -> Iterator[Stack]:
    stack = Stack(chunks)
    # SIGTERM takes the Ctrl-C path: asyncio cancels the load cleanly, then we stop the rest.
    previous = signal.signal(signal.SIGTERM, lambda *_: signal.raise_signal(signal.SIGINT))
    try:
        stack.start()
        yield stack
    finally:
        stack.stop()
        signal.signal(signal.SIGTERM, previous)


# -- profiling --------------------------------------------------------------------------------


def profile(stack: Stack, seconds: float, out: Path) -> list[tuple[str, float]]:
    """py-spy record of gemgate under c=32 non-streaming load; top self-time frames."""
    py_spy = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
    if not Path(py_spy).exists():
        print("py-spy not found: skipping the profile (pip install py-spy)")
        return []
    command = [py_spy, "record", "-p", str(stack.server.pid), "-o", str(out)]
    command += ["--format", "raw", "-r", "250", "-d", str(int(seconds))]
    spy = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    stack.processes.append(spy)
    asyncio.run(drive(stack.targets()["gemgate"], 32, 0.5, seconds + 0.5))
    if spy.wait(30) != 0 or not out.exists():
        print(f"py-spy failed: {spy.stderr.read().decode().strip() if spy.stderr else ''}")
        return []
    return top_frames(out.read_text())


def top_frames(raw: str, limit: int = 15) -> list[tuple[str, float]]:
    """Self time per function (line numbers dropped) in the event-loop thread, in % of its
    samples. py-spy counts the store's idle threads as busy, so other threads go."""
    self_time: dict[str, int] = {}
    for line in raw.splitlines():
        frames, _, count = line.rpartition(" ")
        if not frames.startswith("_run_module_as_main"):
            continue
        leaf = re.sub(r":\d+\)$", ")", frames.rpartition(";")[2])
        self_time[leaf] = self_time.get(leaf, 0) + int(count)
    total = sum(self_time.values()) or 1
    top = sorted(self_time.items(), key=lambda item: -item[1])[:limit]
    return [(frame, 100 * n / total) for frame, n in top]


# -- report -----------------------------------------------------------------------------------


def derive(
    results: dict[str, Result],
    stack: Stack,
    peak_mb: float,
    streams_mb: float | None,
    floor_mb: float | None = None,
    after_run_mb: float | None = None,
) -> dict[str, float | None]:
    """The figures the targets judge. None: a row it needs was left out with --only (shown as
    skipped); NaN: the row ran but gave no sample (shown as a FAIL)."""

    def ratio(scenario: str) -> float | None:
        direct, gemgate = results.get(f"{scenario}/direct"), results.get(f"{scenario}/gemgate")
        if direct is None or gemgate is None:
            return None
        return gemgate.rps / direct.rps if direct.rps else math.nan

    def cpu(name: str) -> float | None:
        result = results.get(name)
        return None if result is None else result.cpu_ms_per_request or math.nan

    def over(a: float | None, b: float | None) -> float | None:
        return None if a is None or b is None else a / b if b else math.nan

    def added(
        name: str, value: Callable[[Result], float | None], via: str = "gemgate"
    ) -> float | None:
        """What gemgate (or the floor) adds to `value` over the direct call, one request at a
        time."""
        gemgate, direct = results.get(f"{name}/{via}"), results.get(f"{name}/direct")
        if gemgate is None or direct is None:
            return None
        a, b = (value(r) if r.requests else None for r in (gemgate, direct))
        return math.nan if a is None or b is None else a - b

    return {
        "cpu_ms_nonstream_openai": cpu("nonstream-c32/gemgate"),
        "cpu_ms_stream_openai": cpu("stream-c32/gemgate"),
        "cpu_ms_stream_anthropic": cpu("stream-c32/anthropic"),
        "cpu_ms_stream_native": cpu("stream-c32/native"),
        "cpu_ms_nonstream_native": cpu("nonstream-c32/native"),
        "cpu_ms_stream_floor": cpu("stream-c32/floor"),
        # Chunks paced as a real model sends them: per-chunk costs, not per-read ones.
        "cpu_ms_paced_stream_openai": cpu("paced-stream-c32/gemgate"),
        "cpu_ms_paced_stream_native": cpu("paced-stream-c32/native"),
        "cpu_ms_paced_stream_floor": cpu("paced-stream-c32/floor"),
        # The first chunk of a paced stream comes in a read of its own: what gemgate adds to
        # it. Unpaced, the fake's 20 chunks arrive in one read and are translated together
        # before the first goes out: `_burst` is the time to the whole first read.
        "added_ttfc_ms_c1": added("paced-stream-c1", lambda r: r.ttfc_p50_ms),
        "added_ttfc_ms_c1_floor": added("paced-stream-c1", lambda r: r.ttfc_p50_ms, "floor"),
        "added_ttfc_ms_c1_burst": added("stream-c1", lambda r: r.ttfc_p50_ms),
        "rss_mb_1000_streams": streams_mb,
        "rss_mb_1000_streams_floor": floor_mb,
        # The same on the server that ran every row before: what the load left it holding
        # (allocator pages not given back, the web channel's curl_cffi, caches) comes on top.
        "rss_mb_1000_streams_after_run": after_run_mb,
        "throughput_ratio_nonstream": ratio("nonstream-c32"),
        "throughput_ratio_stream": ratio("stream-c32"),
        "throughput_ratio_web_stream": ratio("web-stream-c32"),
        "web_stream_cpu_vs_gemini": over(cpu("web-stream-c32/gemgate"), cpu("stream-c32/gemgate")),
        "throughput_ratio_nonstream_c1": ratio("nonstream-c1"),
        "added_p50_ms_c1": added("nonstream-c1", lambda r: r.p50_ms),
        # The same through the bare relay: what uvicorn and aiohttp alone add.
        "added_p50_ms_c1_floor": added("nonstream-c1", lambda r: r.p50_ms, "floor"),
        "cpu_ms_nonstream_floor": cpu("nonstream-c32/floor"),
        "idle_rss_mb": stack.idle.get("VmRSS", 0.0),
        "idle_rss_mb_floor": stack.floor_idle.get("VmRSS", 0.0),
        "peak_rss_mb": peak_mb,
        "startup_s": stack.startup_s,
        "throughput_ratio_cli_nonstream": ratio("cli-nonstream-c32"),
        "throughput_ratio_cli_stream": ratio("cli-stream-c32"),
        "cli_cpu_ratio_nonstream": over(
            cpu("cli-nonstream-c32/gemgate"), cpu("nonstream-c32/gemgate")
        ),
        "cli_cpu_ratio_stream": over(cpu("cli-stream-c32/gemgate"), cpu("stream-c32/gemgate")),
        "responses_cpu_ratio_nonstream": over(
            cpu("nonstream-c32/responses"), cpu("nonstream-c32/gemgate")
        ),
        "responses_cpu_ratio_stream": over(cpu("stream-c32/responses"), cpu("stream-c32/gemgate")),
    }


def verdict(name: str, value: float | None) -> bool | None:
    """PASS (True) or FAIL (False) against the target, None for no target or a row not run."""
    if name not in TARGETS or value is None:
        return None
    return TARGETS[name][1](value)


def show(results: dict[str, Result], derived: dict[str, float | None]) -> None:
    head = f"{'scenario':<18}{'target':<11}{'req/s':>9}{'p50 ms':>9}{'p99 ms':>9}"
    print(
        head + f"{'ttfc p50':>10}{'ttfc p99':>10}{'cpu ms/req':>11}{'errors':>8}{'core0 other':>13}"
    )
    for r in results.values():
        ttfc = (
            f"{r.ttfc_p50_ms:>10.2f}{r.ttfc_p99_ms:>10.2f}"
            if r.ttfc_p50_ms is not None and r.ttfc_p99_ms is not None
            else f"{'-':>10}{'-':>10}"
        )
        cpu = f"{r.cpu_ms_per_request:>11.3f}" if r.cpu_ms_per_request else f"{'-':>11}"
        print(
            f"{r.scenario:<18}{r.target:<11}{r.rps:>9.0f}{r.p50_ms:>9.2f}{r.p99_ms:>9.2f}"
            f"{ttfc}{cpu}{r.errors:>8}{r.core0_other_pct:>12.0f}%"
        )
    if any(r.core0_other_pct > 10 for r in results.values()):
        print("warning: other processes used core 0; gemgate's numbers are low by that much")
    print()
    print(f"{'':<32}{'now':>12}   {'before #14':>10}   {'floor':>8}   target")
    for name, value in derived.items():
        unit = "MB" if "_mb" in name else "ms" if "_ms" in name else ""
        unit = "s" if name.endswith("_s") else unit
        percent = name.startswith(("throughput", "cli_cpu", "responses_cpu"))
        if value is None:
            shown = "-"
        else:
            shown = f"{100 * value:.1f} %" if percent else f"{value:.3f} {unit}"
        before = f"{PREVIOUS[name]:.2f}" if name in PREVIOUS else ""
        floor = derived.get(FLOORS.get(name, ""))
        passed = verdict(name, value)
        mark = "skipped" if value is None else "PASS" if passed else "FAIL"
        if passed is False and verdict(name, floor) is False:
            mark += " (floor too)"  # the stack alone misses it: nothing of gemgate's could
        shown_floor = f"{floor:.3f}" if floor is not None else ""
        shown_verdict = f"{TARGETS[name][0]:<10} {mark}" if name in TARGETS else ""
        print(f"{name:<32}{shown:>12}   {before:>10}   {shown_floor:>8}   {shown_verdict}")


async def open_streams(stack: Stack, count: int, floor: bool = False) -> float:
    """gemgate's VmRSS (MB) with `count` streams under way at once: each has had its first
    chunk and waits for the rest (the fake's slow model), as long-running answers do. With
    `floor`, the same native streams through the bare relay instead, and its VmRSS."""
    if floor:
        server = stack.floor
        url = f"{stack.floor_url}/v1beta/models/{SLOW_MODEL}:streamGenerateContent?alt=sse"
        body = orjson.dumps(GEMINI_BODY)
        headers = {"content-type": "application/json"}  # the floor holds the upstream key
    else:
        server = stack.server
        url = f"{stack.url}/v1/chat/completions"
        body = orjson.dumps({**CHAT_BODY, "model": SLOW_MODEL, "stream": True})
        headers = {
            "authorization": f"Bearer {stack.client_key}",
            "content-type": "application/json",
        }
    started = asyncio.Event()
    under_way = 0

    async def one(session: aiohttp.ClientSession) -> None:
        nonlocal under_way
        async with session.post(url, data=body, headers=headers) as resp:
            await resp.content.readany()
            under_way += 1
            if under_way == count:
                started.set()
            async for _ in resp.content.iter_any():
                pass

    connector = aiohttp.TCPConnector(limit=count)
    timeout = aiohttp.ClientTimeout(total=60)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
        tasks = [asyncio.create_task(one(session)) for _ in range(count)]
        try:
            await asyncio.wait_for(started.wait(), 30)
            await asyncio.sleep(SLOW_DELAY)  # every stream past its first chunk
            rss = proc_status(server.pid)["VmRSS"]
        except TimeoutError:
            print(f"only {under_way} of {count} streams got under way in 30 s")
            rss = 0.0
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
    return rss


def measure(args: argparse.Namespace, stack: Stack) -> dict[str, Result]:
    targets = stack.targets()
    plan = [
        ("nonstream-c1", 1, "floor", "gemgate", "direct"),
        ("stream-c1", 1, "gemgate-stream", "direct-stream"),
        ("paced-stream-c1", 1, "paced-floor-stream", "paced-gemgate-stream", "paced-direct-stream"),
        (
            "nonstream-c32",
            32,
            "floor",
            "native",
            "responses-store",
            "responses",
            "gemgate",
            "direct",
        ),
        (
            "stream-c32",
            32,
            "floor-stream",
            "native-stream",
            "anthropic-stream",
            "responses-stream",
            "gemgate-stream",
            "direct-stream",
        ),
        (
            "paced-stream-c32",
            32,
            "paced-floor-stream",
            "paced-native-stream",
            "paced-gemgate-stream",
            "paced-direct-stream",
        ),
        ("web-stream-c32", 32, "web-gemgate-stream", "web-direct-stream"),
        ("cli-nonstream-c32", 32, "gemgate-cli", "direct-cli"),
        ("cli-stream-c32", 32, "gemgate-cli-stream", "direct-cli-stream"),
    ]
    results: dict[str, Result] = {}
    for scenario, concurrency, *names in plan:
        if args.only and scenario not in args.only:
            continue
        for name in reversed(names):  # direct first, then gemgate
            target = targets[name]
            server = stack.floor if target.name == "floor" else stack.server
            cpu_before = cpu_seconds(server.pid)
            core_before, began = core_busy_seconds(GEMGATE_CORE), time.perf_counter()
            result = asyncio.run(drive(target, concurrency, args.warmup, args.duration))
            cpu = cpu_seconds(server.pid) - cpu_before
            other = core_busy_seconds(GEMGATE_CORE) - core_before - cpu
            result.core0_other_pct = max(0.0, 100 * other / (time.perf_counter() - began))
            if target.name != "direct" and result.requests:
                # Warm-up requests cost CPU too: spread it over every request of the run.
                total = result.requests * (args.warmup + args.duration) / args.duration
                result.cpu_ms_per_request = 1000 * cpu / total
            result.scenario = scenario
            results[f"{scenario}/{target.name}"] = result
            print(f"  {scenario:<15}{target.name:<9}{result.rps:>8.0f} req/s", flush=True)
    return results


def tree_cpu_seconds(pid: int) -> float:
    """CPU time of a process and every process under it (a server and its workers)."""
    total = cpu_seconds(pid)
    for task in Path(f"/proc/{pid}/task").iterdir():
        for child in (task / "children").read_text().split():
            total += tree_cpu_seconds(int(child))
    return total


@dataclass
class WorkersRig:
    """What the worker rows ran on, and each round's figures."""

    load: str  # "wrk", or "aiohttp" (this script) when wrk is not installed
    upstream: str  # "nginx", or "fake" (tests/fakes/gemini_api.py) when nginx is not installed
    rounds: list[dict[str, float]] = field(default_factory=list)


@dataclass
class WorkersRun:
    """One load on a `gemgate serve --workers N`, with where the CPU went meanwhile."""

    result: Result
    gemgate_cpu: float  # seconds, the parent and its workers
    rig_cpu: float  # seconds, the load generator and the upstream
    busy: float  # seconds both cores were busy, with anything
    answered: float  # the requests that CPU went to
    seconds: float  # the time it went by in

    @property
    def other_cpu(self) -> float:
        """Seconds of CPU that went to other work on the machine."""
        return max(0.0, self.busy - self.gemgate_cpu - self.rig_cpu)

    def ms(self, cpu: float) -> float:
        return 1000 * cpu / self.answered if self.answered else 0.0

    def cores(self, cpu: float) -> float:
        return cpu / self.seconds if self.seconds else 0.0


def fake_answer(stack: Stack) -> bytes:
    """The fake's own generateContent answer to the bench conversation, for nginx to repeat:
    the gateway's decoder sees from nginx exactly what it sees from the fake."""
    request = urllib.request.Request(
        f"{stack.fake_url}/v1beta/models/{MODEL}:generateContent",
        data=orjson.dumps(GEMINI_BODY),
        headers={"x-goog-api-key": UPSTREAM_KEY, "content-type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        return bytes(response.read())


def measure_workers(args: argparse.Namespace, stack: Stack) -> tuple[dict[str, Result], WorkersRig]:
    """Non-streaming c=32 through a second `gemgate serve` on the same store, free to run on
    both cores, with 1 worker and with `--workers 2`, in `--worker-rounds` interleaved rounds
    (the better run of each counts; each round's ratio is kept too).

    With wrk and nginx installed, wrk is the load and nginx the upstream, repeating the fake's
    answer: together a few tens of µs per request, so the two cores go to gemgate and the raw
    req/s ratio is gemgate's own. Without them (each falls back on its own), this script's
    aiohttp load and the Python fake share core 1 with the second worker and hold the raw ratio
    down; CPU per request still shows what the workers would give on cores of their own. Either
    way the load and the upstream stay on core 1, as this script does."""
    tools = wrk_nginx.available()
    rig = WorkersRig("wrk" if tools["wrk"] else "aiohttp", "nginx" if tools["nginx"] else "fake")
    port = free_port()
    chat = stack.targets()["gemgate"]
    target = Target(
        chat.name, chat.url.replace(stack.url, f"http://127.0.0.1:{port}"),
        chat.headers, chat.body, chat.stream, chat.check,
    )  # fmt: skip
    script = None
    if rig.load == "wrk":
        script = wrk_nginx.wrk_script(stack.tmp, "workers", chat.body, chat.headers, '"choices"')
    with contextlib.ExitStack() as cleanup:
        env, upstream_pid = stack.env, stack.fake.pid
        if rig.upstream == "nginx":
            nginx_port = free_port()
            nginx = cleanup.enter_context(
                wrk_nginx.nginx_upstream(
                    stack.tmp, nginx_port, MODEL, UPSTREAM_KEY, fake_answer(stack)
                )
            )
            env = env | {"GEMGATE_GEMINI_API_BASE": f"http://127.0.0.1:{nginx_port}"}
            upstream_pid = nginx.pid

        def busy() -> float:
            return core_busy_seconds(GEMGATE_CORE) + core_busy_seconds(CLIENT_CORE)

        def load(server: subprocess.Popen[bytes]) -> WorkersRun:
            """One measured load on `server`."""
            if script is None:
                cpu, own, upstream = (
                    tree_cpu_seconds(server.pid), cpu_seconds(os.getpid()),
                    tree_cpu_seconds(upstream_pid),
                )  # fmt: skip
                both, began = busy(), time.perf_counter()
                result = asyncio.run(drive(target, 32, args.warmup, args.duration))
                # CPU covers the warm-up too: spread it over every request of the run.
                answered = result.requests * (args.warmup + args.duration) / args.duration
                return WorkersRun(
                    result, tree_cpu_seconds(server.pid) - cpu,
                    cpu_seconds(os.getpid()) - own + tree_cpu_seconds(upstream_pid) - upstream,
                    busy() - both, answered, time.perf_counter() - began,
                )  # fmt: skip
            if round(args.warmup):  # not counted: wrk has no warm-up of its own
                wrk_nginx.wrk_run(script, target.url, 32, round(args.warmup))
            cpu, upstream, both = (
                tree_cpu_seconds(server.pid),
                tree_cpu_seconds(upstream_pid),
                busy(),
            )
            run = wrk_nginx.wrk_run(script, target.url, 32, max(1, round(args.duration)))
            result = Result(
                "", "", 32, run.seconds, requests=run.good, errors=run.errors,
                rps=run.good / run.seconds, p50_ms=run.p50_ms, p99_ms=run.p99_ms,
            )  # fmt: skip
            return WorkersRun(
                result, tree_cpu_seconds(server.pid) - cpu,
                run.cpu_s + tree_cpu_seconds(upstream_pid) - upstream,
                busy() - both, run.answers, run.seconds,  # bad answers cost CPU too
            )  # fmt: skip

        def one_run(workers: int) -> WorkersRun:
            """A fresh `gemgate serve --workers N`, loaded once."""
            server = subprocess.Popen(
                ["taskset", "-c", f"{GEMGATE_CORE},{CLIENT_CORE}", sys.executable, "-m",
                 "gemgate", "serve", "--port", str(port), "--workers", str(workers)],
                cwd=ROOT, env=env, stdout=(stack.tmp / f"workers-{workers}.log").open("wb"),
                stderr=subprocess.STDOUT, start_new_session=True,
            )  # fmt: skip
            try:
                wait_http(f"http://127.0.0.1:{port}/healthz", server)
                time.sleep(1.0 * workers)  # every worker up, not only the first
                run = load(server)
            finally:
                server.terminate()
                server.wait(30)
            result = run.result
            result.cpu_ms_per_request = run.ms(run.gemgate_cpu) or None
            result.scenario = "nonstream-c32"
            result.target = f"{workers} worker" + "s" * (workers > 1)
            print(
                f"  {'nonstream-c32':<15}{result.target:<9}{result.rps:>8.0f} req/s"
                f"{result.errors:>6} errors   gemgate {run.ms(run.gemgate_cpu):.3f} ms/req"
                f" ({run.cores(run.gemgate_cpu):.2f} cores)   {rig.load}+{rig.upstream}"
                f" {run.ms(run.rig_cpu):.3f} ms/req ({run.cores(run.rig_cpu):.2f})"
                f"   other work {run.cores(run.other_cpu):.2f} cores",
                flush=True,
            )
            return run

        results: dict[str, Result] = {}
        for number in range(1, args.worker_rounds + 1):
            figures: dict[str, float] = {"round": number}
            runs = {workers: one_run(workers) for workers in (1, 2)}
            for workers, run in runs.items():
                figures[f"rps_{workers}"] = run.result.rps
                figures[f"errors_{workers}"] = run.result.errors
                figures[f"cpu_ms_{workers}"] = run.ms(run.gemgate_cpu)
                figures[f"cores_{workers}"] = run.cores(run.gemgate_cpu)
                figures[f"load_upstream_cpu_ms_{workers}"] = run.ms(run.rig_cpu)
                figures[f"other_work_cores_{workers}"] = run.cores(run.other_cpu)
                best = results.get(f"workers-{workers}")
                if best is None or run.result.rps > best.rps:
                    results[f"workers-{workers}"] = run.result
            figures["ratio"] = figures["rps_2"] / figures["rps_1"] if figures["rps_1"] else 0.0
            rig.rounds.append(figures)
            print(f"  round {number}: 2 workers / 1 worker = {figures['ratio']:.2f}x", flush=True)
            other = max(figures["other_work_cores_1"], figures["other_work_cores_2"])
            if other > 0.15:
                print(f"  warning: other work on the machine took up to {other:.2f} cores")
            elif figures["cores_1"] < 0.85:
                # One worker that does not fill its core was held back by something else (the
                # load or the upstream, say): the ratio overstates what the workers give.
                print(f"  warning: 1 worker used only {figures['cores_1']:.2f} of a core")
    return results, rig


def workers_note(rig: WorkersRig) -> str:
    where = (
        "workers rows: load from wrk, upstream nginx (both on core 1, a few tens of us per"
        "\nrequest together): the two cores go to gemgate, so throughput_ratio_workers2 is"
        "\ngemgate's own"
    )
    used = {"wrk": rig.load == "wrk", "nginx": rig.upstream == "nginx"}
    missing = [name for name, there in used.items() if not there]
    if missing:
        where = (
            f"workers rows: load from {'wrk' if rig.load == 'wrk' else 'this script (aiohttp)'},"
            f" upstream {'nginx' if rig.upstream == 'nginx' else 'the Python fake'}, on core 1"
            f"\nwith gemgate's second worker ({' and '.join(missing)} not installed: apt-get"
            " install wrk nginx);\nthey hold throughput_ratio_workers2 down on a 2-core machine"
        )
    return (
        where + "\nthroughput_ratio_workers2_by_cpu (2 cores over 2 workers' CPU per request,"
        " against 1 core\nover 1 worker's) is the ratio when the workers have cores of their own"
    )


def workers_derived(results: dict[str, Result]) -> dict[str, float | None]:
    one, two = results.get("workers-1"), results.get("workers-2")
    if one is None or two is None:  # left out with --only
        return {"throughput_ratio_workers2": None, "throughput_ratio_workers2_by_cpu": None}
    return {
        "throughput_ratio_workers2": two.rps / one.rps if one.rps else math.nan,
        # Cores over CPU seconds per request, 2 workers on 2 cores against 1 worker on the one
        # core it can use: the throughput ratio when the workers have the cores to themselves.
        "throughput_ratio_workers2_by_cpu": (
            2 * (one.cpu_ms_per_request or math.nan) / (two.cpu_ms_per_request or math.nan)
        ),
    }


def run(args: argparse.Namespace) -> None:
    load = os.getloadavg()[0]
    if load > 0.5:
        print(f"warning: load average {load:.2f} before start; other work skews the numbers")
    with running(args.chunks) as stack:
        print(f"gemgate up in {stack.startup_s:.2f}s, idle RSS {stack.idle['VmRSS']:.1f} MB")
        results = measure(args, stack)
        streams_mb: float | None = None
        floor_mb: float | None = None
        after_run_mb: float | None = None
        peak = proc_status(stack.server.pid)["VmHWM"]
        if not args.only or "streams" in args.only:
            after_run_mb = asyncio.run(open_streams(stack, OPEN_STREAMS))
            print(f"  {OPEN_STREAMS} open streams after the rows: gemgate {after_run_mb:.1f} MB")
            peak = proc_status(stack.server.pid)["VmHWM"]
            stack.restart_server()
            streams_mb = asyncio.run(open_streams(stack, OPEN_STREAMS))
            print(f"  {OPEN_STREAMS} open streams, fresh: gemgate {streams_mb:.1f} MB", flush=True)
            floor_mb = asyncio.run(open_streams(stack, OPEN_STREAMS, floor=True))
            print(f"  {OPEN_STREAMS} open streams: floor RSS {floor_mb:.1f} MB", flush=True)
        rig: WorkersRig | None = None
        if not args.only or "workers" in args.only:
            workers, rig = measure_workers(args, stack)
            results |= workers
        hot: list[tuple[str, float]] = []
        if args.profile:
            RESULTS.mkdir(parents=True, exist_ok=True)
            hot = profile(stack, args.duration, RESULTS / "profile-nonstream-c32.txt")
    derived = derive(results, stack, peak, streams_mb, floor_mb, after_run_mb)
    derived |= workers_derived(results)
    print()
    show(results, derived)
    if rig is not None:
        print(workers_note(rig))
    if hot:
        print("\ngemgate self time under c=32 non-streaming load (py-spy, % of samples):")
        for frame, share in hot:
            print(f"{share:6.1f} %  {frame}")
    RESULTS.mkdir(parents=True, exist_ok=True)
    report = {
        "when": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "python": platform.python_version(),
        "load_average_before": load,
        "cores": {"gemgate": GEMGATE_CORE, "fake_and_client": CLIENT_CORE},
        "settings": {**vars(args), "only": sorted(args.only)},
        "results": [
            {k: v for k, v in asdict(r).items() if k not in ("latencies", "ttfcs")}
            for r in results.values()
        ],
        "derived": derived,
        # pass: null for a target whose rows were left out with --only
        "targets": {
            name: {
                "target": TARGETS[name][0],
                "pass": verdict(name, derived.get(name)),
                "floor": derived.get(FLOORS.get(name, "")),
                "floor_pass": verdict(name, derived.get(FLOORS.get(name, ""))),
            }
            for name in TARGETS
        },
        "workers_rig": asdict(rig) if rig is not None else None,
        "profile_top_self": hot,
    }
    (RESULTS / "latest.json").write_bytes(orjson.dumps(report, option=orjson.OPT_INDENT_2))
    print(f"\nwrote {(RESULTS / 'latest.json').relative_to(ROOT)}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--duration", type=float, default=6.0, help="measured seconds per run")
    parser.add_argument("--warmup", type=float, default=1.0, help="unmeasured seconds first")
    parser.add_argument("--chunks", type=int, default=20, help="chunks per streamed answer")
    parser.add_argument("--profile", action="store_true", help="py-spy gemgate at c=32 after")
    parser.add_argument(
        "--only",
        type=lambda value: set(value.split(",")),
        default=set(),
        help="comma-separated scenarios to run (e.g. stream-c32,streams); default: all",
    )
    parser.add_argument(
        "--worker-rounds", type=int, default=3, help="interleaved 1- and 2-worker runs"
    )
    args = parser.parse_args()
    if not 1 <= args.duration <= 60 or not 0 <= args.warmup <= 10:
        parser.error("--duration must be 1-60 s and --warmup 0-10 s")
    if not 1 <= args.worker_rounds <= 10:
        parser.error("--worker-rounds must be 1-10")
    if shutil.which("taskset") is None or len(os.sched_getaffinity(0)) < 2:
        parser.error("needs taskset and at least two cores")
    os.sched_setaffinity(0, {CLIENT_CORE})  # the load generator shares core 1 with the fake
    with contextlib.suppress(ImportError):
        import uvloop

        asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    try:
        run(args)
    except KeyboardInterrupt:
        print("\ninterrupted; processes stopped")
        sys.exit(130)


if __name__ == "__main__":
    main()
