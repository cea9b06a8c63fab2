"""OpenAI chat completions through the official SDK against a running gemgate and the fake
Gemini API."""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request

import openai
import pytest

from tests.fakes.gemini_api import FakeGeminiAPI, Reply
from tests.harness import Gemgate


def client(gateway: Gemgate, prefix: str = "", key: str | None = None) -> openai.OpenAI:
    return openai.OpenAI(
        base_url=f"{gateway.url}{prefix}/v1",
        api_key=key or gateway.client_key,  # type: ignore[attr-defined]
        max_retries=0,
    )


def raw_post(url: str, body: bytes, headers: dict[str, str]) -> tuple[int, dict[str, str], bytes]:
    request = urllib.request.Request(url, data=body, headers=headers, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, dict(response.headers), response.read()
    except urllib.error.HTTPError as error:
        return error.code, dict(error.headers), error.read()


def test_chat_maps_messages_and_parameters(gateway: Gemgate, gemini: FakeGeminiAPI) -> None:
    gemini.script(
        Reply.text(
            "Bonjour!",
            usage={"promptTokenCount": 12, "candidatesTokenCount": 3, "totalTokenCount": 15},
        )
    )
    answer = client(gateway).chat.completions.create(
        model="gemini-2.5-flash",
        messages=[
            {"role": "system", "content": "Be brief."},
            {"role": "developer", "content": [{"type": "text", "text": "Answer in French."}]},
            {"role": "user", "content": "Hi"},
            {"role": "assistant", "content": "Hello."},
            {"role": "user", "content": [{"type": "text", "text": "Say hi again"}]},
        ],
        temperature=0.3,
        top_p=0.9,
        max_completion_tokens=50,
        stop=["END"],
        seed=7,
    )
    assert answer.choices[0].message.content == "Bonjour!"
    assert answer.choices[0].finish_reason == "stop"
    assert answer.model == "gemini-2.5-flash"
    assert (
        answer.usage.prompt_tokens,
        answer.usage.completion_tokens,
        answer.usage.total_tokens,
    ) == (
        12,
        3,
        15,
    )
    sent = gemini.requests[-1]
    assert sent.path == "/v1beta/models/gemini-2.5-flash:generateContent"
    assert sent.api_key == "AIzaFakeKeyAlpha0001"
    assert sent.headers.get("x-goog-api-key") == "AIzaFakeKeyAlpha0001"
    assert "key" not in sent.query
    assert sent.body["systemInstruction"] == {
        "parts": [{"text": "Be brief."}, {"text": "Answer in French."}]
    }
    assert [c["role"] for c in sent.body["contents"]] == ["user", "model", "user"]
    assert sent.body["generationConfig"] == {
        "temperature": 0.3,
        "topP": 0.9,
        "maxOutputTokens": 50,
        "stopSequences": ["END"],
        "seed": 7,
    }


def test_max_tokens_and_n(gateway: Gemgate, gemini: FakeGeminiAPI) -> None:
    client(gateway).chat.completions.create(
        model="gemini-2.5-flash", messages=[{"role": "user", "content": "x"}], max_tokens=20, n=1
    )
    config = gemini.requests[-1].body["generationConfig"]
    assert config == {"maxOutputTokens": 20}


def test_length_finish_reason(gateway: Gemgate, gemini: FakeGeminiAPI) -> None:
    gemini.script(Reply.text("cut", finish_reason="MAX_TOKENS"))
    answer = client(gateway).chat.completions.create(
        model="gemini-2.5-flash", messages=[{"role": "user", "content": "long story"}]
    )
    assert answer.choices[0].finish_reason == "length"


def test_stream_is_relayed_as_it_is_produced(gateway: Gemgate, gemini: FakeGeminiAPI) -> None:
    gemini.script(Reply.text("one two three four five six", chunks=6, delay=0.25))
    arrivals: list[tuple[float, str]] = []
    stream = client(gateway).chat.completions.create(
        model="gemini-2.5-flash",
        messages=[{"role": "user", "content": "count"}],
        stream=True,
        stream_options={"include_usage": True},
    )
    usage = None
    finish = None
    for chunk in stream:
        if chunk.usage:
            usage = chunk.usage
        for choice in chunk.choices:
            if choice.delta.content:
                arrivals.append((time.monotonic(), choice.delta.content))
            finish = choice.finish_reason or finish
    assert "".join(text for _, text in arrivals) == "one two three four five six"
    assert len(arrivals) >= 5
    # Unbuffered: the first pieces reached the client long before the last was produced.
    assert arrivals[-1][0] - arrivals[0][0] > 0.8
    assert finish == "stop"
    assert usage is not None and usage.total_tokens > 0
    assert gemini.requests[-1].path.endswith(":streamGenerateContent")
    assert gemini.requests[-1].query.get("alt") == "sse"


@pytest.mark.parametrize("write_size", [7, 100_000], ids=["cut-events", "all-at-once"])
def test_a_stream_reads_whole_however_the_upstream_writes_it(
    gateway: Gemgate, gemini: FakeGeminiAPI, write_size: int
) -> None:
    """Events cut anywhere by the upstream's writes, or all in one write: every word reaches
    the client once and in order, and the usage it is told and charged is the last chunk's."""
    final = {"promptTokenCount": 7, "candidatesTokenCount": 12, "totalTokenCount": 19}
    gemini.script(
        Reply.text("one two three four five six", chunks=6, usage=final, write_size=write_size)
    )

    def charged() -> int:
        return sum(int(row["total_tokens"]) for row in gateway.usage("tests"))

    before = charged()
    stream = client(gateway).chat.completions.create(
        model="gemini-2.5-flash",
        messages=[{"role": "user", "content": "count"}],
        stream=True,
        stream_options={"include_usage": True},
    )
    words, usage = [], None
    for chunk in stream:
        usage = chunk.usage or usage
        words += [c.delta.content for c in chunk.choices if c.delta.content]
    assert "".join(words) == "one two three four five six" and len(words) == 6
    assert usage is not None
    assert (usage.prompt_tokens, usage.completion_tokens, usage.total_tokens) == (7, 12, 19)
    deadline = time.monotonic() + 5
    while charged() == before:
        assert time.monotonic() < deadline, "the stream's usage was never recorded"
        time.sleep(0.1)
    assert charged() - before == 19


def test_stream_framing_ends_with_done(gateway: Gemgate, gemini: FakeGeminiAPI) -> None:
    gemini.script(Reply.text("abc", chunks=2))
    body = json.dumps(
        {
            "model": "gemini-2.5-flash",
            "stream": True,
            "messages": [{"role": "user", "content": "x"}],
        }
    ).encode()
    status, headers, raw = raw_post(
        f"{gateway.url}/v1/chat/completions",
        body,
        {"authorization": f"Bearer {gateway.client_key}", "content-type": "application/json"},  # type: ignore[attr-defined]
    )
    assert status == 200
    assert headers["content-type"].startswith("text/event-stream")
    events = [e for e in raw.decode().split("\n\n") if e]
    assert events[-1] == "data: [DONE]"
    first = json.loads(events[0].removeprefix("data: "))
    assert first["choices"][0]["delta"]["role"] == "assistant"
    ids = {json.loads(e.removeprefix("data: "))["id"] for e in events[:-1]}
    assert len(ids) == 1


@pytest.mark.parametrize(
    "placement",
    ["bearer", "bare", "x-api-key", "x-goog-api-key", "query"],
)
def test_every_key_placement(gateway: Gemgate, gemini: FakeGeminiAPI, placement: str) -> None:
    key = gateway.client_key  # type: ignore[attr-defined]
    headers = {"content-type": "application/json"}
    url = f"{gateway.url}/v1/chat/completions"
    if placement == "bearer":
        headers["authorization"] = f"Bearer {key}"
    elif placement == "bare":
        headers["authorization"] = key
    elif placement == "query":
        url += f"?key={key}"
    else:
        headers[placement] = key
    body = json.dumps(
        {"model": "gemini-2.5-flash", "messages": [{"role": "user", "content": "hi"}]}
    )
    status, _, raw = raw_post(url, body.encode(), headers)
    assert status == 200, raw
    assert json.loads(raw)["choices"][0]["message"]["content"]


def test_missing_and_wrong_keys_are_401_in_openai_shape(gateway: Gemgate) -> None:
    body = json.dumps(
        {"model": "gemini-2.5-flash", "messages": [{"role": "user", "content": "hi"}]}
    )
    for headers in ({}, {"authorization": "Bearer gg-not-a-real-key"}):
        status, response_headers, raw = raw_post(
            f"{gateway.url}/v1/chat/completions",
            body.encode(),
            {"content-type": "application/json", **headers},
        )
        assert status == 401
        error = json.loads(raw)["error"]
        assert error["type"] == "authentication_error"
        assert error["message"]
        assert "x-request-id" in {k.lower() for k in response_headers}
    with pytest.raises(openai.AuthenticationError):
        client(gateway, key="gg-wrong").chat.completions.create(
            model="gemini-2.5-flash", messages=[{"role": "user", "content": "hi"}]
        )


def test_revoked_key_stops_working(gateway: Gemgate, gemini: FakeGeminiAPI) -> None:
    key = gateway.create_key("short-lived")
    gateway.wait_reload()
    ok = client(gateway, key=key).chat.completions.create(
        model="gemini-2.5-flash", messages=[{"role": "user", "content": "hi"}]
    )
    assert ok.choices[0].message.content
    gateway.cli("keys", "revoke", "short-lived")
    gateway.wait_reload()
    with pytest.raises(openai.AuthenticationError):
        client(gateway, key=key).chat.completions.create(
            model="gemini-2.5-flash", messages=[{"role": "user", "content": "hi"}]
        )


@pytest.mark.parametrize(
    ("body", "status", "words"),
    [
        (b"{not json", 400, "not valid JSON"),
        (b"[1, 2]", 400, "JSON object"),
        (json.dumps({"messages": [{"role": "user", "content": "x"}]}).encode(), 400, "model"),
        (json.dumps({"model": "gemini-2.5-flash"}).encode(), 400, "messages"),
        (
            json.dumps(
                {"model": "gemini-2.5-flash", "messages": [{"role": "wizard", "content": "x"}]}
            ).encode(),
            400,
            "wizard",
        ),
        (
            json.dumps(
                {
                    "model": "gemini-2.5-flash",
                    "messages": [{"role": "user", "content": "x"}],
                    "temperature": "hot",
                }
            ).encode(),
            400,
            "temperature",
        ),
        (
            json.dumps(
                {"model": "gpt-4o", "messages": [{"role": "user", "content": "x"}]}
            ).encode(),
            404,
            "gpt-4o",
        ),
    ],
)
def test_bad_requests_get_clear_openai_errors(
    gateway: Gemgate, gemini: FakeGeminiAPI, body: bytes, status: int, words: str
) -> None:
    code, _, raw = raw_post(
        f"{gateway.url}/v1/chat/completions",
        body,
        {"authorization": f"Bearer {gateway.client_key}", "content-type": "application/json"},  # type: ignore[attr-defined]
    )
    assert code == status
    error = json.loads(raw)["error"]
    assert words in error["message"]
    assert error["type"] == "invalid_request_error"
    assert gemini.requests == []


def test_unknown_upstream_model_is_404(gateway: Gemgate, gemini: FakeGeminiAPI) -> None:
    with pytest.raises(openai.NotFoundError) as caught:
        client(gateway, "/gemini").chat.completions.create(
            model="gemini-9-ultra", messages=[{"role": "user", "content": "x"}]
        )
    assert caught.value.body["code"] == "model_not_found"  # type: ignore[index]


def test_upstream_400_keeps_status_and_message(gateway: Gemgate, gemini: FakeGeminiAPI) -> None:
    gemini.script(Reply.error(400, "Request contains an invalid argument."))
    with pytest.raises(openai.BadRequestError) as caught:
        client(gateway).chat.completions.create(
            model="gemini-2.5-flash", messages=[{"role": "user", "content": "x"}]
        )
    assert "invalid argument" in str(caught.value)
    # A request error is not the credential's fault: it is tried once.
    assert len(gemini.requests) == 1


def test_channel_prefix_pins_the_channel(gateway: Gemgate, gemini: FakeGeminiAPI) -> None:
    answer = client(gateway, "/gemini").chat.completions.create(
        model="gemini-2.5-flash", messages=[{"role": "user", "content": "x"}]
    )
    assert answer.choices[0].message.content
    # The web channel has no credential here: its prefix never falls back to another channel.
    with pytest.raises(openai.InternalServerError) as caught:
        client(gateway, "/gemini_official").chat.completions.create(
            model="gemini-2.5-flash", messages=[{"role": "user", "content": "x"}]
        )
    assert "no usable gemini_official credential" in caught.value.message


def test_model_list(gateway: Gemgate, gemini: FakeGeminiAPI) -> None:
    for prefix in ("", "/gemini"):
        ids = [m.id for m in client(gateway, prefix).models.list()]
        assert "gemini-2.5-flash" in ids
        assert all(not i.startswith("models/") for i in ids)


def test_model_scope_limits_models_and_chat(gateway: Gemgate, gemini: FakeGeminiAPI) -> None:
    key = gateway.create_key("flash-only", "--models", "gemini-2.5-flash*")
    gateway.wait_reload()
    scoped = client(gateway, key=key)
    assert {m.id for m in scoped.models.list()} <= {
        m["name"].removeprefix("models/") for m in gemini.models if "2.5-flash" in m["name"]
    }
    with pytest.raises(openai.PermissionDeniedError):
        scoped.chat.completions.create(
            model="gemini-2.5-pro", messages=[{"role": "user", "content": "x"}]
        )


def test_no_secret_reaches_the_log(gateway: Gemgate) -> None:
    log = gateway.log()
    assert "AIzaFakeKeyAlpha0001" not in log
    assert gateway.client_key not in log  # type: ignore[attr-defined]


def test_rpm_limit_answers_429_without_asking_upstream(
    gateway: Gemgate, gemini: FakeGeminiAPI
) -> None:
    key = gateway.create_key("two-per-minute", "--rpm", "2")
    gateway.wait_reload()
    sdk = client(gateway, key=key)
    for _ in range(2):
        sdk.chat.completions.create(
            model="gemini-2.5-flash", messages=[{"role": "user", "content": "x"}]
        )
    with pytest.raises(openai.RateLimitError) as caught:
        sdk.chat.completions.create(
            model="gemini-2.5-flash", messages=[{"role": "user", "content": "x"}]
        )
    assert "2 requests per minute" in caught.value.message
    assert 1 <= int(caught.value.response.headers["retry-after"]) <= 60
    assert len(gemini.requests) == 2
    # Other keys are not affected.
    client(gateway).chat.completions.create(
        model="gemini-2.5-flash", messages=[{"role": "user", "content": "x"}]
    )


def test_an_unknown_route_is_a_404_that_names_the_route(gateway: Gemgate) -> None:
    code, _, raw = raw_post(
        f"{gateway.url}/v1/chat/completion",
        b"{}",
        {"authorization": f"Bearer {gateway.client_key}"},  # type: ignore[attr-defined]
    )
    assert code == 404
    error = json.loads(raw)["error"]
    assert error["message"] == "no route POST /v1/chat/completion"
    # Not a model problem: a client must not be told to pick another model.
    assert error["code"] == "not_found" and error["type"] == "invalid_request_error"


@pytest.mark.parametrize("method", ["GET", "HEAD"])
def test_the_root_answers_without_a_key(gateway: Gemgate, method: str) -> None:
    """Clients probe / on start-up; it names gemgate, and nothing under it is opened."""
    request = urllib.request.Request(gateway.url + "/", method=method)
    with urllib.request.urlopen(request, timeout=10) as response:
        assert response.status == 200
        body = response.read()
    assert body == b"" if method == "HEAD" else b"gemgate" in body
    code, _, _ = raw_post(f"{gateway.url}/v1/responses", b"{}", {})
    assert code == 401
