"""The store: every read and write of keys and credentials, on SQLite or PostgreSQL alike.

The drivers block (the sqlite3 module; pg8000 for PostgreSQL), so each statement runs on one of
the store's few threads and the event loop only awaits it. The store is off the request path
(keys and credentials are read into memory, usage is written in batches), and SQLAlchemy's
asyncio layer would load its ORM: 7 MB of every server's memory for nothing it uses.
"""

from __future__ import annotations

import asyncio
import csv
import functools
import io
import os
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.engine import Connection

from gemgate.store import schema
from gemgate.store.encryption import SecretBox, SecretKeySource
from gemgate.store.errors import DatabaseMissing, StoreError
from gemgate.store.migrations import migrate, pending, read_key_check, write_key_check

if TYPE_CHECKING:
    from gemgate.config import Settings

T = TypeVar("T")


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


# The driver for each way a database URL may be written; any other URL is taken as it is.
_DRIVERS = {
    "sqlite": "sqlite",
    "sqlite+aiosqlite": "sqlite",  # what gemgate used before: old settings keep working
    "postgresql": "postgresql+pg8000",
    "postgres": "postgresql+pg8000",
    "postgresql+asyncpg": "postgresql+pg8000",
}


def engine_url(url: str) -> str:
    """The URL with the driver gemgate runs on: sqlite3, or pg8000 for PostgreSQL."""
    scheme, colon, rest = url.partition(":")
    return _DRIVERS.get(scheme, scheme) + colon + rest


