"""Images made by the `gemini` channel's image models, in chat on every front: Markdown links
(and `message.images`) for OpenAI clients, image blocks for Anthropic clients, inline data for
Google's own clients."""

from __future__ import annotations

import base64
import io
import urllib.request

import anthropic
import pytest
from google import genai
from google.genai import types
from PIL import Image

from tests.fakes.gemini_api import FakeGeminiAPI, image_png
from tests.harness import Gemgate
from tests.openai_sdk import client as openai_client
from tests.openai_sdk import collect_stream

DRAW = [{"role": "user", "content": "Draw a cat."}]
MADE = base64.b64decode(image_png(1024, 1024))
_genai_clients: list[genai.Client] = []


def anthropic_client(gateway: Gemgate, prefix: str = "") -> anthropic.Anthropic:
    return anthropic.Anthropic(
        base_url=f"{gateway.url}{prefix}",
        api_key=gateway.client_key,  # type: ignore[attr-defined]
        max_retries=0,
        timeout=20,
    )


def genai_client(gateway: Gemgate, prefix: str = "") -> genai.Client:
    sdk = genai.Client(
        api_key=gateway.client_key,  # type: ignore[attr-defined]
        http_options=types.HttpOptions(
            base_url=f"{gateway.url}{prefix}", api_version="v1beta", timeout=20_000
        ),
    )
    _genai_clients.append(sdk)  # the SDK closes its HTTP client when collected
    return sdk


def test_openai_chat_links_the_image_at_the_asked_shape(
    gateway: Gemgate, gemini: FakeGeminiAPI
) -> None:
    message = (
        openai_client(gateway)
        .chat.completions.create(
            model="gemini-2.5-flash-image",
            messages=DRAW,  # type: ignore[arg-type]
            extra_body={"image_config": {"aspect_ratio": "16:9"}},
        )
        .choices[0]
        .message
    )
    images = (message.model_extra or {})["images"]
    assert len(images) == 1
    link = images[0]["image_url"]["url"]
    assert f"![image]({link})" in (message.content or "")
    with urllib.request.urlopen(link, timeout=10) as response:
        data = response.read()
    with Image.open(io.BytesIO(data)) as image:
        assert image.size == (1344, 768)


def test_openai_chat_with_imagen(gateway: Gemgate, gemini: FakeGeminiAPI) -> None:
    got = collect_stream(
        openai_client(gateway).chat.completions.create(
            model="imagen-4.0-generate-001",
            messages=DRAW,  # type: ignore[arg-type]
            stream=True,
        )
    )
    assert len(got["images"]) == 1
    assert [r.action for r in gemini.requests] == ["predict"]


@pytest.mark.parametrize("prefix", ["", "/gemini"])
def test_anthropic_clients_get_an_image_block(
    gateway: Gemgate, gemini: FakeGeminiAPI, prefix: str
) -> None:
    message = anthropic_client(gateway, prefix).messages.create(
        model="gemini-2.5-flash-image",
        max_tokens=1024,
        messages=DRAW,  # type: ignore[arg-type]
    )
    kinds = [block.type for block in message.content]
    assert kinds == ["text", "image"]
    source = message.content[1].model_extra["source"]  # type: ignore[union-attr]
    assert source["type"] == "base64" and source["media_type"] == "image/png"
    assert base64.b64decode(source["data"]) == MADE


def test_anthropic_streams_carry_the_image_block(gateway: Gemgate, gemini: FakeGeminiAPI) -> None:
    with anthropic_client(gateway).messages.stream(
        model="gemini-2.5-flash-image",
        max_tokens=1024,
        messages=DRAW,  # type: ignore[arg-type]
    ) as stream:
        message = stream.get_final_message()
    images = [block for block in message.content if block.type == "image"]  # type: ignore[comparison-overlap]
    assert len(images) == 1
    assert base64.b64decode(images[0].model_extra["source"]["data"]) == MADE  # type: ignore[union-attr]


@pytest.mark.parametrize("prefix", ["", "/gemini"])
def test_native_clients_get_inline_data(
    gateway: Gemgate, gemini: FakeGeminiAPI, prefix: str
) -> None:
    response = genai_client(gateway, prefix).models.generate_content(
        model="gemini-2.5-flash-image",
        contents="Draw a cat.",
        config=types.GenerateContentConfig(
            response_modalities=["TEXT", "IMAGE"],
            image_config=types.ImageConfig(aspect_ratio="3:2"),
        ),
    )
    parts = response.candidates[0].content.parts  # type: ignore[index, union-attr]
    blobs = [p.inline_data for p in parts if p.inline_data]  # type: ignore[union-attr]
    assert len(blobs) == 1
    with Image.open(io.BytesIO(blobs[0].data or b"")) as image:
        assert image.size == (1248, 832)


def test_native_streams_carry_inline_data(gateway: Gemgate, gemini: FakeGeminiAPI) -> None:
    chunks = list(
        genai_client(gateway).models.generate_content_stream(
            model="gemini-2.5-flash-image", contents="Draw a cat."
        )
    )
    blobs = [
        part.inline_data.data
        for chunk in chunks
        for part in chunk.candidates[0].content.parts  # type: ignore[index, union-attr]
        if part.inline_data
    ]
    assert blobs == [MADE]
