"""Embeddings: OpenAI's /v1/embeddings and the native embed methods, through a running gemgate
to the fake Gemini API's batchEmbedContents."""

from __future__ import annotations

import openai
import pytest
from google.genai import types

from tests.fakes.gemini_api import FakeGeminiAPI, embedding_of
from tests.harness import Gemgate
from tests.test_gemini_native import client as genai_client


def client(gateway: Gemgate, prefix: str = "", key: str | None = None) -> openai.OpenAI:
    return openai.OpenAI(
        base_url=f"{gateway.url}{prefix}/v1",
        api_key=key or gateway.client_key,  # type: ignore[attr-defined]
        max_retries=0,
        timeout=20,
    )


def test_a_list_with_dimensions(gateway: Gemgate, gemini: FakeGeminiAPI) -> None:
    texts = ["the cat sat", "on the mat"]
    answer = client(gateway).embeddings.create(
        model="gemini-embedding-001", input=texts, dimensions=8, encoding_format="float"
    )
    assert [d.embedding for d in answer.data] == [embedding_of(t, 8) for t in texts]
    assert [d.index for d in answer.data] == [0, 1]
    assert answer.model == "gemini-embedding-001"
    # gemini-embedding-001 reports no usage: an estimate stands in for it.
    assert answer.usage.prompt_tokens > 0
    sent = gemini.requests[-1]
    assert sent.path == "/v1beta/models/gemini-embedding-001:batchEmbedContents"
    assert sent.body == {
        "requests": [
            {
                "model": "models/gemini-embedding-001",
                "content": {"parts": [{"text": text}]},
                "outputDimensionality": 8,
            }
            for text in texts
        ]
    }


def test_the_sdk_default_base64_decodes_to_the_vectors(
    gateway: Gemgate, gemini: FakeGeminiAPI
) -> None:
    # Without encoding_format the SDK asks for base64 float32 and decodes it itself.
    answer = client(gateway, "/gemini").embeddings.create(
        model="gemini-embedding-2", input="hello there"
    )
    assert answer.data[0].embedding == pytest.approx(embedding_of("hello there"), abs=1e-6)
    assert len(answer.data[0].embedding) == 3072
    # gemini-embedding-2 reports usage, and Google's count is what the client sees.
    assert answer.usage.prompt_tokens == (len("hello there") + 3) // 4
    assert answer.usage.total_tokens == answer.usage.prompt_tokens


def test_more_inputs_than_one_batch_takes(gateway: Gemgate, gemini: FakeGeminiAPI) -> None:
    texts = [f"text number {i}" for i in range(130)]
    answer = client(gateway).embeddings.create(
        model="gemini-embedding-001", input=texts, dimensions=4, encoding_format="float"
    )
    assert [d.embedding for d in answer.data] == [embedding_of(t, 4) for t in texts]
    sizes = sorted(len(r.body["requests"]) for r in gemini.requests)
    assert sizes == [30, 100]


@pytest.mark.parametrize(
    ("body", "words"),
    [
        ({"model": "gemini-embedding-001", "input": [1, 2, 3]}, "token-id inputs"),
        ({"model": "gemini-embedding-001", "input": ""}, "input[0] is empty"),
        ({"model": "gemini-embedding-001", "input": []}, "non-empty array"),
        ({"model": "gemini-embedding-001", "input": "x", "dimensions": 0}, "at least 1"),
        ({"model": "gemini-embedding-001", "input": "x", "encoding_format": "hex"}, "base64"),
    ],
)
def test_bad_requests_are_clear_400s(
    gateway: Gemgate, gemini: FakeGeminiAPI, body: dict[str, object], words: str
) -> None:
    with pytest.raises(openai.BadRequestError) as caught:
        client(gateway).post("/embeddings", body=body, cast_to=object)
    assert words in caught.value.body["message"]  # type: ignore[index]
    assert gemini.requests == []


def test_google_errors_come_back_in_openai_shape(gateway: Gemgate, gemini: FakeGeminiAPI) -> None:
    with pytest.raises(openai.BadRequestError) as caught:
        client(gateway).embeddings.create(
            model="gemini-embedding-001", input="x", dimensions=5000
        )
    assert "output_dimensionality" in caught.value.body["message"]  # type: ignore[index]


def test_the_embeddings_scope(gateway: Gemgate, gemini: FakeGeminiAPI) -> None:
    chat_only = gateway.create_key("chat-only", "--endpoints", "chat")
    embedder = gateway.create_key("embedder", "--endpoints", "embeddings")
    gateway.wait_reload()
    with pytest.raises(openai.PermissionDeniedError) as caught:
        client(gateway, key=chat_only).embeddings.create(model="gemini-embedding-001", input="x")
    assert "embeddings endpoint" in caught.value.body["message"]  # type: ignore[index]
    answer = client(gateway, key=embedder).embeddings.create(
        model="gemini-embedding-001", input="x"
    )
    assert len(answer.data) == 1
    # The native embed methods are embeddings too, whatever API the client speaks.
    sdk = genai_client(gateway, key=chat_only)
    with pytest.raises(Exception) as refused:
        sdk.models.embed_content(model="gemini-embedding-001", contents="x")
    assert "embeddings endpoint" in str(refused.value)


def test_google_genai_embed_content(gateway: Gemgate, gemini: FakeGeminiAPI) -> None:
    sdk = genai_client(gateway)
    result = sdk.models.embed_content(
        model="gemini-embedding-001",
        contents=["first text", "second text"],
        config=types.EmbedContentConfig(output_dimensionality=16, task_type="RETRIEVAL_QUERY"),
    )
    assert [e.values for e in result.embeddings or []] == [
        embedding_of("first text", 16),
        embedding_of("second text", 16),
    ]
    assert gemini.requests[-1].api_key == "AIzaFakeKeyAlpha0001"


def test_embedding_models_are_listed(gateway: Gemgate, gemini: FakeGeminiAPI) -> None:
    ids = [m.id for m in client(gateway).models.list()]
    assert "gemini-embedding-001" in ids and "gemini-2.5-flash" in ids


def test_embedding_usage_is_recorded(gateway: Gemgate, gemini: FakeGeminiAPI) -> None:
    key = gateway.create_key("embed-metered")
    gateway.wait_reload()
    client(gateway, key=key).embeddings.create(model="gemini-embedding-2", input=["abcd", "efgh"])
    sdk = genai_client(gateway, key=key)
    sdk.models.embed_content(model="gemini-embedding-2", contents=["abcdefgh"])
    gateway.wait_reload()
    rows = gateway.usage("embed-metered")
    assert rows == [
        {
            "key": "embed-metered",
            "channel": "gemini",
            "model": "gemini-embedding-2",
            "requests": 2,
            "errors": 0,
            # Google's counts: one token per input on /v1/embeddings, two natively.
            "prompt_tokens": 4,
            "output_tokens": 0,
            "thought_tokens": 0,
            "total_tokens": 4,
        }
    ]
