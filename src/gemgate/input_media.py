"""Media a client sends (images, audio, video, documents), checked as requests are decoded:
only http(s) URLs, only types Gemini can read, and bytes that are what their type says.
Every refusal is a 400 that names the part (`where`), before anything goes upstream.
"""

from __future__ import annotations

import base64
import binascii
import mimetypes
from urllib.parse import urlsplit

from gemgate import ir
from gemgate.errors import InvalidRequest
from gemgate.media import GENERIC_TYPES, guess_mime, sniff_mime

# Input types the Gemini API documents beyond the audio/, video/ and text/ families.
_READABLE = frozenset(
    {
        "image/png",
        "image/jpeg",
        "image/webp",
        "image/heic",
        "image/heif",
        "image/gif",
        "application/pdf",
        "application/json",
        "application/xml",
        "application/rtf",
        "application/javascript",
        "application/x-javascript",
        "application/x-typescript",
        "application/x-python",
        "application/x-python-code",
    }
)
_READABLE_FAMILIES = ("audio/", "video/", "text/")
# Declared types whose first bytes are cheap to check, and what `sniff_mime` says they are.
_SIGNED = {
    "image/png": "image/png",
    "image/jpeg": "image/jpeg",
    "image/gif": "image/gif",
    "image/webp": "image/webp",
    "application/pdf": "application/pdf",
    "audio/wav": "audio/wav",
    "audio/wave": "audio/wav",
    "audio/x-wav": "audio/wav",
    "audio/mpeg": "audio/mpeg",
    "audio/mp3": "audio/mpeg",
    "audio/flac": "audio/flac",
    "audio/x-flac": "audio/flac",
    "audio/ogg": "audio/ogg",
}
# Base64 characters enough for the 24 bytes `sniff_mime` looks at.
_HEAD_CHARS = 32
_WHITESPACE = frozenset(" \t\r\n")


def readable(mime: str) -> bool:
    return mime in _READABLE or mime.startswith(_READABLE_FAMILIES)


def checked_type(declared: str | None, head: bytes, name: str | None, where: str) -> str:
    """The type to send a file as: the declared one (or, when it says nothing, what the bytes
    or the file name say) once the bytes agree with it and Gemini can read it. A file labelled
    as another type of its own kind (a PNG sent as image/jpeg) gets the type its bytes show."""
    mime = guess_mime(declared, head, name)
    if mime == "image/jpg":  # a common misspelling Gemini does not take
        mime = "image/jpeg"
    expected = _SIGNED.get(mime)
    if expected is not None:
        found = sniff_mime(head)
        if found != expected:
            if found is not None and found.partition("/")[0] == mime.partition("/")[0]:
                mime = found
            else:
                what = f"look like {found}" if found else "match no known format"
                raise InvalidRequest(
                    f"{where}: the data is not {mime} (its first bytes {what})",
                    param="messages",
                )
    if mime in GENERIC_TYPES:
        raise InvalidRequest(
            f"{where}: cannot tell what kind of file this is; give its media type",
            param="messages",
        )
    if not readable(mime):
        raise InvalidRequest(f"{where}: Gemini cannot read {mime} files", param="messages")
    return mime


def inline(declared: str | None, payload: str, where: str, name: str | None = None) -> ir.Media:
    """Base64 bytes with their declared type, checked."""
    payload = payload.strip()
    if not _WHITESPACE.isdisjoint(payload[: _HEAD_CHARS * 4]):
        # Line-wrapped (MIME-style) base64 breaks its lines early on; a multi-megabyte image
        # without any is not scanned whole.
        payload = "".join(payload.split())
    if not payload:
        raise InvalidRequest(f"{where}: the data is empty", param="messages")
    head = payload[:_HEAD_CHARS].replace("-", "+").replace("_", "/")
    try:
        raw = base64.b64decode(head + "=" * (-len(head) % 4), validate=True)
    except (binascii.Error, ValueError):
        raise InvalidRequest(f"{where}: the data is not valid base64", param="messages") from None
    return ir.Media(checked_type(declared, raw, name, where), data=payload)


def data_url(url: str, where: str, name: str | None = None) -> ir.Media:
    """A `data:<type>[;param]*;base64,<payload>` URL."""
    header, comma, payload = url.removeprefix("data:").partition(",")
    if not comma or not header.endswith(";base64"):
        raise InvalidRequest(f"{where}: only base64 data: URLs are supported", param="messages")
    return inline(header.split(";")[0], payload, where, name)


def web_url(url: str, where: str) -> ir.Media:
    """An http(s) URL, fetched by the pipeline (or left to Gemini, for YouTube); its type is
    known once fetched. Any other scheme (file:, gopher:, ...) is refused."""
    try:
        parts = urlsplit(url)
        usable = parts.scheme.lower() in ("http", "https") and bool(parts.hostname)
    except ValueError:  # a malformed host or port
        usable = False
    if not usable or parts.hostname is None:
        raise InvalidRequest(
            f"{where}: a media URL must be an http(s) URL, not {url[:40]!r}", param="messages"
        )
    # The scheme in lower case, as the fetch step and the upstream expect it.
    url = parts.geturl()
    host = parts.hostname.lower()
    if host.endswith(("youtube.com", "youtu.be")):
        return ir.Media("video/mp4", uri=url)
    guessed = mimetypes.guess_type(parts.path)[0]
    return ir.Media(guessed or "application/octet-stream", uri=url)
