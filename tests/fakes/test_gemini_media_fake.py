"""Checks that the fake Gemini API's speech models, embeddings and Files API behave like the
real ones, mostly through Google's own SDK (whose upload flow is the reference client)."""

from __future__ import annotations

import base64
import io
import urllib.error
import urllib.request
from collections.abc import Iterator
from typing import Any

import orjson
import pytest
from google import genai
from google.genai import errors as genai_errors
from google.genai import types

from tests.fakes.gemini_api import TTS_MIME, FakeGeminiAPI, embedding_of, speech_pcm
from tests.fakes.test_gemini_api_fake import call, generate

KEY = "key-a"
TTS = "gemini-2.5-flash-preview-tts"
SPEAK = {
    "contents": [{"role": "user", "parts": [{"text": "Hello there"}]}],
    "generationConfig": {
        "responseModalities": ["AUDIO"],
        "speechConfig": {"voiceConfig": {"prebuiltVoiceConfig": {"voiceName": "Kore"}}},
    },
}


@pytest.fixture
def fake() -> Iterator[FakeGeminiAPI]:
    with FakeGeminiAPI(keys={KEY, "key-b"}) as server:
        yield server


# The SDK closes its HTTP client when the Client object is collected; keep them alive.
_clients: list[genai.Client] = []


def sdk(fake: FakeGeminiAPI, key: str = KEY) -> genai.Client:
    client = genai.Client(
        api_key=key, http_options=types.HttpOptions(base_url=fake.base_url, api_version="v1beta")
    )
    _clients.append(client)
    return client


def test_a_tts_model_speaks_pcm(fake: FakeGeminiAPI) -> None:
    answer = sdk(fake).models.generate_content(
        model=TTS,
        contents="Hello there",
        config=types.GenerateContentConfig(
            response_modalities=["AUDIO"],
            speech_config=types.SpeechConfig(
                voice_config=types.VoiceConfig(
                    prebuilt_voice_config=types.PrebuiltVoiceConfig(voice_name="Puck")
                )
            ),
        ),
    )
    blob = answer.candidates[0].content.parts[0].inline_data  # type: ignore[index,union-attr]
    assert blob is not None and blob.mime_type == TTS_MIME
    assert blob.data == speech_pcm("Hello there")
    status, _, raw = call(fake, f"/v1beta/models/{TTS}:streamGenerateContent?alt=sse", SPEAK)
    assert status == 200
    pieces = [
        base64.b64decode(orjson.loads(line[6:])["candidates"][0]["content"]["parts"][0]
                         ["inlineData"]["data"])
        for line in raw.split(b"\r\n") if line.startswith(b"data: ")
    ]  # fmt: skip
    assert len(pieces) == 3 and b"".join(pieces) == speech_pcm("Hello there")


@pytest.mark.parametrize(
    ("change", "words"),
    [
        ({"generationConfig": {"responseModalities": ["TEXT"]}}, "response modalities"),
        ({"systemInstruction": {"parts": [{"text": "x"}]}}, "Developer instruction"),
        ({"tools": [{"codeExecution": {}}]}, "Function calling is not enabled"),
        (
            {
                "generationConfig": {
                    "responseModalities": ["AUDIO"],
                    "speechConfig": {"voiceConfig": {"prebuiltVoiceConfig": {"voiceName": "Bob"}}},
                }
            },
            "Voice Bob",
        ),
    ],
)
def test_a_tts_model_refuses(fake: FakeGeminiAPI, change: dict[str, Any], words: str) -> None:
    status, body = generate(fake, {**SPEAK, **change}, TTS)
    assert status == 400 and words in body["error"]["message"]


def test_embeddings_single_and_batch(fake: FakeGeminiAPI) -> None:
    result = sdk(fake).models.embed_content(
        model="gemini-embedding-001",
        contents=["a", "b"],
        config=types.EmbedContentConfig(output_dimensionality=4),
    )
    vectors = [e.values for e in result.embeddings or []]
    assert vectors == [embedding_of("a", 4), embedding_of("b", 4)]
    status, _, raw = call(
        fake,
        "/v1beta/models/gemini-embedding-2:embedContent",
        {"content": {"parts": [{"text": "hello"}]}, "outputDimensionality": 3},
    )
    assert status == 200
    assert orjson.loads(raw) == {
        "embedding": {"values": embedding_of("hello", 3)},
        "usageMetadata": {
            "promptTokenCount": 2,
            "promptTokenDetails": [{"modality": "TEXT", "tokenCount": 2}],
        },
    }
    too_many = {
        "requests": [
            {"model": "models/gemini-embedding-001", "content": {"parts": [{"text": "x"}]}}
        ]
        * 101
    }
    status, _, raw = call(fake, "/v1beta/models/gemini-embedding-001:batchEmbedContents", too_many)
    assert status == 400 and b"at most 100" in raw
    # Embedding models do not generate, and generating models do not embed.
    assert generate(fake, SPEAK, "gemini-embedding-001")[0] == 404
    status, _, _ = call(fake, "/v1beta/models/gemini-2.5-flash:batchEmbedContents", too_many)
    assert status == 404


def test_files_upload_poll_and_use(fake: FakeGeminiAPI) -> None:
    client = sdk(fake)
    video = b"\x00\x00\x00\x20ftypisom" + b"frames" * 1000
    uploaded = client.files.upload(
        file=io.BytesIO(video), config=types.UploadFileConfig(mime_type="video/mp4")
    )
    assert uploaded.state == types.FileState.PROCESSING and uploaded.size_bytes == len(video)
    assert uploaded.name is not None and uploaded.uri is not None
    use = {
        "contents": [
            {
                "role": "user",
                "parts": [
                    {"text": "What is this?"},
                    {"fileData": {"mimeType": "video/mp4", "fileUri": uploaded.uri}},
                ],
            }
        ]
    }
    # Not yet processed: refused as Google does.
    status, body = generate(fake, use)
    assert status == 400 and body["error"]["status"] == "FAILED_PRECONDITION"
    # One poll still says PROCESSING, the next ACTIVE.
    assert client.files.get(name=uploaded.name).state == types.FileState.PROCESSING
    assert client.files.get(name=uploaded.name).state == types.FileState.ACTIVE
    assert generate(fake, use)[0] == 200
    # A file belongs to the key that uploaded it.
    status, body = generate(fake, use, key="key-b")
    assert status == 403 and "permission to access the File" in body["error"]["message"]
    with pytest.raises(genai_errors.ClientError):
        sdk(fake, "key-b").files.get(name=uploaded.name)
    assert bytes(fake.files[uploaded.name].data) == video


def test_an_upload_must_send_what_it_announced(fake: FakeGeminiAPI) -> None:
    status, _, _ = call(fake, "/upload/v1beta/files", {"file": {}}, key=None)
    assert status == 403
    start = {
        "x-goog-api-key": KEY,
        "x-goog-upload-protocol": "resumable",
        "x-goog-upload-command": "start",
        "x-goog-upload-header-content-length": "10",
        "x-goog-upload-header-content-type": "image/png",
    }
    request = urllib.request.Request(
        fake.base_url + "/upload/v1beta/files", data=b"{}", headers=start, method="POST"
    )
    with urllib.request.urlopen(request) as response:
        url = response.headers["x-goog-upload-url"]
    short = urllib.request.Request(
        url,
        data=b"12345",
        headers={"x-goog-upload-command": "upload, finalize", "x-goog-upload-offset": "0"},
        method="POST",
    )
    with pytest.raises(urllib.error.HTTPError) as caught:
        urllib.request.urlopen(short)
    assert caught.value.code == 400
