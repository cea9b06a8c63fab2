"""Numbered migrations. Each is a function of a connection; the applied ones are recorded in
`schema_migrations`, so a database is brought forward one step at a time and never twice."""

from __future__ import annotations

import time
from collections.abc import Callable

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from gemgate.store import schema


def _m001_initial(conn: Connection) -> None:
    for table in (schema.revision, schema.client_keys, schema.credentials):
        table.create(conn, checkfirst=True)
    conn.execute(sa.insert(schema.revision).values(id=1, value=0))


def _m002_usage_records(conn: Connection) -> None:
    schema.usage_records.create(conn, checkfirst=True)


MIGRATIONS: list[tuple[int, Callable[[Connection], None]]] = [
    (1, _m001_initial),
    (2, _m002_usage_records),
]


def migrate(conn: Connection) -> list[int]:
    """Apply every migration not yet recorded; return the versions applied."""
    schema.schema_migrations.create(conn, checkfirst=True)
    done = set(conn.execute(sa.select(schema.schema_migrations.c.version)).scalars())
    applied = []
    for version, step in MIGRATIONS:
        if version in done:
            continue
        step(conn)
        conn.execute(
            sa.insert(schema.schema_migrations).values(version=version, applied_at=time.time())
        )
        applied.append(version)
    return applied


def pending(conn: Connection) -> list[int]:
    """The versions not yet applied to this database."""
    if not sa.inspect(conn).has_table(schema.schema_migrations.name):
        return [version for version, _ in MIGRATIONS]
    done = set(conn.execute(sa.select(schema.schema_migrations.c.version)).scalars())
    return [version for version, _ in MIGRATIONS if version not in done]
