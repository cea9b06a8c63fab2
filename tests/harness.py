"""A real gemgate: `gemgate serve` in a subprocess, configured through its own CLI."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Gemgate:
    def __init__(
        self, data_dir: Path, env: dict[str, str] | None = None, init_store: bool = True
    ) -> None:
        self.data_dir = data_dir
        # Only serve and `db migrate` create a database; tests that configure gemgate through
        # the CLI before serving start with `db migrate`, as an operator would.
        self._needs_store = init_store
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.env = {
            **os.environ,
            "GEMGATE_DATA_DIR": str(data_dir),
            "GEMGATE_RELOAD_INTERVAL": "0.2",
            **(env or {}),
        }
        self.process: subprocess.Popen[bytes] | None = None
        self.log_path = data_dir / "server.log"

    def cli(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        if self._needs_store and args[:1] not in (("db",), ("serve",)):
            self._needs_store = False
            self.cli("db", "migrate")
        result = subprocess.run(
            [sys.executable, "-m", "gemgate", *args],
            env=self.env,
            capture_output=True,
            text=True,
            timeout=60,
        )
        if check and result.returncode != 0:
            raise AssertionError(
                f"gemgate {' '.join(args)} failed:\n{result.stdout}\n{result.stderr}"
            )
        return result

    def usage(self, key_name: str) -> list[dict[str, Any]]:
        """`gemgate usage` of one key: its rows per channel and model."""
        return json.loads(self.cli("usage", "--key", key_name, "--json").stdout)  # type: ignore[no-any-return]

    def create_key(self, name: str, *options: str) -> str:
        return self.cli("keys", "create", "--name", name, *options).stdout.strip().splitlines()[-1]

    def add_api_key(self, api_key: str, *options: str) -> int:
        out = self.cli("credentials", "add", "gemini", "--api-key", api_key, *options).stdout
        return int(out.split("credential ")[1].split()[0])

    def start(self, *serve_args: str) -> Gemgate:
        self._needs_store = False
        self.data_dir.mkdir(parents=True, exist_ok=True)
        log = self.log_path.open("wb")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "gemgate", "serve", "--port", str(self.port), *serve_args],
            env=self.env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise AssertionError(f"gemgate exited:\n{self.log()}")
            try:
                with urllib.request.urlopen(self.url + "/healthz", timeout=1) as response:
                    if response.status == 200:
                        return self
            except OSError:
                time.sleep(0.05)
        raise AssertionError(f"gemgate did not start:\n{self.log()}")

    def wait_reload(self) -> None:
        """Give the server time to notice a change made through the CLI."""
        time.sleep(0.6)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def stop(self) -> bool:
        """SIGTERM, as a service manager would; True when the server shut down gracefully."""
        if self.process is None:
            return True
        self.process.send_signal(signal.SIGTERM)
        try:
            code = self.process.wait(timeout=35)
        finally:
            self.process = None
        # uvicorn re-raises the signal after its graceful shutdown, so -15 is a clean exit.
        return code in (0, -signal.SIGTERM) and "Finished server process" in self.log()
