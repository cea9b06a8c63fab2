"""The tolerant reader of the web app's length-prefixed frames, and what a StreamGenerate frame
body says (reference §4.2, §6).

The web protocol changes without notice, so nothing here trusts one reading: a frame's declared
length (UTF-16 units counted from the newline after the digits) is a hint that must land on the
next `<digits>\\n`, and when it does not, the frame ends where its JSON array balances. Unknown
entry kinds and missing fields are skipped, never fatal.
"""

from __future__ import annotations

import html
import re
from dataclasses import dataclass, field
from typing import Any

import orjson

_PREFIX = b")]}'"
_SPACE = b" \t\r\n"
# What changes the nesting of JSON text: brackets, and the quotes and escapes of strings.
_STRUCTURE = re.compile(rb'[][{}"\\]')
# Links the web app puts in text in place of images, cards and canvases (§6.3).
_PLACEHOLDER = re.compile(r"\n*https?://googleusercontent\.com/(?:[\w-]+/)+\d+\n*")
_PLACEHOLDER_STARTS = ("http://googleusercontent.com/", "https://googleusercontent.com/")
# Markers that a non-final frame may carry for a moment and drop in the next (§6.1).
_FLICKER = ("\n```", "\\*", "\\_", "\\`", "\\~")


class FrameReader:
    """Bytes in as they arrive; complete JSON payloads out.

    It works on the bytes as they came: a payload goes to orjson undecoded, and a frame of
    ASCII text (the usual case) is measured without decoding, since there one byte is one
    UTF-16 unit. Only a frame with other characters is decoded, to count its units."""

    def __init__(self) -> None:
        self._pieces: list[bytes] = []
        self._size = 0
        # Bytes that must be here before a frame can be whole: pieces wait unjoined till then.
        self._need = 0
        self._started = False

    def feed(self, chunk: bytes) -> list[Any]:
        self._pieces.append(chunk)
        self._size += len(chunk)
        if self._size < self._need:
            return []
        return self._frames(final=False)

    def end(self) -> list[Any]:
        return self._frames(final=True)

    def _frames(self, final: bool) -> list[Any]:
        data = self._pieces[0] if len(self._pieces) == 1 else b"".join(self._pieces)
        self._need = 0
        if not self._started:
            stripped = data.lstrip()
            if len(stripped) < len(_PREFIX) and _PREFIX.startswith(stripped) and not final:
                return []
            if stripped.startswith(_PREFIX):
                data = stripped[len(_PREFIX) :]
            self._started = True
        out: list[Any] = []
        size = len(data)
        pos = 0
        while True:
            start = _skip_space(data, pos)
            if start >= size:
                pos = start
                break
            if not 0x30 <= data[start] <= 0x39:
                # No length prefix: a bare JSON payload (or garbage) up to its balanced end.
                end = _balanced_end(data, start)
                if end is None:
                    if final:
                        pos = size
                    break
                out.extend(_parse(data[start:end]))
                pos = end
                continue
            newline = data.find(b"\n", start)
            if newline < 0:
                if final:
                    pos = size
                break
            digits = data[start:newline].strip()
            if not digits.isdigit():
                pos = newline + 1
                continue
            payload_start = newline + 1
            units = int(digits)
            end = _by_length(data, newline, units)
            if end == _SHORT and not final:
                # Not all here by its declared length. Waiting, rather than looking for a
                # balanced end meanwhile, keeps a large frame that arrives in many pieces
                # from being scanned again with every piece.
                self._need = newline + units - pos
                break
            if end >= 0 and _boundary_ok(data, end, final):
                payload = data[payload_start:end]
                parsed = _parse(payload)
                if parsed or not payload.strip():
                    out.extend(parsed)
                    pos = end
                    continue
            # The declared length failed: find the frame's end by its balanced brackets.
            payload_start = _skip_space(data, payload_start)
            balanced = _balanced_end(data, payload_start)
            if balanced is None:
                if final:
                    pos = size
                break
            out.extend(_parse(data[payload_start:balanced]))
            pos = balanced
        rest = data[pos:] if pos < size else b""
        self._pieces = [rest] if rest else []
        self._size = len(rest)
        return out


def _skip_space(data: bytes, pos: int) -> int:
    size = len(data)
    while pos < size and data[pos] in _SPACE:
        pos += 1
    return pos


_SHORT, _NO_FIT = -1, -2


