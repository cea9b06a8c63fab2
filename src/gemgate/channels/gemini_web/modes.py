"""Model-name suffixes that ask the web app for something other than a plain answer:
`gemini-3-fast-video`, `gemini-3-pro-deepsearch`, … (`-free` still goes last).

What each does is in the channel; this table says only what a suffix needs to be served.
"""

from __future__ import annotations

from dataclasses import dataclass

from gemgate.channels.gemini_web.request import FREE_SUFFIX


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
