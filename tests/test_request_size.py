"""Request size: a body over GEMGATE_MAX_BODY_BYTES (or one that grows past it with the media
fetched for it, on a channel that cannot upload them) is a 413 in the client's own error shape,
and is never read into memory."""

from __future__ import annotations

import http.client
import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import anthropic
import openai
import pytest
from google import genai
from google.genai import errors as genai_errors
from google.genai import types

from gemgate import ir
from gemgate.config import Settings
from gemgate.errors import RequestTooLarge
from gemgate.fetch import Fetcher
from tests.conftest import start_gemgate
from tests.fakes.gemini_api import FakeGeminiAPI
from tests.harness import Gemgate
from tests.openai_sdk import client

LIMIT = 200_000
PICTURE = b"\x89PNG\r\n\x1a\n" + b"\x00" * 90_000  # 120 kB once base64-encoded


class _Pictures(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        self.send_response(200)
        self.send_header("content-type", "image/png")
        self.send_header("content-length", str(len(PICTURE)))
        self.end_headers()
        self.wfile.write(PICTURE)

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture(scope="module")
def pictures() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Pictures)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


@pytest.fixture(scope="module")
def small(
    tmp_path_factory: pytest.TempPathFactory, fake_gemini: FakeGeminiAPI, pictures: str
) -> Iterator[Gemgate]:
    server = start_gemgate(
        Path(tmp_path_factory.mktemp("small")),
        fake_gemini,
        {
            "GEMGATE_MAX_BODY_BYTES": str(LIMIT),
            "GEMGATE_INLINE_MAX_BYTES": str(LIMIT),
            "GEMGATE_FETCH_ALLOW_HOSTS": pictures.removeprefix("http://"),
        },
    )
    server.client_key = server.create_key("tests")  # type: ignore[attr-defined]
    server.add_api_key("AIzaFakeKeyAlpha0001")
    server.start()
    yield server
    server.stop()


BIG = "x" * (LIMIT + 1000)


def test_openai_client_gets_413_in_its_shape(small: Gemgate, gemini: FakeGeminiAPI) -> None:
    with pytest.raises(openai.APIStatusError) as caught:
        client(small).chat.completions.create(
            model="gemini-2.5-flash", messages=[{"role": "user", "content": BIG}]
        )
    assert caught.value.status_code == 413
    assert f"larger than the {LIMIT} bytes" in caught.value.body["message"]  # type: ignore[index]
    assert caught.value.response.headers["x-request-id"]
    assert gemini.requests == []


def test_anthropic_client_gets_413_in_its_shape(small: Gemgate, gemini: FakeGeminiAPI) -> None:
    sdk = anthropic.Anthropic(
        base_url=small.url,
        api_key=small.client_key,
        max_retries=0,  # type: ignore[attr-defined]
    )
    with pytest.raises(anthropic.APIStatusError) as caught:
        sdk.messages.create(
            model="gemini-2.5-flash",
            max_tokens=10,
            messages=[{"role": "user", "content": BIG}],
        )
    assert caught.value.status_code == 413
    assert caught.value.body["type"] == "error"  # type: ignore[index]
    assert gemini.requests == []


def test_gemini_client_gets_413_in_its_shape(small: Gemgate, gemini: FakeGeminiAPI) -> None:
    sdk = genai.Client(
        api_key=small.client_key,  # type: ignore[attr-defined]
        http_options=types.HttpOptions(base_url=small.url, api_version="v1beta"),
    )
    with pytest.raises(genai_errors.ClientError) as caught:
        sdk.models.generate_content(model="gemini-2.5-flash", contents=BIG)
    assert caught.value.code == 413
    assert "larger than" in str(caught.value.message)
    assert gemini.requests == []


def _open(server: Gemgate) -> http.client.HTTPConnection:
    port = int(server.url.rsplit(":", 1)[1])
    return http.client.HTTPConnection("127.0.0.1", port, timeout=10)


