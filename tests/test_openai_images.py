"""The OpenAI images API (`/v1/images/generations`, `/v1/images/edits`) on the `gemini` channel,
through the official OpenAI SDK and through curl's own multipart forms: the right number of
images, at exactly the asked size, as base64 or as working gemgate links."""

from __future__ import annotations

import base64
import io
import json
import subprocess
import threading
import urllib.error
import urllib.request
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import numpy as np
import openai
import pytest
from PIL import Image

from tests.conftest import start_gemgate
from tests.fakes.gemini_api import FakeGeminiAPI, Reply, image_png
from tests.harness import Gemgate
from tests.openai_sdk import client
from tests.test_watermark import gradient, mark


def _png(width: int, height: int, colour: tuple[int, int, int]) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (width, height), colour).save(out, "PNG")
    return out.getvalue()


RED = _png(64, 48, (200, 20, 20))
BLUE = _png(32, 32, (20, 20, 200))


def _size(data: bytes) -> tuple[int, int]:
    with Image.open(io.BytesIO(data)) as image:
        return image.size


def _generate_calls(gemini: FakeGeminiAPI) -> list[Any]:
    return [r for r in gemini.requests if r.action == "generateContent"]


def _get(url: str) -> tuple[int, str, bytes]:
    with urllib.request.urlopen(url, timeout=10) as response:
        return response.status, response.headers["content-type"], response.read()


# -- generations --------------------------------------------------------------------------------


@pytest.mark.parametrize("prefix", ["", "/gemini"])
def test_generate_n_images_at_exactly_the_asked_size(
    gateway: Gemgate, gemini: FakeGeminiAPI, prefix: str
) -> None:
    result = client(gateway, prefix).images.generate(
        model="gemini-2.5-flash-image",
        prompt="a lighthouse at dusk",
        n=3,
        size="1000x600",  # type: ignore[arg-type]
        response_format="b64_json",
    )
    assert len(result.data) == 3
    for image in result.data:
        assert image.b64_json is not None
        assert _size(base64.b64decode(image.b64_json)) == (1000, 600)
    # One upstream call per image, each asking for the nearest shape the model makes.
    calls = _generate_calls(gemini)
    assert len(calls) == 3
    for call in calls:
        config = call.body["generationConfig"]
        assert config["responseModalities"] == ["IMAGE"]
        assert config["imageConfig"] == {"aspectRatio": "16:9"}  # 2.5 takes no imageSize
        assert call.body["contents"] == [
            {"role": "user", "parts": [{"text": "a lighthouse at dusk"}]}
        ]
    assert result.usage is not None
    assert result.usage.input_tokens > 0 and result.usage.total_tokens > 0


def test_generate_as_links_that_serve_the_image(gateway: Gemgate, gemini: FakeGeminiAPI) -> None:
    result = client(gateway).images.generate(
        model="gemini-2.5-flash-image",
        prompt="a cat",
        n=2,
        size="512x512",
        response_format="url",
    )
    urls = [image.url for image in result.data]
    assert len(set(urls)) == 2
    for url in urls:
        assert url is not None and url.startswith(f"{gateway.url}/media/")
        status, kind, body = _get(url)
        assert (status, kind) == (200, "image/png")
        assert _size(body) == (512, 512)


def test_a_size_the_model_makes_comes_back_untouched(
    gateway: Gemgate, gemini: FakeGeminiAPI
) -> None:
    result = client(gateway).images.generate(
        model="gemini-3-pro-image-preview", prompt="a map", size="2048x2048"
    )
    config = _generate_calls(gemini)[0].body["generationConfig"]
    assert config["imageConfig"] == {"aspectRatio": "1:1", "imageSize": "2K"}
    # Gemini made exactly that size: its bytes are passed on as they came.
    assert result.data[0].b64_json == image_png(2048, 2048)


def test_output_format_transcodes(gateway: Gemgate, gemini: FakeGeminiAPI) -> None:
    result = client(gateway).images.generate(
        model="gemini-2.5-flash-image",
        prompt="a cat",
        extra_body={"output_format": "jpeg"},
    )
    data = base64.b64decode(result.data[0].b64_json or "")
    assert data[:3] == b"\xff\xd8\xff"


