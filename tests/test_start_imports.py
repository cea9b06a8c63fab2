"""What a server loads at start: the heavy libraries that only some requests (or other
commands) need wait for their first use, so that an idle gateway stays small."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

# Each is loaded where it is first needed; measured resident cost at start, in MB.
LATER = {
    "curl_cffi": "the gemini_official channel's first call (3.5)",
    "aiohttp.web": "the `gemgate login` browser flow (1.5)",
    "aiohttp_socks": "the first request through a SOCKS5 proxy",
    "websockets": "nothing: gemgate serves no WebSocket (0.4)",
    "PIL": "image resizing and the watermark",
    "numpy": "the watermark removal",
    "jinja2": "the first admin page",
    "prometheus_client": "the first /metrics scrape (1.0)",
    "pydantic": "nothing: settings are read with msgspec (14.8)",
    "sqlalchemy.orm": "nothing: the store runs SQLAlchemy Core on threads (7)",
}

BUILD = """
import sys
from gemgate.app import build_app
from gemgate.config import Settings
from gemgate.gateway import Gateway
from gemgate.server import run  # noqa: F401  (what `serve` imports, uvicorn included)

settings = Settings.load()
build_app(settings, Gateway(settings))
print(" ".join(sorted(sys.modules)))
"""


def test_the_server_as_built_at_start_leaves_the_heavy_libraries_for_later(
    tmp_path: Path,
) -> None:
    done = subprocess.run(
        [sys.executable, "-c", BUILD],
        env={"GEMGATE_DATA_DIR": str(tmp_path), "PATH": ""},
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    loaded = set(done.stdout.split())
    early = {name: why for name, why in LATER.items() if name in loaded}
    assert not early, f"loaded at start, needed only later: {early}"
