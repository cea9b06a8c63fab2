"""Server-side SVG charts for the usage page: stacked bars per day or hour, one colour per
group. No JavaScript, no chart library: the page is one HTML answer with its pictures in it."""

from __future__ import annotations

import time
from dataclasses import dataclass
from html import escape
from typing import Any

# Distinct on white and for the common kinds of colour blindness (the Okabe-Ito palette).
PALETTE = (
    "#0072B2",
    "#E69F00",
    "#009E73",
    "#CC79A7",
    "#56B4E9",
    "#D55E00",
    "#F0E442",
    "#000000",
)
OTHER_COLOUR = "#B8BEC6"
MOST_GROUPS = len(PALETTE)


@dataclass(frozen=True, slots=True)
class Legend:
    name: str
    colour: str
    total: int


def stacked_bars(
    report: dict[str, Any], metric: str, title: str, width: int = 960, height: int = 240
) -> tuple[str, list[Legend]]:
    """An SVG of `metric` per slot, stacked by group (the largest groups first; the rest as
    "other"), and its legend."""
    slots: list[int] = report["slots"]
    groups = [(s["group"], [p[metric] for p in s["points"]]) for s in report["series"]]
    groups.sort(key=lambda g: -sum(g[1]))
    if len(groups) > MOST_GROUPS:
        rest = groups[MOST_GROUPS - 1 :]
        other = [sum(values[i] for _, values in rest) for i in range(len(slots))]
        groups = [*groups[: MOST_GROUPS - 1], ("other", other)]
    colours = [
        OTHER_COLOUR if name == "other" and i == MOST_GROUPS - 1 else PALETTE[i]
        for i, (name, _) in enumerate(groups)
    ]
    legend = [
        Legend(name, colour, sum(values))
        for (name, values), colour in zip(groups, colours, strict=True)
    ]

    left, right, top, bottom = 56, 8, 12, 28
    plot_w, plot_h = width - left - right, height - top - bottom
    totals = [sum(values[i] for _, values in groups) for i in range(len(slots))]
    peak = _nice(max(totals, default=0))
    if 0 < peak < 20:
        peak = -(-peak // 4) * 4  # four whole-number steps on a small scale
    out = [
        f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {width} {height}" '
        f'role="img" aria-label="{escape(title)}" class="chart">',
        f"<title>{escape(title)}</title>",
    ]
    for step in range(5):
        value = peak * step / 4
        y = top + plot_h - plot_h * step / 4
        out.append(
            f'<line x1="{left}" x2="{width - right}" y1="{y:.1f}" y2="{y:.1f}" class="grid"/>'
            f'<text x="{left - 6}" y="{y + 4:.1f}" class="axis" text-anchor="end">'
            f"{_short(value)}</text>"
        )
    count = max(len(slots), 1)
    slot_w = plot_w / count
    bar_w = max(slot_w * 0.72, 1.0)
    label_every = max(1, round(count / 12))
    hourly = report["bucket"] == "hour"
    for i, start in enumerate(slots):
        x = left + i * slot_w + (slot_w - bar_w) / 2
        y = top + plot_h
        for (name, values), colour in zip(groups, colours, strict=True):
            value = values[i]
            if not value or not peak:
                continue
            h = plot_h * value / peak
            y -= h
            out.append(
                f'<rect x="{x:.1f}" y="{y:.1f}" width="{bar_w:.1f}" height="{h:.1f}" '
                f'fill="{colour}"><title>{escape(name)}: {value:,} '
                f"({_slot_label(start, hourly)})</title></rect>"
            )
        if i % label_every == 0:
            out.append(
                f'<text x="{left + i * slot_w + slot_w / 2:.1f}" y="{height - 8}" '
                f'class="axis" text-anchor="middle">{_slot_label(start, hourly)}</text>'
            )
    if not any(totals):
        out.append(
            f'<text x="{left + plot_w / 2}" y="{top + plot_h / 2}" class="empty" '
            'text-anchor="middle">nothing recorded in this range</text>'
        )
    out.append("</svg>")
    return "".join(out), legend


def _slot_label(start: int, hourly: bool) -> str:
    return time.strftime("%H:00" if hourly else "%b %d", time.gmtime(start))


def _nice(value: float) -> float:
    """The next round number at or above `value`, for the top of the scale."""
    if value <= 0:
        return 0.0
    magnitude = 10 ** (len(str(int(value))) - 1)
    for step in (1, 2, 2.5, 5, 10):
        if value <= step * magnitude:
            return step * magnitude
    return 10.0 * magnitude


def _short(value: float) -> str:
    for size, suffix in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if value >= size:
            return f"{value / size:.3g}{suffix}"
    return f"{value:.3g}"
