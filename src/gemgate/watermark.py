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
# ...and the share of its imprint (brightness gained per unit of alpha) that may be left once
# it is removed: a real mark leaves almost none, a bright spot that only looks like it leaves
# a dark hole, which is a large negative imprint.
RESIDUE = 0.25

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
    width, height = image.size
    best: Mark | None = None
    for size, x0, y0 in documented_places(width, height):
        # Only the search window is read: a 4K image is never converted whole.
        left, top = max(0, x0 - SEARCH_RADIUS), max(0, y0 - SEARCH_RADIUS)
        right = min(width, x0 + SEARCH_RADIUS + size)
        bottom = min(height, y0 + SEARCH_RADIUS + size)
        gray = _rgb(image.crop((left, top, right, bottom))).mean(axis=2)
        scores = _correlations(gray, alpha_map(size))
        y, x = np.unravel_index(int(np.argmax(scores)), scores.shape)
        score = float(scores[y, x])
        if best is None or score > best.score:
            best = Mark(size, left + int(x), top + int(y), score)
    if best is None or best.score < FOUND:
        return None
    box = (best.x, best.y, best.x + best.size, best.y + best.size)
    patch = _rgb(image.crop(box))
    alpha = alpha_map(best.size)
    before = _slope(patch.mean(axis=2), alpha)
    after = _slope(_unblend(patch, best.size).mean(axis=2), alpha)
    if before <= 0 or abs(after) > RESIDUE * before:
        return None  # what looked like the mark is part of the picture
    return best


def remove(image: Image.Image) -> Image.Image | None:
    """The image without the mark, or None when it carries none (then nothing changes)."""
    mark = locate(image)
    if mark is None:
        return None
    has_alpha = image.mode in ("RGBA", "LA") or "transparency" in image.info
    out = image.convert("RGBA" if has_alpha else "RGB")
    box = (mark.x, mark.y, mark.x + mark.size, mark.y + mark.size)
    pixels = np.array(out.crop(box))
    restored = _unblend(pixels[..., :3].astype(np.float64), mark.size)
    changed = alpha_map(mark.size) > ALPHA_FLOOR
    colour = pixels[..., :3]
    colour[changed] = np.clip(np.rint(restored[changed]), 0, 255).astype(np.uint8)
    pixels[..., :3] = colour
    out.paste(Image.fromarray(pixels, out.mode), box[:2])
    return out


def _unblend(patch: Array, size: int) -> Array:
    alpha = np.minimum(alpha_map(size), ALPHA_CAP)[..., None]
    restored = (patch - alpha * 255.0) / (1.0 - alpha)
    # Below the floor the pixel is left as it was.
    return np.where(alpha > ALPHA_FLOOR, restored, patch)


def _correlations(gray: Array, alpha: Array) -> Array:
    """Pearson correlation of `alpha` with every window of its size in `gray`."""
    size = alpha.shape[0]
    windows = np.lib.stride_tricks.sliding_window_view(gray, (size, size))
    centred = alpha - alpha.mean()
    # The centred map sums to zero, so the windows need no centring for the numerator.
    numerator = np.einsum("ijkl,kl->ij", windows, centred)
    count = size * size
    sums = np.einsum("ijkl->ij", windows)
    squares = np.einsum("ijkl,ijkl->ij", windows, windows)
    spread = np.maximum(squares - sums * sums / count, 0.0) * float((centred * centred).sum())
    with np.errstate(divide="ignore", invalid="ignore"):
        scores = np.where(spread > 1e-9, numerator / np.sqrt(spread), 0.0)
    return np.asarray(scores, dtype=np.float64)


def _slope(patch: Array, alpha: Array) -> float:
    """How much brighter the patch is per unit of alpha: the mark's imprint in grey levels."""
    a = alpha - alpha.mean()
    return float(((patch - patch.mean()) * a).sum() / (a * a).sum())


def _rgb(image: Image.Image) -> Array:
    return np.asarray(image.convert("RGB"), dtype=np.float64)
