"""Media a client sends, through the real SDKs: only http(s) URL sources, only types Gemini
reads, bytes that are what their type says, and a fetch allow-list that names ports."""

from __future__ import annotations

import base64
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import anthropic
import openai
import pytest

from gemgate.config import Settings
from gemgate.errors import InvalidRequest
from gemgate.fetch import AllowList, Fetcher, FetchRefused
from gemgate.formats.gemini_native import GeminiNative
from tests.conftest import start_gemgate
from tests.fakes.gemini_api import TINY_PNG, FakeGeminiAPI
from tests.harness import Gemgate, free_port
from tests.openai_sdk import client as openai_client

PNG = base64.b64decode(TINY_PNG)
JPEG = b"\xff\xd8\xff\xe0\x00\x10JFIF\x00\x01" + b"\x00" * 20
PDF = b"%PDF-1.4\n1 0 obj<<>>endobj\ntrailer<<>>\n%%EOF\n"
MP3 = b"ID3\x04\x00\x00\x00\x00\x00\x00" + b"\xff\xfb\x90\x00" + b"\x00" * 28
TEXT = b"just some words, not an image at all"


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def anthropic_client(gateway: Gemgate) -> anthropic.Anthropic:
    return anthropic.Anthropic(
        base_url=gateway.url,
        api_key=gateway.client_key,  # type: ignore[attr-defined]
        max_retries=0,
        timeout=20,
    )


def ask_anthropic(gateway: Gemgate, blocks: list[dict[str, Any]]) -> None:
    anthropic_client(gateway).messages.create(
        model="gemini-2.5-flash",
        max_tokens=50,
        messages=[{"role": "user", "content": blocks}],  # type: ignore[typeddict-item]
    )


def ask_openai(gateway: Gemgate, parts: list[dict[str, Any]]) -> None:
    openai_client(gateway).chat.completions.create(
        model="gemini-2.5-flash",
        messages=[{"role": "user", "content": parts}],  # type: ignore[misc,list-item]
    )


def sent_parts(gemini: FakeGeminiAPI) -> list[dict[str, Any]]:
    return gemini.requests[-1].body["contents"][0]["parts"]  # type: ignore[no-any-return]


# -- URL sources ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "url",
    [
        "file:///etc/passwd",
        "gopher://127.0.0.1:6379/_INFO",
        f"data:image/png;base64,{TINY_PNG}",
        "ftp://example.com/cat.png",
        "http:///no-host.png",
    ],
)
def test_anthropic_url_sources_that_are_not_http_are_refused(
    gateway: Gemgate, gemini: FakeGeminiAPI, url: str
) -> None:
    with pytest.raises(anthropic.BadRequestError) as caught:
        ask_anthropic(
            gateway,
            [
                {"type": "text", "text": "What is this?"},
                {"type": "image", "source": {"type": "url", "url": url}},
            ],
        )
    message = caught.value.body["error"]["message"]  # type: ignore[index]
    assert "messages.0.content" in message
    assert "http(s) URL" in message
    # Nothing reached Google: a file: URI never becomes fileData.
    assert gemini.requests == []


def test_native_file_data_must_be_http_on_the_ir_path() -> None:
    # The Gemini-native decoder serves the channels that cannot take a native body as it is.
    body = b'{"contents":[{"parts":[{"fileData":{"mimeType":"image/png","fileUri":"file:///etc/passwd"}}]}]}'
    with pytest.raises(InvalidRequest) as caught:
        GeminiNative().decode(body, "gemini-2.5-flash")
    assert "contents[0].parts[0]" in caught.value.message
    assert "http(s) URL" in caught.value.message


# -- inline bytes -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "words"),
    [
        (f"data:image/svg+xml;base64,{b64(b'<svg/>')}", "Gemini cannot read image/svg+xml"),
        (f"data:application/zip;base64,{b64(b'PK' + bytes(30))}", "cannot read application/zip"),
        (
            f"data:image/png;base64,{b64(PDF)}",
            "not image/png (its first bytes look like application/pdf)",
        ),
        (
            f"data:image/png;base64,{b64(TEXT)}",
            "not image/png (its first bytes match no known format)",
        ),
        (f"data:application/octet-stream;base64,{b64(TEXT)}", "cannot tell what kind of file"),
        ("data:image/png;base64,", "the data is empty"),
        ("data:image/png;base64,!!!!not-base64!!!!", "not valid base64"),
    ],
)
def test_openai_data_urls_gemini_cannot_read_are_400s_naming_the_part(
    gateway: Gemgate, gemini: FakeGeminiAPI, url: str, words: str
) -> None:
    with pytest.raises(openai.BadRequestError) as caught:
        ask_openai(
            gateway,
            [
                {"type": "text", "text": "look"},
                {"type": "image_url", "image_url": {"url": url}},
            ],
        )
    message = caught.value.body["message"]  # type: ignore[index]
    assert message.startswith("messages[0].content[1]:")
    assert words in message
    assert gemini.requests == []


