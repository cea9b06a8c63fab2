"""Real PostgreSQL and Redis for the tests that need them: skipped when absent, except under
GEMGATE_TEST_SERVICES=1 (CI), where absence is a failure."""

from __future__ import annotations

import asyncio
import os
import secrets
import socket
from collections.abc import Iterator
from contextlib import contextmanager

import asyncpg
import pytest

PG_HOST, PG_PORT, PG_USER = "127.0.0.1", 5432, "postgres"
REDIS_URL = "redis://127.0.0.1:6379/0"


def require(port: int, name: str) -> None:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1):
            return
    except OSError:
        pass
    if os.environ.get("GEMGATE_TEST_SERVICES") == "1":
        pytest.fail(f"{name} is not running on 127.0.0.1:{port}")
    pytest.skip(f"{name} is not running on 127.0.0.1:{port}")


async def _admin(sql: str) -> None:
    conn = await asyncpg.connect(host=PG_HOST, port=PG_PORT, user=PG_USER, database="postgres")
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


@contextmanager
def postgres_database() -> Iterator[str]:
    """A fresh, empty PostgreSQL database for one test, as a plain URL; dropped afterwards."""
    require(PG_PORT, "PostgreSQL")
    name = "gemgate_test_" + secrets.token_hex(6)
    asyncio.run(_admin(f'CREATE DATABASE "{name}"'))
    try:
        yield f"postgresql://{PG_USER}@{PG_HOST}:{PG_PORT}/{name}"
    finally:
        asyncio.run(_admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
