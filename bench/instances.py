"""What sharing state through Redis costs, and what two instances give, measured in one run.

Three set-ups against the same fake Gemini API, each with a client key that has request and
token limits (so every request is admitted through the limits, the path Redis changes):

- `one`:         one gemgate, no Redis (limits held in the process);
- `one+redis`:   one gemgate with GEMGATE_REDIS_URL (one script call per request);
- `two+redis`:   two gemgates on one store and one Redis, the load split between them.

    .venv/bin/python bench/instances.py [--duration 5] [--redis redis://127.0.0.1:6379/0]

On a 2-core machine the two instances share core 0 (the fake and the load generator have core
1), so `two+redis` shows the cost of coordination, not the gain of a second core; on a bigger
machine give each instance its own core with --cores.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import secrets
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import orjson

sys.path.insert(0, str(Path(__file__).resolve().parent))
from overhead import (
    CHAT_BODY,
    CLIENT_CORE,
    ROOT,
    UPSTREAM_KEY,
    Result,
    Target,
    cpu_seconds,
    drive,
    free_port,
    wait_http,
)


class Setup:
    """The fake and `instances` gemgates on one SQLite store, with or without Redis."""

    def __init__(self, instances: int, redis_url: str | None, cores: list[int]) -> None:
        self.tmp = Path(tempfile.mkdtemp(prefix="gemgate-instances-"))
        self.fake_port = free_port()
        self.ports = [free_port() for _ in range(instances)]
        self.cores = cores
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("GEMGATE_")} | {
            "GEMGATE_DATA_DIR": str(self.tmp / "data"),
            "GEMGATE_GEMINI_API_BASE": f"http://127.0.0.1:{self.fake_port}",
            "GEMGATE_LOG_LEVEL": "warning",
        }
        if redis_url:
            self.env["GEMGATE_REDIS_URL"] = redis_url
            self.env["GEMGATE_REDIS_NAMESPACE"] = "bench-" + secrets.token_hex(4)
        self.processes: list[subprocess.Popen[bytes]] = []
        self.servers: list[subprocess.Popen[bytes]] = []
        self.key = ""

    def _spawn(self, core: int, *args: str, env: dict[str, str]) -> subprocess.Popen[bytes]:
        process = subprocess.Popen(
            ["taskset", "-c", str(core), sys.executable, *args],
            cwd=ROOT,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        self.processes.append(process)
        return process

    def start(self) -> None:
        def cli(*args: str) -> str:
            out = subprocess.run(
                [sys.executable, "-m", "gemgate", *args],
                env=self.env,
                capture_output=True,
                text=True,
                check=True,
                timeout=60,
            )
            return out.stdout.strip().splitlines()[-1]

        limits = ("--rpm", "1000000", "--tpm", "1000000000")
        self.key = cli("keys", "create", "--name", "bench", *limits)
        cli("credentials", "add", "gemini", "--api-key", UPSTREAM_KEY)
        fake = self._spawn(
            CLIENT_CORE,
            *("-m", "tests.fakes.gemini_api", "--port", str(self.fake_port)),
            *("--keys", UPSTREAM_KEY),
            env=self.env,
        )
        wait_http(f"http://127.0.0.1:{self.fake_port}/v1beta/models?key={UPSTREAM_KEY}", fake)
        for i, port in enumerate(self.ports):
            env = self.env | {"GEMGATE_PORT": str(port)}
            server = self._spawn(self.cores[i % len(self.cores)], "-m", "gemgate", "serve", env=env)
            wait_http(f"http://127.0.0.1:{port}/healthz", server)
            self.servers.append(server)
        time.sleep(0.5)

    def stop(self) -> None:
        for process in reversed(self.processes):
            if process.poll() is None:
                process.terminate()
        for process in self.processes:
            try:
                process.wait(5)
            except subprocess.TimeoutExpired:
                process.kill()
        shutil.rmtree(self.tmp, ignore_errors=True)

    def target(self, port: int) -> Target:
        return Target(
            f"gemgate:{port}",
            f"http://127.0.0.1:{port}/v1/chat/completions",
            {"authorization": f"Bearer {self.key}", "content-type": "application/json"},
            orjson.dumps(CHAT_BODY),
            False,
            lambda status, body: status == 200 and b'"choices"' in body,
        )


async def load(setup: Setup, concurrency: int, warmup: float, duration: float) -> list[Result]:
    """`concurrency` workers in all, split evenly over the instances."""
    share = max(1, concurrency // len(setup.ports))
    return list(
        await asyncio.gather(
            *(drive(setup.target(p), share, warmup, duration) for p in setup.ports)
        )
    )


def measure(name: str, setup: Setup, args: argparse.Namespace) -> dict[str, float]:
    cpu_before = sum(cpu_seconds(s.pid) for s in setup.servers)
    c32 = asyncio.run(load(setup, 32, args.warmup, args.duration))
    cpu = sum(cpu_seconds(s.pid) for s in setup.servers) - cpu_before
    c1 = asyncio.run(load(setup, 1, args.warmup, args.duration)) if len(setup.ports) == 1 else []
    requests = sum(r.requests for r in c32)
    return {
        "rps_c32": requests / args.duration,
        "errors": float(sum(r.errors for r in c32 + c1)),
        "cpu_ms_per_req": 1000 * cpu / requests if requests else 0.0,
        "p50_ms_c1": c1[0].p50_ms if c1 else 0.0,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--duration", type=float, default=5.0)
    parser.add_argument("--warmup", type=float, default=1.0)
    parser.add_argument("--redis", default="redis://127.0.0.1:6379/0")
    parser.add_argument("--cores", default="0", help="comma-separated cores for the instances")
    args = parser.parse_args()
    cores = [int(c) for c in args.cores.split(",")]
    rows: dict[str, dict[str, float]] = {}
    for name, instances, redis_url in (
        ("one", 1, None),
        ("one+redis", 1, args.redis),
        ("two+redis", 2, args.redis),
    ):
        setup = Setup(instances, redis_url, cores)
        try:
            setup.start()
            rows[name] = measure(name, setup, args)
        finally:
            setup.stop()
    print(f"{'set-up':<12} {'req/s c=32':>11} {'cpu ms/req':>11} {'p50 ms c=1':>11} {'errors':>7}")
    for name, row in rows.items():
        print(
            f"{name:<12} {row['rps_c32']:>11.0f} {row['cpu_ms_per_req']:>11.3f} "
            f"{row['p50_ms_c1']:>11.2f} {row['errors']:>7.0f}"
        )
    base = rows["one"]
    print(
        f"Redis adds {rows['one+redis']['cpu_ms_per_req'] - base['cpu_ms_per_req']:.3f} ms CPU "
        f"and {rows['one+redis']['p50_ms_c1'] - base['p50_ms_c1']:.2f} ms p50 per limited "
        f"request; two instances with Redis give "
        f"{rows['two+redis']['rps_c32'] / base['rps_c32']:.0%} of one without"
    )


if __name__ == "__main__":
    main()
