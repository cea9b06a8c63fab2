"""Usage reports: requests and tokens per day or hour, by key, model or channel, over a range.
What the admin API returns and the admin page draws."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Any, cast

from gemgate.errors import InvalidRequest
from gemgate.store import Store
from gemgate.store.usage_queries import BUCKET_SECONDS, Bucket, GroupBy, usage_series

GROUPS = ("key", "model", "channel")
# More points than this make a chart unreadable and a slow answer.
MAX_SLOTS = 750
DEFAULT_SPAN = {"day": 14 * 86400, "hour": 24 * 3600}
_UNITS = {"m": 60, "h": 3600, "d": 86400}
METRICS = ("requests", "errors", "prompt_tokens", "output_tokens", "total_tokens")


def parse_time(text: str, now: float, what: str) -> float:
    """A point in time: unix seconds, an ISO date or date-time (UTC unless it says), or a
    period back from now (30m, 24h, 7d)."""
    text = text.strip()
    if len(text) >= 2 and text[-1] in _UNITS and text[:-1].isdigit():
        return now - int(text[:-1]) * _UNITS[text[-1]]
    try:
        return float(text)
    except ValueError:
        pass
    try:
        parsed = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise InvalidRequest(
            f"{what} must be unix seconds, an ISO date (2026-11-20), or a period such as 7d"
        ) from None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return parsed.timestamp()


def parse_query(params: Any) -> dict[str, Any]:
    """by, bucket, since and until from query parameters, checked."""
    now = time.time()
    bucket = params.get("bucket") or "day"
    if bucket not in BUCKET_SECONDS:
        raise InvalidRequest("bucket must be day or hour")
    by = params.get("by") or "key"
    if by not in GROUPS:
        raise InvalidRequest("by must be key, model or channel")
    until = parse_time(params["until"], now, "until") if params.get("until") else now
    since = (
        parse_time(params["since"], now, "since")
        if params.get("since")
        else until - DEFAULT_SPAN[bucket]
    )
    if since >= until:
        raise InvalidRequest("since must be before until")
    if (until - since) / BUCKET_SECONDS[bucket] > MAX_SLOTS:
        raise InvalidRequest(f"at most {MAX_SLOTS} {bucket}s at a time; narrow the range")
    return {"bucket": bucket, "by": by, "since": since, "until": until}


async def report(
    store: Store, *, since: float, until: float, bucket: str, by: str
) -> dict[str, Any]:
    size = BUCKET_SECONDS[bucket]
    rows = await usage_series(store, since, until, cast(Bucket, bucket), cast(GroupBy, by))
    names: dict[Any, str] = {}
    if by == "key":
        names = {k.id: k.name for k in await store.list_keys()}
    first = int(since // size) * size
    slots = list(range(first, int(until) + 1, size))
    index = {start: i for i, start in enumerate(slots)}
    series: dict[str, list[dict[str, int]]] = {}
    for row in rows:
        group = names.get(row["group"], "(deleted key)") if by == "key" else str(row["group"])
        points = series.get(group)
        if points is None:
            points = series[group] = [
                {"start": start, **dict.fromkeys(METRICS, 0)} for start in slots
            ]
        point = points[index[row["start"]]]
        for metric in METRICS:
            point[metric] += row[metric]
    totals: list[dict[str, Any]] = [
        {"group": group, **{m: sum(p[m] for p in points) for m in METRICS}}
        for group, points in series.items()
    ]
    totals.sort(key=lambda t: (-t["total_tokens"], -t["requests"], t["group"]))
    order = {t["group"]: i for i, t in enumerate(totals)}
    return {
        "bucket": bucket,
        "by": by,
        "since": since,
        "until": until,
        "slots": slots,
        "series": [
            {"group": g, "points": p} for g, p in sorted(series.items(), key=lambda i: order[i[0]])
        ],
        "totals": totals,
    }
