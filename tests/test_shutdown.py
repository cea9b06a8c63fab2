"""Shutdown: streams that outlast the drain window end with their format's error event, their
usage is recorded, and the server exits cleanly without a traceback."""

from __future__ import annotations

import http.client
import json
import signal
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import start_gemgate
from tests.fakes.gemini_api import FakeGeminiAPI, Reply

USAGE = {"promptTokenCount": 5, "candidatesTokenCount": 10, "totalTokenCount": 15}

FRONTS: dict[str, tuple[str, dict[str, Any]]] = {
    "openai": (
        "/v1/chat/completions",
        {
            "model": "gemini-2.5-flash",
            "stream": True,
            "messages": [{"role": "user", "content": "x"}],
        },
    ),
    "anthropic": (
        "/v1/messages",
        {
            "model": "gemini-2.5-flash",
            "max_tokens": 100,
            "stream": True,
            "messages": [{"role": "user", "content": "x"}],
        },
    ),
    "native": (
        "/v1beta/models/gemini-2.5-flash:streamGenerateContent?alt=sse",
        {"contents": [{"role": "user", "parts": [{"text": "x"}]}]},
    ),
}


@pytest.mark.parametrize("front", list(FRONTS))
def test_a_stream_longer_than_the_drain_window_ends_with_an_error_event(
    tmp_path: Path, gemini: FakeGeminiAPI, front: str
) -> None:
    server = start_gemgate(tmp_path, gemini, {"GEMGATE_DRAIN_SECONDS": "1"})
    key = server.create_key("k")
    server.add_api_key("AIzaFakeKeyAlpha0001")
    server.start()
    gemini.script(Reply.text(" ".join("abcdefghijklmnopqrst"), chunks=20, delay=0.4, usage=USAGE))
    path, body = FRONTS[front]
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=20)
    conn.request(
        "POST",
        path,
        body=json.dumps(body),
        headers={"authorization": f"Bearer {key}", "content-type": "application/json"},
    )
    response = conn.getresponse()
    assert response.status == 200
    first = response.read1()
    assert first
    assert server.process is not None
    server.process.send_signal(signal.SIGTERM)
    started = time.monotonic()
    rest = response.read()
    # Cut at the end of the one-second window, well before the 8-second answer was complete.
    assert time.monotonic() - started < 4
    tail = (first + rest).decode()
    assert "shutting down" in tail
    last_event = [line for line in tail.splitlines() if line.startswith("data:")][-1]
    error = json.loads(last_event[5:])
    if front == "openai":
        assert error["error"]["type"] == "server_error"
    elif front == "anthropic":
        assert error["type"] == "error"
    else:
        assert error["error"]["status"] == "UNAVAILABLE"
    assert server.process.wait(timeout=15) in (0, -signal.SIGTERM)
    server.process = None
    log = server.log()
    assert "Traceback" not in log
    # The usage of the cut stream was recorded before the server went away.
    rows = server.usage("k")
    assert rows and rows[0]["requests"] == 1 and rows[0]["errors"] == 1, (rows, log)


def test_a_stream_that_finishes_within_the_window_is_untouched(
    tmp_path: Path, gemini: FakeGeminiAPI
) -> None:
    server = start_gemgate(tmp_path, gemini, {"GEMGATE_DRAIN_SECONDS": "5"})
    key = server.create_key("k")
    server.add_api_key("AIzaFakeKeyAlpha0001")
    server.start()
    gemini.script(Reply.text("a b c d", chunks=4, delay=0.3))
    path, body = FRONTS["openai"]
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=20)
    conn.request(
        "POST",
        path,
        body=json.dumps(body),
        headers={"authorization": f"Bearer {key}", "content-type": "application/json"},
    )
    response = conn.getresponse()
    first = response.read1()
    assert server.process is not None
    threading.Timer(0.1, server.process.send_signal, (signal.SIGTERM,)).start()
    text = (first + response.read()).decode()
    assert "shutting down" not in text and text.rstrip().endswith("data: [DONE]")
    assert server.stop()
