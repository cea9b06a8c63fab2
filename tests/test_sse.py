"""The SSE reader under the channels: a read that holds whole one-line events takes a short
path, anything else the line-by-line one. Both must give the same payloads."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from gemgate import sse

STREAMS = {
    "crlf": b'data: {"a":1}\r\n\r\ndata: {"b":2}\r\n\r\n',
    "lf": b'data: {"a":1}\n\ndata: {"b":2}\n\n',
    "no-space": b"data:{}\r\n\r\n",
    "empty-payload": b"data: \r\n\r\n",
    "two-data-lines": b"data: one\r\ndata: two\r\n\r\n",
    "comment-first": b": keep-alive\r\n\r\ndata: x\r\n\r\n",
    "event-field": b"event: message\ndata: x\n\n",
    "mixed-endings": b"data: a\n\ndata: b\r\n\r\n",
    "crlf-line-then-lf": b"data: x\r\n\n",
    "no-last-blank-line": b"data: a\r\n\r\ndata: b",
}
EXPECTED = {
    "crlf": [b'{"a":1}', b'{"b":2}'],
    "lf": [b'{"a":1}', b'{"b":2}'],
    "no-space": [b"{}"],
    "empty-payload": [b""],
    "two-data-lines": [b"one\ntwo"],
    "comment-first": [b"x"],
    "event-field": [b"x"],
    "mixed-endings": [b"a", b"b"],
    "crlf-line-then-lf": [b"x"],
    "no-last-blank-line": [b"a", b"b"],
}


def payloads(pieces: list[bytes]) -> list[bytes]:
    async def reads() -> AsyncIterator[bytes]:
        for piece in pieces:
            yield piece

    async def collect() -> list[bytes]:
        return [payload async for found in sse.data(reads()) for payload in found]

    return asyncio.run(collect())


@pytest.mark.parametrize("name", list(STREAMS))
def test_payloads_are_the_same_whatever_the_reads(name: str) -> None:
    raw = STREAMS[name]
    whole = payloads([raw])
    byte_by_byte = payloads([raw[i : i + 1] for i in range(len(raw))])
    by_event = payloads([piece + b"\n\n" for piece in raw.split(b"\n\n")[:-1]])
    assert whole == byte_by_byte == EXPECTED[name]
    if raw.endswith(b"\n\n") and b"\r" not in raw:
        assert by_event == EXPECTED[name]
