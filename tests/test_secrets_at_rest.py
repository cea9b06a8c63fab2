"""Upstream secrets are sealed at rest, with a key kept apart from the database, on SQLite and
PostgreSQL; an older database is migrated; a missing or wrong key is a one-line error."""

from __future__ import annotations

import asyncio
import json
import stat
from collections.abc import Iterator
from pathlib import Path

import asyncpg
import openai
import pytest
import sqlalchemy as sa
from cryptography.fernet import Fernet

from gemgate.store.database import engine_url
from tests.conftest import start_gemgate
from tests.fakes.gemini_api import FakeGeminiAPI
from tests.harness import Gemgate
from tests.services import postgres_database

SECRET = "AIzaFakeKeyAlpha0001"


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest) -> Iterator[str | None]:
    """None: the default SQLite file in the data folder."""
    if request.param == "sqlite":
        yield None
        return
    with postgres_database() as url:
        yield url


def _server(tmp_path: Path, gemini: FakeGeminiAPI, url: str | None, **kw: bool) -> Gemgate:
    env = {"GEMGATE_DATABASE_URL": url} if url else {}
    return start_gemgate(tmp_path / "data", gemini, env, **kw)


def _raw_secrets(server: Gemgate, url: str | None) -> list[str]:
    """The secret column exactly as the database holds it."""
    rows = _query(server, url, "SELECT secret FROM credentials")
    return [str(row[0]) for row in rows]


def _query(server: Gemgate, url: str | None, sql: str) -> list[tuple[object, ...]]:
    if url is None:
        url = f"sqlite:///{server.data_dir / 'gemgate.db'}"
    engine = sa.create_engine(engine_url(url))
    try:
        with engine.connect() as conn:
            return [tuple(row) for row in conn.execute(sa.text(sql))]
    finally:
        engine.dispose()


def test_secrets_are_sealed_and_files_are_private(
    tmp_path: Path, gemini: FakeGeminiAPI, database_url: str | None
) -> None:
    server = _server(tmp_path, gemini, database_url)
    key = server.create_key("k")
    server.add_api_key(SECRET, "--label", "alpha")
    raw = _raw_secrets(server, database_url)
    assert len(raw) == 1 and SECRET not in raw[0] and "api_key" not in raw[0]
    if database_url is None:
        for name in ("gemgate.db", "gemgate.db-wal"):
            path = server.data_dir / name
            if path.exists():
                assert SECRET.encode() not in path.read_bytes()
        assert stat.S_IMODE(server.data_dir.stat().st_mode) == 0o700
        assert stat.S_IMODE((server.data_dir / "gemgate.db").stat().st_mode) == 0o600
    key_file = server.data_dir / "secret.key"
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    Fernet(key_file.read_bytes().strip())  # a real key, not a placeholder
    # The CLI and the server read the secret back: the pool still sends the real key upstream.
    shown = json.loads(server.cli("credentials", "show", "alpha").stdout)
    assert shown["secret"] == {"api_key": "AIza…0001"}
    server.start()
    try:
        sdk = openai.OpenAI(base_url=server.url + "/v1", api_key=key, max_retries=0)
        sdk.chat.completions.create(
            model="gemini-2.5-flash", messages=[{"role": "user", "content": "hi"}]
        )
        assert gemini.requests[-1].api_key == SECRET
    finally:
        assert server.stop()


def test_a_missing_or_wrong_key_is_a_clear_error(
    tmp_path: Path, gemini: FakeGeminiAPI, database_url: str | None
) -> None:
    server = _server(tmp_path, gemini, database_url)
    server.add_api_key(SECRET)
    key_file = server.data_dir / "secret.key"
    sealed_with = key_file.read_text()
    key_file.unlink()
    for command in (("credentials", "list"), ("keys", "list"), ("serve",)):
        failed = server.cli(*command, check=False)
        assert failed.returncode == 1, failed
        assert "GEMGATE_SECRET_KEY" in failed.stderr and str(key_file) in failed.stderr
        assert "Traceback" not in failed.stderr + failed.stdout
    # serve must not have made a new key for a database sealed with another one.
    assert not key_file.exists()

    other = Fernet.generate_key().decode()
    server.env["GEMGATE_SECRET_KEY"] = other
    for command in (("credentials", "list"), ("serve",)):
        wrong = server.cli(*command, check=False)
        assert wrong.returncode == 1 and "not the one" in wrong.stderr
        assert "GEMGATE_SECRET_KEY" in wrong.stderr and "Traceback" not in wrong.stderr
        assert other not in wrong.stderr
    server.env["GEMGATE_SECRET_KEY"] = "not-a-key"
    bad = server.cli("credentials", "list", check=False)
    assert bad.returncode == 1 and "GEMGATE_SECRET_KEY is not a valid key" in bad.stderr
    assert "not-a-key" not in bad.stderr

    # The key given in the environment instead of the file works as well.
    server.env["GEMGATE_SECRET_KEY"] = sealed_with.strip()
    listed = json.loads(server.cli("credentials", "list", "--json").stdout)
    assert listed[0]["secret"] == {"api_key": "AIza…0001"}


