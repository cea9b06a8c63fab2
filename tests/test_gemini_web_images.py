"""Image generation and edits on `gemini_official` (`-imagen` models and the images API) through
the official SDKs and curl against a running gemgate and the fake web app, whose media hosts
want the account's cookies, redirect across hosts, and serve watermarked files."""

from __future__ import annotations

import base64
import io
import json
import subprocess
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anthropic
import numpy as np
import openai
import pytest
from google import genai
from google.genai import types
from PIL import Image

from gemgate.channels.gemini_web import downloads, images
from tests.fakes.gemini_web import FakeGeminiWeb, WebReply
from tests.fakes.gemini_web_images import (
    LARGE_PREVIEW,
    MEDIA_HOST,
    ORIGINAL,
    PREVIEW,
    clean_picture,
    clean_png,
    mark_place,
    marked_png,
)
from tests.harness import Gemgate
from tests.web_sdk import oai

PREFIX = "/gemini_official"
PSID = "g.a000psid-images"
IMAGEN_NAMES = [
    "gemini-3-fast-imagen",
    "gemini-3-pro-imagen",
    "gemini-3-thinking-imagen",
    "gemini-2.5-flash-imagen",
    "gemini-2.5-pro-imagen",
]


def _png(width: int, height: int, colour: tuple[int, int, int]) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (width, height), colour).save(out, "PNG")
    return out.getvalue()


RED = _png(64, 48, (200, 20, 20))
BLUE = _png(32, 32, (20, 20, 200))


@pytest.fixture(scope="module")
def fake() -> Iterator[FakeGeminiWeb]:
    with FakeGeminiWeb() as server:
        yield server


@pytest.fixture
def web(fake: FakeGeminiWeb) -> Iterator[FakeGeminiWeb]:
    fake.reset()
    yield fake
    fake.reset()


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory, fake: FakeGeminiWeb) -> Iterator[Gemgate]:
    tmp = tmp_path_factory.mktemp("webimg")
    server = Gemgate(
        tmp,
        {**fake.env(), "GEMGATE_WEB_MIN_INTERVAL_MS": "0", "GEMGATE_WEB_ROTATE_INTERVAL": "86400"},
    )
    server.client_key = server.create_key("tests")  # type: ignore[attr-defined]
    account = fake.add_account(PSID, tier=2)
    # A whole exported jar: the host-only accounts.google.com cookies in it must not go along
    # with the downloads (the media hosts answer 403 to them).
    jar = tmp / "cookies.txt"
    jar.write_text(
        f"__Secure-1PSID={PSID}; __Secure-1PSIDTS={account.psidts}; SID=sid-value; "
        "LSID=lsid-value; __Host-GAPS=gaps-value"
    )
    server.cli("credentials", "add", "gemini_official", "--cookies", str(jar), "--label", "img")
    yield server.start()
    server.stop()


def _image(data: bytes) -> Image.Image:
    image = Image.open(io.BytesIO(data))
    image.load()
    return image


def _b64(value: str | None) -> bytes:
    return base64.b64decode(value or "")


def _pixels(data: bytes) -> Any:
    return np.asarray(_image(data).convert("RGB"))


def _drawing_calls(web: FakeGeminiWeb) -> list[Any]:
    return [r for r in web.chats() if r.inner is not None and r.inner[49] == 14]


# -- models -------------------------------------------------------------------------------------


def test_imagen_models_are_listed(gateway: Gemgate, web: FakeGeminiWeb) -> None:
    listed = {m.id for m in oai(gateway).models.list()}
    assert set(IMAGEN_NAMES) <= listed
    unprefixed = {m.id for m in oai(gateway, "").models.list()}
    assert set(IMAGEN_NAMES) <= unprefixed


# -- the images API -----------------------------------------------------------------------------


