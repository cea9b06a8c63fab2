"""Removing the visible sparkle Gemini paints on its generated images (web protocol notes §8.4).

The mark is white blended over the picture with a known alpha map: `W = a*255 + (1-a)*O`. So
where the mark is, the picture under it comes back as `O = (W - a*255) / (1-a)`. The mark's
place is documented (48 px, 32 px from the bottom-right corner; 96 px, 64 px from it on large
images) but has moved before, so it is looked for near those places by correlating the image
with each alpha map, and only removed where it is clearly there: an unmarked image is left
alone. Pixels outside the mark are never touched. Google's invisible SynthID watermark is a
different thing and is not touched at all.

The alpha maps ship in `gemgate/data/watermark/` with their attribution (NOTICE.md).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache
from importlib import resources

import numpy as np
from numpy.typing import NDArray
from PIL import Image

# Where alpha is below this, the map is capture noise, not mark.
ALPHA_FLOOR = 0.002
# Alpha is capped so the inverse blend never divides by (almost) nothing.
ALPHA_CAP = 0.99
# How far from its documented place, in pixels, the mark is looked for.
SEARCH_RADIUS = 8
# Correlation of the image with the alpha map above which the mark counts as found...
FOUND = 0.35
# ...and which the restored patch must have lost: a real mark leaves no trace of the map.
RESIDUE = 0.15

Array = NDArray[np.float64]


@dataclass(frozen=True, slots=True)
class Mark:
    size: int
    x: int
    y: int
    score: float


@cache
def alpha_map(size: int) -> Array:
    data = resources.files("gemgate").joinpath(f"data/watermark/alpha_{size}.png").read_bytes()
    from io import BytesIO

    with Image.open(BytesIO(data)) as image:
        return np.asarray(image.convert("L"), dtype=np.float64) / 255.0


def documented_places(width: int, height: int) -> list[tuple[int, int, int]]:
    """(size, x, y) of the mark where the captures put it; both scales are tried, the
    documented one first."""
    small = (48, width - 48 - 32, height - 48 - 32)
    large = (96, width - 96 - 64, height - 96 - 64)
    places = [large, small] if width > 1024 and height > 1024 else [small, large]
    return [(s, x, y) for s, x, y in places if x >= 0 and y >= 0]


def locate(image: Image.Image) -> Mark | None:
    """Where the mark is on this image, or None when it is not clearly there."""
    rgb = _rgb(image)
    gray = rgb.mean(axis=2)
    height, width = gray.shape
    best: Mark | None = None
    for size, x0, y0 in documented_places(width, height):
        alpha = alpha_map(size)
        for y in range(max(0, y0 - SEARCH_RADIUS), min(height - size, y0 + SEARCH_RADIUS) + 1):
            for x in range(max(0, x0 - SEARCH_RADIUS), min(width - size, x0 + SEARCH_RADIUS) + 1):
                score = _correlation(gray[y : y + size, x : x + size], alpha)
                if best is None or score > best.score:
                    best = Mark(size, x, y, score)
    if best is None or best.score < FOUND:
        return None
    restored = _unblend(rgb[best.y : best.y + best.size, best.x : best.x + best.size], best.size)
    if abs(_correlation(restored.mean(axis=2), alpha_map(best.size))) > RESIDUE:
        return None  # what looked like the mark is part of the picture
    return best


def remove(image: Image.Image) -> Image.Image | None:
    """The image without the mark, or None when it carries none (then nothing changes)."""
    mark = locate(image)
    if mark is None:
        return None
    has_alpha = image.mode in ("RGBA", "LA") or "transparency" in image.info
    out = image.convert("RGBA" if has_alpha else "RGB")
    pixels = np.array(out)
    box = (slice(mark.y, mark.y + mark.size), slice(mark.x, mark.x + mark.size))
    patch = pixels[box][..., :3].astype(np.float64)
    restored = _unblend(patch, mark.size)
    changed = alpha_map(mark.size) > ALPHA_FLOOR
    region = pixels[box]
    region[..., :3][changed] = np.clip(np.rint(restored[changed]), 0, 255).astype(np.uint8)
    return Image.fromarray(pixels, out.mode)


def _unblend(patch: Array, size: int) -> Array:
    alpha = np.minimum(alpha_map(size), ALPHA_CAP)[..., None]
    restored = (patch - alpha * 255.0) / (1.0 - alpha)
    # Below the floor the pixel is left as it was.
    return np.where(alpha > ALPHA_FLOOR, restored, patch)


def _correlation(patch: Array, alpha: Array) -> float:
    p = patch - patch.mean()
    a = alpha - alpha.mean()
    denominator = float(np.sqrt((p * p).sum() * (a * a).sum()))
    if denominator < 1e-9:
        return 0.0
    return float((p * a).sum() / denominator)


def _rgb(image: Image.Image) -> Array:
    return np.asarray(image.convert("RGB"), dtype=np.float64)
