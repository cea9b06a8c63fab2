"""The store behaves the same on SQLite and PostgreSQL."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import openai
import pytest

from gemgate.store import Store
from gemgate.store.encryption import SecretKeySource
from gemgate.store.schema import UsageRow
from tests.conftest import start_gemgate
from tests.fakes.gemini_api import FakeGeminiAPI
from tests.services import postgres_database


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path}/gemgate.db"
        return
    with postgres_database() as url:
        yield url


async def test_keys_and_credentials_round_trip(database_url: str, tmp_path: Path) -> None:
    store = Store(database_url, SecretKeySource(None, tmp_path / "secret.key"))
    await store.open(create=True)
    await store.open()  # migrations run once, a second start changes nothing
    try:
        start = await store.revision()
        key = await store.create_key(
            name="k", key_hash="a" * 64, key_hint="gg-…", channels=["gemini"], models=["gemini-*"]
        )
        assert (await store.get_key("k")) == key == (await store.get_key(str(key.id)))
        assert key.channels == ["gemini"] and key.models == ["gemini-*"]
        cred = await store.add_credential(channel="gemini", label="c", secret={"api_key": "x" * 20})
        assert cred.enabled and cred.status == "ok" and cred.secret == {"api_key": "x" * 20}
        updated = await store.update_credential(cred.id, status="invalid", status_reason="bad key")
        assert updated is not None and updated.status_reason == "bad key"
        assert [c.id for c in await store.list_credentials("gemini")] == [cred.id]
        assert await store.list_credentials("gemini_cli") == []
        assert await store.remove_credential(cred.id)
        assert not await store.remove_credential(cred.id)
        # Every change a running server must notice moves the revision.
        assert await store.revision() == start + 4
    finally:
        await store.close()


async def test_usage_rows_are_written_as_given(database_url: str, tmp_path: Path) -> None:
    store = Store(database_url, SecretKeySource(None, tmp_path / "secret.key"))
    await store.open(create=True)
    try:
        odd = 'gemini-"quoted", with commas\nand a line'
        rows = [
            UsageRow(1, "gemini", odd, "chat", 200, 3, 4, 1, 8, 1000.5),
            UsageRow(1, "gemini", "", "chat", 502, 0, 0, 0, 0, 1001.25),
            *[UsageRow(2, "gemini_cli", "m", "messages", 200, 1, 1, 0, 2, 2000.0)] * 2500,
        ]
        await store.add_usage(rows)
        await store.add_usage([])
        report = {(r["key_id"], r["model"]): r for r in await store.usage_report()}
        assert set(report) == {(1, odd), (1, ""), (2, "m")}
        assert report[1, odd]["total_tokens"] == 8 and report[1, odd]["thought_tokens"] == 1
        assert report[1, ""]["errors"] == 1
        assert report[2, "m"]["requests"] == 2500 and report[2, "m"]["total_tokens"] == 5000
        assert await store.tokens_by_key(since=1001.0) == {1: 0, 2: 5000}
    finally:
        await store.close()


def test_gemgate_serves_from_postgresql(tmp_path: Path, gemini: FakeGeminiAPI) -> None:
    with postgres_database() as url:
        server = start_gemgate(tmp_path, gemini, {"GEMGATE_DATABASE_URL": url})
        key = server.create_key("pg")
        server.add_api_key("AIzaFakeKeyAlpha0001")
        server.start()
        try:
            sdk = openai.OpenAI(base_url=server.url + "/v1", api_key=key, max_retries=0)
            answer = sdk.chat.completions.create(
                model="gemini-2.5-flash", messages=[{"role": "user", "content": "hi"}]
            )
            assert answer.choices[0].message.content
            assert not (tmp_path / "gemgate.db").exists()
        finally:
            assert server.stop()
