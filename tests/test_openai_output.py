"""What comes back through the OpenAI SDK: structured output, generated images, endings and
safety, errors in the middle of a stream, and the parameters Gemini has no use for."""

from __future__ import annotations

import base64
import json
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import openai
import pytest

from tests.conftest import start_gemgate
from tests.fakes.gemini_api import FakeGeminiAPI, Reply, image_png
from tests.harness import Gemgate
from tests.openai_sdk import client, collect_stream

HI = [{"role": "user", "content": "hi"}]


def _get(url: str) -> tuple[int, str, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=10) as response:
            return response.status, response.headers["content-type"], response.read()
    except urllib.error.HTTPError as error:
        return error.code, "", error.read()


# -- structured output ------------------------------------------------------------------------


def test_json_object(gateway: Gemgate, gemini: FakeGeminiAPI) -> None:
    gemini.script(Reply.text('{"ok": true}'))
    answer = client(gateway).chat.completions.create(
        model="gemini-2.5-flash", messages=HI, response_format={"type": "json_object"}
    )
    assert json.loads(answer.choices[0].message.content or "") == {"ok": True}
    config = gemini.requests[-1].body["generationConfig"]
    assert config == {"responseMimeType": "application/json"}


def test_json_schema_is_cleaned_and_sent(gateway: Gemgate, gemini: FakeGeminiAPI) -> None:
    schema = {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "type": "object",
        "properties": {"city": {"$ref": "#/$defs/City"}, "kind": {"const": "weather"}},
        "required": ["city", "kind"],
        "additionalProperties": False,
        "$defs": {"City": {"type": "string", "description": "a city"}},
    }
    client(gateway).chat.completions.create(
        model="gemini-2.5-flash",
        messages=HI,
        response_format={
            "type": "json_schema",
            "json_schema": {"name": "answer", "schema": schema, "strict": True},
        },
    )
    config = gemini.requests[-1].body["generationConfig"]
    assert config["responseMimeType"] == "application/json"
    assert config["responseJsonSchema"] == {
        "type": "object",
        "properties": {
            "city": {"type": "string", "description": "a city"},
            "kind": {"enum": ["weather"]},
        },
        "required": ["city", "kind"],
        "additionalProperties": False,
    }


# -- generated images -------------------------------------------------------------------------


@pytest.mark.parametrize("stream", [False, True])
def test_generated_images_are_linked(gateway: Gemgate, gemini: FakeGeminiAPI, stream: bool) -> None:
    sdk = client(gateway)
    kwargs: dict[str, Any] = {"model": "gemini-2.5-flash-image", "messages": HI}
    if stream:
        got = collect_stream(sdk.chat.completions.create(**kwargs, stream=True))
        content, images = got["content"], got["images"]
    else:
        message = sdk.chat.completions.create(**kwargs).choices[0].message
        content, images = message.content or "", (message.model_extra or {})["images"]
    assert content.startswith("Here is your image.")
    link = images[0]["image_url"]["url"]
    assert link.startswith(f"{gateway.url}/media/")
    assert f"![image]({link})" in content
    # The link works without a client key, and gives the very bytes Gemini made.
    status, kind, body = _get(link)
    assert (status, kind) == (200, "image/png")
    assert body == base64.b64decode(image_png(1024, 1024))
    forged = link[:-4] + ("AAAA" if not link.endswith("AAAA") else "BBBB")
    assert _get(forged)[0] == 404


def test_modalities_and_image_config(gateway: Gemgate, gemini: FakeGeminiAPI) -> None:
    client(gateway).chat.completions.create(
        model="gemini-2.5-flash-image",
        messages=HI,
        modalities=["text", "image"],
        extra_body={"image_config": {"aspect_ratio": "16:9"}},
    )
    config = gemini.requests[-1].body["generationConfig"]
    assert config["responseModalities"] == ["TEXT", "IMAGE"]
    assert config["imageConfig"] == {"aspectRatio": "16:9"}


@pytest.fixture(scope="module")
def data_links(
    tmp_path_factory: pytest.TempPathFactory, fake_gemini: FakeGeminiAPI
) -> Iterator[Gemgate]:
    server = start_gemgate(
        Path(tmp_path_factory.mktemp("data-links")), fake_gemini, {"GEMGATE_MEDIA_LINKS": "data"}
    )
    server.client_key = server.create_key("tests")  # type: ignore[attr-defined]
    server.add_api_key("AIzaFakeKeyAlpha0001")
    server.start()
    yield server
    server.stop()