def test_generate_one_image_downloaded_with_the_accounts_cookies(
    gateway: Gemgate, web: FakeGeminiWeb
) -> None:
    result = oai(gateway).images.generate(model="gemini-3-pro-imagen", prompt="a red bicycle")
    assert len(result.data) == 1
    data = _b64(result.data[0].b64_json)
    assert data == marked_png(PREVIEW, PREVIEW)  # the 1K preview, as it came
    (call,) = _drawing_calls(web)
    assert call.prompt == "a red bicycle"
    # Followed by hand across hosts, straight to the bytes (gg-dl rewritten to rd-gg-dl).
    hops = [(host, path.split("/")[1], status) for host, path, status in web.images.hops]
    assert hops == [("127.0.0.1", "gg-dl", 302), (MEDIA_HOST, "rd-gg-dl", 200)]


def test_the_media_hosts_want_the_cookies(gateway: Gemgate, web: FakeGeminiWeb) -> None:
    oai(gateway).images.generate(model="gemini-3-fast-imagen", prompt="a cat")
    host, path, _ = web.images.hops[-1]
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(f"http://{host}:{web.images.media_port}{path}", timeout=10)
    assert refused.value.code == 403


@pytest.mark.parametrize("prefix", [PREFIX, ""])
def test_n_images_as_links_at_exactly_the_asked_size(
    gateway: Gemgate, web: FakeGeminiWeb, prefix: str
) -> None:
    result = oai(gateway, prefix).images.generate(
        model="gemini-2.5-flash-imagen",
        prompt="two foxes",
        n=2,
        size="1536x1024",
        response_format="url",
    )
    assert len(result.data) == 2
    assert len(_drawing_calls(web)) == 2  # one web turn per image, unprefixed too
    for item in result.data:
        assert item.url and item.url.startswith(gateway.url)
        with urllib.request.urlopen(item.url, timeout=10) as response:
            assert _image(response.read()).size == (1536, 1024)


def test_return_origin_image_gives_the_full_size_original(
    gateway: Gemgate, web: FakeGeminiWeb
) -> None:
    result = oai(gateway).images.generate(
        model="gemini-3-pro-imagen", prompt="a lighthouse", extra_body={"return_origin_image": True}
    )
    assert _image(_b64(result.data[0].b64_json)).size == (ORIGINAL, ORIGINAL)


def test_return_origin_image_falls_back_to_the_large_preview(
    gateway: Gemgate, web: FakeGeminiWeb
) -> None:
    web.images.full_size_broken = True
    result = oai(gateway).images.generate(
        model="gemini-3-pro-imagen", prompt="a lighthouse", extra_body={"return_origin_image": True}
    )
    assert _image(_b64(result.data[0].b64_json)).size == (LARGE_PREVIEW, LARGE_PREVIEW)


def test_remove_watermark_restores_the_corner(gateway: Gemgate, web: FakeGeminiWeb) -> None:
    result = oai(gateway).images.generate(
        model="gemini-3-fast-imagen", prompt="a field", extra_body={"remove_watermark": True}
    )
    cleaned = _pixels(_b64(result.data[0].b64_json))
    marked = _pixels(marked_png(PREVIEW, PREVIEW))
    original = clean_picture(PREVIEW, PREVIEW)
    size, x, y = mark_place(PREVIEW, PREVIEW)
    box = (slice(y, y + size), slice(x, x + size))
    assert np.abs(marked[box].astype(int) - original[box].astype(int)).max() > 60
    assert np.abs(cleaned[box].astype(int) - original[box].astype(int)).max() <= 3
    outside = np.ones((PREVIEW, PREVIEW), dtype=bool)
    outside[box] = False
    assert np.array_equal(cleaned[outside], marked[outside])


def test_remove_watermark_leaves_an_unmarked_image_as_it_came(
    gateway: Gemgate, web: FakeGeminiWeb
) -> None:
    web.images.marked = False
    result = oai(gateway).images.generate(
        model="gemini-3-fast-imagen", prompt="a field", extra_body={"remove_watermark": True}
    )
    assert _b64(result.data[0].b64_json) == clean_png(PREVIEW, PREVIEW)


