"""Server-sent events as an upstream frames them: whole events out of a byte stream, and the
`data:` payloads of those events."""

from __future__ import annotations

from collections.abc import AsyncIterable, AsyncIterator


async def whole_events(chunks: AsyncIterable[bytes]) -> AsyncIterator[bytes]:
    """The events of a byte stream untouched, in blocks of one or more whole events: all that
    each chunk completed, so a relay writes once per read and never half an event.

    Lines are not read with aiohttp's line reader because a single event can carry megabytes
    of base64 (generated images), more than it allows.
    """
    pending = b""
    async for chunk in chunks:
        # Only the new bytes (and the line end before them) can hold a new event boundary.
        since = max(len(pending) - 2, 0)
        pending = pending + chunk if pending else chunk
        lf, crlf = pending.rfind(b"\n\n", since), pending.rfind(b"\n\r\n", since)
        end = max(lf + 2 if lf >= 0 else 0, crlf + 3 if crlf >= 0 else 0)
        if end:
            yield pending[:end]
            pending = pending[end:]
    if pending.strip():
        # The stream ended cleanly without a last blank line: its last event is still whole.
        yield pending + b"\r\n\r\n"


def payloads(events: bytes) -> list[bytes]:
    """The `data:` payload of each event in a block of whole events."""
    found: list[bytes] = []
    data: list[bytes] = []
    for line in events.split(b"\n"):
        if line.endswith(b"\r"):
            line = line[:-1]
        if not line:
            if data:
                found.append(data[0] if len(data) == 1 else b"\n".join(data))
                data = []
        elif line.startswith(b"data:"):
            value = line[5:]
            data.append(value[1:] if value.startswith(b" ") else value)
    if data:
        found.append(b"\n".join(data))
    return found