def test_generate_with_a_form_body_by_curl(gateway: Gemgate, gemini: FakeGeminiAPI) -> None:
    out = subprocess.run(
        [
            "curl", "-sS", f"{gateway.url}/v1/images/generations",
            "-H", f"Authorization: Bearer {gateway.client_key}",  # type: ignore[attr-defined]
            "-F", "model=gemini-2.5-flash-image",
            "-F", "prompt=a red bicycle",
            "-F", "n=2",
            "-F", "size=800x800",
            "-F", "response_format=b64_json",
        ],
        capture_output=True, check=True, timeout=30,
    )  # fmt: skip
    body = json.loads(out.stdout)
    assert [_size(base64.b64decode(d["b64_json"])) for d in body["data"]] == [(800, 800)] * 2
    assert len(_generate_calls(gemini)) == 2


def test_a_refused_prompt_is_a_content_policy_violation(
    gateway: Gemgate, gemini: FakeGeminiAPI
) -> None:
    gemini.always(
        Reply.chunks(
            [
                {
                    "candidates": [
                        {
                            "content": {
                                "role": "model",
                                "parts": [{"text": "I can't make images of real people."}],
                            },
                            "finishReason": "IMAGE_SAFETY",
                            "index": 0,
                        }
                    ],
                    "usageMetadata": {"promptTokenCount": 7, "totalTokenCount": 7},
                }
            ]
        )
    )
    with pytest.raises(openai.BadRequestError) as raised:
        client(gateway).images.generate(model="gemini-2.5-flash-image", prompt="someone famous")
    error = raised.value.body
    assert isinstance(error, dict)
    assert error["code"] == "content_policy_violation"
    assert "IMAGE_SAFETY" in error["message"]
    assert "real people" in error["message"]


def test_a_blocked_prompt_is_a_content_policy_violation(
    gateway: Gemgate, gemini: FakeGeminiAPI
) -> None:
    gemini.always(Reply.blocked("PROHIBITED_CONTENT"))
    with pytest.raises(openai.BadRequestError) as raised:
        client(gateway).images.generate(model="gemini-2.5-flash-image", prompt="x", n=2)
    assert raised.value.code == "content_policy_violation"
    assert "PROHIBITED_CONTENT" in str(raised.value.message)


@pytest.mark.parametrize(
    ("fields", "param"),
    [
        ({"size": "big"}, "size"),
        ({"n": 11}, "n"),
        ({"response_format": "png"}, "response_format"),
        ({"prompt": ""}, "prompt"),
    ],
)
def test_bad_fields_are_named(
    gateway: Gemgate, gemini: FakeGeminiAPI, fields: dict[str, Any], param: str
) -> None:
    body = {"model": "gemini-2.5-flash-image", "prompt": "a cat", **fields}
    request = urllib.request.Request(
        f"{gateway.url}/v1/images/generations",
        data=json.dumps(body).encode(),
        headers={
            "authorization": f"Bearer {gateway.client_key}",  # type: ignore[attr-defined]
            "content-type": "application/json",
        },
    )
    with pytest.raises(urllib.error.HTTPError) as raised:
        urllib.request.urlopen(request, timeout=10)
    assert raised.value.code == 400
    assert json.loads(raised.value.read())["error"]["param"] == param
    assert gemini.requests == []


# -- edits ------------------------------------------------------------------------------------


def _inline(call: Any) -> list[bytes]:
    return [
        base64.b64decode(part["inlineData"]["data"])
        for part in call.body["contents"][0]["parts"]
        if "inlineData" in part
    ]


def test_edit_one_image(gateway: Gemgate, gemini: FakeGeminiAPI, tmp_path: Path) -> None:
    source = tmp_path / "red.png"
    source.write_bytes(RED)
    with source.open("rb") as file:
        result = client(gateway).images.edit(
            model="gemini-2.5-flash-image",
            image=file,
            prompt="make it blue",
            size="640x480",  # type: ignore[arg-type]
            response_format="b64_json",
        )
    assert _size(base64.b64decode(result.data[0].b64_json or "")) == (640, 480)
    call = _generate_calls(gemini)[0]
    assert call.body["contents"][0]["parts"][0] == {"text": "make it blue"}
    assert _inline(call) == [RED]


def test_edit_two_images_as_links(gateway: Gemgate, gemini: FakeGeminiAPI, tmp_path: Path) -> None:
    (tmp_path / "a.png").write_bytes(RED)
    (tmp_path / "b.png").write_bytes(BLUE)
    with (tmp_path / "a.png").open("rb") as a, (tmp_path / "b.png").open("rb") as b:
        result = client(gateway).images.edit(
            model="gemini-2.5-flash-image",
            image=[a, b],
            prompt="put the red one on the blue one",
            n=2,
            response_format="url",
        )
    assert len(result.data) == 2
    for image in result.data:
        status, _, body = _get(image.url or "")
        assert status == 200 and _size(body) == (1024, 1024)
    calls = _generate_calls(gemini)
    assert len(calls) == 2
    assert all(_inline(call) == [RED, BLUE] for call in calls)


