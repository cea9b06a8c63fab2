"""Which HTTP server and which upstream client cost gemgate the least CPU, measured, not taken
on reputation (#14). Two comparisons, each in one run:

- servers: the same gemgate app under uvicorn (httptools, uvloop; what `gemgate serve` runs)
  and under granian (Rust, ASGI), each alone on core 0, driven by the same load as
  bench/overhead.py: gemgate's CPU per request, non-streaming and 20-chunk streams;
- clients: aiohttp (what the channels use) against the Rust-based pyreqwest and rnet, calling
  the fake Gemini API directly: the client's CPU per call, unary and streamed.

    .venv/bin/pip install granian pyreqwest rnet   # not dependencies of gemgate
    .venv/bin/python bench/stacks.py [--calls 3000]

A stack that is not installed is skipped. See bench/README.md for the last figures.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import importlib.util
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import orjson

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench import overhead as o

# The app under granian: built from GEMGATE_* settings, as `gemgate serve` builds it.
_GRANIAN_FACTORY = """
from gemgate.app import build_app
from gemgate.config import Settings

def make():
    return build_app(Settings.load())
"""


def tree_cpu(pid: int) -> float:
    """CPU seconds of a process and its children (granian serves from a worker process)."""
    children = subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True).stdout
    total = 0.0
    for each in [pid, *map(int, children.split())]:
        with contextlib.suppress(OSError):  # a child that just ended
            total += o.cpu_seconds(each)
    return total


def servers(duration: float) -> None:
    granian = shutil.which("granian") or str(Path(sys.executable).with_name("granian"))
    if not Path(granian).exists():
        print("granian is not installed: skipping the server comparison")
        return
    factory_dir = Path(tempfile.mkdtemp(prefix="gemgate-granian-"))
    (factory_dir / "gemgate_granian.py").write_text(_GRANIAN_FACTORY)
    with o.running(20) as stack:
        port = o.free_port()
        command = [granian, "--interface", "asgi", "--factory", "--loop", "uvloop"]
        command += ["--host", "127.0.0.1", "--port", str(port), "--log-level", "warning"]
        process = subprocess.Popen(
            ["taskset", "-c", str(o.GEMGATE_CORE), *command, "gemgate_granian:make"],
            env={**stack.env, "PYTHONPATH": str(factory_dir)},
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        stack.processes.append(process)
        o.wait_http(f"http://127.0.0.1:{port}/healthz", process)
        served = {"uvicorn": (stack.server.pid, stack.url)}
        served["granian"] = (process.pid, f"http://127.0.0.1:{port}")
        targets = stack.targets()
        print(f"{'server':<10}{'scenario':<16}{'req/s':>8}{'cpu ms/req':>12}")
        for _ in range(2):  # interleaved rounds: drift on the machine hits both alike
            for name in ("gemgate", "gemgate-stream"):
                for server, (pid, url) in served.items():
                    target = dataclasses.replace(
                        targets[name], url=targets[name].url.replace(stack.url, url)
                    )
                    before = tree_cpu(pid)
                    result = asyncio.run(o.drive(target, 32, 1.0, duration))
                    spent = tree_cpu(pid) - before
                    per = 1000 * spent / max(1, result.requests * (1.0 + duration) / duration)
                    print(f"{server:<10}{name:<16}{result.rps:>8.0f}{per:>12.3f}", flush=True)
    shutil.rmtree(factory_dir, ignore_errors=True)


Call = Callable[[], Awaitable[None]]


async def _cpu_per_call(call: Call, calls: int) -> float:
    """The client process's CPU per call, 32 at a time, best of three rounds."""
    limit = asyncio.Semaphore(32)

    async def one() -> None:
        async with limit:
            await call()

    for _ in range(100):
        await call()
    best = float("inf")
    for _ in range(3):
        began = time.process_time()
        await asyncio.gather(*(one() for _ in range(calls)))
        best = min(best, (time.process_time() - began) / calls)
    return 1000 * best


async def _clients(base: str, calls: int) -> None:
    import aiohttp

    unary = f"{base}/v1beta/models/{o.MODEL}:generateContent"
    stream = f"{base}/v1beta/models/{o.MODEL}:streamGenerateContent?alt=sse"
    body = orjson.dumps(o.GEMINI_BODY)
    headers = {"x-goog-api-key": o.UPSTREAM_KEY, "content-type": "application/json"}
    found: dict[str, tuple[Call, Call]] = {}

    session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0))

    async def aiohttp_unary() -> None:
        async with session.post(unary, data=body, headers=headers) as response:
            assert response.status == 200 and b"candidates" in await response.read()

    async def aiohttp_stream() -> None:
        async with session.post(stream, data=body, headers=headers) as response:
            async for _ in response.content.iter_any():
                pass

    found["aiohttp"] = (aiohttp_unary, aiohttp_stream)
    if importlib.util.find_spec("pyreqwest"):
        from pyreqwest.client import ClientBuilder

        client = ClientBuilder().build()

        async def pyreqwest_unary() -> None:
            response = await client.post(unary).headers(headers).body_bytes(body).build().send()
            assert response.status == 200 and b"candidates" in bytes(await response.bytes())

        async def pyreqwest_stream() -> None:
            request = client.post(stream).headers(headers).body_bytes(body).build_streamed()
            async with request as response:
                while await response.body_reader.read_chunk() is not None:
                    pass

        found["pyreqwest"] = (pyreqwest_unary, pyreqwest_stream)
    if importlib.util.find_spec("rnet"):
        import rnet

        rclient = rnet.Client()

        async def rnet_unary() -> None:
            response = await rclient.post(unary, headers=headers, body=body)
            assert b"candidates" in bytes(await response.bytes())

        async def rnet_stream() -> None:
            response = await rclient.post(stream, headers=headers, body=body)
            async with response.stream() as chunks:
                async for _ in chunks:
                    pass

        found["rnet"] = (rnet_unary, rnet_stream)
    print(f"{'client':<12}{'unary cpu ms':>14}{'20-chunk stream cpu ms':>24}")
    for name, (unary_call, stream_call) in found.items():
        one = await _cpu_per_call(unary_call, calls)
        streamed = await _cpu_per_call(stream_call, calls // 2)
        print(f"{name:<12}{one:>14.3f}{streamed:>24.3f}", flush=True)
    await session.close()


def clients(calls: int) -> None:
    port = o.free_port()
    command = [sys.executable, "-m", "tests.fakes.gemini_api", "--port", str(port)]
    command += ["--keys", o.UPSTREAM_KEY, "--chunks", "20"]
    fake = subprocess.Popen(
        ["taskset", "-c", str(o.CLIENT_CORE), *command],
        cwd=o.ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        base = f"http://127.0.0.1:{port}"
        o.wait_http(f"{base}/v1beta/models?key={o.UPSTREAM_KEY}", fake)
        os.sched_setaffinity(0, {o.GEMGATE_CORE})  # the client alone on core 0
        import uvloop

        uvloop.run(_clients(base, calls))
    finally:
        fake.terminate()
        try:
            fake.wait(10)
        except subprocess.TimeoutExpired:
            fake.kill()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--duration", type=float, default=4.0, help="seconds per server run")
    parser.add_argument("--calls", type=int, default=3000, help="calls per client round")
    args = parser.parse_args()
    os.sched_setaffinity(0, {o.CLIENT_CORE})
    servers(args.duration)
    print()
    clients(args.calls)


if __name__ == "__main__":
    main()