class Store:
    def __init__(self, url: str, secret_key: SecretKeySource) -> None:
        self.url = engine_url(url)
        self.is_sqlite = self.url.startswith("sqlite")
        path = self.url.split("///", 1)[-1] if self.is_sqlite else ""
        # The SQLite file, when there is one (not for an in-memory database).
        self.path = Path(path).resolve() if path and path != ":memory:" else None
        self.secret_key = secret_key
        self._box: SecretBox | None = None
        # SQLite's usage insert, compiled once (see `_compile_usage_insert`).
        self._usage_insert: str | None = None
        self.engine = sa.create_engine(self.url)
        if self.is_sqlite:
            event.listen(self.engine, "connect", _sqlite_pragmas)
        self._threads = ThreadPoolExecutor(max_workers=4, thread_name_prefix="gemgate-store")

    @classmethod
    def from_settings(cls, settings: Settings) -> Store:
        key = settings.secret_key.get_secret_value() if settings.secret_key else None
        return cls(
            settings.resolved_database_url,
            SecretKeySource(key, settings.resolved_secret_key_file),
        )

    def describe(self) -> str:
        """The database as it may be shown: a file path, or a URL without its password."""
        if self.path is not None:
            return str(self.path)
        url = self.engine.url
        return url.render_as_string(hide_password=True) if url.password else str(url)

    async def open(self, create: bool = False, prepare: bool = True) -> None:
        """Open the database and bring it up to date. Only with `create` (serve, db migrate)
        is a missing SQLite file, its folder or the secret key file made. Without `prepare`
        (the server's own processes, which `serve` opens only after it has prepared the
        database) nothing is written: a database not up to date is an error."""
        if self.path is not None and not self.path.exists():
            if not create:
                raise DatabaseMissing(self.path)
            # Owner-only: the folder holds the key file, the database the key hashes.
            self.path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
            os.close(os.open(self.path, os.O_WRONLY | os.O_CREAT, 0o600))
        try:
            self._box = await self._write(functools.partial(self._opened, create, prepare))
        except (sa.exc.SQLAlchemyError, OSError) as exc:
            reason = _reason(exc)
            raise StoreError(f"cannot open the database {self.describe()}: {reason}") from None

    def _opened(self, create: bool, prepare: bool, conn: Connection) -> SecretBox:
        if not prepare:
            return self._check(conn)
        if not self.is_sqlite:
            # Several instances may start at once; one migrates, the others wait.
            conn.execute(sa.text("SELECT pg_advisory_xact_lock(7061766)"))
        return self._prepare(conn, create)

    def _prepare(self, conn: Connection, create: bool) -> SecretBox:
        check = read_key_check(conn)
        key = self.secret_key.load()
        if key is None:
            if check is not None or not create:
                raise self.secret_key.missing(sealed=check is not None)
            key = self.secret_key.create()
        box = SecretBox(key, self.secret_key.describe())
        if check is not None:
            box.verify(check)
        migrate(conn, box)
        if check is None:
            write_key_check(conn, box.key_check())
        return box

    def _check(self, conn: Connection) -> SecretBox:
        check = read_key_check(conn)
        key = self.secret_key.load()
        if key is None:
            raise self.secret_key.missing(sealed=check is not None)
        box = SecretBox(key, self.secret_key.describe())
        if check is not None:
            box.verify(check)
        behind = pending(conn)
        if behind:
            numbers = ", ".join(map(str, behind))
            raise StoreError(
                f"the database {self.describe()} lacks migrations {numbers}:"
                " gemgate db migrate brings it up to date"
            )
        return box

    @property
    def box(self) -> SecretBox:
        if self._box is None:
            raise StoreError("the store is not open")
        return self._box

    def _credential(self, row: Any) -> CredentialRecord:
        values = dict(row._mapping)
        values["secret"] = self.box.open(values["secret"])
        return CredentialRecord(**values)

    async def read(self, work: Callable[[Connection], T]) -> T:
        """`work(connection)` on a store thread."""
        return await self._off_loop(self._connected, work)

    async def _write(self, work: Callable[[Connection], T]) -> T:
        """`work(connection)` in one transaction, on a store thread: committed when it returns,
        rolled back when it raises. A request cancelled meanwhile does not undo it."""
        return await self._off_loop(self._in_transaction, work)

    def _connected(self, work: Callable[[Connection], T]) -> T:
        with self.engine.connect() as conn:
            return work(conn)

    def _in_transaction(self, work: Callable[[Connection], T]) -> T:
        with self.engine.begin() as conn:
            return work(conn)

    async def _off_loop(self, call: Callable[..., T], *args: Any) -> T:
        return await asyncio.get_running_loop().run_in_executor(self._threads, call, *args)

    async def pending_migrations(self) -> list[int]:
        """Migrations this database still lacks, without applying any."""
        return await self.read(pending)

    async def close(self) -> None:
        await self._off_loop(self.engine.dispose)
        self._threads.shutdown(wait=False)

    async def revision(self) -> int:
        query = sa.select(schema.revision.c.value).where(schema.revision.c.id == 1)
        value = await self.read(lambda conn: conn.scalar(query))
        return int(value or 0)

    # -- client keys ----------------------------------------------------------------------

    async def create_key(self, **values: Any) -> KeyRecord:
        values.setdefault("created_at", time.time())

        def insert(conn: Connection) -> Any:
            result = conn.execute(sa.insert(schema.client_keys).values(**values))
            _bump(conn)
            return result.inserted_primary_key[0]  # type: ignore[index]

        found = await self.get_key(await self._write(insert))
        assert found is not None
        return found

    async def list_keys(self) -> list[KeyRecord]:
        query = sa.select(schema.client_keys).order_by(schema.client_keys.c.id)
        rows = await self.read(lambda conn: conn.execute(query).all())
        return [KeyRecord(**row._mapping) for row in rows]

    async def get_key(self, ident: int | str) -> KeyRecord | None:
        """A key by id or by name."""
        table = schema.client_keys
        where = table.c.id == int(ident) if _is_id(ident) else table.c.name == str(ident)
        row = await self.read(lambda conn: conn.execute(sa.select(table).where(where)).first())
        return KeyRecord(**row._mapping) if row else None

    async def update_key(self, key_id: int, **values: Any) -> KeyRecord | None:
        table = schema.client_keys

        def update(conn: Connection) -> None:
            conn.execute(sa.update(table).where(table.c.id == key_id).values(**values))
            _bump(conn)

        await self._write(update)
        return await self.get_key(key_id)

    # -- credentials ----------------------------------------------------------------------

    async def add_credential(self, **values: Any) -> CredentialRecord:
        now = time.time()
        values.setdefault("created_at", now)
        values.setdefault("updated_at", now)
        values.setdefault("enabled", True)
        values.setdefault("status", "ok")
        values["secret"] = self.box.seal(values["secret"])

        def insert(conn: Connection) -> Any:
            result = conn.execute(sa.insert(schema.credentials).values(**values))
            _bump(conn)
            return result.inserted_primary_key[0]  # type: ignore[index]

        found = await self.get_credential(await self._write(insert))
        assert found is not None
        return found

    async def list_credentials(self, channel: str | None = None) -> list[CredentialRecord]:
        table = schema.credentials
        query = sa.select(table).order_by(table.c.id)
        if channel:
            query = query.where(table.c.channel == channel)
        return await self.read(lambda conn: [self._credential(row) for row in conn.execute(query)])

    async def get_credential(self, cred_id: int) -> CredentialRecord | None:
        table = schema.credentials
        query = sa.select(table).where(table.c.id == cred_id)
        row = await self.read(lambda conn: conn.execute(query).first())
        return self._credential(row) if row else None

    async def update_credential(self, cred_id: int, **values: Any) -> CredentialRecord | None:
        values["updated_at"] = time.time()
        if "secret" in values:
            values["secret"] = self.box.seal(values["secret"])
        table = schema.credentials

        def update(conn: Connection) -> None:
            result = conn.execute(sa.update(table).where(table.c.id == cred_id).values(**values))
            if result.rowcount:
                _bump(conn)

        await self._write(update)
        return await self.get_credential(cred_id)

    async def remove_credential(self, cred_id: int) -> bool:
        def remove(conn: Connection) -> bool:
            result = conn.execute(
                sa.delete(schema.credentials).where(schema.credentials.c.id == cred_id)
            )
            conn.execute(
                sa.delete(schema.cooldowns).where(schema.cooldowns.c.credential_id == cred_id)
            )
            if result.rowcount:
                _bump(conn)
            return bool(result.rowcount)

        return await self._write(remove)

    # -- cooldowns ------------------------------------------------------------------------

    async def record_cooldowns(self, rows: list[dict[str, Any]]) -> None:
        """Store cooldowns (credential_id, model, started_at, until, reason), each replacing
        the one before for its credential and model; ended ones are cleared on the way."""
        table = schema.cooldowns
        # Several 429s for one credential and model may come in one batch: the last one holds.
        rows = list({(r["credential_id"], r["model"]): r for r in rows}.values())

        def record(conn: Connection) -> None:
            conn.execute(sa.delete(table).where(table.c.until < time.time()))
            for row in rows:
                conn.execute(
                    sa.delete(table).where(
                        table.c.credential_id == row["credential_id"],
                        table.c.model == row["model"],
                    )
                )
            if rows:
                conn.execute(sa.insert(table), rows)

        await self._write(record)

    async def cooldowns(self, now: float | None = None) -> list[dict[str, Any]]:
        """Cooldowns not yet over, soonest end first."""
        table = schema.cooldowns
        query = (
            sa.select(table)
            .where(table.c.until > (time.time() if now is None else now))
            .order_by(table.c.credential_id, table.c.until)
        )
        return await self.read(lambda conn: [dict(row._mapping) for row in conn.execute(query)])

    # -- usage ----------------------------------------------------------------------------

    async def save_web_chats(self, rows: list[dict[str, Any]]) -> None:
        """Remember web chats under their history hashes (replacing any stored before), and
        drop the expired ones on the way."""
        table = schema.web_chats
        keys = [row["key_hash"] for row in rows]

        def save(conn: Connection) -> None:
            conn.execute(
                sa.delete(table).where(
                    (table.c.expires_at < time.time()) | table.c.key_hash.in_(keys)
                )
            )
            conn.execute(sa.insert(table), list({r["key_hash"]: r for r in rows}.values()))

        await self._write(save)

    async def find_web_chat(self, key_hash: str) -> dict[str, Any] | None:
        table = schema.web_chats
        query = sa.select(table).where(
            table.c.key_hash == key_hash, table.c.expires_at >= time.time()
        )
        row = await self.read(lambda conn: conn.execute(query).first())
        return dict(row._mapping) if row else None

    async def add_usage(self, rows: Sequence[schema.UsageRow]) -> None:
        """Usage records, many at once (every request writes one)."""
        if not rows:
            return
        if self.is_sqlite:
            sql, values = self._usage_insert or self._compile_usage_insert(), list(rows)

            def insert(conn: Connection) -> None:
                conn.exec_driver_sql(sql, values)
                # Let go of the rows here: the thread holds this function a moment after the
                # loop hears it is done. The result is not returned: it holds them too.
                values.clear()

            await self._write(insert)
            return
        # pg8000 sends an executemany as a statement and a round trip per row (0.3 ms each),
        # and a many-row INSERT takes SQLAlchemy as long to compile: COPY takes a batch at
        # once, for about 7 µs a row.
        text = io.StringIO()
        csv.writer(text, quoting=csv.QUOTE_NONNUMERIC).writerows(rows)
        await self._write(functools.partial(_copy_usage, text.getvalue().encode()))

    def _compile_usage_insert(self) -> str:
        """The one-row insert, compiled once: the rows go to sqlite3 as the tuples they are, as
        SQLAlchemy's handling of each row's parameters cost more CPU than the write itself."""
        columns = list(schema.UsageRow._fields)
        compiled = (
            sa.insert(schema.usage_records)
            .inline()  # no RETURNING: nothing is read back
            .compile(dialect=self.engine.dialect, column_keys=columns)
        )
        if list(compiled.positiontup or ()) != columns:
            raise StoreError("the usage insert does not take its values in column order")
        self._usage_insert = compiled.string
        return self._usage_insert

    async def tokens_by_key(self, since: float | None = None) -> dict[int, int]:
        """Total tokens each key has used (since a time, when given)."""
        table = schema.usage_records
        query = sa.select(table.c.key_id, sa.func.sum(table.c.total_tokens)).group_by(
            table.c.key_id
        )
        if since is not None:
            query = query.where(table.c.created_at >= since)
        rows = await self.read(lambda conn: conn.execute(query).all())
        return {key_id: int(total or 0) for key_id, total in rows}

    async def tokens_by_key_after(self, after_id: int) -> tuple[dict[int, int], int]:
        """Tokens each key used in the records after `after_id`, and the last record's id: what
        an instance adds to the totals it already has, instead of summing the whole table."""
        table = schema.usage_records
        query = (
            sa.select(table.c.key_id, sa.func.sum(table.c.total_tokens), sa.func.max(table.c.id))
            .where(table.c.id > after_id)
            .group_by(table.c.key_id)
        )
        totals, last = {}, after_id
        for key_id, total, high in await self.read(lambda conn: conn.execute(query).all()):
            totals[key_id] = int(total or 0)
            last = max(last, int(high))
        return totals, last

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
        rows = await self.read(lambda conn: conn.execute(query).all())
        return [
            {
                k: (int(v) if isinstance(v, int | float) and k != "model" else v)
                for k, v in row._mapping.items()
            }
            for row in rows
        ]

    # -- stored Responses answers ---------------------------------------------------------

    async def put_responses(self, rows: list[dict[str, Any]]) -> None:
        def insert(conn: Connection) -> None:
            conn.execute(sa.insert(schema.stored_responses), rows)

        await self._write(insert)

    async def get_response(self, response_id: str, key_id: int) -> dict[str, Any] | None:
        t = schema.stored_responses
        query = sa.select(t.c.response, t.c.turn, t.c.previous_id).where(
            t.c.id == response_id, t.c.key_id == key_id, t.c.expires_at > time.time()
        )
        row = await self.read(lambda conn: conn.execute(query).first())
        return dict(row._mapping) if row else None

    async def delete_response(self, response_id: str, key_id: int) -> bool:
        t = schema.stored_responses
        statement = sa.delete(t).where(t.c.id == response_id, t.c.key_id == key_id)
        return bool(await self._write(lambda conn: conn.execute(statement).rowcount))

    async def purge_responses(self, now: float) -> int:
        t = schema.stored_responses
        statement = sa.delete(t).where(t.c.expires_at <= now)
        return int(await self._write(lambda conn: conn.execute(statement).rowcount) or 0)


