"""The images of an `-imagen` answer (image generation, inner slot 49 = 14): found in the
answer, downloaded with the account's cookies, and handed on as IR media with their bytes
(clients have no Google cookies, so a Google URL would be useless to them).

Where they are (§6.4, §8.1): rich field 7 of the chosen candidate, positional or in the sparse
bundle; with the tool selector the stream may end without them, and the chat read back with
`hNvQHb` has them (§8.3). Which file (§8.2): by default the preview as given (about 1K); with
`return_origin_image` the full-size original, through `c8o8Fe` and its text-pointer hops, else
the large preview size `=s2048-rj`, else the preview. Watermark removal, the exact size and the
file type are the pipeline's (image_output.py), as for every channel.
"""

from __future__ import annotations

import asyncio
import base64
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any, Protocol
from urllib.parse import urlsplit

import orjson

from gemgate import errors, image_size, ir
from gemgate.channels.gemini_web import downloads, frames
from gemgate.channels.gemini_web.client import WebSession
from gemgate.channels.gemini_web.read_chat import read_chat
from gemgate.pool import UpstreamFailed

log = logging.getLogger("gemgate.gemini_web")

IMAGES_FIELD = 7
LARGE = "s2048-rj"
_PLACEHOLDER_ID = "http://googleusercontent.com/image_generation_content/{}"
# Turns read back from the chat when the stream carried no image (the newest few suffice),
# and how often and how far apart, while the text says an image is coming (§8.3: the
# selector's artefacts are read after the turn; they may lag it by a moment).
_READ_LIMIT = 10
CHAT_READS = 5
CHAT_READ_GAP = 2.0
_MADE = "/image_generation_content/"


class Answer(Protocol):
    """What the channel learnt from the turn's frames."""

    cid: str | None
    rid: str | None
    rcid: str | None
    rich: Any
    raw_text: str


@dataclass(frozen=True, slots=True)
class Generated:
    url: str  # the preview
    image_id: str


def generated(rich: Any) -> list[Generated]:
    """The generated images in a rich-content block, in order; [] when there are none."""
    field = frames.rich_field(rich, IMAGES_FIELD)
    if field is None and isinstance(frames.at(rich, 0), dict):
        field = rich[0].get(str(IMAGES_FIELD + 1))  # an older sparse shape (§8.1)
    if not isinstance(field, list):
        return []
    # `[7][0]` is the list of images; a block that has the images at `[7]` itself is read too.
    items = field[0] if isinstance(frames.at(field, 0, 0, 0), list) else field
    found = []
    for n, item in enumerate(items if isinstance(items, list) else []):
        url = frames.at(item, 0, 3, 3)
        if not isinstance(url, str) or not url.startswith(("https://", "http://")):
            continue
        image_id = frames.at(item, 1, 0)
        found.append(
            Generated(url, image_id if isinstance(image_id, str) else _PLACEHOLDER_ID.format(n))
        )
    return found


async def deliver(
    session: WebSession, answer: Answer, request: ir.Request
) -> AsyncIterator[ir.Event]:
    """The answer's images as media parts. None at all is no error here: the answer's text
    says why (the images API turns that into a content-policy refusal)."""
    found = generated(answer.rich)
    if not found and answer.cid:
        reads = CHAT_READS if _MADE in answer.raw_text else 1
        for attempt in range(reads):
            if attempt:
                await asyncio.sleep(CHAT_READ_GAP)
            found = await _from_chat(session, answer)
            if found:
                break
    if not found:
        return
    original = request.image_output is not None and request.image_output.original
    results = await asyncio.gather(
        *(_download(session, answer, image, original) for image in found),
        return_exceptions=True,
    )
    failures: list[Exception] = []
    for result in results:
        if isinstance(result, downloads.Downloaded):
            yield ir.PartEvent(
                ir.Media(result.mime_type, data=base64.b64encode(result.data).decode())
            )
        elif isinstance(result, downloads.DownloadFailed | UpstreamFailed):
            failures.append(result)
        elif isinstance(result, BaseException):
            raise result
    if failures:
        log.warning("gemini_official: %d of %d generated images could not be downloaded: %s",
                    len(failures), len(found), failures[0])  # fmt: skip
    if len(failures) == len(found):
        first = failures[0]
        hint = "; the account's cookies may have expired"
        if isinstance(first, downloads.DownloadTooLarge):
            hint = ""
        raise errors.UpstreamError(
            f"the Gemini web app made {len(found)} image(s) but they could not be downloaded "
            f"({first}){hint}"
        )