def test_edit_with_a_mask(gateway: Gemgate, gemini: FakeGeminiAPI, tmp_path: Path) -> None:
    (tmp_path / "a.png").write_bytes(RED)
    (tmp_path / "mask.png").write_bytes(BLUE)
    with (tmp_path / "a.png").open("rb") as a, (tmp_path / "mask.png").open("rb") as mask:
        client(gateway).images.edit(
            model="gemini-2.5-flash-image", image=a, mask=mask, prompt="add a hat"
        )
    call = _generate_calls(gemini)[0]
    assert _inline(call) == [RED, BLUE]
    texts = [p["text"] for p in call.body["contents"][0]["parts"] if "text" in p]
    assert texts[0] == "add a hat" and "mask" in texts[1]


@pytest.mark.parametrize("field", ["image", "image[]"])
def test_edit_by_curl(gateway: Gemgate, gemini: FakeGeminiAPI, tmp_path: Path, field: str) -> None:
    (tmp_path / "a.png").write_bytes(RED)
    (tmp_path / "b.png").write_bytes(BLUE)
    out = subprocess.run(
        [
            "curl", "-sS", f"{gateway.url}/gemini/v1/images/edits",
            "-H", f"Authorization: Bearer {gateway.client_key}",  # type: ignore[attr-defined]
            "-F", "model=gemini-2.5-flash-image",
            "-F", "prompt=merge them",
            "-F", f"{field}=@{tmp_path / 'a.png'}",
            "-F", f"{field}=@{tmp_path / 'b.png'}",
            "-F", "size=300x200",
        ],
        capture_output=True, check=True, timeout=30,
    )  # fmt: skip
    body = json.loads(out.stdout)
    assert _size(base64.b64decode(body["data"][0]["b64_json"])) == (300, 200)
    assert _inline(_generate_calls(gemini)[0]) == [RED, BLUE]


def test_edit_with_json_image_urls(gateway: Gemgate, gemini: FakeGeminiAPI) -> None:
    body = {
        "model": "gemini-2.5-flash-image",
        "prompt": "brighter",
        "images": [{"image_url": "data:image/png;base64," + base64.b64encode(RED).decode()}],
    }
    request = urllib.request.Request(
        f"{gateway.url}/v1/images/edits",
        data=json.dumps(body).encode(),
        headers={
            "authorization": f"Bearer {gateway.client_key}",  # type: ignore[attr-defined]
            "content-type": "application/json",
        },
    )
    with urllib.request.urlopen(request, timeout=20) as response:
        assert len(json.loads(response.read())["data"]) == 1
    assert _inline(_generate_calls(gemini)[0]) == [RED]


def test_edit_without_an_image_is_refused(gateway: Gemgate, gemini: FakeGeminiAPI) -> None:
    with pytest.raises(openai.BadRequestError) as raised:
        client(gateway).images.edit(
            model="gemini-2.5-flash-image",
            image=[],
            prompt="nothing to edit",
        )
    assert raised.value.param == "image"
    assert gemini.requests == []


# -- Imagen through :predict ------------------------------------------------------------------


def test_imagen_generates_through_predict(gateway: Gemgate, gemini: FakeGeminiAPI) -> None:
    result = client(gateway).images.generate(
        model="imagen-4.0-generate-001", prompt="a fox", n=2, size="1792x1024"
    )
    assert [_size(base64.b64decode(d.b64_json or "")) for d in result.data] == [(1792, 1024)] * 2
    calls = [r for r in gemini.requests if r.action == "predict"]
    assert len(calls) == 2
    assert calls[0].body["instances"] == [{"prompt": "a fox"}]
    assert calls[0].body["parameters"]["aspectRatio"] == "16:9"
    assert calls[0].body["parameters"]["sampleCount"] == 1


def test_imagen_filtered_is_a_content_policy_violation(
    gateway: Gemgate, gemini: FakeGeminiAPI
) -> None:
    gemini.always(Reply.filtered("The prompt may violate our policies."))
    with pytest.raises(openai.BadRequestError) as raised:
        client(gateway).images.generate(model="imagen-4.0-generate-001", prompt="x")
    assert raised.value.code == "content_policy_violation"
    assert "may violate" in str(raised.value.message)


def test_imagen_cannot_edit(gateway: Gemgate, gemini: FakeGeminiAPI, tmp_path: Path) -> None:
    (tmp_path / "a.png").write_bytes(RED)
    with (tmp_path / "a.png").open("rb") as a, pytest.raises(openai.BadRequestError) as raised:
        client(gateway).images.edit(model="imagen-4.0-generate-001", image=a, prompt="x")
    assert "text only" in str(raised.value.message)
    assert [r for r in gemini.requests if r.action == "predict"] == []


