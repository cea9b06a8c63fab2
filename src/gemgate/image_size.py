"""Image sizes: a client's `WIDTHxHEIGHT`, the nearest shape an upstream can make, and the
size class Gemini's image models take (protocol notes A.2.5, C.6). Pure; no Pillow here."""

from __future__ import annotations

import math

# What every Gemini image model takes as imageConfig.aspectRatio.
ASPECT_RATIOS = ("1:1", "2:3", "3:2", "3:4", "4:3", "4:5", "5:4", "9:16", "16:9", "21:9")
# Newer image models (Gemini 3 class) also take these very tall and very wide shapes.
EXTREME_RATIOS = ("1:4", "4:1", "1:8", "8:1")
# Imagen on the Gemini API.
IMAGEN_RATIOS = ("1:1", "3:4", "4:3", "9:16", "16:9")

MAX_SIDE = 8192
MAX_PIXELS = 1 << 25  # 32 MP: an 8-bit RGBA canvas of 128 MB, the most one image may cost


def parse(text: str) -> tuple[int, int] | None:
    """A `WIDTHxHEIGHT` size, or None for `auto`; ValueError with a reason otherwise."""
    value = text.strip().lower()
    if value in ("", "auto"):
        return None
    width_text, sep, height_text = value.partition("x")
    if not sep or not width_text.isdigit() or not height_text.isdigit():
        raise ValueError(f"size must be auto or WIDTHxHEIGHT such as 1024x768, not {text!r}")
    width, height = int(width_text), int(height_text)
    if not (1 <= width <= MAX_SIDE and 1 <= height <= MAX_SIDE):
        raise ValueError(f"each side of size must be between 1 and {MAX_SIDE} pixels")
    if width * height > MAX_PIXELS:
        raise ValueError(f"size may have at most {MAX_PIXELS} pixels")
    return width, height


def nearest_ratio(width: int, height: int, ratios: tuple[str, ...] = ASPECT_RATIOS) -> str:
    """The ratio closest to width:height, compared on a log scale so that 2:1 and 1:2 are as
    far from 1:1."""
    wanted = math.log(width / height)

    def distance(ratio: str) -> float:
        w, _, h = ratio.partition(":")
        return abs(math.log(int(w) / int(h)) - wanted)

    return min(ratios, key=distance)


def size_class(width: int, height: int) -> str:
    """Gemini's imageSize for an image this large: 1K up to 1280 px a side, 2K up to 2560."""
    side = max(width, height)
    if side <= 1280:
        return "1K"
    if side <= 2560:
        return "2K"
    return "4K"
