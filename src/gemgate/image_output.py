"""A generated image made into the one the client asked for (`ir.ImageOutput`): the visible
watermark removed, exactly the asked size, the asked file type. Whatever the channel made it.

Pillow work runs in a worker thread: a 4K image takes tens of milliseconds, too long for the
event loop. An image that needs nothing done keeps its bytes as they came. Pillow and numpy
(the watermark remover) are imported on the first image that needs work: together they cost
a server that never makes images about 15 MB and a third of a second at start-up.
"""

from __future__ import annotations

import asyncio
import base64
from io import BytesIO
from typing import TYPE_CHECKING

from gemgate import ir

if TYPE_CHECKING:
    from PIL.Image import Image as PILImage

_PIL_FORMATS = {"image/png": "PNG", "image/jpeg": "JPEG", "image/webp": "WEBP"}
_LOSSY = ("image/jpeg", "image/webp")


async def apply(media: ir.Media, output: ir.ImageOutput) -> ir.Media:
    if not media.mime_type.startswith("image/") or not media.data or not _asks(output):
        return media
    data = base64.b64decode(media.data)
    done, mime = await asyncio.to_thread(transform, data, media.mime_type, output)
    if done is data:
        return media
    return ir.Media(mime, data=base64.b64encode(done).decode())


def _asks(output: ir.ImageOutput) -> bool:
    return bool(output.width or output.mime_type or output.remove_watermark)


def transform(data: bytes, mime: str, output: ir.ImageOutput) -> tuple[bytes, str]:
    """The image's new bytes and type, or `data` itself when nothing had to change."""
    from PIL import Image, ImageOps

    from gemgate import watermark

    with Image.open(BytesIO(data)) as opened:
        opened.load()
        image: PILImage = opened.copy()
    changed = False
    target = output.mime_type or mime
    if output.remove_watermark:
        cleaned = watermark.remove(image)
        if cleaned is not None:
            image, changed = cleaned, True
            if output.mime_type is None and mime in _LOSSY:
                # Re-encoding lossily would change every pixel, not just the mark's.
                target = "image/png"
    if output.width and output.height and image.size != (output.width, output.height):
        # Scaled to cover the asked size and centre-cropped: exact size, nothing distorted.
        image = ImageOps.fit(image, (output.width, output.height), Image.Resampling.LANCZOS)
        changed = True
    if not changed and target == mime:
        return data, mime
    if target not in _PIL_FORMATS:
        target = "image/png"
    return encode(image, target), target


def encode(image: PILImage, mime: str) -> bytes:
    kind = _PIL_FORMATS.get(mime, "PNG")
    if kind == "JPEG" and image.mode not in ("RGB", "L"):
        image = image.convert("RGB")
    out = BytesIO()
    if kind == "PNG":
        image.save(out, "PNG")
    else:
        image.save(out, kind, quality=95)
    return out.getvalue()
