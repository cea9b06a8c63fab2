"""The media store: generated files under the data folder behind signed, expiring links, kept
under a size cap and swept in the background."""

from __future__ import annotations

import os
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from gemgate.media import MediaStore
from tests.conftest import start_gemgate
from tests.fakes.gemini_api import FakeGeminiAPI
from tests.harness import Gemgate
from tests.openai_sdk import client


def _token(url: str) -> str:
    return url.rsplit("/media/", 1)[1]


async def test_the_oldest_files_go_first_past_the_cap(tmp_path: Path) -> None:
    store = MediaStore(tmp_path, ttl=3600, max_bytes=2500)
    urls = []
    for age, byte in enumerate(b"abcd"):
        url = await store.save(bytes([byte]) * 1000, "image/png", "http://gw")
        path = store.path_for(_token(url))
        assert path is not None
        # Older first: a, b, c, d.
        os.utime(path, (time.time() - 100 + age, time.time() - 100 + age))
        urls.append(url)
    store.prune()
    kept = [store.path_for(_token(url)) is not None for url in urls]
    assert kept == [False, False, True, True]
    assert sum(p.stat().st_size for p in store.root.iterdir() if p.name[0] != ".") <= 2500


async def test_expired_files_are_deleted(tmp_path: Path) -> None:
    store = MediaStore(tmp_path, ttl=60, max_bytes=1 << 20)
    old = store.path_for(_token(await store.save(b"old", "image/png", "http://gw")))
    new = store.path_for(_token(await store.save(b"new", "image/png", "http://gw")))
    assert old is not None and new is not None
    os.utime(old, (time.time() - 120, time.time() - 120))
    store.prune()
    assert not old.exists() and new.exists()


async def test_a_forged_or_expired_token_opens_nothing(tmp_path: Path) -> None:
    store = MediaStore(tmp_path, ttl=60)
    token = _token(await store.save(b"x", "image/png", "http://gw"))
    name, expires, mac = token.split(".")
    assert store.path_for(token) is not None
    assert store.path_for(f"{name}.{int(expires) + 1}.{mac}") is None
    assert store.path_for(store.token(name, int(time.time()) - 1)) is None


@pytest.fixture
def short_lived(tmp_path: Path, fake_gemini: FakeGeminiAPI) -> Iterator[Gemgate]:
    server = start_gemgate(
        tmp_path / "gemgate",
        fake_gemini,
        {
            "GEMGATE_MEDIA_TTL": "3",
            "GEMGATE_MEDIA_CLEANUP_INTERVAL": "0.2",
            "GEMGATE_PUBLIC_URL": "https://images.example.test/gw",
        },
    )
    server.client_key = server.create_key("tests")  # type: ignore[attr-defined]
    server.add_api_key("AIzaFakeKeyAlpha0001")
    server.start()
    yield server
    server.stop()


def test_links_use_the_public_url_and_files_are_swept(
    short_lived: Gemgate, gemini: FakeGeminiAPI
) -> None:
    result = client(short_lived).images.generate(
        model="gemini-2.5-flash-image", prompt="a cat", response_format="url"
    )
    url = result.data[0].url or ""
    assert url.startswith("https://images.example.test/gw/media/")
    local = f"{short_lived.url}/media/{_token(url)}"
    media = short_lived.data_dir / "media"
    files = [p for p in media.iterdir() if not p.name.startswith(".")]
    assert len(files) == 1
    deadline = time.monotonic() + 15
    while files[0].exists() and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not files[0].exists()  # the background sweep took it once its link expired
    with pytest.raises(urllib.error.HTTPError) as raised:
        urllib.request.urlopen(local, timeout=5)
    assert raised.value.code == 404
