"""Usage over time, for the admin API and page: requests and tokens per day or hour, grouped by
key, model or channel. One aggregate query over the indexed time range; no row leaves the
database."""

from __future__ import annotations

from typing import Any, Literal

import sqlalchemy as sa

from gemgate.store import Store, schema

Bucket = Literal["day", "hour"]
GroupBy = Literal["key", "model", "channel"]
BUCKET_SECONDS = {"day": 86400, "hour": 3600}


async def usage_series(
    store: Store, since: float, until: float, bucket: Bucket, by: GroupBy
) -> list[dict[str, Any]]:
    """One row per (bucket start, group): requests, errors and tokens; buckets are UTC."""
    t = schema.usage_records
    size = BUCKET_SECONDS[bucket]
    # Both dialects floor a positive number: SQLite by an integer cast, PostgreSQL by floor().
    if store.is_sqlite:
        index = sa.cast(t.c.created_at / size, sa.Integer)
    else:
        index = sa.cast(sa.func.floor(t.c.created_at / size), sa.BigInteger)
    group = {"key": t.c.key_id, "model": t.c.model, "channel": t.c.channel}[by]
    query = (
        sa.select(
            index.label("slot"),
            group.label("group"),
            sa.func.count().label("requests"),
            sa.func.sum(sa.case((t.c.status >= 400, 1), else_=0)).label("errors"),
            sa.func.sum(t.c.prompt_tokens).label("prompt_tokens"),
            sa.func.sum(t.c.output_tokens + t.c.thought_tokens).label("output_tokens"),
            sa.func.sum(t.c.total_tokens).label("total_tokens"),
        )
        .where(t.c.created_at >= since, t.c.created_at < until)
        .group_by(sa.text("1"), sa.text("2"))
        .order_by(sa.text("1"), sa.text("2"))
    )
    rows = await store.read(lambda conn: conn.execute(query).all())
    return [
        {
            "start": int(row.slot) * size,
            "group": row.group,
            "requests": int(row.requests),
            "errors": int(row.errors or 0),
            "prompt_tokens": int(row.prompt_tokens or 0),
            "output_tokens": int(row.output_tokens or 0),
            "total_tokens": int(row.total_tokens or 0),
        }
        for row in rows
    ]