def _by_length(data: bytes, newline: int, units: int) -> int:
    """The end of a frame whose length counts UTF-16 units from the newline after the digits;
    _SHORT while fewer are here, _NO_FIT when the count ends inside a character."""
    end = newline + units
    if end > len(data):
        return _SHORT  # every unit takes at least one byte
    if data[newline:end].isascii():
        return end
    # Counted on the text as UTF-16, at C speed. At most three bytes a unit; a byte that is
    # not UTF-8 survives the round trip (as a lone surrogate, one unit, as the app counts it).
    text = data[newline : newline + 3 * units].decode("utf-8", "surrogateescape")
    wide = text.encode("utf-16-le", "surrogatepass")
    if len(wide) < 2 * units:
        return _SHORT
    if 0xD8 <= wide[2 * units - 1] <= 0xDB:
        return _NO_FIT  # the count ends between the two halves of a character
    head = wide[: 2 * units].decode("utf-16-le", "surrogatepass")
    return newline + len(head.encode("utf-8", "surrogateescape"))


def _boundary_ok(data: bytes, end: int, final: bool) -> bool:
    size = len(data)
    nxt = _skip_space(data, end)
    if nxt >= size:
        return True
    i = nxt
    while i < size and 0x30 <= data[i] <= 0x39:
        i += 1
    if i == nxt:
        return False
    if i >= size:
        return not final
    return data[i] == 0x0A


def _balanced_end(data: bytes, start: int) -> int | None:
    """The index after the top-level JSON array or object starting at `start` (string-aware);
    the bytes of a multi-byte character are never ASCII, so bytes serve as well as text."""
    if start >= len(data) or data[start] not in b"[{":
        return None
    depth, in_string, skip = 0, False, -1
    for found in _STRUCTURE.finditer(data, start):
        i = found.start()
        if i == skip:
            continue  # the character after a backslash
        ch = data[i]
        if in_string:
            if ch == 0x5C:  # backslash
                skip = i + 1
            elif ch == 0x22:  # quote
                in_string = False
        elif ch == 0x22:
            in_string = True
        elif ch in b"[{":
            depth += 1
        elif ch in b"]}":
            depth -= 1
            if depth == 0:
                return i + 1
    return None


def _parse(payload: bytes) -> list[Any]:
    payload = payload.strip()
    if not payload:
        return []
    try:
        value = orjson.loads(payload)
    except orjson.JSONDecodeError:
        try:  # bytes that are not UTF-8, read as the web app's text would show them
            value = orjson.loads(payload.decode("utf-8", "replace"))
        except orjson.JSONDecodeError:
            return []
    return [value]


# -- what the entries say -----------------------------------------------------------------


@dataclass(slots=True)
class Entry:
    """One `wrb.fr` envelope: its parsed body, or the in-band error it carries."""

    rpcid: str | None
    body: Any = None
    error_code: int | None = None
    status: Any = None


def entries(payload: Any) -> list[Entry]:
    """The `wrb.fr` envelopes of a payload; `di`, `af.httprm`, `e` and unknown kinds skipped."""
    if not isinstance(payload, list):
        return []
    items = payload if payload and isinstance(payload[0], list) else [payload]
    out = []
    for item in items:
        if not isinstance(item, list) or not item or item[0] != "wrb.fr":
            continue
        rpcid = item[1] if len(item) > 1 and isinstance(item[1], str) else None
        raw = item[2] if len(item) > 2 else None
        body = None
        if isinstance(raw, str):
            try:
                body = orjson.loads(raw)
            except orjson.JSONDecodeError:
                body = None
        status = item[5] if len(item) > 5 else None
        out.append(Entry(rpcid, body, error_code(status), status))
    return out


def error_code(status: Any) -> int | None:
    """The BardErrorInfo code of an envelope status, at [2][0][1][0] or anywhere it says so."""
    if not isinstance(status, list):
        return None
    details = at(status, 2)
    if isinstance(details, list):
        for detail in details:
            if (
                isinstance(detail, list)
                and len(detail) > 1
                and isinstance(detail[0], str)
                and "BardErrorInfo" in detail[0]
            ):
                code = at(detail, 1, 0)
                if isinstance(code, int):
                    return code
    text = orjson.dumps(status).decode()
    marker = text.find("BardErrorInfo")
    if marker >= 0:
        digits = re.search(r"\d{4}", text[marker:])
        if digits:
            return int(digits.group())
    return None


def at(value: Any, *path: int) -> Any:
    """value[p0][p1]… or None where the path does not exist."""
    for index in path:
        if not isinstance(value, list) or not -len(value) <= index < len(value):
            return None
        value = value[index]
    return value


@dataclass(slots=True)
class Candidate:
    rcid: str | None
    text: str
    thoughts: str
    done: bool
    rich: Any = None  # the rich-content block [12] (§6.4), read with `rich_field`


@dataclass(slots=True)
class Turn:
    """What one StreamGenerate body says about the answer so far."""

    cid: str | None = None
    rid: str | None = None
    candidates: list[Candidate] = field(default_factory=list)
    context: str | None = None
    answered_by: str | None = None  # the model id that actually answered (body[42])
    answered_name: str | None = None


