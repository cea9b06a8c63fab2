"""A gemgate serving the `gemini_cli` channel against the fake Code Assist, set up through its
own CLI as an operator would (oauth_creds.json files in, `gemgate credentials add`)."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

from tests.fakes.code_assist import FakeCodeAssist
from tests.harness import Gemgate


def code_assist_env(fake: FakeCodeAssist) -> dict[str, str]:
    """The settings that point gemgate's gemini_cli channel and Google sign-in at the fake."""
    return {
        "GEMGATE_CODE_ASSIST_BASE": fake.base_url,
        "GEMGATE_OAUTH_TOKEN_URL": fake.token_url,
        "GEMGATE_GOOGLE_ACCOUNTS_BASE": fake.base_url,
        # Onboarding polls its operation; the fake finishes it after one poll.
        "GEMGATE_ONBOARD_POLL_INTERVAL": "0.05",
    }


def cli_gemgate(data_dir: Path, fake: FakeCodeAssist, env: dict[str, str] | None = None) -> Gemgate:
    return Gemgate(data_dir, {**code_assist_env(fake), **(env or {})})


def write_oauth_file(folder: Path, name: str, data: dict[str, Any]) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    path.write_text(json.dumps(data))
    return path


def add_oauth(
    server: Gemgate, path: Path, *options: str, check: bool = True
) -> subprocess.CompletedProcess[str]:
    return server.cli(
        "credentials", "add", "gemini_cli", "--oauth-file", str(path), *options, check=check
    )


def credential_id(output: str) -> int:
    return int(output.split("credential ")[1].split()[0])


def listed(server: Gemgate) -> dict[str, dict[str, Any]]:
    """`credentials list --json` by label."""
    return {c["label"]: c for c in json.loads(server.cli("credentials", "list", "--json").stdout)}