@pytest.mark.parametrize(
    ("block", "words"),
    [
        (
            {
                "type": "image",
                "source": {"type": "base64", "media_type": "image/png", "data": b64(TEXT)},
            },
            "not image/png",
        ),
        (
            {
                "type": "document",
                "source": {"type": "base64", "media_type": "application/pdf", "data": b64(PNG)},
            },
            "not application/pdf (its first bytes look like image/png)",
        ),
        (
            {
                "type": "image",
                "source": {
                    "type": "base64",
                    "media_type": "image/bmp",
                    "data": b64(b"BM" + bytes(30)),
                },
            },
            "Gemini cannot read image/bmp",
        ),
    ],
)
def test_anthropic_base64_sources_are_checked(
    gateway: Gemgate, gemini: FakeGeminiAPI, block: dict[str, Any], words: str
) -> None:
    with pytest.raises(anthropic.BadRequestError) as caught:
        ask_anthropic(gateway, [{"type": "text", "text": "look"}, block])
    message = caught.value.body["error"]["message"]  # type: ignore[index]
    assert message.startswith("messages.0.content:")
    assert words in message
    assert gemini.requests == []


def test_a_mislabelled_file_of_the_right_kind_goes_up_as_what_it_is(
    gateway: Gemgate, gemini: FakeGeminiAPI
) -> None:
    # Clients often label every picture image/jpeg and every recording wav: the bytes decide
    # within a kind; readable files that are what they say pass untouched.
    ask_openai(
        gateway,
        [
            {"type": "image_url", "image_url": {"url": f"data:image/jpeg;base64,{TINY_PNG}"}},
            {"type": "input_audio", "input_audio": {"data": b64(MP3), "format": "wav"}},
            {"type": "image_url", "image_url": {"url": f"data:image/jpg;base64,{b64(JPEG)}"}},
            {"type": "file", "file": {"file_data": f"data:text/plain;base64,{b64(TEXT)}"}},
        ],
    )
    assert sent_parts(gemini) == [
        {"inlineData": {"mimeType": "image/png", "data": TINY_PNG}},
        {"inlineData": {"mimeType": "audio/mpeg", "data": b64(MP3)}},
        {"inlineData": {"mimeType": "image/jpeg", "data": b64(JPEG)}},
        {"inlineData": {"mimeType": "text/plain", "data": b64(TEXT)}},
    ]


def test_anthropic_pdf_and_image_pass_when_they_are_what_they_say(
    gateway: Gemgate, gemini: FakeGeminiAPI
) -> None:
    ask_anthropic(
        gateway,
        [
            {
                "type": "image",
                "source": {"type": "base64", "media_type": "image/png", "data": TINY_PNG},
            },
            {
                "type": "document",
                "source": {"type": "base64", "media_type": "application/pdf", "data": b64(PDF)},
            },
        ],
    )
    assert sent_parts(gemini) == [
        {"inlineData": {"mimeType": "image/png", "data": TINY_PNG}},
        {"inlineData": {"mimeType": "application/pdf", "data": b64(PDF)}},
    ]


# -- fetched URLs and the allow-list ----------------------------------------------------------


class _Files(BaseHTTPRequestHandler):
    routes: dict[str, tuple[str, bytes]] = {
        "/cat.png": ("image/png", PNG),
        # A login page where an image was promised.
        "/fake.png": ("image/png", b"<html><body>please sign in</body></html>"),
    }

    def do_GET(self) -> None:
        kind, body = self.routes.get(self.path, ("text/plain", b""))
        self.send_response(200 if self.path in self.routes else 404)
        self.send_header("content-type", kind)
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: Any) -> None:
        pass


def _serve() -> ThreadingHTTPServer:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Files)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


