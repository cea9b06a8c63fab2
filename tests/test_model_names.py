"""Model names as an attacker sends them: every front refuses a name that could change the
upstream path or slip past a key's model scope, and the fake Gemini API shows which paths it
was (and was not) called on. A key's scope holds for the name asked for and for the model
actually used upstream after aliases; usage records the model actually used."""

from __future__ import annotations

import http.client
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anthropic
import openai
import pytest
from google import genai
from google.genai import errors as genai_errors
from google.genai import types

from gemgate import model_names
from gemgate.errors import InvalidRequest
from tests.conftest import start_gemgate
from tests.fakes.gemini_api import FakeGeminiAPI
from tests.harness import Gemgate

ALIASES = {"fast": "gemini-2.5-pro", "pinned-pro": "gemini/gemini-2.5-pro"}
# Names that reached gemini-2.5-pro (or another upstream path) through a flash-only key.
BYPASSES = [
    "gemini-2.5-flash/../gemini-2.5-pro",
    "gemini-2.5-flash/../../../v1beta/models/gemini-2.5-pro",
    "gemini-2.5-flash/%2e%2e/gemini-2.5-pro",
    "gemini-2.5-flash%2F..%2Fgemini-2.5-pro",
    "gemini-2.5-flash?x=gemini-2.5-pro",
    "gemini-2.5-flash#gemini-2.5-pro",
    "gemini-2.5-flash:streamGenerateContent",
    "gemini-2.5-flash\\..\\gemini-2.5-pro",
    "gemini-2.5-flash\r\nx-injected: 1",
    "gemini-2.5-flash gemini-2.5-pro",
    "gemini/gemini-2.5-flash/../gemini-2.5-pro",
    "models/../gemini-2.5-pro",
    "../gemini-2.5-pro",
    "./gemini-2.5-flash",
    "gemini-2.5-flash\u2215..\u2215gemini-2.5-pro",
]
# The same tricks as they arrive in a Gemini-native URL path (already percent-encoded).
NATIVE_BYPASSES = [
    "gemini-2.5-flash%2F..%2Fgemini-2.5-pro",
    "gemini-2.5-flash%2F%2e%2e%2Fgemini-2.5-pro",
    "gemini-2.5-flash%2F%2E%2E%2F%2E%2E%2F%2E%2E%2Ffiles",
    "gemini-2.5-flash%3Fx%3D",
    "gemini-2.5-flash%23frag",
    "gemini-2.5-flash%252F..%252Fgemini-2.5-pro",
    "%2e%2e",
    "gemini-2.5-flash%5C..%5Cgemini-2.5-pro",
]


@pytest.fixture(scope="module")
def server(
    tmp_path_factory: pytest.TempPathFactory, fake_gemini: FakeGeminiAPI
) -> Iterator[Gemgate]:
    gate = start_gemgate(
        Path(tmp_path_factory.mktemp("names")),
        fake_gemini,
        {"GEMGATE_ALIASES": json.dumps(ALIASES)},
    )
    gate.client_key = gate.create_key("open")  # type: ignore[attr-defined]
    gate.flash_key = gate.create_key("flash", "--models", "gemini-2.5-flash*")  # type: ignore[attr-defined]
    gate.alias_key = gate.create_key("alias", "--models", "fast,pinned-pro,gemini-2.5-flash*")  # type: ignore[attr-defined]
    gate.pro_key = gate.create_key("pro", "--models", "fast,gemini-2.5-pro")  # type: ignore[attr-defined]
    gate.add_api_key("AIzaFakeKeyAlpha0001")
    gate.start()
    yield gate
    gate.stop()


def raw(
    gate: Gemgate, method: str, path: str, body: Any = None, key: str | None = None
) -> tuple[int, dict[str, Any]]:
    """One request exactly as written: no client library to normalise the path."""
    conn = http.client.HTTPConnection("127.0.0.1", gate.port, timeout=20)
    payload = None if body is None else json.dumps(body).encode()
    secret = key or gate.flash_key  # type: ignore[attr-defined]
    conn.request(
        method,
        path,
        body=payload,
        headers={"content-type": "application/json", "x-goog-api-key": secret},
    )
    response = conn.getresponse()
    data = response.read()
    conn.close()
    return response.status, json.loads(data)


