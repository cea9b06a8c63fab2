"""Videos the web app makes (`-video`, Veo): where the answer points to one, and the wait
until it has rendered (reference §8.3, §8.5).

The answer's rich block carries field 59 with the video's URL; the turn may be complete long
before the video is. A GET of the URL answers 206 while it still renders and 200 with the
bytes once done, so it is polled, with asyncio sleeps in between (other requests go on), up to
a time limit. Downloads go as every web-app download does (downloads.py: the account's
Google cookies, redirects by hand).
"""

from __future__ import annotations

import asyncio
import base64
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

from gemgate import errors, ir
from gemgate.channels.gemini_web import downloads
from gemgate.channels.gemini_web.client import WebSession
from gemgate.channels.gemini_web.frames import at, rich_field


@dataclass(frozen=True, slots=True)
class VideoRef:
    url: str
    thumbnail: str | None = None


def prompt_note(request: ir.Request) -> str:
    """Nothing known selects Veo but asking for a video in words (§8.5)."""
    return "\n\nGenerate a video for this request."


def find(rich: Any) -> VideoRef | None:
    """The video an answer's rich block points to: field 59, `[0][0][0]` the video info,
    whose `[0][7]` is `[thumbnail_url, video_url]`."""
    urls = at(rich_field(rich, 59), 0, 0, 0, 0, 7)
    if not isinstance(urls, list) or len(urls) < 2 or not isinstance(urls[1], str):
        return None
    thumbnail = urls[0] if isinstance(urls[0], str) else None
    return VideoRef(urls[1], thumbnail)


async def rendered(
    session: WebSession, video: VideoRef, *, interval: float, limit: float
) -> AsyncIterator[ir.Event]:
    """Progress while the video renders, then the video itself as inline media."""
    started = time.monotonic()
    while True:
        try:
            got = await downloads.fetch(session, video.url)
        except downloads.StillRendering:
            pass
        except downloads.DownloadFailed as failed:
            raise errors.UpstreamError(
                f"the Gemini web app's video could not be downloaded: {failed}"
            ) from None
        else:
            data = base64.b64encode(got.data).decode()
            yield ir.PartEvent(ir.Media(got.mime_type, data=data))
            return
        waited = time.monotonic() - started
        if waited + interval > limit:
            raise errors.UpstreamTimeout(
                f"the video was still rendering after {waited:.0f}s "
                f"(GEMGATE_WEB_VIDEO_TIMEOUT is {limit:.0f}s)"
            )
        yield ir.Progress(f"video rendering, {waited:.0f}s so far")
        await asyncio.sleep(interval)
