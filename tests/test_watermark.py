"""The visible-watermark remover on images we mark ourselves with the blend Gemini uses
(`W = a*255 + (1-a)*O`, web protocol notes §8.4): the mark found near its documented place,
the marked area brought back within a few levels of the picture under it, every other pixel
byte-identical, and an unmarked image left alone."""

from __future__ import annotations

import numpy as np
import pytest
from numpy.typing import NDArray
from PIL import Image

from gemgate import watermark

Pixels = NDArray[np.uint8]


def gradient(width: int, height: int) -> Pixels:
    x = np.linspace(20, 220, width)[None, :]
    y = np.linspace(40, 200, height)[:, None]
    pixels = np.empty((height, width, 3), dtype=np.uint8)
    pixels[..., 0] = (x + 0 * y).astype(np.uint8)
    pixels[..., 1] = (y + 0 * x).astype(np.uint8)
    pixels[..., 2] = ((x + y) / 2).astype(np.uint8)
    return pixels


def textured(width: int, height: int, seed: int = 1) -> Pixels:
    rng = np.random.default_rng(seed)
    noise = rng.normal(0, 18, (height, width, 3))
    return np.clip(gradient(width, height) + noise, 0, 255).astype(np.uint8)


def mark(pixels: Pixels, size: int, x: int, y: int) -> Pixels:
    """Blend the sparkle onto a copy, rounded to 8 bits as an encoder would."""
    out = pixels.copy()
    alpha = watermark.alpha_map(size)[..., None]
    region = out[y : y + size, x : x + size].astype(np.float64)
    out[y : y + size, x : x + size] = np.rint(alpha * 255 + (1 - alpha) * region).astype(np.uint8)
    return out


def outside(pixels: Pixels, size: int, x: int, y: int) -> NDArray[np.bool_]:
    keep = np.ones(pixels.shape[:2], dtype=bool)
    keep[y : y + size, x : x + size] = False
    return keep


@pytest.mark.parametrize(
    ("width", "height", "size", "margin"),
    [
        (1024, 1024, 48, 32),
        (800, 600, 48, 32),
        (2048, 2048, 48, 32),
        (1536, 1536, 96, 64),
        (2048, 1152, 96, 64),
    ],
)
def test_the_documented_mark_is_removed(width: int, height: int, size: int, margin: int) -> None:
    original = gradient(width, height)
    x, y = width - size - margin, height - size - margin
    marked = mark(original, size, x, y)
    found = watermark.locate(Image.fromarray(marked))
    assert found is not None and (found.size, found.x, found.y) == (size, x, y)
    cleaned = watermark.remove(Image.fromarray(marked))
    assert cleaned is not None
    result = np.asarray(cleaned)
    box = (slice(y, y + size), slice(x, x + size))
    # Within a few levels of the colour under the mark...
    assert np.abs(result[box].astype(int) - original[box].astype(int)).max() <= 3
    # ...and every other pixel exactly as it was.
    keep = outside(marked, size, x, y)
    assert np.array_equal(result[keep], marked[keep])


def test_a_mark_a_little_off_its_place_is_found() -> None:
    original = gradient(1024, 768)
    x, y = 1024 - 48 - 32 - 5, 768 - 48 - 32 + 3
    marked = mark(original, 48, x, y)
    found = watermark.locate(Image.fromarray(marked))
    assert found is not None and (found.size, found.x, found.y) == (48, x, y)
    cleaned = np.asarray(watermark.remove(Image.fromarray(marked)))
    assert (
        np.abs(cleaned[y : y + 48, x : x + 48].astype(int) - original[y : y + 48, x : x + 48]).max()
        <= 3
    )


def test_a_mark_on_a_textured_picture() -> None:
    original = textured(1024, 1024)
    x = y = 1024 - 48 - 32
    marked = mark(original, 48, x, y)
    cleaned = watermark.remove(Image.fromarray(marked))
    assert cleaned is not None
    result = np.asarray(cleaned)
    assert (
        np.abs(result[y : y + 48, x : x + 48].astype(int) - original[y : y + 48, x : x + 48]).max()
        <= 3
    )
    keep = outside(marked, 48, x, y)
    assert np.array_equal(result[keep], marked[keep])


@pytest.mark.parametrize(
    "pixels",
    [gradient(1024, 1024), textured(1024, 1024, 7), textured(1600, 1200, 3), gradient(300, 200)],
)
def test_an_unmarked_image_is_left_alone(pixels: Pixels) -> None:
    assert watermark.locate(Image.fromarray(pixels)) is None
    assert watermark.remove(Image.fromarray(pixels)) is None


def test_a_bright_spot_that_is_not_the_sparkle_is_left_alone() -> None:
    pixels = gradient(1024, 1024)
    x = y = 1024 - 48 - 32
    # A round white blob where the mark would be: bright, but not the sparkle's shape.
    yy, xx = np.mgrid[0:48, 0:48]
    blob = np.exp(-((xx - 24) ** 2 + (yy - 24) ** 2) / 60.0)[..., None]
    region = pixels[y : y + 48, x : x + 48].astype(np.float64)
    pixels[y : y + 48, x : x + 48] = np.rint(blob * 255 + (1 - blob) * region).astype(np.uint8)
    assert watermark.remove(Image.fromarray(pixels)) is None


def test_transparency_is_kept() -> None:
    rgb = mark(gradient(1024, 1024), 48, 944, 944)
    alpha = np.full((1024, 1024, 1), 200, dtype=np.uint8)
    rgba = np.concatenate([rgb, alpha], axis=2)
    cleaned = watermark.remove(Image.fromarray(rgba, "RGBA"))
    assert cleaned is not None and cleaned.mode == "RGBA"
    assert np.array_equal(np.asarray(cleaned)[..., 3], alpha[..., 0])


def test_too_small_an_image_has_no_place_for_the_mark() -> None:
    assert watermark.remove(Image.fromarray(gradient(60, 60))) is None
