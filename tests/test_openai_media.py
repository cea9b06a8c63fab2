"""Media in OpenAI messages: data URLs, audio, files, URLs fetched by the gateway (and the ones
it must refuse), YouTube links left to Gemini."""

from __future__ import annotations

import base64
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import openai
import pytest

from tests.conftest import start_gemgate
from tests.fakes.gemini_api import TINY_PNG, FakeGeminiAPI
from tests.harness import Gemgate
from tests.openai_sdk import client

PNG = base64.b64decode(TINY_PNG)
WAV = b"RIFF\x24\x00\x00\x00WAVEfmt " + b"\x00" * 28
PDF = b"%PDF-1.4\n1 0 obj<<>>endobj\ntrailer<<>>\n%%EOF\n"
MP3 = b"ID3\x04\x00\x00\x00\x00\x00\x00" + b"\xff\xfb\x90\x00" + b"\x00" * 28


class _Files(BaseHTTPRequestHandler):
    routes: dict[str, tuple[int, dict[str, str], bytes]] = {
        "/cat.png": (200, {"content-type": "image/png"}, PNG),
        # Audio served with a useless type: the bytes say what it is.
        "/clip": (200, {"content-type": "application/octet-stream"}, WAV),
        "/big.png": (200, {"content-type": "image/png"}, b"\x89PNG" + b"0" * 300_000),
        "/gone.png": (404, {}, b"no"),
    }

    def do_GET(self) -> None:
        if self.path.startswith("/to-localhost"):
            port = self.server.server_address[1]
            self.send_response(302)
            self.send_header("location", f"http://localhost:{port}/cat.png")
            self.end_headers()
            return
        status, headers, body = self.routes.get(self.path, (404, {}, b""))
        self.send_response(status)
        for name, value in headers.items():
            self.send_header(name, value)
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture(scope="module")
def files() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Files)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


@pytest.fixture(scope="module")
def trusting(
    tmp_path_factory: pytest.TempPathFactory, fake_gemini: FakeGeminiAPI, files: str
) -> Iterator[Gemgate]:
    """A gemgate whose operator allows fetching from the file server's 127.0.0.1 port, with a
    small size cap."""
    server = start_gemgate(
        Path(tmp_path_factory.mktemp("trusting")),
        fake_gemini,
        {
            "GEMGATE_FETCH_ALLOW_HOSTS": files.removeprefix("http://"),
            "GEMGATE_FETCH_MAX_BYTES": "100000",
        },
    )
    server.client_key = server.create_key("tests")  # type: ignore[attr-defined]
    server.add_api_key("AIzaFakeKeyAlpha0001")
    server.start()
    yield server
    server.stop()


def _ask(gateway: Gemgate, parts: list[Any]) -> None:
    client(gateway).chat.completions.create(
        model="gemini-2.5-flash", messages=[{"role": "user", "content": parts}]
    )


def _sent_parts(gemini: FakeGeminiAPI) -> list[dict[str, Any]]:
    return gemini.requests[-1].body["contents"][0]["parts"]  # type: ignore[no-any-return]


def test_data_urls_audio_and_files_are_inlined(gateway: Gemgate, gemini: FakeGeminiAPI) -> None:
    wav = base64.b64encode(WAV).decode()
    mp3 = base64.b64encode(MP3).decode()
    _ask(
        gateway,
        [
            {"type": "text", "text": "What are these?"},
            {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{TINY_PNG}"}},
            {"type": "input_audio", "input_audio": {"data": mp3, "format": "mp3"}},
            {
                "type": "file",
                "file": {
                    "file_data": "data:application/pdf;base64," + base64.b64encode(PDF).decode(),
                    "filename": "a.pdf",
                },
            },
            # Audio sent as an "image" with a generic type: the bytes decide.
            {
                "type": "image_url",
                "image_url": {"url": f"data:application/octet-stream;base64,{wav}"},
            },
        ],
    )
    assert _sent_parts(gemini) == [
        {"text": "What are these?"},
        {"inlineData": {"mimeType": "image/png", "data": TINY_PNG}},
        {"inlineData": {"mimeType": "audio/mp3", "data": mp3}},
        {"inlineData": {"mimeType": "application/pdf", "data": base64.b64encode(PDF).decode()}},
        {"inlineData": {"mimeType": "audio/wav", "data": wav}},
    ]


def test_youtube_links_go_to_gemini_as_file_data(gateway: Gemgate, gemini: FakeGeminiAPI) -> None:
    url = "https://www.youtube.com/watch?v=dQw4w9WgXcQ"
    _ask(
        gateway,
        [{"type": "text", "text": "Summarise"}, {"type": "image_url", "image_url": {"url": url}}],
    )
    assert _sent_parts(gemini)[1] == {"fileData": {"mimeType": "video/mp4", "fileUri": url}}


def test_a_url_on_loopback_is_refused(gateway: Gemgate, gemini: FakeGeminiAPI, files: str) -> None:
    url = f"{files}/cat.png"
    with pytest.raises(openai.BadRequestError) as caught:
        _ask(gateway, [{"type": "image_url", "image_url": {"url": url}}])
    message = caught.value.body["message"]  # type: ignore[index]
    assert url in message
    assert "127.0.0.1 is not a public address" in message
    assert gemini.requests == []


def test_allowed_host_is_fetched_and_inlined(
    trusting: Gemgate, gemini: FakeGeminiAPI, files: str
) -> None:
    _ask(
        trusting,
        [
            {"type": "image_url", "image_url": {"url": f"{files}/cat.png"}},
            {"type": "image_url", "image_url": {"url": f"{files}/clip"}},
        ],
    )
    assert _sent_parts(gemini) == [
        {"inlineData": {"mimeType": "image/png", "data": TINY_PNG}},
        {"inlineData": {"mimeType": "audio/wav", "data": base64.b64encode(WAV).decode()}},
    ]


@pytest.mark.parametrize(
    ("path", "words"),
    [
        ("/big.png", "more than the 100000"),
        ("/gone.png", "HTTP 404"),
        # The redirect target is checked again: localhost is not on the allow-list.
        ("/to-localhost", "localhost resolves to"),
    ],
)
def test_failed_fetches_are_400s_that_say_why(
    trusting: Gemgate, gemini: FakeGeminiAPI, files: str, path: str, words: str
) -> None:
    with pytest.raises(openai.BadRequestError) as caught:
        _ask(trusting, [{"type": "image_url", "image_url": {"url": files + path}}])
    message = caught.value.body["message"]  # type: ignore[index]
    assert files + path in message
    assert words in message
    assert gemini.requests == []


def test_unusable_parts_are_clear_400s(gateway: Gemgate, gemini: FakeGeminiAPI) -> None:
    for part, words in (
        ({"type": "image_url", "image_url": {"url": "file:///etc/passwd"}}, "http(s) URL"),
        ({"type": "image_url", "image_url": {"url": "data:image/png,notbase64"}}, "base64"),
        ({"type": "file", "file": {"file_id": "file-abc"}}, "file ids are not supported"),
    ):
        with pytest.raises(openai.BadRequestError) as caught:
            _ask(gateway, [part])
        assert words in caught.value.body["message"]  # type: ignore[index]
    assert gemini.requests == []