# Text fields are quoted, so that an empty one is an empty string, not NULL.
_COPY_USAGE = (
    f"COPY usage_records ({', '.join(schema.UsageRow._fields)}) FROM STDIN WITH (FORMAT csv)"
)


def _copy_usage(rows: bytes, conn: Connection) -> None:
    driver: Any = conn.connection.dbapi_connection  # pg8000's, whose execute takes a stream
    driver.cursor().execute(_COPY_USAGE, stream=io.BytesIO(rows))


def _is_id(ident: int | str) -> bool:
    return isinstance(ident, int) or (isinstance(ident, str) and ident.isdigit())


def _bump(conn: Connection) -> None:
    conn.execute(
        sa.update(schema.revision)
        .where(schema.revision.c.id == 1)
        .values(value=schema.revision.c.value + 1)
    )


def _reason(exc: BaseException) -> str:
    """What went wrong, from the driver's own error when there is one. pg8000 gives the
    server's error fields; its message (M) is what to show."""
    orig = getattr(exc, "orig", None) or exc
    fields = orig.args[0] if orig.args else None
    if isinstance(fields, dict) and "M" in fields:
        return str(fields["M"])
    return str(orig)


def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
    # WAL lets the server read while the CLI (another process) writes; the timeout makes a
    # writer wait for the lock instead of failing. Each connection's page cache is held to
    # 512 KiB (SQLite's default is 2 MiB): re-summing a large usage table filled it and kept it
    # in the server's memory for good, while the store is off the request path and the file's
    # pages stay in the system's cache anyway.
    cursor = dbapi_conn.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA busy_timeout=5000")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA cache_size=-512")
    cursor.close()


__all__: Sequence[str] = ["CredentialRecord", "KeyRecord", "Store", "engine_url"]