@pytest.mark.parametrize("where", ["sparse", "chat"])
def test_images_found_in_the_sparse_bundle_and_in_the_chat_read_back(
    gateway: Gemgate, web: FakeGeminiWeb, where: str
) -> None:
    web.script(WebReply(images=2, images_in=where))
    result = oai(gateway).images.generate(model="gemini-3-fast-imagen", prompt="two owls")
    assert [_b64(d.b64_json) for d in result.data] == [
        marked_png(PREVIEW, PREVIEW, 0),
        marked_png(PREVIEW, PREVIEW, 1),
    ]


def test_an_answer_that_is_only_the_image(gateway: Gemgate, web: FakeGeminiWeb) -> None:
    web.script(WebReply(text=""))
    result = oai(gateway).images.generate(model="gemini-3-fast-imagen", prompt="an owl")
    assert _b64(result.data[0].b64_json) == marked_png(PREVIEW, PREVIEW)
    assert result.data[0].revised_prompt is None
    assert len(web.chats()) == 1  # taken as an answer, not retried


def test_an_image_turn_may_name_the_image_model(gateway: Gemgate, web: FakeGeminiWeb) -> None:
    web.script(WebReply(answered_by="6d4c0f2a8b1e9357"))
    result = oai(gateway).images.generate(model="gemini-3-pro-imagen", prompt="an owl")
    assert _b64(result.data[0].b64_json) == marked_png(PREVIEW, PREVIEW)


def test_a_refused_prompt_is_a_content_policy_violation(
    gateway: Gemgate, web: FakeGeminiWeb
) -> None:
    words = "I can't create images of real people in that situation."
    web.script(WebReply(text=words, images=0))
    with pytest.raises(openai.BadRequestError) as refused:
        oai(gateway).images.generate(model="gemini-3-fast-imagen", prompt="a senator, arrested")
    assert refused.value.status_code == 400
    error = refused.value.body
    assert isinstance(error, dict)
    assert error["code"] == "content_policy_violation"
    assert words in error["message"]


def test_a_host_without_rd_gg_dl_still_gives_the_image(
    gateway: Gemgate, web: FakeGeminiWeb
) -> None:
    web.images.no_rd_gg_dl = True
    result = oai(gateway).images.generate(
        model="gemini-3-fast-imagen", prompt="a cat", extra_body={"return_origin_image": True}
    )
    assert _image(_b64(result.data[0].b64_json)).size == (ORIGINAL, ORIGINAL)


def test_an_image_that_cannot_be_downloaded_is_a_clear_error(
    gateway: Gemgate, web: FakeGeminiWeb
) -> None:
    web.images.refuse_all = True
    with pytest.raises(openai.APIStatusError) as failed:
        oai(gateway).images.generate(model="gemini-3-fast-imagen", prompt="a cat")
    assert failed.value.status_code == 502
    assert "could not be downloaded (HTTP 403" in failed.value.message
    assert PSID not in failed.value.message


