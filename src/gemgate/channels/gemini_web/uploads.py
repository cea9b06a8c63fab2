"""Files for a web chat: uploaded to the push host (reference §7), then referenced in the
request. The MIME type must be right: a file typed application/octet-stream is silently
ignored by the model."""

from __future__ import annotations

from typing import Any

from gemgate.channels.gemini_web.client import FilePart, WebSession, transient

# Kinds in the browser's attachment shape: 1 image, 3 text or any other file.
_IMAGE, _FILE = 1, 3
_EXTENSIONS = {
    "image/png": "png", "image/jpeg": "jpg", "image/webp": "webp", "image/gif": "gif",
    "image/heic": "heic", "application/pdf": "pdf", "audio/mpeg": "mp3", "audio/wav": "wav",
    "audio/x-wav": "wav", "audio/ogg": "ogg", "audio/flac": "flac", "audio/aac": "aac",
    "text/plain": "txt", "text/markdown": "md", "text/csv": "csv", "text/html": "html",
    "application/json": "json",
}  # fmt: skip


def file_name(mime: str, index: int) -> str:
    return f"file{index}.{_EXTENSIONS.get(mime, mime.rpartition('/')[2] or 'bin')}"


async def upload(session: WebSession, name: str, mime: str, data: bytes) -> list[Any]:
    """Upload one file; the attachment entry that refers to it in inner slot 0."""
    page, _ = await session.ready()
    client = session.client
    reply = await client.send(
        session,
        "POST",
        client.upload_base + "/upload",
        headers={
            "Origin": "https://gemini.google.com",
            "Referer": "https://gemini.google.com/",
            "Push-ID": page.push_id,
            "X-Tenant-Id": "bard-storage",
        },
        upload=FilePart("file", name, mime, data),
        # The push host is not a google.com host: its requests carry no session cookies.
        cookies=False,
    )
    ref = reply.text.strip()
    if reply.status != 200 or not ref:
        raise transient(f"the web app's upload host answered HTTP {reply.status}")
    kind = _IMAGE if mime.startswith("image/") else _FILE
    return [[ref, kind, None, mime], name, None, None, None, None, None, None, [0]]
