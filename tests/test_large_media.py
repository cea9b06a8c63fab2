"""Large media: a video too big to go inline is uploaded through the (fake) Files API with the
credential that serves the request, waited on until ACTIVE, referenced as fileData, reused for
the same content on the same credential, and uploaded again after failover."""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import openai
import pytest

from tests.conftest import start_gemgate
from tests.fakes.gemini_api import FakeGeminiAPI, Reply
from tests.harness import Gemgate

# 40 MB of "video": an MP4 signature, then bytes that differ along the way.
VIDEO = b"\x00\x00\x00\x20ftypisom" + bytes(range(256)) * (40 * 1024 * 1024 // 256)
SMALL = b"\x00\x00\x00\x20ftypisom" + b"tiny video"
# Other videos of the same size, so that each test starts with nothing uploaded.
OTHER = b"\x00\x00\x00\x20ftypmp42" + VIDEO[12:]
THIRD = b"\x00\x00\x00\x20ftypavc1" + VIDEO[12:]
KEYS = ("AIzaFakeKeyAlpha0001", "AIzaFakeKeyBravo0002")


class _Videos(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        body = {
            "/big.mp4": VIDEO,
            "/other.mp4": OTHER,
            "/third.mp4": THIRD,
            "/small.mp4": SMALL,
        }.get(self.path)
        if body is None:
            self.send_response(404)
            self.end_headers()
            return
        self.send_response(200)
        self.send_header("content-type", "video/mp4")
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture(scope="module")
def videos() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Videos)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


@pytest.fixture(scope="module")
def uploader(
    tmp_path_factory: pytest.TempPathFactory, fake_gemini: FakeGeminiAPI, videos: str
) -> Iterator[Gemgate]:
    """A gemgate with two API keys that may fetch from the video server files up to 64 MB; the
    request size limit stays at its default (20 MB)."""
    server = start_gemgate(
        Path(tmp_path_factory.mktemp("uploader")),
        fake_gemini,
        {
            "GEMGATE_FETCH_ALLOW_HOSTS": videos.removeprefix("http://"),
            "GEMGATE_FETCH_MAX_BYTES": str(64 * 1024 * 1024),
        },
    )
    server.client_key = server.create_key("tests")  # type: ignore[attr-defined]
    for key in KEYS:
        server.add_api_key(key)
    server.start()
    yield server
    server.stop()


def _ask(gateway: Gemgate, url: str) -> str:
    sdk = openai.OpenAI(
        base_url=f"{gateway.url}/v1",
        api_key=gateway.client_key,  # type: ignore[attr-defined]
        max_retries=0,
        timeout=60,
    )
    answer = sdk.chat.completions.create(
        model="gemini-2.5-flash",
        messages=[
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "What happens in this video?"},
                    {"type": "video_url", "video_url": {"url": url}},
                ],
            }
        ],
    )
    return answer.choices[0].message.content or ""


def _generate_calls(gemini: FakeGeminiAPI) -> list[Any]:
    return [r for r in gemini.requests if r.action == "generateContent"]


def test_a_40mb_video_goes_through_the_files_api(
    uploader: Gemgate, gemini: FakeGeminiAPI, videos: str
) -> None:
    assert _ask(uploader, f"{videos}/big.mp4")
    [file] = gemini.files.values()
    assert (
        file.size == len(VIDEO)
        and hashlib.sha256(file.data).digest() == hashlib.sha256(VIDEO).digest()
    )
    assert file.state == "ACTIVE"  # polled until Google had processed it
    [call] = _generate_calls(gemini)
    assert call.api_key == file.key
    parts = call.body["contents"][0]["parts"]
    assert parts[1] == {
        "fileData": {"mimeType": "video/mp4", "fileUri": f"{gemini.base_url}/v1beta/{file.name}"}
    }
    assert not any("inlineData" in part for part in parts)
    polls = [r for r in gemini.requests if r.path == f"/v1beta/{file.name}"]
    assert len(polls) == 2 and all(r.api_key == file.key for r in polls)

    # The same video again, on the same credential: the upload is reused.
    for _ in KEYS:
        assert _ask(uploader, f"{videos}/big.mp4")
    reused = [c for c in _generate_calls(gemini) if c.api_key == file.key]
    assert len(reused) == 2
    assert reused[1].body["contents"][0]["parts"][1] == parts[1]
    # Every credential that served it uploaded it once, no more.
    assert sorted(f.key for f in gemini.files.values()) == sorted(KEYS)


def test_failover_uploads_again_on_the_next_credential(
    uploader: Gemgate, gemini: FakeGeminiAPI, videos: str
) -> None:
    # Whichever credential comes first fails after its upload; the next one serves.
    gemini.script(Reply.error(503))
    assert _ask(uploader, f"{videos}/other.mp4")
    first, second = _generate_calls(gemini)
    assert first.api_key != second.api_key
    used = second.body["contents"][0]["parts"][1]["fileData"]["fileUri"]
    owner = next(f for f in gemini.files.values() if used.endswith(f.name))
    assert owner.key == second.api_key


def test_small_media_stay_inline(uploader: Gemgate, gemini: FakeGeminiAPI, videos: str) -> None:
    assert _ask(uploader, f"{videos}/small.mp4")
    assert gemini.files == {}
    [call] = _generate_calls(gemini)
    assert "inlineData" in call.body["contents"][0]["parts"][1]


def test_a_file_google_forgot_is_uploaded_again(
    uploader: Gemgate, gemini: FakeGeminiAPI, videos: str
) -> None:
    for _ in KEYS:
        assert _ask(uploader, f"{videos}/third.mp4")
    assert len(gemini.files) == 2
    gemini.files.clear()  # deleted, or expired early, on Google's side
    gemini.requests.clear()
    assert _ask(uploader, f"{videos}/third.mp4")
    refused, served = _generate_calls(gemini)
    assert refused.api_key == served.api_key  # the credential is not blamed for it
    [file] = gemini.files.values()
    assert file.key == served.api_key
    assert served.body["contents"][0]["parts"][1]["fileData"]["fileUri"].endswith(file.name)
    # Both credentials are still in service.
    for _ in KEYS:
        assert _ask(uploader, f"{videos}/small.mp4")
    assert {c.api_key for c in _generate_calls(gemini)[-2:]} == set(KEYS)
