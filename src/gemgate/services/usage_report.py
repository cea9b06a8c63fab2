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


# A slot this long over is final: every instance has flushed its records for it by then.
SETTLED_AFTER = 300.0


class SlotCache:
    """Aggregates of past, settled slots, kept by (bucket, grouping, slot start): a usage page
    then queries only the slots it has not seen, usually just the current one, instead of every
    record in its range."""

    def __init__(self, most: int = 20_000) -> None:
        self._slots: dict[tuple[str, str, int], list[dict[str, Any]]] = {}
        self._most = most

    def get(self, bucket: str, by: str, start: int) -> list[dict[str, Any]] | None:
        return self._slots.get((bucket, by, start))

    def put(self, bucket: str, by: str, start: int, rows: list[dict[str, Any]]) -> None:
        if len(self._slots) >= self._most:
            self._slots.clear()
        self._slots[(bucket, by, start)] = rows


async def report(
    store: Store,
    *,
    since: float,
    until: float,
    bucket: str,
    by: str,
    cache: SlotCache | None = None,
) -> dict[str, Any]:
    size = BUCKET_SECONDS[bucket]
    first = int(since // size) * size
    slots = list(range(first, int(until) + 1, size))
    settled_before = time.time() - SETTLED_AFTER
    rows: list[dict[str, Any]] = []
    query_from = first
    if cache is not None:
        # Cached settled slots from the start; the query covers the rest.
        for start in slots:
            cached = cache.get(bucket, by, start) if start + size <= settled_before else None
            if cached is None:
                break
            rows.extend(cached)
            query_from = start + size
    if query_from <= until:
        fresh = await usage_series(
            store, query_from, until, cast(Bucket, bucket), cast(GroupBy, by)
        )
        rows.extend(fresh)
        if cache is not None:
            by_slot: dict[int, list[dict[str, Any]]] = {}
            for row in fresh:
                by_slot.setdefault(row["start"], []).append(row)
            for start in range(query_from, int(until) + 1, size):
                if start + size <= settled_before and start + size <= until:
                    cache.put(bucket, by, start, by_slot.get(start, []))
    names: dict[Any, str] = {}
    if by == "key":
        names = {k.id: k.name for k in await store.list_keys()}
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
        "since": first,
        "until": until,
        "slots": slots,
        "series": [
            {"group": g, "points": p} for g, p in sorted(series.items(), key=lambda i: order[i[0]])
        ],
        "totals": totals,
    }
