"""OpenAI's Codex CLI (`codex exec`) against gemgate by base URL only: it speaks nothing but the
Responses API, streamed, stateless (`store: false`, encrypted reasoning replayed).

Codex is an npm package; `.ci/run` installs it into `.codex-cli/` when npm is there. Where it
is missing the test is skipped and says why.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.fakes.gemini_api import FakeGeminiAPI, Reply
from tests.harness import Gemgate

_LOCAL = Path(__file__).resolve().parent.parent / ".codex-cli" / "node_modules" / ".bin" / "codex"


def _codex() -> str:
    found = os.environ.get("GEMGATE_TEST_CODEX") or shutil.which("codex")
    if found:
        return found
    if _LOCAL.exists():
        return str(_LOCAL)
    if not shutil.which("node"):
        pytest.skip("Node.js is not installed, so the Codex CLI cannot run")
    pytest.skip("the Codex CLI is not installed: npm install --prefix .codex-cli @openai/codex")


def _run(gateway: Gemgate, home: Path, model: str, prompt: str) -> subprocess.CompletedProcess[str]:
    home.mkdir(exist_ok=True)
    (home / "config.toml").write_text(
        f'model = "{model}"\n'
        'model_provider = "gemgate"\n'
        "[model_providers.gemgate]\n"
        'name = "gemgate"\n'
        f'base_url = "{gateway.url}/v1"\n'
        'env_key = "GEMGATE_TEST_KEY"\n'
        'wire_api = "responses"\n'
    )
    env = {
        **os.environ,
        "CODEX_HOME": str(home),
        "GEMGATE_TEST_KEY": gateway.client_key,  # type: ignore[attr-defined]
    }
    return subprocess.run(
        [_codex(), "exec", "--skip-git-repo-check", prompt],
        env=env,
        cwd=home,
        capture_output=True,
        text=True,
        stdin=subprocess.DEVNULL,
        timeout=120,
    )


def test_codex_exec_answers(gateway: Gemgate, gemini: FakeGeminiAPI, tmp_path: Path) -> None:
    gemini.script(Reply.text("Hello from Gemini."))
    result = _run(gateway, tmp_path / "codex", "gemini-2.5-flash", "Say hello")
    assert result.returncode == 0, result.stderr
    assert "Hello from Gemini." in result.stdout


def test_codex_exec_runs_a_tool_round_on_gemini_3(
    gateway: Gemgate, gemini: FakeGeminiAPI, tmp_path: Path
) -> None:
    """Codex runs the command Gemini asks for and sends the output back; Gemini 3's strict
    signature check passes on the replayed call."""
    command = {"functionCall": {"name": "exec_command", "args": {"cmd": "echo gemgate-probe"}}}
    gemini.script(Reply.parts([command]))
    gemini.script(Reply.text("The command printed gemgate-probe."))
    result = _run(gateway, tmp_path / "codex", "gemini-3-flash-preview", "Run echo")
    assert result.returncode == 0, result.stderr
    assert "The command printed gemgate-probe." in result.stdout
    second = gemini.requests[-1].body["contents"]
    calls = [p for c in second for p in c["parts"] if "functionCall" in p]
    assert calls[0]["functionCall"]["name"] == "exec_command"
    assert calls[0]["thoughtSignature"] != "skip_thought_signature_validator"
    outputs = [p["functionResponse"] for c in second for p in c["parts"] if "functionResponse" in p]
    assert outputs and outputs[0]["name"] == "exec_command"
