"""Model-name suffixes that ask the web app for something other than a plain answer:
`gemini-3-fast-video`, `gemini-3-pro-deepsearch`, … (`-free` still goes last).

What each does is in the channel; this table says only what a suffix needs to be served.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass

from gemgate import errors, ir
from gemgate.channels.gemini_web.request import FREE_SUFFIX
from gemgate.pool import Failure, UpstreamFailed


@dataclass(frozen=True, slots=True)
class Mode:
    suffix: str
    # Needs a signed-in account on a paid plan (the reference: Veo and deep research do).
    paid: bool = False
    # A predefined gem put in inner slot 19 (§9.1, §9.4).
    gem: str | None = None


VIDEO = Mode("-video", paid=True)
DEEPSEARCH = Mode("-deepsearch", paid=True)
CANVAS = Mode("-canvas")
STORYBOOK = Mode("-storybook", gem="storybook")
MODES = (VIDEO, DEEPSEARCH, CANVAS, STORYBOOK)


def split(name: str) -> tuple[str, Mode | None]:
    """The model name without its mode suffix (`-free` kept), and the mode."""
    free = name.endswith(FREE_SUFFIX)
    bare = name.removesuffix(FREE_SUFFIX) if free else name
    for mode in MODES:
        if bare.endswith(mode.suffix) and len(bare) > len(mode.suffix):
            return bare.removesuffix(mode.suffix) + (FREE_SUFFIX if free else ""), mode
    return name, None


def cannot_serve(model: str, mode: Mode, why: str) -> UpstreamFailed:
    """This account cannot serve a mode: another account may; if none can, the client gets
    this 400 naming the suffix."""
    message = f"{model}: this gemini_official account cannot serve {mode.suffix} ({why})"
    return UpstreamFailed(
        Failure(
            "retry",
            errors.InvalidRequest(message, param="model", code="model_not_available"),
            reason=message,
        )
    )


async def after_start(
    first: list[ir.Event], rest: AsyncIterator[ir.Event]
) -> AsyncIterator[ir.Event]:
    """The first turn's events, then the rest: once the answer has begun, an account failure
    can no longer move the request to another account, so it reaches the client as the
    error it carries."""
    for event in first:
        yield event
    try:
        async for event in rest:
            yield event
    except UpstreamFailed as failed:
        raise failed.failure.error from None