# The schema as gemgate wrote it before secrets were sealed (migrations 1 and 2): secrets as
# plain JSON, and on SQLite an id column that reuses a deleted credential's id.
OLD = sa.MetaData()
sa.Table(
    "schema_migrations",
    OLD,
    sa.Column("version", sa.Integer, primary_key=True),
    sa.Column("applied_at", sa.Float, nullable=False),
)
sa.Table(
    "revision",
    OLD,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("value", sa.BigInteger, nullable=False),
)
sa.Table(
    "client_keys",
    OLD,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("name", sa.String(200), nullable=False, unique=True),
    sa.Column("key_hash", sa.String(64), nullable=False, unique=True),
    sa.Column("key_hint", sa.String(32), nullable=False),
    sa.Column("channels", sa.JSON),
    sa.Column("models", sa.JSON),
    sa.Column("endpoints", sa.JSON),
    sa.Column("rpm", sa.Integer),
    sa.Column("tpm", sa.Integer),
    sa.Column("quota_tokens", sa.BigInteger),
    sa.Column("created_at", sa.Float, nullable=False),
    sa.Column("revoked_at", sa.Float),
)
OLD_CREDENTIALS = sa.Table(
    "credentials",
    OLD,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("channel", sa.String(32), nullable=False, index=True),
    sa.Column("label", sa.String(200), nullable=False),
    sa.Column("secret", sa.JSON, nullable=False),
    sa.Column("proxy", sa.String(500)),
    sa.Column("enabled", sa.Boolean, nullable=False),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("status_reason", sa.Text),
    sa.Column("created_at", sa.Float, nullable=False),
    sa.Column("updated_at", sa.Float, nullable=False),
)
sa.Table(
    "usage_records",
    OLD,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("key_id", sa.Integer, nullable=False, index=True),
    sa.Column("channel", sa.String(32), nullable=False),
    sa.Column("model", sa.String(200), nullable=False),
    sa.Column("endpoint", sa.String(32), nullable=False),
    sa.Column("status", sa.Integer, nullable=False),
    sa.Column("prompt_tokens", sa.Integer, nullable=False),
    sa.Column("output_tokens", sa.Integer, nullable=False),
    sa.Column("thought_tokens", sa.Integer, nullable=False),
    sa.Column("total_tokens", sa.Integer, nullable=False),
    sa.Column("created_at", sa.Float, nullable=False, index=True),
)


def _old_database(url: str) -> None:
    engine = sa.create_engine(engine_url(url))
    try:
        with engine.begin() as conn:
            OLD.create_all(conn)
            conn.execute(sa.text("INSERT INTO schema_migrations VALUES (1, 0), (2, 0)"))
            conn.execute(sa.text("INSERT INTO revision VALUES (1, 0)"))
            for n, api_key in enumerate((SECRET, "AIzaFakeKeyBravo0002"), start=1):
                conn.execute(
                    sa.insert(OLD_CREDENTIALS).values(
                        channel="gemini",
                        label=f"old{n}",
                        secret={"api_key": api_key},
                        enabled=True,
                        status="ok",
                        created_at=0.0,
                        updated_at=0.0,
                    )
                )
    finally:
        engine.dispose()


def test_a_database_from_before_sealing_is_migrated(
    tmp_path: Path, gemini: FakeGeminiAPI, database_url: str | None
) -> None:
    server = _server(tmp_path, gemini, database_url, init_store=False)
    if database_url is None:
        server.data_dir.mkdir()
        _old_database(f"sqlite:///{server.data_dir / 'gemgate.db'}")
    else:
        _old_database(database_url)
    assert any(SECRET in s for s in _raw_secrets(server, database_url))
    # Sealing needs the key, which only serve and db migrate create.
    early = server.cli("credentials", "list", check=False)
    assert early.returncode == 1 and "gemgate db migrate" in early.stderr
    server.cli("db", "migrate")
    raw = _raw_secrets(server, database_url)
    assert len(raw) == 2 and not any("AIza" in s for s in raw)
    listed = json.loads(server.cli("credentials", "list", "--json").stdout)
    assert [(c["id"], c["secret"]["api_key"]) for c in listed] == [
        (1, "AIza…0001"),
        (2, "AIza…0002"),
    ]
    assert "works" in server.cli("credentials", "test", "old1").stdout
    # Ids are never given again, also for a table made before migration 3.
    server.cli("credentials", "remove", "2")
    assert server.add_api_key("AIzaFakeKeyCharlie03") == 3


def test_postgresql_rows_hold_no_secret(tmp_path: Path, gemini: FakeGeminiAPI) -> None:
    """The same seen through PostgreSQL's own client, not through gemgate's driver."""
    with postgres_database() as url:
        server = _server(tmp_path, gemini, url)
        server.add_api_key(SECRET)

        async def dump() -> str:
            conn = await asyncpg.connect(url)
            try:
                rows = await conn.fetch("SELECT * FROM credentials")
            finally:
                await conn.close()
            return repr([dict(r) for r in rows])

        assert SECRET not in asyncio.run(dump())