def sdk_openai(gate: Gemgate, key: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{gate.url}/v1", api_key=key, max_retries=0, timeout=20)


def sdk_anthropic(gate: Gemgate, key: str) -> anthropic.Anthropic:
    return anthropic.Anthropic(base_url=gate.url, api_key=key, max_retries=0, timeout=20)


_genai_clients: list[genai.Client] = []


def sdk_genai(gate: Gemgate, key: str) -> genai.Client:
    client = genai.Client(
        api_key=key,
        http_options=types.HttpOptions(base_url=gate.url, api_version="v1beta", timeout=20_000),
    )
    _genai_clients.append(client)  # the SDK closes its HTTP client when collected
    return client


HI = [{"role": "user", "content": "hi"}]


# -- the name check ---------------------------------------------------------------------------


@pytest.mark.parametrize("name", BYPASSES)
def test_the_check_refuses_every_bypass(name: str) -> None:
    with pytest.raises(InvalidRequest) as caught:
        model_names.check(name)
    assert caught.value.status == 400 and caught.value.param == "model"


@pytest.mark.parametrize(
    "name",
    [
        "gemini-2.5-flash",
        "models/gemini-3-pro-preview",
        "gemini/gemini-2.5-flash",
        "gemini_cli/gemini-2.5-pro",
        "claude-haiku-4-5-20251001",
        "gemma-3-27b-it",
        "learnlm-2.0-flash-experimental",
    ],
)
def test_the_check_keeps_real_names(name: str) -> None:
    assert model_names.check(name) == name.removeprefix("models/")


def test_scope_patterns_never_match_across_a_slash() -> None:
    assert model_names.matches("gemini-2.5-flash-lite", "gemini-2.5-flash*")
    assert not model_names.matches("gemini-2.5-flash/x", "gemini-2.5-flash*")
    assert not model_names.matches("gemini/gemini-2.5-pro", "*")
    assert model_names.matches("gemini/gemini-2.5-pro", "gemini/*")
    assert not model_names.matches("gemini-2.5-flash?x", "gemini-2.5-flash?")


def test_upstream_path_segments_are_checked_again() -> None:
    # Channels build URLs only from checked segments, whatever let a name get that far.
    for name in ("gemini-2.5-flash/../gemini-2.5-pro", "..", "a?b", "a#b", "a%2Fb", ""):
        with pytest.raises(InvalidRequest):
            model_names.path_segment(name)
    assert model_names.path_segment("gemini-2.5-flash") == "gemini-2.5-flash"


# -- every front, through the real SDKs -------------------------------------------------------


@pytest.mark.parametrize("stream", [False, True])
@pytest.mark.parametrize("name", BYPASSES)
def test_openai_chat_refuses_bypass_names(
    server: Gemgate, gemini: FakeGeminiAPI, name: str, stream: bool
) -> None:
    with pytest.raises(openai.BadRequestError) as caught:
        sdk_openai(server, server.flash_key).chat.completions.create(  # type: ignore[attr-defined]
            model=name,
            messages=HI,  # type: ignore[arg-type]
            stream=stream,
        )
    assert caught.value.body["param"] == "model"  # type: ignore[index]
    assert "is not a model name" in caught.value.message
    assert gemini.requests == []


@pytest.mark.parametrize("name", BYPASSES)
def test_anthropic_messages_and_count_tokens_refuse_bypass_names(
    server: Gemgate, gemini: FakeGeminiAPI, name: str
) -> None:
    client = sdk_anthropic(server, server.flash_key)  # type: ignore[attr-defined]
    with pytest.raises(anthropic.BadRequestError) as caught:
        client.messages.create(model=name, max_tokens=10, messages=HI)  # type: ignore[arg-type]
    assert "is not a model name" in caught.value.body["error"]["message"]  # type: ignore[index]
    with (
        pytest.raises(anthropic.BadRequestError),
        client.messages.stream(model=name, max_tokens=10, messages=HI) as stream,  # type: ignore[arg-type]
    ):
        stream.get_final_message()
    with pytest.raises(anthropic.BadRequestError):
        client.messages.count_tokens(model=name, messages=HI)  # type: ignore[arg-type]
    assert gemini.requests == []


@pytest.mark.parametrize(
    "name",
    # The SDK itself refuses names with "..", "?" or "&"; these it lets through.
    [
        "gemini-2.5-flash%2F%2e%2e%2Fgemini-2.5-pro",
        "gemini-2.5-flash/%2e%2e/gemini-2.5-pro",
        "gemini-2.5-flash/%2E%2E/%2E%2E/%2E%2E/files",
        "gemini-2.5-flash%3Fx",
        "gemini-2.5-flash#frag",
    ],
)
def test_google_genai_sdk_cannot_reach_another_model(
    server: Gemgate, gemini: FakeGeminiAPI, name: str
) -> None:
    # The SDK may tidy the path itself (then the flash-only key meets gemini-2.5-pro and gets
    # a 403); either way nothing but a refusal comes back and Google is never asked.
    client = sdk_genai(server, server.flash_key)  # type: ignore[attr-defined]
    for call in (
        lambda: client.models.generate_content(model=name, contents="hi"),
        lambda: list(client.models.generate_content_stream(model=name, contents="hi")),
        lambda: client.models.count_tokens(model=name, contents="hi"),
    ):
        with pytest.raises(genai_errors.ClientError) as caught:
            call()
        assert caught.value.code in (400, 403, 404)
    assert gemini.requests == []


@pytest.mark.parametrize("name", NATIVE_BYPASSES)
@pytest.mark.parametrize(
    "action",
    ["generateContent", "streamGenerateContent?alt=sse", "streamGenerateContent", "countTokens"],
)
def test_native_path_refuses_encoded_bypasses(
    server: Gemgate, gemini: FakeGeminiAPI, name: str, action: str
) -> None:
    body = {"contents": [{"role": "user", "parts": [{"text": "hi"}]}]}
    for prefix in ("", "/gemini"):
        status, answer = raw(server, "POST", f"{prefix}/v1beta/models/{name}:{action}", body)
        assert status == 400, answer
        assert answer["error"]["status"] == "INVALID_ARGUMENT"
        assert "is not a model name" in answer["error"]["message"]
    assert gemini.requests == []


@pytest.mark.parametrize("name", NATIVE_BYPASSES)
def test_native_model_get_refuses_encoded_bypasses(
    server: Gemgate, gemini: FakeGeminiAPI, name: str
) -> None:
    status, answer = raw(server, "GET", f"/v1beta/models/{name}")
    assert status == 400, answer
    assert answer["error"]["status"] == "INVALID_ARGUMENT"
    assert gemini.requests == []


def test_an_honest_request_goes_to_exactly_its_path(server: Gemgate, gemini: FakeGeminiAPI) -> None:
    sdk_openai(server, server.flash_key).chat.completions.create(  # type: ignore[attr-defined]
        model="gemini-2.5-flash",
        messages=HI,  # type: ignore[arg-type]
    )
    status, _ = raw(
        server,
        "POST",
        "/v1beta/models/gemini-2.5-flash-lite:generateContent",
        {"contents": [{"parts": [{"text": "hi"}]}]},
    )
    assert status == 200
    assert [(r.path, r.api_key) for r in gemini.requests] == [
        ("/v1beta/models/gemini-2.5-flash:generateContent", "AIzaFakeKeyAlpha0001"),
        ("/v1beta/models/gemini-2.5-flash-lite:generateContent", "AIzaFakeKeyAlpha0001"),
    ]


# -- channel prefixes -------------------------------------------------------------------------


def test_only_a_known_channel_may_prefix_a_name(server: Gemgate, gemini: FakeGeminiAPI) -> None:
    client = sdk_openai(server, server.client_key)  # type: ignore[attr-defined]
    with pytest.raises(openai.BadRequestError) as caught:
        client.chat.completions.create(model="evil/gemini-2.5-flash", messages=HI)  # type: ignore[arg-type]
    assert "'evil' is not a channel" in caught.value.message
    # Another channel pinned: never the gemini upstream, whether that channel is built here
    # (then it has no credential) or not.
    with pytest.raises(openai.APIStatusError) as other:
        client.chat.completions.create(model="gemini_official/gemini-3-pro", messages=HI)  # type: ignore[arg-type]
    assert other.value.status_code in (404, 503)
    assert gemini.requests == []
    answer = client.chat.completions.create(model="gemini/gemini-2.5-flash", messages=HI)  # type: ignore[arg-type]
    assert answer.choices[0].message.content
    assert [r.path for r in gemini.requests] == ["/v1beta/models/gemini-2.5-flash:generateContent"]


# -- scope on the model actually used ---------------------------------------------------------


def test_scope_is_checked_on_the_model_an_alias_leads_to(
    server: Gemgate, gemini: FakeGeminiAPI
) -> None:
    # The key may ask for "fast", but "fast" is gemini-2.5-pro, which it may not use.
    key = server.alias_key  # type: ignore[attr-defined]
    with pytest.raises(openai.PermissionDeniedError) as caught:
        sdk_openai(server, key).chat.completions.create(model="fast", messages=HI)  # type: ignore[arg-type]
    assert "gemini-2.5-pro" in caught.value.message
    with pytest.raises(anthropic.PermissionDeniedError):
        sdk_anthropic(server, key).messages.create(model="pinned-pro", max_tokens=5, messages=HI)  # type: ignore[arg-type]
    with pytest.raises(anthropic.PermissionDeniedError):
        sdk_anthropic(server, key).messages.count_tokens(model="fast", messages=HI)  # type: ignore[arg-type]
    for method, path in (
        ("POST", "/v1beta/models/fast:generateContent"),
        ("POST", "/v1beta/models/fast:streamGenerateContent?alt=sse"),
        ("POST", "/v1beta/models/fast:countTokens"),
        ("GET", "/v1beta/models/fast"),
    ):
        body = {"contents": [{"parts": [{"text": "hi"}]}]} if method == "POST" else None
        status, answer = raw(server, method, path, body, key=key)
        assert status == 403, (path, answer)
        assert answer["error"]["status"] == "PERMISSION_DENIED"
    assert gemini.requests == []


def test_a_key_that_may_use_both_reaches_the_aliased_model_and_usage_says_so(
    server: Gemgate, gemini: FakeGeminiAPI
) -> None:
    key = server.pro_key  # type: ignore[attr-defined]
    answer = sdk_openai(server, key).chat.completions.create(model="fast", messages=HI)  # type: ignore[arg-type]
    assert answer.model == "fast"  # the client's own name comes back
    status, _ = raw(
        server,
        "POST",
        "/v1beta/models/fast:generateContent",
        {"contents": [{"parts": [{"text": "hi"}]}]},
        key=key,
    )
    assert status == 200
    assert [r.path for r in gemini.requests] == [
        "/v1beta/models/gemini-2.5-pro:generateContent",
        "/v1beta/models/gemini-2.5-pro:generateContent",
    ]
    # Asking for the upstream model by a name the key lacks is still refused.
    with pytest.raises(openai.PermissionDeniedError):
        sdk_openai(server, key).chat.completions.create(model="gemini-2.5-flash", messages=HI)  # type: ignore[arg-type]
    server.wait_reload()
    rows = server.usage("pro")
    assert [(r["model"], r["requests"]) for r in rows] == [("gemini-2.5-pro", 2)]
