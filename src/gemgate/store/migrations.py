"""Numbered migrations. Each is a function of a connection; the applied ones are recorded in
`schema_migrations`, so a database is brought forward one step at a time and never twice."""

from __future__ import annotations

import json
import time
from collections.abc import Callable

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from gemgate.store import schema
from gemgate.store.encryption import SecretBox

Step = Callable[[Connection, SecretBox], None]


def _m001_initial(conn: Connection, box: SecretBox) -> None:
    for table in (schema.revision, schema.client_keys, schema.credentials):
        table.create(conn, checkfirst=True)
    conn.execute(sa.insert(schema.revision).values(id=1, value=0))


def _m002_usage_records(conn: Connection, box: SecretBox) -> None:
    schema.usage_records.create(conn, checkfirst=True)


def _m003_credential_ids_never_reused(conn: Connection, box: SecretBox) -> None:
    # SQLite gives a deleted row's id again unless the table says AUTOINCREMENT, which a table
    # cannot be altered to: rebuild it, ids kept.
    if conn.dialect.name != "sqlite":
        return
    sql = conn.execute(
        sa.text("SELECT sql FROM sqlite_master WHERE type = 'table' AND name = 'credentials'")
    ).scalar_one()
    if "AUTOINCREMENT" in sql.upper():
        return
    columns = ", ".join(c.name for c in schema.credentials.columns)
    conn.execute(sa.text("DROP INDEX IF EXISTS ix_credentials_channel"))
    conn.execute(sa.text("ALTER TABLE credentials RENAME TO credentials_before_003"))
    schema.credentials.create(conn)
    conn.execute(
        sa.text(
            f"INSERT INTO credentials ({columns}) SELECT {columns} FROM credentials_before_003"
        )
    )
    conn.execute(sa.text("DROP TABLE credentials_before_003"))


def _m004_sealed_secrets(conn: Connection, box: SecretBox) -> None:
    # Secrets were stored as plain JSON; from here on each is sealed with the secret key.
    schema.store_meta.create(conn, checkfirst=True)
    if conn.dialect.name == "postgresql":
        conn.execute(
            sa.text("ALTER TABLE credentials ALTER COLUMN secret TYPE text USING secret::text")
        )
    table = schema.credentials
    for cred_id, plain in conn.execute(sa.select(table.c.id, table.c.secret)).all():
        conn.execute(
            sa.update(table)
            .where(table.c.id == cred_id)
            .values(secret=box.seal(json.loads(plain)))
        )


def _m005_cooldowns(conn: Connection, box: SecretBox) -> None:
    schema.cooldowns.create(conn, checkfirst=True)


def _m006_stored_responses(conn: Connection, box: SecretBox) -> None:
    schema.stored_responses.create(conn, checkfirst=True)


MIGRATIONS: list[tuple[int, Step]] = [
    (1, _m001_initial),
    (2, _m002_usage_records),
    (3, _m003_credential_ids_never_reused),
    (4, _m004_sealed_secrets),
    (5, _m005_cooldowns),
    (6, _m006_stored_responses),
]


def read_key_check(conn: Connection) -> str | None:
    """The sealed key check, when this database has one (it has once secrets were sealed)."""
    if not sa.inspect(conn).has_table("store_meta"):
        return None
    table = schema.store_meta
    return conn.execute(
        sa.select(table.c.value).where(table.c.name == "key_check")
    ).scalar_one_or_none()


def write_key_check(conn: Connection, check: str) -> None:
    conn.execute(sa.insert(schema.store_meta).values(name="key_check", value=check))


def migrate(conn: Connection, box: SecretBox) -> list[int]:
    """Apply every migration not yet recorded; return the versions applied."""
    schema.schema_migrations.create(conn, checkfirst=True)
    done = set(conn.execute(sa.select(schema.schema_migrations.c.version)).scalars())
    applied = []
    for version, step in MIGRATIONS:
        if version in done:
            continue
        step(conn, box)
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