def test_images_as_data_urls_when_the_operator_says_so(
    data_links: Gemgate, gemini: FakeGeminiAPI
) -> None:
    message = (
        client(data_links)
        .chat.completions.create(model="gemini-2.5-flash-image", messages=HI)
        .choices[0]
        .message
    )
    url = f"data:image/png;base64,{image_png(1024, 1024)}"
    assert f"![image]({url})" in (message.content or "")
    assert (message.model_extra or {})["images"][0]["image_url"]["url"] == url
    assert not (data_links.data_dir / "media").exists() or not any(
        p for p in (data_links.data_dir / "media").iterdir() if not p.name.startswith(".")
    )


# -- endings ----------------------------------------------------------------------------------


@pytest.mark.parametrize("stream", [False, True])
@pytest.mark.parametrize(
    ("reply", "finish", "native"),
    [
        (Reply.text("cut", finish_reason="MAX_TOKENS"), "length", "MAX_TOKENS"),
        (Reply.text("unsafe", finish_reason="SAFETY"), "content_filter", "SAFETY"),
        (Reply.text("quoted", finish_reason="RECITATION"), "content_filter", "RECITATION"),
        (Reply.blocked("PROHIBITED_CONTENT"), "content_filter", "PROHIBITED_CONTENT"),
        (Reply.no_content("MAX_TOKENS"), "length", "MAX_TOKENS"),
    ],
)
def test_endings(
    gateway: Gemgate,
    gemini: FakeGeminiAPI,
    stream: bool,
    reply: Reply,
    finish: str,
    native: str,
) -> None:
    gemini.script(reply)
    sdk = client(gateway)
    if stream:
        got = collect_stream(
            sdk.chat.completions.create(model="gemini-2.5-flash", messages=HI, stream=True)
        )
        assert (got["finish"], got["native_finish"]) == (finish, native)
    else:
        choice = sdk.chat.completions.create(model="gemini-2.5-flash", messages=HI).choices[0]
        assert choice.finish_reason == finish
        assert (choice.model_extra or {})["native_finish_reason"] == native


@pytest.mark.parametrize("write_size", [None, 100_000], ids=["chunk-by-chunk", "one-write"])
def test_an_error_chunk_mid_stream_is_one_error_event(
    gateway: Gemgate, gemini: FakeGeminiAPI, write_size: int | None
) -> None:
    """Also when the error arrives in the same read as the text before it: that text is
    still the client's."""
    gemini.script(Reply.overloaded_after("Half", write_size=write_size))
    seen = ""
    with pytest.raises(openai.APIError) as caught:
        for chunk in client(gateway).chat.completions.create(
            model="gemini-2.5-flash", messages=HI, stream=True
        ):
            seen += chunk.choices[0].delta.content or "" if chunk.choices else ""
    assert seen == "Half"
    assert "overloaded" in str(caught.value)


def test_a_dropped_upstream_mid_stream_is_an_error_not_a_hang(
    gateway: Gemgate, gemini: FakeGeminiAPI
) -> None:
    gemini.script(Reply.disconnect_after(2))
    seen = ""
    with pytest.raises(openai.APIError):
        for chunk in client(gateway).chat.completions.create(
            model="gemini-2.5-flash", messages=HI, stream=True
        ):
            seen += chunk.choices[0].delta.content or "" if chunk.choices else ""
    assert seen == "chunk 0 chunk 1 "


# -- everything else a client may send --------------------------------------------------------


def test_openai_only_hints_are_accepted_and_not_forwarded(
    gateway: Gemgate, gemini: FakeGeminiAPI
) -> None:
    answer = client(gateway).chat.completions.create(
        model="gemini-2.5-flash",
        messages=HI,
        user="u-1",
        metadata={"team": "a"},
        parallel_tool_calls=False,
        presence_penalty=0.5,
        frequency_penalty=0.25,
        store=False,
        service_tier="auto",
        prediction={"type": "content", "content": "hello"},
    )
    assert answer.choices[0].message.content
    body = gemini.requests[-1].body
    assert set(body) == {"contents", "generationConfig"}
    assert body["generationConfig"] == {"presencePenalty": 0.5, "frequencyPenalty": 0.25}


@pytest.mark.parametrize(
    "extra",
    [
        {"logprobs": True, "top_logprobs": 3},
        {"logit_bias": {"50256": -100}},
        {"audio": {"voice": "alloy", "format": "wav"}},
    ],
)
def test_what_would_change_the_answer_and_cannot_be_honoured_is_400(
    gateway: Gemgate, gemini: FakeGeminiAPI, extra: dict[str, Any]
) -> None:
    with pytest.raises(openai.BadRequestError) as caught:
        client(gateway).chat.completions.create(model="gemini-2.5-flash", messages=HI, **extra)
    assert caught.value.param == next(iter(extra))
    assert not gemini.requests
