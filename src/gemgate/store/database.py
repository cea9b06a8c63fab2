"""The store: every read and write of keys and credentials, on SQLite or PostgreSQL alike."""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine

from gemgate.store import schema
from gemgate.store.migrations import migrate, pending


@dataclass(frozen=True, slots=True)
class KeyRecord:
    id: int
    name: str
    key_hash: str
    key_hint: str
    channels: list[str] | None
    models: list[str] | None
    endpoints: list[str] | None
    rpm: int | None
    tpm: int | None
    quota_tokens: int | None
    created_at: float
    revoked_at: float | None


@dataclass(frozen=True, slots=True)
class CredentialRecord:
    id: int
    channel: str
    label: str
    secret: dict[str, Any]
    proxy: str | None
    enabled: bool
    status: str
    status_reason: str | None
    created_at: float
    updated_at: float


def async_url(url: str) -> str:
    """Pick the async driver for a plain database URL."""
    if url.startswith("sqlite:"):
        return url.replace("sqlite:", "sqlite+aiosqlite:", 1)
    for plain in ("postgresql:", "postgres:"):
        if url.startswith(plain):
            return url.replace(plain, "postgresql+asyncpg:", 1)
    return url


class Store:
    def __init__(self, url: str) -> None:
        self.url = async_url(url)
        self.is_sqlite = self.url.startswith("sqlite")
        if self.is_sqlite:
            path = self.url.split("///", 1)[-1]
            if path and path != ":memory:":
                Path(path).parent.mkdir(parents=True, exist_ok=True)
        self.engine: AsyncEngine = create_async_engine(self.url)
        if self.is_sqlite:
            event.listen(self.engine.sync_engine, "connect", _sqlite_pragmas)

    async def open(self) -> None:
        async with self.engine.begin() as conn:
            if not self.is_sqlite:
                # Several instances may start at once; one migrates, the others wait.
                await conn.execute(sa.text("SELECT pg_advisory_xact_lock(7061766)"))
            await conn.run_sync(migrate)

    async def pending_migrations(self) -> list[int]:
        """Migrations this database still lacks, without applying any."""
        async with self.engine.connect() as conn:
            return await conn.run_sync(pending)

    async def close(self) -> None:
        await self.engine.dispose()

    async def revision(self) -> int:
        async with self.engine.connect() as conn:
            value = await conn.scalar(
                sa.select(schema.revision.c.value).where(schema.revision.c.id == 1)
            )
        return int(value or 0)

    # -- client keys ----------------------------------------------------------------------

    async def create_key(self, **values: Any) -> KeyRecord:
        values.setdefault("created_at", time.time())
        async with self.engine.begin() as conn:
            result = await conn.execute(sa.insert(schema.client_keys).values(**values))
            await _bump(conn)
            key_id = result.inserted_primary_key[0]  # type: ignore[index]
        found = await self.get_key(key_id)
        assert found is not None
        return found

    async def list_keys(self) -> list[KeyRecord]:
        async with self.engine.connect() as conn:
            rows = await conn.execute(
                sa.select(schema.client_keys).order_by(schema.client_keys.c.id)
            )
            return [KeyRecord(**row._mapping) for row in rows]

    async def get_key(self, ident: int | str) -> KeyRecord | None:
        """A key by id or by name."""
        table = schema.client_keys
        where = table.c.id == int(ident) if _is_id(ident) else table.c.name == str(ident)
        async with self.engine.connect() as conn:
            row = (await conn.execute(sa.select(table).where(where))).first()
        return KeyRecord(**row._mapping) if row else None

    async def update_key(self, key_id: int, **values: Any) -> KeyRecord | None:
        async with self.engine.begin() as conn:
            await conn.execute(
                sa.update(schema.client_keys)
                .where(schema.client_keys.c.id == key_id)
                .values(**values)
            )
            await _bump(conn)
        return await self.get_key(key_id)

    # -- credentials ----------------------------------------------------------------------

    async def add_credential(self, **values: Any) -> CredentialRecord:
        now = time.time()
        values.setdefault("created_at", now)
        values.setdefault("updated_at", now)
        values.setdefault("enabled", True)
        values.setdefault("status", "ok")
        async with self.engine.begin() as conn:
            result = await conn.execute(sa.insert(schema.credentials).values(**values))
            await _bump(conn)
            cred_id = result.inserted_primary_key[0]  # type: ignore[index]
        found = await self.get_credential(cred_id)
        assert found is not None
        return found

    async def list_credentials(self, channel: str | None = None) -> list[CredentialRecord]:
        table = schema.credentials
        query = sa.select(table).order_by(table.c.id)
        if channel:
            query = query.where(table.c.channel == channel)
        async with self.engine.connect() as conn:
            return [CredentialRecord(**row._mapping) for row in await conn.execute(query)]

    async def get_credential(self, cred_id: int) -> CredentialRecord | None:
        table = schema.credentials
        async with self.engine.connect() as conn:
            row = (await conn.execute(sa.select(table).where(table.c.id == cred_id))).first()
        return CredentialRecord(**row._mapping) if row else None

    async def update_credential(self, cred_id: int, **values: Any) -> CredentialRecord | None:
        values["updated_at"] = time.time()
        async with self.engine.begin() as conn:
            result = await conn.execute(
                sa.update(schema.credentials)
                .where(schema.credentials.c.id == cred_id)
                .values(**values)
            )
            if result.rowcount:
                await _bump(conn)
        return await self.get_credential(cred_id)

    async def remove_credential(self, cred_id: int) -> bool:
        async with self.engine.begin() as conn:
            result = await conn.execute(
                sa.delete(schema.credentials).where(schema.credentials.c.id == cred_id)
            )
            if result.rowcount:
                await _bump(conn)
        return bool(result.rowcount)

    # -- usage ----------------------------------------------------------------------------

    async def add_usage(self, rows: list[dict[str, Any]]) -> None:
        if rows:
            async with self.engine.begin() as conn:
                await conn.execute(sa.insert(schema.usage_records), rows)

    async def tokens_by_key(self, since: float | None = None) -> dict[int, int]:
        """Total tokens each key has used (since a time, when given)."""
        table = schema.usage_records
        query = sa.select(table.c.key_id, sa.func.sum(table.c.total_tokens)).group_by(
            table.c.key_id
        )
        if since is not None:
            query = query.where(table.c.created_at >= since)
        async with self.engine.connect() as conn:
            return {key_id: int(total or 0) for key_id, total in await conn.execute(query)}

    async def usage_report(
        self, key_id: int | None = None, since: float | None = None
    ) -> list[dict[str, Any]]:
        """Requests and tokens per key, channel and model."""
        t = schema.usage_records
        query = (
            sa.select(
                t.c.key_id,
                t.c.channel,
                t.c.model,
                sa.func.count().label("requests"),
                sa.func.sum(sa.case((t.c.status >= 400, 1), else_=0)).label("errors"),
                sa.func.sum(t.c.prompt_tokens).label("prompt_tokens"),
                sa.func.sum(t.c.output_tokens).label("output_tokens"),
                sa.func.sum(t.c.thought_tokens).label("thought_tokens"),
                sa.func.sum(t.c.total_tokens).label("total_tokens"),
            )
            .group_by(t.c.key_id, t.c.channel, t.c.model)
            .order_by(t.c.key_id, t.c.channel, t.c.model)
        )
        if key_id is not None:
            query = query.where(t.c.key_id == key_id)
        if since is not None:
            query = query.where(t.c.created_at >= since)
        async with self.engine.connect() as conn:
            return [
                {
                    k: (int(v) if isinstance(v, int | float) and k != "model" else v)
                    for k, v in row._mapping.items()
                }
                for row in await conn.execute(query)
            ]


def _is_id(ident: int | str) -> bool:
    return isinstance(ident, int) or (isinstance(ident, str) and ident.isdigit())


async def _bump(conn: AsyncConnection) -> None:
    await conn.execute(
        sa.update(schema.revision)
        .where(schema.revision.c.id == 1)
        .values(value=schema.revision.c.value + 1)
    )


def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
    # WAL lets the server read while the CLI (another process) writes; the timeout makes a
    # writer wait for the lock instead of failing.
    cursor = dbapi_conn.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA busy_timeout=5000")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.close()


__all__: Sequence[str] = ["CredentialRecord", "KeyRecord", "Store", "async_url"]
