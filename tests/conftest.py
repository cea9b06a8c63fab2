from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.fakes.gemini_api import FakeGeminiAPI
from tests.harness import Gemgate

API_KEYS = {"AIzaFakeKeyAlpha0001", "AIzaFakeKeyBravo0002", "AIzaFakeKeyCharlie03"}


@pytest.fixture(scope="session")
def fake_gemini() -> Iterator[FakeGeminiAPI]:
    with FakeGeminiAPI(keys=set(API_KEYS)) as fake:
        yield fake


@pytest.fixture
def gemini(fake_gemini: FakeGeminiAPI) -> Iterator[FakeGeminiAPI]:
    """The shared fake, clean for this test."""
    fake_gemini.reset()
    yield fake_gemini
    fake_gemini.reset()


def start_gemgate(
    data_dir: Path, fake: FakeGeminiAPI, env: dict[str, str] | None = None, init_store: bool = True
) -> Gemgate:
    env = {"GEMGATE_GEMINI_API_BASE": fake.base_url, **(env or {})}
    return Gemgate(data_dir, env, init_store=init_store)


@pytest.fixture(scope="module")
def gateway(
    tmp_path_factory: pytest.TempPathFactory, fake_gemini: FakeGeminiAPI
) -> Iterator[Gemgate]:
    """One running gemgate per test module, with one client key and one API key."""
    server = start_gemgate(tmp_path_factory.mktemp("gemgate"), fake_gemini)
    server.client_key = server.create_key("tests")  # type: ignore[attr-defined]
    server.add_api_key("AIzaFakeKeyAlpha0001", "--label", "alpha")
    server.start()
    yield server
    server.stop()
