"""Videos the web app makes (`-video`, Veo): where the answer points to one, and the wait
until it has rendered (reference §8.3, §8.5).

The answer's rich block carries field 59 with the video's URL; the turn may be complete long
before the video is. A GET of the URL answers 206 while it still renders and 200 with the
bytes once done, so it is polled, with asyncio sleeps in between (other requests go on), up to
a time limit. Downloads carry the account's cookies and follow redirects by hand, sending them
again on every hop (HTTP clients drop them across hosts).
"""

from __future__ import annotations

import asyncio
import base64
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import urljoin

from gemgate import errors, ir
from gemgate.channels.gemini_web.client import Reply, WebClient, WebSession
from gemgate.channels.gemini_web.frames import at, rich_field
from gemgate.media import sniff_mime

_MAX_HOPS = 5


@dataclass(frozen=True, slots=True)
class VideoRef:
    url: str
    thumbnail: str | None = None


def find(rich: Any) -> VideoRef | None:
    """The video an answer's rich block points to: field 59, `[0][0][0]` the video info,
    whose `[0][7]` is `[thumbnail_url, video_url]`."""
    urls = at(rich_field(rich, 59), 0, 0, 0, 0, 7)
    if not isinstance(urls, list) or len(urls) < 2 or not isinstance(urls[1], str):
        return None
    thumbnail = urls[0] if isinstance(urls[0], str) else None
    return VideoRef(urls[1], thumbnail)


async def rendered(
    client: WebClient, session: WebSession, video: VideoRef, *, interval: float, limit: float
) -> AsyncIterator[ir.Event]:
    """Progress while the video renders, then the video itself as inline media."""
    started = time.monotonic()
    while True:
        reply = await download(client, session, video.url)
        if reply.status == 200 and reply.content:
            mime = sniff_mime(reply.content[:16]) or "video/mp4"
            data = base64.b64encode(reply.content).decode()
            yield ir.PartEvent(ir.Media(mime, data=data))
            return
        if reply.status not in (200, 206):  # a 200 without bytes is still rendering too
            raise errors.UpstreamError(
                f"the Gemini web app's video could not be downloaded (HTTP {reply.status})"
            )
        waited = time.monotonic() - started
        if waited + interval > limit:
            raise errors.UpstreamTimeout(
                f"the video was still rendering after {waited:.0f}s "
                f"(GEMGATE_WEB_VIDEO_TIMEOUT is {limit:.0f}s)"
            )
        yield ir.Progress(f"video rendering, {waited:.0f}s so far")
        await asyncio.sleep(interval)


async def download(client: WebClient, session: WebSession, url: str) -> Reply:
    headers = {"Origin": "https://gemini.google.com", "Referer": "https://gemini.google.com/"}
    for _ in range(_MAX_HOPS):
        reply = await client.send(session, "GET", url, headers=headers, redirects=False)
        if reply.status not in (301, 302, 303, 307, 308) or not reply.location:
            return reply
        url = urljoin(url, reply.location)
    raise errors.UpstreamError("the Gemini web app's video download redirected too often")
