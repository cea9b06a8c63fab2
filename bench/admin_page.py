"""The admin page's first paint with a big installation: 500 credentials and 100,000 usage
records (30 days, 40 keys, 6 models). Fills a throwaway store, starts a real `gemgate serve`,
logs in with Debian's chromium (Playwright) and loads each page several times, reporting the
server's answer time and the browser's first contentful paint (median and worst).

    .venv/bin/python bench/admin_page.py [--credentials 500] [--records 100000] [--loads 10]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.harness import free_port  # noqa: E402

from gemgate.config import Settings  # noqa: E402
from gemgate.services import keys as key_service  # noqa: E402
from gemgate.store import Store  # noqa: E402

TOKEN = "bench-admin-token-0123456789"
MODELS = [
    "gemini-2.5-flash",
    "gemini-2.5-pro",
    "gemini-2.5-flash-lite",
    "gemini-3-pro-preview",
    "gemini-3-flash-preview",
    "gemini-2.5-flash-image",
]
# The server's answer time and the first contentful paint, waiting for the paint entry: under
# load it is recorded a little after the load event.
FIRST_PAINT = """() => new Promise(resolve => {
  const nav = performance.getEntriesByType('navigation')[0];
  const done = paint => resolve([nav.responseStart - nav.requestStart, paint]);
  new PerformanceObserver(list => {
    const fcp = list.getEntries().find(e => e.name === 'first-contentful-paint');
    if (fcp) done(fcp.startTime);
  }).observe({type: 'paint', buffered: true});
  setTimeout(() => done(null), 5000);
})"""
PAGES = [
    "/admin/",
    "/admin/credentials/new",
    "/admin/usage",
    "/admin/usage?by=model&bucket=hour&span=48h",
    "/admin/keys",
    "/admin/errors",
]


async def fill(data_dir: Path, credentials: int, records: int) -> None:
    # As `gemgate serve` will open it: the same data folder, so the same secret key.
    store = Store.from_settings(Settings(data_dir=data_dir))
    await store.open(create=True)
    rng = random.Random(7)
    key_ids = []
    for i in range(40):
        record, _ = await key_service.create(store, f"team-{i:02d}", rpm=600 if i % 3 else None)
        key_ids.append(record.id)
    for i in range(credentials):
        # All three channels, as the board draws each a little differently (quota, secrets).
        channel, secret = _credential(i)
        record = await store.add_credential(
            channel=channel, label=f"project-{i:03d}", secret=secret
        )
        if i % 17 == 0:
            await store.update_credential(
                record.id,
                status="invalid",
                status_reason="HTTP 400 INVALID_ARGUMENT: API key not valid.",
            )
    now = time.time()
    rows = []
    for _ in range(records):
        prompt, output = rng.randint(50, 4000), rng.randint(10, 2000)
        rows.append(
            {
                "key_id": rng.choice(key_ids),
                "channel": "gemini",
                "model": rng.choice(MODELS),
                "endpoint": "chat",
                "status": 200 if rng.random() > 0.03 else 429,
                "prompt_tokens": prompt,
                "output_tokens": output,
                "thought_tokens": 0,
                "total_tokens": prompt + output,
                "created_at": now - rng.random() * 30 * 86400,
            }
        )
    # Oldest first, as a running gateway writes them.
    rows.sort(key=lambda r: r["created_at"])
    for start in range(0, len(rows), 5000):
        await store.add_usage(rows[start : start + 5000])
    await store.close()


def _credential(i: int) -> tuple[str, dict[str, object]]:
    if i % 5 == 1:
        return "gemini_cli", {
            "refresh_token": f"1//0gBench{i:040d}",
            "access_token": f"ya29.Bench{i:060d}",
            "expiry": time.time() + 3000,
            "email": f"account-{i:03d}@example.com",
            "project_id": f"proj-{i:03d}",
            "tier": "standard-tier",
        }
    if i % 5 == 2:
        return "gemini_official", {
            "psid": f"g.a000Bench{i:060d}",
            "psidts": f"sidts-Bench{i:040d}",
            "cookies": {"NID": "511=bench"},
        }
    return "gemini", {"api_key": f"AIzaBench{i:030d}"}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--credentials", type=int, default=500)
    parser.add_argument("--records", type=int, default=100_000)
    parser.add_argument("--loads", type=int, default=10)
    args = parser.parse_args()
    from playwright.sync_api import sync_playwright

    with tempfile.TemporaryDirectory(prefix="gemgate-admin-bench-") as tmp:
        data_dir = Path(tmp)
        started = time.perf_counter()
        asyncio.run(fill(data_dir, args.credentials, args.records))
        print(
            f"filled the store in {time.perf_counter() - started:.1f}s: "
            f"{args.credentials} credentials, {args.records} usage records"
        )
        port = free_port()
        env = {k: v for k, v in os.environ.items() if not k.startswith("GEMGATE_")} | {
            "GEMGATE_DATA_DIR": str(data_dir),
            "GEMGATE_ADMIN_TOKEN": TOKEN,
            # Nothing listens there: the page must not wait on any upstream.
            "GEMGATE_GEMINI_API_BASE": "http://127.0.0.1:9",
        }
        log = (data_dir / "server.log").open("wb")
        server = subprocess.Popen(
            [sys.executable, "-m", "gemgate", "serve", "--port", str(port)],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        base = f"http://127.0.0.1:{port}"
        try:
            with sync_playwright() as driver:
                browser = driver.chromium.launch(executable_path="/usr/bin/chromium")
                page = browser.new_page(viewport={"width": 1360, "height": 860})
                for _ in range(100):
                    try:
                        page.goto(base + "/admin/login")
                        break
                    except Exception:
                        time.sleep(0.1)
                page.fill("#token", TOKEN)
                page.click("button.primary")
                print(
                    f"{'page':<48} {'first load':>10} {'server p50':>11} {'max':>8}"
                    f" {'paint p50':>10} {'max':>8}"
                )
                for path in PAGES:
                    served, painted = [], []
                    for _ in range(args.loads):
                        page.goto(base + path)
                        timing = page.evaluate(FIRST_PAINT)
                        served.append(timing[0])
                        if timing[1] is not None:
                            painted.append(timing[1])
                    print(
                        f"{path:<48} {painted[0]:>8.0f}ms"
                        f" {statistics.median(served):>9.0f}ms {max(served):>6.0f}ms"
                        f" {statistics.median(painted):>8.0f}ms {max(painted):>6.0f}ms"
                    )
                browser.close()
        finally:
            server.terminate()
            server.wait(30)


if __name__ == "__main__":
    main()
