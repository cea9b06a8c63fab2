"""GEMGATE_LOG_FORMAT=json: every line a JSON object, one line per request with what an operator
searches by, and no secret in any line."""

from __future__ import annotations

import json
import urllib.request
from pathlib import Path

import openai
import pytest

from tests.conftest import start_gemgate
from tests.fakes.gemini_api import FakeGeminiAPI, Reply

API_KEY = "AIzaFakeKeyAlpha0001"


def test_json_logs_have_one_line_per_request_and_no_secret(
    tmp_path: Path, gemini: FakeGeminiAPI
) -> None:
    server = start_gemgate(tmp_path, gemini, {"GEMGATE_LOG_FORMAT": "json"})
    key = server.create_key("json-logs")
    cred_id = server.add_api_key(API_KEY)
    server.start()
    try:
        sdk = openai.OpenAI(base_url=server.url + "/v1", api_key=key, max_retries=0)
        answer = sdk.chat.completions.with_raw_response.create(
            model="gemini-2.5-flash", messages=[{"role": "user", "content": "hi"}]
        )
        request_id = answer.headers["x-request-id"]
        gemini.script(Reply.error(400, "Invalid value at 'contents'"))
        with pytest.raises(openai.BadRequestError):
            sdk.chat.completions.create(
                model="gemini-2.5-flash", messages=[{"role": "user", "content": "hi"}]
            )
        # A key in the query string (as Google's clients send it) stays out of the log too.
        with urllib.request.urlopen(f"{server.url}/v1beta/models?key={key}", timeout=10) as r:
            assert r.status == 200
    finally:
        assert server.stop()
    log = server.log()
    lines = [json.loads(line) for line in log.splitlines() if line.strip()]
    assert all({"level", "message"} <= set(line) for line in lines)
    served = [line for line in lines if line.get("logger") == "gemgate.request"]
    assert len(served) == 2
    ok, failed = served
    assert ok["request_id"] == request_id
    assert ok["key"] == "json-logs" and ok["channel"] == "gemini"
    assert ok["model"] == "gemini-2.5-flash" and ok["credential_id"] == cred_id
    assert ok["status"] == 200 and ok["latency_ms"] >= 0
    assert failed["status"] == 400 and failed["request_id"].startswith("req_")
    assert any("Started server process" in line["message"] for line in lines)
    for secret in (key, key[3:], API_KEY):
        assert secret not in log
