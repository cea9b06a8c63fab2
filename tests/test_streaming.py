"""What every stream does whatever its format: it stops reading the upstream as soon as its
client goes away (the tokens not yet generated are not paid for) and still records its usage."""

from __future__ import annotations

import json
import socket
import time

import pytest

from tests.fakes.gemini_api import FakeGeminiAPI, Reply
from tests.harness import Gemgate

STREAMS = [
    ("/v1/chat/completions", {"model": "gemini-2.5-flash", "stream": True}),
    ("/v1/messages", {"model": "gemini-2.5-flash", "stream": True, "max_tokens": 100}),
    ("/v1/responses", {"model": "gemini-2.5-flash", "stream": True}),
    ("/v1beta/models/gemini-2.5-flash:streamGenerateContent?alt=sse", {}),
]


def _start_stream(gateway: Gemgate, path: str, extra: dict[str, object]) -> socket.socket:
    """A raw client that sends a streaming request and reads until the first answer bytes."""
    if path.startswith("/v1beta"):
        body = {"contents": [{"role": "user", "parts": [{"text": "count to fifty"}]}]}
    elif path == "/v1/responses":
        body = {"input": "count to fifty", **extra}
    else:
        body = {"messages": [{"role": "user", "content": "count to fifty"}], **extra}
    raw = json.dumps(body).encode()
    key = gateway.client_key  # type: ignore[attr-defined]
    sock = socket.create_connection(("127.0.0.1", gateway.port), timeout=10)
    head = (
        f"POST {path} HTTP/1.1\r\nhost: 127.0.0.1\r\ncontent-type: application/json\r\n"
        f"x-api-key: {key}\r\nx-goog-api-key: {key}\r\ncontent-length: {len(raw)}\r\n\r\n"
    )
    sock.sendall(head.encode() + raw)
    seen = b""
    while b"\r\n\r\n" not in seen or len(seen.partition(b"\r\n\r\n")[2]) < 10:
        piece = sock.recv(65536)
        assert piece, seen
        seen += piece
    assert seen.startswith(b"HTTP/1.1 200"), seen
    return sock


@pytest.mark.parametrize(("path", "extra"), STREAMS)
def test_a_client_that_leaves_stops_the_upstream_stream(
    gateway: Gemgate, gemini: FakeGeminiAPI, path: str, extra: dict[str, object]
) -> None:
    # Fifty chunks a tenth of a second apart: five seconds if nobody stops it.
    gemini.script(Reply.text("n " * 50, chunks=50, delay=0.1))
    before = _requests(gateway)
    sock = _start_stream(gateway, path, extra)
    sock.close()
    deadline = time.monotonic() + 3
    while gemini.abandoned == 0 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert gemini.abandoned == 1, "the upstream stream ran on after its client left"
    # What was used so far is still a request of the key.
    deadline = time.monotonic() + 5
    while _requests(gateway) == before and time.monotonic() < deadline:
        time.sleep(0.1)
    assert _requests(gateway) == before + 1


def _requests(gateway: Gemgate) -> int:
    rows = gateway.usage("tests")
    return sum(int(row["requests"]) for row in rows)
