"""Sizes asked of the images API: parsed strictly, mapped to the nearest shape a model makes."""

from __future__ import annotations

import pytest

from gemgate import image_size


@pytest.mark.parametrize(
    ("size", "ratio"),
    [
        ((1024, 1024), "1:1"),
        ((1792, 1024), "16:9"),
        ((1024, 1792), "9:16"),
        ((1000, 600), "16:9"),
        ((1536, 1024), "3:2"),
        ((3000, 1000), "21:9"),
        ((1000, 3000), "9:16"),
        ((1100, 1000), "1:1"),
        ((1250, 1000), "5:4"),
    ],
)
def test_nearest_ratio(size: tuple[int, int], ratio: str) -> None:
    assert image_size.nearest_ratio(*size) == ratio


def test_imagen_ratios() -> None:
    assert image_size.nearest_ratio(1536, 1024, image_size.IMAGEN_RATIOS) == "4:3"
    assert image_size.nearest_ratio(3000, 1000, image_size.IMAGEN_RATIOS) == "16:9"


@pytest.mark.parametrize(
    ("size", "expected"),
    [((512, 512), "1K"), ((1280, 720), "1K"), ((2048, 1152), "2K"), ((4096, 4096), "4K")],
)
def test_size_class(size: tuple[int, int], expected: str) -> None:
    assert image_size.size_class(*size) == expected


def test_parse() -> None:
    assert image_size.parse("auto") is None
    assert image_size.parse(" 1024X768 ") == (1024, 768)
    for bad in ("big", "1024", "0x10", "-5x10", "1024x", "9000x10", "8000x8000"):
        with pytest.raises(ValueError):
            image_size.parse(bad)