# -- limits -----------------------------------------------------------------------------------


def test_keys_need_the_images_scope(gateway: Gemgate, gemini: FakeGeminiAPI) -> None:
    chat_only = gateway.create_key("chat-only", "--endpoints", "chat")
    gateway.wait_reload()
    sdk = openai.OpenAI(base_url=f"{gateway.url}/v1", api_key=chat_only, max_retries=0)
    with pytest.raises(openai.PermissionDeniedError) as raised:
        sdk.images.generate(model="gemini-2.5-flash-image", prompt="a cat")
    assert "images" in str(raised.value.message)
    assert gemini.requests == []


@pytest.fixture(scope="module")
def small_limit(
    tmp_path_factory: pytest.TempPathFactory, fake_gemini: FakeGeminiAPI
) -> Iterator[Gemgate]:
    server = start_gemgate(
        tmp_path_factory.mktemp("small"), fake_gemini, {"GEMGATE_MAX_BODY_BYTES": "20000"}
    )
    server.client_key = server.create_key("tests")  # type: ignore[attr-defined]
    server.add_api_key("AIzaFakeKeyAlpha0001")
    server.start()
    yield server
    server.stop()


def test_an_oversized_upload_is_413(
    small_limit: Gemgate, gemini: FakeGeminiAPI, tmp_path: Path
) -> None:
    big = tmp_path / "big.bin"
    big.write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(40000))
    with big.open("rb") as file, pytest.raises(openai.APIStatusError) as raised:
        client(small_limit).images.edit(model="gemini-2.5-flash-image", image=file, prompt="x")
    assert raised.value.status_code == 413
    assert raised.value.code == "request_too_large"
    assert gemini.requests == []


# -- watermark removal ------------------------------------------------------------------------


def _marked_reply(pixels: Any) -> Reply:
    out = io.BytesIO()
    Image.fromarray(pixels).save(out, "PNG")
    data = base64.b64encode(out.getvalue()).decode()
    return Reply.parts([{"inlineData": {"mimeType": "image/png", "data": data}}])


def test_remove_watermark(gateway: Gemgate, gemini: FakeGeminiAPI) -> None:
    original = gradient(1024, 1024)
    marked = mark(original, 48, 944, 944)
    gemini.always(_marked_reply(marked))
    sdk = client(gateway)
    kept = sdk.images.generate(model="gemini-2.5-flash-image", prompt="a cat")
    assert np.array_equal(_pixels(kept.data[0].b64_json), marked)  # only when asked
    result = sdk.images.generate(
        model="gemini-2.5-flash-image", prompt="a cat", extra_body={"remove_watermark": True}
    )
    cleaned = _pixels(result.data[0].b64_json)
    box = (slice(944, 992), slice(944, 992))
    assert np.abs(cleaned[box].astype(int) - original[box].astype(int)).max() <= 3
    outside = np.ones((1024, 1024), dtype=bool)
    outside[box] = False
    assert np.array_equal(cleaned[outside], marked[outside])


def test_remove_watermark_leaves_an_unmarked_image_as_it_came(
    gateway: Gemgate, gemini: FakeGeminiAPI
) -> None:
    result = client(gateway).images.generate(
        model="gemini-2.5-flash-image", prompt="a cat", extra_body={"remove_watermark": True}
    )
    assert result.data[0].b64_json == image_png(1024, 1024)


def _pixels(b64: str | None) -> Any:
    with Image.open(io.BytesIO(base64.b64decode(b64 or ""))) as image:
        return np.asarray(image.convert("RGB"))


# -- images given as URLs -------------------------------------------------------------------