def test_a_download_past_the_limit_is_cut_off(
    fake: FakeGeminiWeb, web: FakeGeminiWeb, tmp_path: Path
) -> None:
    """GEMGATE_WEB_DOWNLOAD_MAX_BYTES: a file past it is never taken whole. Asked for the
    full-size image, the client gets the preview that fits; with a limit under every size, an
    error that names the setting (and does not blame the cookies)."""
    account = fake.accounts.get(PSID) or fake.add_account(PSID, tier=2)
    previews = len(marked_png(PREVIEW, PREVIEW)), len(clean_png(PREVIEW, PREVIEW))
    larger = len(clean_png(LARGE_PREVIEW, LARGE_PREVIEW)), len(clean_png(ORIGINAL, ORIGINAL))
    assert max(previews) < 60_000 < min(larger)
    for limit in ("60000", "1000"):
        server = Gemgate(
            tmp_path / limit,
            {**fake.env(), "GEMGATE_WEB_MIN_INTERVAL_MS": "0",
             "GEMGATE_WEB_ROTATE_INTERVAL": "86400", "GEMGATE_WEB_DOWNLOAD_MAX_BYTES": limit},
        )  # fmt: skip
        server.client_key = server.create_key("tests")  # type: ignore[attr-defined]
        server.cli("credentials", "add", "gemini_official", "--psid", PSID,
                   "--psidts", account.psidts)  # fmt: skip
        server.start()
        try:
            ask = {"return_origin_image": True}
            if limit == "60000":
                result = oai(server).images.generate(
                    model="gemini-3-pro-imagen", prompt="a lighthouse", extra_body=ask
                )
                assert _image(_b64(result.data[0].b64_json)).size == (PREVIEW, PREVIEW)
            else:
                with pytest.raises(openai.APIStatusError) as failed:
                    oai(server).images.generate(
                        model="gemini-3-pro-imagen", prompt="a lighthouse", extra_body=ask
                    )
                assert failed.value.status_code == 502
                message = failed.value.message
                assert "larger than GEMGATE_WEB_DOWNLOAD_MAX_BYTES (1000 bytes)" in message
                assert "cookies" not in message
        finally:
            server.stop()


def test_the_images_api_on_a_plain_web_model_asks_for_the_image_tool(
    gateway: Gemgate, web: FakeGeminiWeb
) -> None:
    result = oai(gateway).images.generate(model="gemini-3-pro", prompt="a kite", size="1024x1536")
    assert _image(_b64(result.data[0].b64_json)).size == (1024, 1536)
    (call,) = _drawing_calls(web)
    assert call.prompt == "a kite\n\nMake the image portrait, aspect ratio 2:3."


@pytest.mark.parametrize("images", [[RED], [RED, BLUE]])
def test_edit_uploads_the_source_images(
    gateway: Gemgate, web: FakeGeminiWeb, images: list[bytes]
) -> None:
    files = [(f"src{i}.png", data, "image/png") for i, data in enumerate(images)]
    result = oai(gateway).images.edit(
        model="gemini-3-pro-imagen",
        image=files if len(files) > 1 else files[0],  # type: ignore[arg-type]
        prompt="make it a watercolour",
        response_format="url",
    )
    assert len(result.data) == 1 and result.data[0].url
    (call,) = _drawing_calls(web)
    assert call.prompt.startswith("make it a watercolour")
    sent = [web.uploads[item[0][0]] for item in call.files]
    assert [u.data for u in sent] == images
    assert [(item[0][1], item[0][3]) for item in call.files] == [(1, "image/png")] * len(images)


def test_generate_and_edit_by_curl(gateway: Gemgate, web: FakeGeminiWeb, tmp_path: Path) -> None:
    key = gateway.client_key  # type: ignore[attr-defined]
    out = subprocess.run(
        [
            "curl", "-sS", f"{gateway.url}{PREFIX}/v1/images/generations",
            "-H", f"Authorization: Bearer {key}",
            "-F", "model=gemini-3-pro-imagen",
            "-F", "prompt=a red bicycle",
            "-F", "n=2",
            "-F", "size=800x800",
            "-F", "response_format=b64_json",
            "-F", "remove_watermark=true",
        ],
        capture_output=True, check=True, timeout=60,
    )  # fmt: skip
    body = json.loads(out.stdout)
    assert [_image(_b64(d["b64_json"])).size for d in body["data"]] == [(800, 800)] * 2
    (tmp_path / "a.png").write_bytes(RED)
    (tmp_path / "b.png").write_bytes(BLUE)
    out = subprocess.run(
        [
            "curl", "-sS", f"{gateway.url}/v1/images/edits",
            "-H", f"Authorization: Bearer {key}",
            "-F", "model=gemini-3-fast-imagen",
            "-F", "prompt=merge them",
            "-F", f"image[]=@{tmp_path / 'a.png'}",
            "-F", f"image[]=@{tmp_path / 'b.png'}",
            "-F", "return_origin_image=true",
        ],
        capture_output=True, check=True, timeout=60,
    )  # fmt: skip
    body = json.loads(out.stdout)
    assert _image(_b64(body["data"][0]["b64_json"])).size == (ORIGINAL, ORIGINAL)
    assert [len(c.files) for c in _drawing_calls(web)] == [0, 0, 2]


