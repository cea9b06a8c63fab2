"""Server-sent events as an upstream frames them: whole events out of a byte stream for a
relay, and the `data:` payload of each event for a reader.

Lines are split here rather than by aiohttp's line reader because a single event can carry
megabytes of base64 (generated images), more than that reader allows."""

from __future__ import annotations

from collections.abc import AsyncIterable, AsyncIterator


async def whole_events(chunks: AsyncIterable[bytes]) -> AsyncIterator[bytes]:
    """The events of a byte stream untouched, in blocks of one or more whole events: all that
    each chunk completed, so a relay writes once per read and never half an event."""
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


async def data(chunks: AsyncIterable[bytes]) -> AsyncIterator[list[bytes]]:
    """The `data:` payloads of a byte stream's events, as soon as their blank lines arrive: all
    that each chunk completed, together (never an empty list)."""
    pending = b""
    partial: list[bytes] = []
    async for chunk in chunks:
        if not pending and not partial and (whole := _single_lines(chunk)) is not None:
            del chunk
            yield whole
            del whole
            continue
        pending += chunk
        *lines, pending = pending.split(b"\n")
        found = _complete(lines, partial)
        # Dropped before the next read: a stream waiting on its upstream keeps no copy of
        # what it passed on (here, and in each layer above).
        del chunk, lines
        if found:
            yield found
        del found
    if pending.startswith(b"data:"):
        value = pending[5:].rstrip(b"\r")
        partial.append(value[1:] if value.startswith(b" ") else value)
    if partial:
        # The stream ended cleanly without a last blank line: its last event is still whole.
        yield [b"\n".join(partial)]


def payloads(events: bytes) -> list[bytes]:
    """The `data:` payload of each event in a block of whole events."""
    partial: list[bytes] = []
    found = _complete(events.split(b"\n"), partial)
    if partial:
        found.append(b"\n".join(partial))
    return found


def _single_lines(chunk: bytes) -> list[bytes] | None:
    """The payloads of a read that holds only whole events of one `data: ` line each, the way
    Google frames every chunk and usually reads arrive; None for anything else (a cut event,
    several data lines, comments), which the line-by-line reader takes instead."""
    if chunk.endswith(b"\r\n\r\n"):
        separator = b"\r\n\r\n"
    elif chunk.endswith(b"\n\n"):
        separator = b"\n\n"
    else:
        return None
    found = chunk[: -len(separator)].split(separator)
    for i, event in enumerate(found):
        if not event.startswith(b"data: ") or b"\n" in event or b"\r" in event:
            return None
        found[i] = event[6:]
    return found


def _complete(lines: list[bytes], partial: list[bytes]) -> list[bytes]:
    """The payloads of the events that `lines` complete; the `data:` lines of an event still
    under way are kept in `partial`."""
    found: list[bytes] = []
    for line in lines:
        if line.endswith(b"\r"):
            line = line[:-1]
        if not line:
            if partial:
                found.append(partial[0] if len(partial) == 1 else b"\n".join(partial))
                partial.clear()
        elif line.startswith(b"data:"):
            value = line[5:]
            partial.append(value[1:] if value.startswith(b" ") else value)
    return found