def read_body(body: Any, with_model: bool = True) -> Turn:
    """`with_model`: also find the model that answered (once known, later frames skip it).
    Read by direct indexing with every miss tolerated: this runs for every frame."""
    turn = Turn()
    if not isinstance(body, list):
        return turn
    size = len(body)
    meta = body[1] if size > 1 else None
    if isinstance(meta, list) and meta:
        turn.cid = meta[0] if isinstance(meta[0], str) else None
        turn.rid = meta[1] if len(meta) > 1 and isinstance(meta[1], str) else None
    raws = body[4] if size > 4 else None
    if isinstance(raws, list):
        for raw in raws:
            if isinstance(raw, list) and raw:
                turn.candidates.append(_candidate(raw))
    context = body[25] if size > 25 else None
    turn.context = context if isinstance(context, str) else None
    if with_model and size > 42:
        turn.answered_by, turn.answered_name = _answered_model(body[42])
    return turn


def _candidate(raw: list[Any]) -> Candidate:
    size = len(raw)
    text = _first(raw[1]) if size > 1 else None
    if isinstance(text, str) and text.startswith(_PLACEHOLDER_STARTS) and "card_" in text:
        alternate = at(raw, 22, 0)
        text = alternate if isinstance(alternate, str) else ""
    thoughts = _first(_first(raw[37])) if size > 37 else None
    state = _first(raw[8]) if size > 8 else None
    rich = raw[12] if size > 12 else None
    return Candidate(
        rcid=raw[0] if isinstance(raw[0], str) else None,
        text=text if isinstance(text, str) else "",
        thoughts=thoughts if isinstance(thoughts, str) else "",
        done=state == 2,
        rich=rich if isinstance(rich, list) and rich else None,
    )


def rich_field(block: Any, number: int) -> Any:
    """Field `number` of a JSPB block: at its index, or for a sparse high field in the dict
    that ends the block under `str(number + 1)` (§6.4). None, [] and {} mean absent."""
    if not isinstance(block, list):
        return None
    value = block[number] if number < len(block) else None
    if value is None or value == [] or isinstance(value, dict):
        bundle = block[-1] if block and isinstance(block[-1], dict) else None
        value = bundle.get(str(number + 1)) if bundle is not None else None
    return None if value in (None, [], {}) else value


def _first(value: Any) -> Any:
    return value[0] if isinstance(value, list) and value else None


def _answered_model(value: Any) -> tuple[str | None, str | None]:
    """The first 16-hex id in body[42] and the display name that follows it."""
    if isinstance(value, str):
        return (value, None) if _is_model_id(value) else (None, None)
    if not isinstance(value, list):
        return None, None
    for i, item in enumerate(value):
        if isinstance(item, str) and _is_model_id(item):
            name = next((v for v in value[i + 1 : i + 4] if isinstance(v, str)), None)
            return item, name
        if isinstance(item, list):
            found = _answered_model(item)
            if found[0]:
                return found
    return None, None


def _is_model_id(text: str) -> bool:
    return len(text) == 16 and all(c in "0123456789abcdef" for c in text)


class TextDiff:
    """Cumulative text of one candidate in, new text out: the web app resends the whole text
    with every frame, may show a marker for a frame and drop it in the next, and puts image
    placeholders in the text."""

    def __init__(self) -> None:
        self.sent = ""
        self._last, self._last_final = "", False

    def delta(self, cumulative: str, final: bool) -> str:
        if not cumulative or (cumulative == self._last and final == self._last_final):
            return ""  # nothing, or the same as the frame before (the thoughts moved on)
        self._last, self._last_final = cumulative, final
        text = clean(cumulative, final)
        if not final:
            text = _hold_back(text)
        if text.startswith(self.sent):
            new = text[len(self.sent) :]
        elif len(text) > len(self.sent):
            # The text changed behind what was sent: send only what lies past it.
            new = text[len(self.sent) :]
        else:
            new = ""
        self.sent += new
        return new


def clean(text: str, final: bool) -> str:
    if not final and text.endswith(_FLICKER):
        for marker in _FLICKER:
            if text.endswith(marker):
                text = text[: -len(marker)]
                break
    if "googleusercontent.com/" in text:
        text = _PLACEHOLDER.sub("", text)
        if final:
            text = text.rstrip("\n")
    if "&" in text and ";" in text:  # an entity needs both; skip the scan otherwise
        text = html.unescape(text)
    return text


def _hold_back(text: str) -> str:
    """Keep back a trailing fragment that may yet become a placeholder link."""
    cut = max(text.rfind(" "), text.rfind("\n")) + 1
    tail = text[cut:]
    if tail[:1] != "h":  # both links start so: the usual tail is done with at once
        return text
    if any(p.startswith(tail) or tail.startswith(p) for p in _PLACEHOLDER_STARTS):
        return text[:cut].rstrip("\n")
    return text