# -- reading answers and URLs (the tolerant side) ------------------------------------------------


def _item(url: str, image_id: str = "img1") -> list[Any]:
    return [[None, None, None, [None, 1, "a cat", url]], [image_id]]


@pytest.mark.parametrize(
    "rich",
    [
        [None] * 7 + [[[_item("https://lh3.googleusercontent.com/gg-dl/a")]]],  # positional
        [None, None, {"8": [[_item("https://lh3.googleusercontent.com/gg-dl/a")]]}],  # sparse
        [None] * 7 + [{}, {"8": [[_item("https://lh3.googleusercontent.com/gg-dl/a")]]}],
        [{"8": [[_item("https://lh3.googleusercontent.com/gg-dl/a")]]}],  # older sparse form
    ],
)
def test_generated_images_are_read_from_every_form_of_field_7(rich: list[Any]) -> None:
    (found,) = images.generated(rich)
    assert found == images.Generated("https://lh3.googleusercontent.com/gg-dl/a", "img1")


def test_blocks_without_images_give_none() -> None:
    assert images.generated(None) == []
    assert images.generated([None, [], {"1": []}]) == []
    assert images.generated([None] * 7 + [[[["not an image"]]]]) == []


def test_sizes_and_the_rd_gg_dl_rewrite() -> None:
    base = "https://lh3.googleusercontent.com/gg-dl/AbC"
    assert images.sized(base, "s2048-rj") == base + "=s2048-rj"
    assert images.sized(base + "=s1024-rj", "s2048-rj") == base + "=s2048-rj"
    assert downloads.rd_gg_dl("https://work.fife.usercontent.google.com/gg-dl/AbC=s1024") == (
        "https://work.fife.usercontent.google.com/rd-gg-dl/AbC=s1024"
    )
    assert downloads.rd_gg_dl(base.replace("gg-dl", "fife")) == base.replace("gg-dl", "fife")


# -- images in chat, on every front -------------------------------------------------------------


def test_openai_chat_links_the_image(gateway: Gemgate, web: FakeGeminiWeb) -> None:
    message = (
        oai(gateway)
        .chat.completions.create(
            model="gemini-3-fast-imagen", messages=[{"role": "user", "content": "Draw a cat."}]
        )
        .choices[0]
        .message
    )
    images = (message.model_extra or {})["images"]
    assert len(images) == 1
    link = images[0]["image_url"]["url"]
    assert f"![image]({link})" in (message.content or "")
    assert "Here you go!" in (message.content or "")
    assert "googleusercontent.com" not in (message.content or "")
    with urllib.request.urlopen(link, timeout=10) as response:
        assert response.read() == marked_png(PREVIEW, PREVIEW)


@pytest.mark.parametrize("model", ["gemini-3-pro-imagen", "gemini-3-thinking-imagen"])
def test_openai_chat_streams_the_image(gateway: Gemgate, web: FakeGeminiWeb, model: str) -> None:
    stream = oai(gateway).chat.completions.create(
        model=model,
        messages=[{"role": "user", "content": "Draw a cat."}],
        stream=True,
    )
    content = "".join(chunk.choices[0].delta.content or "" for chunk in stream if chunk.choices)
    assert content.startswith("Here you go!") and "![image](" in content