class _Red(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        self.send_response(200)
        self.send_header("content-type", "application/octet-stream")  # the bytes say PNG
        self.send_header("content-length", str(len(RED)))
        self.end_headers()
        self.wfile.write(RED)

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture(scope="module")
def trusting(
    tmp_path_factory: pytest.TempPathFactory, fake_gemini: FakeGeminiAPI
) -> Iterator[tuple[Gemgate, str]]:
    """A gemgate allowed to fetch from 127.0.0.1, and a server there with a red PNG."""
    files = ThreadingHTTPServer(("127.0.0.1", 0), _Red)
    threading.Thread(target=files.serve_forever, daemon=True).start()
    allow = f"127.0.0.1:{files.server_address[1]}"
    server = start_gemgate(
        tmp_path_factory.mktemp("trusting"), fake_gemini, {"GEMGATE_FETCH_ALLOW_HOSTS": allow}
    )
    server.client_key = server.create_key("tests")  # type: ignore[attr-defined]
    server.add_api_key("AIzaFakeKeyAlpha0001")
    server.start()
    yield server, f"http://127.0.0.1:{files.server_address[1]}/red.png"
    server.stop()
    files.shutdown()
    files.server_close()


def _post_json(gateway: Gemgate, path: str, body: dict[str, Any]) -> dict[str, Any]:
    request = urllib.request.Request(
        f"{gateway.url}{path}",
        data=json.dumps(body).encode(),
        headers={
            "authorization": f"Bearer {gateway.client_key}",  # type: ignore[attr-defined]
            "content-type": "application/json",
        },
    )
    with urllib.request.urlopen(request, timeout=20) as response:
        return json.loads(response.read())  # type: ignore[no-any-return]


def test_edit_an_image_given_by_url(trusting: tuple[Gemgate, str], gemini: FakeGeminiAPI) -> None:
    server, url = trusting
    body = {"model": "gemini-2.5-flash-image", "prompt": "bluer", "images": [{"image_url": url}]}
    assert len(_post_json(server, "/v1/images/edits", body)["data"]) == 1
    call = _generate_calls(gemini)[0]
    assert _inline(call) == [RED]
    assert call.body["contents"][0]["parts"][1]["inlineData"]["mimeType"] == "image/png"


def test_an_image_url_on_loopback_is_refused(gateway: Gemgate, gemini: FakeGeminiAPI) -> None:
    body = {
        "model": "gemini-2.5-flash-image",
        "prompt": "bluer",
        "images": [{"image_url": "http://127.0.0.1:9/red.png"}],
    }
    with pytest.raises(urllib.error.HTTPError) as raised:
        _post_json(gateway, "/v1/images/edits", body)
    assert raised.value.code == 400
    assert "not a public address" in json.loads(raised.value.read())["error"]["message"]
    assert gemini.requests == []


def test_a_form_image_given_as_a_data_url(gateway: Gemgate, gemini: FakeGeminiAPI) -> None:
    data_url = "data:image/png;base64," + base64.b64encode(BLUE).decode()
    out = subprocess.run(
        [
            "curl", "-sS", f"{gateway.url}/v1/images/edits",
            "-H", f"Authorization: Bearer {gateway.client_key}",  # type: ignore[attr-defined]
            "-F", "prompt=redder",
            "--form-string", f"image={data_url}",
        ],
        capture_output=True, check=True, timeout=30,
    )  # fmt: skip
    assert len(json.loads(out.stdout).get("data", [])) == 1, out.stdout
    # No model named: GEMGATE_IMAGE_MODEL.
    call = _generate_calls(gemini)[0]
    assert call.model == "gemini-2.5-flash-image"
    assert _inline(call) == [BLUE]


def test_one_failed_answer_fails_the_request(gateway: Gemgate, gemini: FakeGeminiAPI) -> None:
    gemini.script(Reply.error(400, "Request contains an invalid argument."))
    with pytest.raises(openai.BadRequestError) as raised:
        client(gateway).images.generate(model="gemini-2.5-flash-image", prompt="a cat", n=3)
    assert "invalid argument" in str(raised.value.message)


def test_the_n_images_are_asked_for_at_once(gateway: Gemgate, gemini: FakeGeminiAPI) -> None:
    image = {"inlineData": {"mimeType": "image/png", "data": image_png(1024, 1024)}}
    # Each answer takes a while, as image models' do; made one after another, never two
    # would be under way together.
    gemini.always(Reply.parts([image], delay=1.0))
    result = client(gateway).images.generate(model="gemini-2.5-flash-image", prompt="x", n=4)
    assert len(result.data) == 4
    # All four under way together (a call left over from an earlier test, which the fake may
    # still be answering, can only add to the count).
    assert gemini.peak_slow >= 4


def test_an_edit_of_something_not_an_image_is_refused(
    gateway: Gemgate, gemini: FakeGeminiAPI, tmp_path: Path
) -> None:
    (tmp_path / "doc.pdf").write_bytes(b"%PDF-1.4\n1 0 obj<<>>endobj\ntrailer<<>>\n%%EOF\n")
    (tmp_path / "fake.png").write_bytes(b"not a png at all")
    for name in ("doc.pdf", "fake.png"):
        with (tmp_path / name).open("rb") as file, pytest.raises(openai.BadRequestError) as raised:
            client(gateway).images.edit(model="gemini-2.5-flash-image", image=file, prompt="x")
        assert raised.value.param == "image"
    assert gemini.requests == []
