"""Media: what kind of bytes a client sent, and images a model made, kept for clients that
can only show a link.

Generated images are written under `<data dir>/media` and served by `GET /media/{token}`, a
route without a client key (a Markdown viewer fetches it), so the token itself is the
permission: the file name, an expiry time and an HMAC over both with a secret generated once
and kept in the data folder. A background sweep deletes files whose links have expired
(GEMGATE_MEDIA_TTL) and, past GEMGATE_MEDIA_MAX_BYTES, the oldest first.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import hmac
import logging
import mimetypes
import os
import secrets
import time
from pathlib import Path

from gemgate import ir

log = logging.getLogger("gemgate.media")

# Leading bytes of the formats clients send without saying what they are.
_MAGIC: tuple[tuple[bytes, int, str], ...] = (
    (b"\x89PNG\r\n\x1a\n", 0, "image/png"),
    (b"\xff\xd8\xff", 0, "image/jpeg"),
    (b"GIF8", 0, "image/gif"),
    (b"%PDF-", 0, "application/pdf"),
    (b"ID3", 0, "audio/mpeg"),
    (b"OggS", 0, "audio/ogg"),
    (b"fLaC", 0, "audio/flac"),
    (b"\x1aE\xdf\xa3", 0, "video/webm"),
    (b"ftyp", 4, "video/mp4"),
)
GENERIC_TYPES = frozenset(
    {"", "application/octet-stream", "binary/octet-stream", "application/unknown"}
)


def sniff_mime(head: bytes) -> str | None:
    """The MIME type the first bytes of a file announce, if they announce one."""
    if head[:4] == b"RIFF":
        return {b"WEBP": "image/webp", b"WAVE": "audio/wav", b"AVI ": "video/avi"}.get(head[8:12])
    if head[:2] in (b"\xff\xfb", b"\xff\xf3", b"\xff\xf2"):
        return "audio/mpeg"
    for magic, offset, mime in _MAGIC:
        if head[offset : offset + len(magic)] == magic:
            if mime == "video/mp4" and head[8:11] == b"M4A":
                return "audio/mp4"
            return mime
    return None


def guess_mime(declared: str | None, head: bytes, name: str | None = None) -> str:
    """A declared type unless it says nothing; then the bytes; then the file name."""
    declared = (declared or "").split(";")[0].strip().lower()
    if declared not in GENERIC_TYPES:
        return declared
    sniffed = sniff_mime(head)
    if sniffed:
        return sniffed
    if name:
        by_name = mimetypes.guess_type(name)[0]
        if by_name:
            return by_name
    return "application/octet-stream"


class MediaStore:
    def __init__(self, data_dir: Path, ttl: float, max_bytes: int = 1 << 30) -> None:
        self.root = data_dir / "media"
        self.ttl = ttl
        self.max_bytes = max_bytes
        self._secret: bytes | None = None
        # Bytes on disk as of the last sweep plus what was written since; None until a sweep.
        self._held: int | None = None

    # -- links ----------------------------------------------------------------------------

    def token(self, name: str, expires: int) -> str:
        mac = hmac.new(self._key(), f"{name}.{expires}".encode(), hashlib.sha256).digest()
        return f"{name}.{expires}.{base64.urlsafe_b64encode(mac[:24]).decode()}"

    def path_for(self, token: str) -> Path | None:
        """The file a token grants, or None when the token is forged, expired or gone."""
        name, _, rest = token.partition(".")
        expires_text, _, _ = rest.partition(".")
        if not expires_text.isdigit() or not name.replace("-", "").isalnum():
            return None
        if not hmac.compare_digest(self.token(name, int(expires_text)), token):
            return None
        if int(expires_text) < time.time():
            return None
        path = self.root / name
        return path if path.is_file() else None

    # -- files ----------------------------------------------------------------------------

    async def save(self, data: bytes, mime_type: str, base_url: str) -> str:
        """Keep `data` and return a link to it that works until the TTL runs out."""
        ext = (mimetypes.guess_extension(mime_type) or ".bin").lstrip(".")
        name = f"{secrets.token_hex(16)}-{ext}"
        await asyncio.to_thread(self._write, name, data)
        expires = int(time.time() + self.ttl)
        return f"{base_url.rstrip('/')}/media/{self.token(name, expires)}"

    async def link(self, media: ir.Media, base_url: str) -> ir.Media:
        """The same generated image, also carrying a link to a stored copy."""
        url = await self.save(base64.b64decode(media.data or ""), media.mime_type, base_url)
        return ir.Media(media.mime_type, media.data, url)

    @staticmethod
    def mime_of(path: Path) -> str:
        ext = path.name.rsplit("-", 1)[-1]
        return mimetypes.guess_type(f"x.{ext}")[0] or "application/octet-stream"

    def _write(self, name: str, data: bytes) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        (self.root / name).write_bytes(data)
        if self._held is None or self._held + len(data) > self.max_bytes:
            self.prune()
        else:
            self._held += len(data)

    def prune(self) -> int:
        """Delete expired files, then the oldest until the rest fit under the cap; the bytes
        kept. Links die with their TTL, so expired files can never be served again."""
        if not self.root.is_dir():
            self._held = 0
            return 0
        cutoff = time.time() - self.ttl
        files = []
        for path in self.root.iterdir():
            if not path.is_file() or path.name.startswith("."):
                continue
            try:
                stat = path.stat()
            except FileNotFoundError:
                continue  # another instance swept it
            if stat.st_mtime < cutoff:
                path.unlink(missing_ok=True)
            else:
                files.append((stat.st_mtime, stat.st_size, path))
        held = sum(size for _, size, _ in files)
        for _, size, path in sorted(files):
            if held <= self.max_bytes:
                break
            path.unlink(missing_ok=True)
            held -= size
        self._held = held
        return held

    async def sweep(self, interval: float) -> None:
        """Prune every `interval` seconds, off the event loop, for as long as the server runs."""
        while True:
            try:
                await asyncio.to_thread(self.prune)
            except OSError:
                log.exception("could not sweep the media folder %s", self.root)
            await asyncio.sleep(interval)

    def _key(self) -> bytes:
        if self._secret is None:
            self.root.mkdir(parents=True, exist_ok=True)
            path = self.root / ".secret"
            if not path.exists():
                # Written whole under a name of its own, then linked into place: two processes
                # (workers, instances) making it at once keep the first, and neither can read
                # it half-written.
                draft = self.root / f".secret.{os.getpid()}"
                fd = os.open(draft, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
                with os.fdopen(fd, "wb") as file:
                    file.write(secrets.token_bytes(32))
                with contextlib.suppress(FileExistsError):
                    os.link(draft, path)
                draft.unlink()
            self._secret = path.read_bytes()
        return self._secret