def test_a_follow_up_in_openai_chat_edits_in_the_same_web_chat(
    gateway: Gemgate, web: FakeGeminiWeb
) -> None:
    first = [{"role": "user", "content": "Draw a cat."}]
    answer = oai(gateway).chat.completions.create(model="gemini-3-fast-imagen", messages=first)  # type: ignore[arg-type]
    said = answer.choices[0].message.content
    assert said and "![image](" in said
    follow_up = [
        *first,
        {"role": "assistant", "content": said},
        {"role": "user", "content": "Now make it blue."},
    ]
    again = oai(gateway).chat.completions.create(model="gemini-3-fast-imagen", messages=follow_up)  # type: ignore[arg-type]
    assert "![image](" in (again.choices[0].message.content or "")
    one, two = _drawing_calls(web)
    assert two.prompt == "Now make it blue."
    assert one.inner is not None and two.inner is not None and not one.inner[2][0]
    chat = web.conversations[two.inner[2][0]]  # the second turn continued the first's chat
    assert chat.turns == ["Draw a cat.", "Now make it blue."]


def test_anthropic_clients_get_an_image_block(gateway: Gemgate, web: FakeGeminiWeb) -> None:
    claude = anthropic.Anthropic(
        base_url=f"{gateway.url}{PREFIX}",
        api_key=gateway.client_key,  # type: ignore[attr-defined]
        max_retries=0,
        timeout=30,
    )
    message = claude.messages.create(
        model="gemini-2.5-pro-imagen",
        max_tokens=1024,
        messages=[{"role": "user", "content": "Draw a cat."}],
    )
    assert [block.type for block in message.content] == ["text", "image"]
    source = message.content[1].model_extra["source"]  # type: ignore[union-attr]
    assert source["type"] == "base64" and source["media_type"] == "image/png"
    assert _b64(source["data"]) == marked_png(PREVIEW, PREVIEW)


def test_native_clients_get_inline_data(gateway: Gemgate, web: FakeGeminiWeb) -> None:
    client = genai.Client(
        api_key=gateway.client_key,  # type: ignore[attr-defined]
        http_options=types.HttpOptions(base_url=f"{gateway.url}{PREFIX}", timeout=30_000),
    )
    answer = client.models.generate_content(model="gemini-3-fast-imagen", contents="Draw a cat.")
    parts = answer.candidates[0].content.parts  # type: ignore[index, union-attr]
    inline = [p.inline_data for p in parts or [] if p.inline_data is not None]
    assert len(inline) == 1
    assert inline[0].data == marked_png(PREVIEW, PREVIEW)
    assert inline[0].mime_type == "image/png"


def test_native_streams_carry_inline_data(gateway: Gemgate, web: FakeGeminiWeb) -> None:
    client = genai.Client(
        api_key=gateway.client_key,  # type: ignore[attr-defined]
        http_options=types.HttpOptions(base_url=f"{gateway.url}{PREFIX}", timeout=30_000),
    )
    chunks = list(
        client.models.generate_content_stream(model="gemini-3-pro-imagen", contents="Draw a cat.")
    )
    parts = [
        part
        for chunk in chunks
        if chunk.candidates and chunk.candidates[0].content
        for part in chunk.candidates[0].content.parts or []
    ]
    inline = [p.inline_data.data for p in parts if p.inline_data is not None]
    assert inline == [marked_png(PREVIEW, PREVIEW)]


def test_responses_clients_get_an_image_generation_call(
    gateway: Gemgate, web: FakeGeminiWeb
) -> None:
    response = oai(gateway).responses.create(model="gemini-3-fast-imagen", input="Draw a cat.")
    calls = [item for item in response.output if item.type == "image_generation_call"]
    assert len(calls) == 1
    assert _b64(calls[0].result) == marked_png(PREVIEW, PREVIEW)  # type: ignore[union-attr]
    assert "Here you go!" in response.output_text