def test_a_huge_declared_body_is_refused_before_it_is_sent(small: Gemgate) -> None:
    conn = _open(small)
    conn.putrequest("POST", "/v1/chat/completions")
    conn.putheader("authorization", f"Bearer {small.client_key}")  # type: ignore[attr-defined]
    conn.putheader("content-type", "application/json")
    conn.putheader("content-length", str(150 * 1024 * 1024))
    conn.endheaders(b'{"model": "gemini-2.5-flash", "messages": [')
    # Only a few bytes of the 150 MB were sent: the answer cannot have waited for the rest.
    response = conn.getresponse()
    assert response.status == 413
    assert json.loads(response.read())["error"]["type"] == "invalid_request_error"


def test_a_chunked_body_is_counted_as_it_arrives(small: Gemgate, gemini: FakeGeminiAPI) -> None:
    conn = _open(small)
    body = json.dumps({"model": "gemini-2.5-flash", "messages": [{"role": "user", "content": BIG}]})
    conn.request(
        "POST",
        "/v1/messages",
        body=iter([body[i : i + 65536].encode() for i in range(0, len(body), 65536)]),
        headers={
            "x-api-key": small.client_key,  # type: ignore[attr-defined]
            "content-type": "application/json",
            "transfer-encoding": "chunked",
        },
        encode_chunked=True,
    )
    response = conn.getresponse()
    assert response.status == 413
    assert json.loads(response.read())["error"]["type"] == "request_too_large"
    assert gemini.requests == []


def test_a_client_that_leaves_mid_body_leaves_no_error_behind(
    small: Gemgate, gemini: FakeGeminiAPI
) -> None:
    conn = _open(small)
    conn.putrequest("POST", "/v1/chat/completions")
    conn.putheader("authorization", f"Bearer {small.client_key}")  # type: ignore[attr-defined]
    conn.putheader("content-type", "application/json")
    conn.putheader("content-length", "1000")
    conn.endheaders(b'{"model": "gemini-2.5-flash", "messages": [')
    conn.close()  # 44 of the 1,000 bytes sent
    # The next request is served as usual, and nothing was logged as an error in between.
    answer = client(small).chat.completions.create(
        model="gemini-2.5-flash", messages=[{"role": "user", "content": "hi"}]
    )
    assert answer.choices[0].message.content
    assert "unexpected error" not in small.log()
    assert "Traceback" not in small.log()
    assert len(gemini.requests) == 1


def test_fetched_media_past_the_inline_limit_go_through_the_files_api(
    small: Gemgate, gemini: FakeGeminiAPI, pictures: str
) -> None:
    one = {"type": "image_url", "image_url": {"url": f"{pictures}/a.png"}}
    client(small).chat.completions.create(
        model="gemini-2.5-flash", messages=[{"role": "user", "content": [one]}]
    )
    assert gemini.files == {}
    # Together the two pictures are more than the gemini channel sends inline: the gemini
    # channel uploads one of them instead of refusing the request.
    two = {"type": "image_url", "image_url": {"url": f"{pictures}/b.png"}}
    client(small).chat.completions.create(
        model="gemini-2.5-flash", messages=[{"role": "user", "content": [one, two]}]
    )
    [file] = gemini.files.values()
    assert bytes(file.data) == PICTURE
    parts = gemini.requests[-1].body["contents"][0]["parts"]
    assert sorted(next(iter(p)) for p in parts) == ["fileData", "inlineData"]


async def test_fetched_media_count_against_the_limit_of_a_channel_that_cannot_upload(
    pictures: str,
) -> None:
    allow = pictures.removeprefix("http://")
    fetcher = Fetcher(Settings(max_body_bytes=LIMIT, fetch_allow_hosts=allow))
    try:
        for uploads in (True, False):
            request = ir.Request(
                "gemini-2.5-flash",
                [
                    ir.Message(
                        "user", [ir.Media("image/png", uri=f"{pictures}/{n}.png") for n in "ab"]
                    )
                ],
            )
            if uploads:
                await fetcher.resolve(request, 1000, uploads=True)
                assert all(isinstance(p, ir.Media) and p.data for p in request.messages[0].parts)
                continue
            with pytest.raises(RequestTooLarge) as caught:
                await fetcher.resolve(request, 1000)
            assert "with the media fetched for it" in caught.value.message
    finally:
        await fetcher.close()
