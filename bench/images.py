"""What gemgate's own image work costs per generated image: decoding, watermark search and
removal, resizing to an exact size, re-encoding (gemgate.image_output.transform, which the
pipeline runs in a worker thread). Run from the repository root:

    .venv/bin/python bench/images.py [--repeat N]
"""

from __future__ import annotations

import argparse
import io
import statistics
import time

import numpy as np
from PIL import Image

from gemgate import ir, watermark
from gemgate.image_output import transform


def marked_png(width: int, height: int) -> bytes:
    x = np.linspace(20, 220, width)[None, :]
    y = np.linspace(40, 200, height)[:, None]
    pixels = np.stack([x + 0 * y, y + 0 * x, (x + y) / 2], axis=2)
    size, margin = (96, 64) if width > 1024 and height > 1024 else (48, 32)
    left, top = width - size - margin, height - size - margin
    alpha = watermark.alpha_map(size)[..., None]
    box = pixels[top : top + size, left : left + size]
    pixels[top : top + size, left : left + size] = alpha * 255 + (1 - alpha) * box
    out = io.BytesIO()
    Image.fromarray(np.rint(pixels).astype(np.uint8), "RGB").save(out, "PNG")
    return out.getvalue()


def timed(data: bytes, output: ir.ImageOutput, repeat: int) -> float:
    samples = []
    for _ in range(repeat):
        start = time.perf_counter()
        transform(data, "image/png", output)
        samples.append(time.perf_counter() - start)
    return statistics.median(samples) * 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=7)
    args = parser.parse_args()
    print("| image | remove_watermark | resize to 1000x600 | both |")
    print("| --- | --- | --- | --- |")
    for width, height in ((1024, 1024), (2048, 2048), (4096, 4096)):
        data = marked_png(width, height)
        mark = timed(data, ir.ImageOutput(remove_watermark=True), args.repeat)
        size = timed(data, ir.ImageOutput(width=1000, height=600), args.repeat)
        both = timed(
            data, ir.ImageOutput(width=1000, height=600, remove_watermark=True), args.repeat
        )
        print(f"| {width}x{height} PNG | {mark:.0f} ms | {size:.0f} ms | {both:.0f} ms |")


if __name__ == "__main__":
    main()
