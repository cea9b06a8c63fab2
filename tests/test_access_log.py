"""The access log: on when asked for, and never showing a client key sent in the query."""

from __future__ import annotations

import urllib.request
from pathlib import Path

from tests.conftest import start_gemgate
from tests.fakes.gemini_api import FakeGeminiAPI


def test_query_strings_are_redacted_in_the_access_log(
    tmp_path: Path, gemini: FakeGeminiAPI
) -> None:
    server = start_gemgate(tmp_path, gemini, {"GEMGATE_ACCESS_LOG": "true"})
    key = server.create_key("k")
    server.add_api_key("AIzaFakeKeyAlpha0001")
    server.start()
    try:
        with urllib.request.urlopen(f"{server.url}/v1beta/models?key={key}", timeout=10) as r:
            assert r.status == 200
        try:
            urllib.request.urlopen(f"{server.url}/v1beta/models?key=gg-wrong-{key[3:]}", timeout=5)
        except urllib.error.HTTPError as refused:
            assert refused.code == 401
    finally:
        assert server.stop()
    log = server.log()
    assert "GET /v1beta/models?…" in log and '" 200' in log and '" 401' in log
    assert key not in log and key[3:] not in log