def prompt_note(request: ir.Request) -> str:
    """The shape the client asked for, in words: the web app has no size option, and an image
    made near the asked shape loses little when the pipeline cuts it to the exact size."""
    output = request.image_output
    if output is None or not output.width or not output.height:
        return ""
    ratio = image_size.nearest_ratio(output.width, output.height)
    if ratio == "1:1":
        return "\n\nMake the image square (aspect ratio 1:1)."
    shape = "landscape" if output.width > output.height else "portrait"
    return f"\n\nMake the image {shape}, aspect ratio {ratio}."


async def _download(
    session: WebSession, answer: Answer, image: Generated, original: bool
) -> downloads.Downloaded:
    if original:
        try:
            url = await _original_url(session, answer, image)
            if url is not None:
                return await downloads.fetch(session, url)
            log.info("gemini_official: no full-size URL for an image; using the large preview")
        except (downloads.DownloadFailed, UpstreamFailed) as failed:
            log.info("gemini_official: the full-size image failed (%s); using the large "
                     "preview", failed)  # fmt: skip
        try:
            return await downloads.fetch(session, sized(image.url, LARGE))
        except downloads.DownloadFailed as failed:
            log.info("gemini_official: the large preview failed (%s); using the preview", failed)
    return await downloads.fetch(session, image.url)


def sized(url: str, size: str) -> str:
    """The preview URL asking for another size: its `=…` suffix replaced, else appended (a
    doubled suffix is a 400)."""
    parts = urlsplit(url)
    path = parts.path
    last = path.rsplit("/", 1)[-1]
    if "=" in last:
        path = path[: len(path) - len(last)] + last.split("=", 1)[0]
    return parts._replace(path=f"{path}={size}").geturl()


async def _original_url(session: WebSession, answer: Answer, image: Generated) -> str | None:
    """The full-size original's first URL (§8.2): c8o8Fe names it, `=d-I?alr=yes` starts its
    chain of text pointers."""
    if not (answer.rid and answer.rcid and answer.cid):
        return None
    payload = [
        [
            [None, None, None, [None, None, None, None, None, ""]],
            [image.image_id, 0],
            None, [19, ""], None, None, None, None, None, "",
        ],
        [answer.rid, answer.rcid, answer.cid, None, ""],
        1, 0, 1,
    ]  # fmt: skip
    page, _ = await session.ready()
    body = await session.batch(page, "c8o8Fe", orjson.dumps(payload).decode())
    url = _first_url(body)
    return f"{url}=d-I?alr=yes" if url else None


def _first_url(value: Any) -> str | None:
    if isinstance(value, str):
        return value if value.startswith(("https://", "http://")) else None
    if isinstance(value, list):
        for item in value:
            found = _first_url(item)
            if found:
                return found
    return None


async def _from_chat(session: WebSession, answer: Answer) -> list[Generated]:
    """The images of this turn as the chat read back has them (hNvQHb)."""
    assert answer.cid is not None
    try:
        turns = await read_chat(session, answer.cid, _READ_LIMIT)
    except UpstreamFailed as failed:
        log.info("gemini_official: could not read the chat back for its images: %s", failed)
        return []
    turn = next((t for t in turns if t.rid == answer.rid), None)
    if turn is None and turns and all(t.rid is None for t in turns):
        turn = turns[0]  # turns without their ids: the newest is this one
    if turn is None or not turn.candidates:
        return []
    chosen = next((c for c in turn.candidates if frames.at(c, 0) == answer.rcid), None)
    return generated(frames.at(chosen or turn.candidates[0], 12))