@pytest.fixture(scope="module")
def two_servers() -> Iterator[tuple[str, str]]:
    """Two file servers on one host: the operator allow-lists the first one's port only."""
    servers = [_serve(), _serve()]
    yield tuple(f"http://127.0.0.1:{s.server_address[1]}" for s in servers)  # type: ignore[misc]
    for server in servers:
        server.shutdown()
        server.server_close()


@pytest.fixture(scope="module")
def one_port(
    tmp_path_factory: pytest.TempPathFactory,
    fake_gemini: FakeGeminiAPI,
    two_servers: tuple[str, str],
) -> Iterator[Gemgate]:
    allowed = two_servers[0].removeprefix("http://")
    server = start_gemgate(
        Path(tmp_path_factory.mktemp("one-port")),
        fake_gemini,
        {"GEMGATE_FETCH_ALLOW_HOSTS": f"example.invalid, {allowed}"},
    )
    server.client_key = server.create_key("tests")  # type: ignore[attr-defined]
    server.add_api_key("AIzaFakeKeyAlpha0001")
    server.start()
    yield server
    server.stop()


def test_allow_list_entry_with_a_port_allows_that_port_only(
    one_port: Gemgate, gemini: FakeGeminiAPI, two_servers: tuple[str, str]
) -> None:
    allowed, other = two_servers
    # A scheme in capitals is fetched all the same, never passed on as it is.
    shouted = allowed.replace("http://", "HTTP://")
    ask_anthropic(
        one_port, [{"type": "image", "source": {"type": "url", "url": f"{shouted}/cat.png"}}]
    )
    assert sent_parts(gemini) == [{"inlineData": {"mimeType": "image/png", "data": TINY_PNG}}]
    gemini.reset()
    with pytest.raises(anthropic.BadRequestError) as caught:
        ask_anthropic(
            one_port, [{"type": "image", "source": {"type": "url", "url": f"{other}/cat.png"}}]
        )
    message = caught.value.body["error"]["message"]  # type: ignore[index]
    assert f"could not fetch {other}/cat.png" in message
    assert "127.0.0.1 is not a public address" in message
    assert gemini.requests == []


def test_a_fetched_file_that_is_not_what_it_claims_is_refused(
    one_port: Gemgate, gemini: FakeGeminiAPI, two_servers: tuple[str, str]
) -> None:
    url = f"{two_servers[0]}/fake.png"
    with pytest.raises(openai.BadRequestError) as caught:
        ask_openai(one_port, [{"type": "image_url", "image_url": {"url": url}}])
    message = caught.value.body["message"]  # type: ignore[index]
    assert f"the file at {url}: the data is not image/png" in message
    assert gemini.requests == []


def test_allow_list_entries() -> None:
    allow = AllowList("images.local, 10.0.0.5:8080, [::1]:9000, fd00::7")
    assert allow.allows("images.local", 443) and allow.allows("IMAGES.local", 80)
    # A bare host is its web ports, not every service on the machine.
    assert not allow.allows("images.local", 6379)
    assert allow.allows("10.0.0.5", 8080) and not allow.allows("10.0.0.5", 80)
    assert allow.allows("::1", 9000) and allow.allows("[::1]", 9000)
    assert not allow.allows("::1", 9001)
    assert allow.allows("fd00::7", 443) and not allow.allows("fd00::7", 22)
    with pytest.raises(ValueError, match="not a number"):
        AllowList("images.local:http")


async def test_fetcher_refuses_an_allow_listed_host_on_another_port() -> None:
    fetcher = Fetcher(Settings(fetch_allow_hosts="127.0.0.1:9"))
    try:
        with pytest.raises(FetchRefused) as refused:
            await fetcher.fetch("http://127.0.0.1:10/x.png")
        assert "127.0.0.1 is not a public address" in str(refused.value)
        # The allowed port gets as far as connecting (port 9 is closed).
        with pytest.raises(FetchRefused) as refused:
            await fetcher.fetch("http://127.0.0.1:9/x.png")
        assert "cannot connect" in str(refused.value)
    finally:
        await fetcher.close()


def test_an_allow_list_entry_with_a_bad_port_stops_gemgate(tmp_path: Path) -> None:
    gate = Gemgate(tmp_path, {"GEMGATE_FETCH_ALLOW_HOSTS": "images.local:https"})
    result = gate.cli("serve", "--port", str(free_port()), check=False)
    assert result.returncode != 0
    assert "GEMGATE_FETCH_ALLOW_HOSTS: the port of 'images.local:https' is not a number" in (
        result.stderr
    )
    assert "Traceback" not in result.stderr
