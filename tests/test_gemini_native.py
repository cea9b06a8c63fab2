"""The Gemini-native front: the official google-genai SDK (and raw HTTP for the JSON-array
stream) against a running gemgate and the strict fake Gemini API."""

from __future__ import annotations

import http.client
import json
import time
from typing import Any
from urllib.parse import urlsplit

import orjson
import pytest
from google import genai
from google.genai import errors as genai_errors
from google.genai import types

from gemgate import ir
from gemgate.channels import _gemini_wire as wire
from gemgate.errors import InvalidRequest
from gemgate.formats.gemini_native import GeminiNative
from tests.fakes.gemini_api import FakeGeminiAPI, Reply
from tests.harness import Gemgate

POOL_KEY = "AIzaFakeKeyAlpha0001"


# The SDK closes its HTTP client when the Client object is collected, which a chained call
# like client(...).models.list() would trigger mid-call; the tests keep them alive here.
_clients: list[genai.Client] = []


def client(gateway: Gemgate, prefix: str = "", key: str | None = None) -> genai.Client:
    sdk = genai.Client(
        api_key=key or gateway.client_key,  # type: ignore[attr-defined]
        http_options=types.HttpOptions(
            base_url=f"{gateway.url}{prefix}", api_version="v1beta", timeout=20_000
        ),
    )
    _clients.append(sdk)
    return sdk


def post(
    gateway: Gemgate, path: str, body: Any, headers: dict[str, str] | None = None
) -> tuple[int, dict[str, str], list[tuple[float, bytes]]]:
    """POST and read the answer chunk by chunk as it arrives: (status, headers, timed chunks)."""
    address = urlsplit(gateway.url)
    conn = http.client.HTTPConnection(address.hostname, address.port, timeout=20)
    payload = body if isinstance(body, bytes) else json.dumps(body).encode()
    conn.request(
        "POST",
        path,
        body=payload,
        headers={
            "content-type": "application/json",
            "x-goog-api-key": gateway.client_key,  # type: ignore[attr-defined]
            **(headers or {}),
        },
    )
    response = conn.getresponse()
    chunks = []
    while True:
        chunk = response.read1(65536)
        if not chunk:
            break
        chunks.append((time.monotonic(), chunk))
    conn.close()
    return response.status, {k.lower(): v for k, v in response.getheaders()}, chunks


def joined(chunks: list[tuple[float, bytes]]) -> bytes:
    return b"".join(c for _, c in chunks)


def test_sdk_text_with_system_prompt(gateway: Gemgate, gemini: FakeGeminiAPI) -> None:
    gemini.script(Reply.text("Ahoy!"))
    answer = client(gateway).models.generate_content(
        model="gemini-2.5-flash",
        contents="Say hello",
        config=types.GenerateContentConfig(
            system_instruction="Talk like a pirate.", temperature=0.5
        ),
    )
    assert answer.text == "Ahoy!"
    assert answer.usage_metadata is not None and answer.usage_metadata.prompt_token_count
    sent = gemini.requests[-1]
    assert sent.path == "/v1beta/models/gemini-2.5-flash:generateContent"
    # The client's key never reaches Google; the pool's goes in the header, never the URL.
    assert sent.api_key == POOL_KEY
    assert sent.headers["x-goog-api-key"] == POOL_KEY
    assert "key" not in sent.query
    assert sent.body["systemInstruction"]["parts"] == [{"text": "Talk like a pirate."}]
    assert sent.body["generationConfig"] == {"temperature": 0.5}


def test_fast_path_passes_unknown_fields_through_unchanged(
    gateway: Gemgate, gemini: FakeGeminiAPI
) -> None:
    # Fields gemgate's IR does not model, in both spellings Google accepts: they must reach
    # the upstream exactly as sent.
    body = {
        "contents": [{"role": "user", "parts": [{"text": "hi"}]}],
        "cachedContent": "cachedContents/abc123",
        "tool_config": {"retrieval_config": {"latLng": {"latitude": 1.5, "longitude": 2}}},
        "generation_config": {
            "enable_enhanced_civic_answers": True,
            "media_resolution": "MEDIA_RESOLUTION_LOW",
            "speechConfig": {"voiceConfig": {"prebuiltVoiceConfig": {"voiceName": "Kore"}}},
        },
        "safetySettings": [{"category": "HARM_CATEGORY_HARASSMENT", "threshold": "OFF"}],
    }
    client_key = gateway.client_key  # type: ignore[attr-defined]
    status, _, chunks = post(
        gateway,
        f"/v1beta/models/gemini-2.5-flash:generateContent?key={client_key}",
        body,
        headers={"x-goog-api-key": ""},
    )
    assert status == 200, joined(chunks)
    assert orjson.loads(joined(chunks))["candidates"][0]["content"]["parts"][0]["text"]
    sent = gemini.requests[-1]
    assert sent.body == body
    assert sent.api_key == POOL_KEY and "key" not in sent.query


def test_sse_stream_arrives_chunk_by_chunk(gateway: Gemgate, gemini: FakeGeminiAPI) -> None:
    gemini.script(Reply.text("one two three four five", chunks=5, delay=0.25))
    arrivals = []
    stream = client(gateway).models.generate_content_stream(
        model="gemini-2.5-flash", contents="count"
    )
    for chunk in stream:
        if chunk.text:
            arrivals.append((time.monotonic(), chunk.text))
    assert "".join(t for _, t in arrivals) == "one two three four five"
    assert len(arrivals) == 5
    # Relayed as produced: the pieces are spread over the upstream's own pace.
    assert arrivals[-1][0] - arrivals[0][0] > 0.7
    assert gemini.requests[-1].query.get("alt") == "sse"


def test_sse_bytes_are_relayed_not_reencoded(gateway: Gemgate, gemini: FakeGeminiAPI) -> None:
    gemini.script(Reply.text("a b c", chunks=3))
    status, headers, chunks = post(
        gateway,
        "/v1beta/models/gemini-2.5-flash:streamGenerateContent?alt=sse",
        {"contents": [{"parts": [{"text": "go"}]}]},
    )
    assert status == 200
    assert headers["content-type"].startswith("text/event-stream")
    raw = joined(chunks)
    # Google's CRLF framing survives, which a re-encoding gateway would not keep.
    events = [e for e in raw.split(b"\r\n\r\n") if e]
    assert len(events) == 3 and all(e.startswith(b"data: {") for e in events)
    texts = [orjson.loads(e[6:])["candidates"][0]["content"]["parts"][0]["text"] for e in events]
    assert "".join(texts) == "a b c"


def test_json_array_stream_is_relayed_incrementally(
    gateway: Gemgate, gemini: FakeGeminiAPI
) -> None:
    gemini.script(Reply.text("alpha beta gamma delta", chunks=4, delay=0.3))
    status, headers, chunks = post(
        gateway,
        "/v1beta/models/gemini-2.5-flash:streamGenerateContent",
        {"contents": [{"role": "user", "parts": [{"text": "go"}]}]},
    )
    assert status == 200
    assert headers["content-type"].startswith("application/json")
    # Upstream is always asked for SSE, whose event boundaries are plain to see.
    assert gemini.requests[-1].query.get("alt") == "sse"
    body = joined(chunks)
    items = orjson.loads(body)
    text = "".join(i["candidates"][0]["content"]["parts"][0]["text"] for i in items)
    assert text == "alpha beta gamma delta"
    assert body.startswith(b"[{") and body.count(b",\r\n{") == 3 and body.endswith(b"}]")
    # Piece by piece, not as one buffered body.
    assert len(chunks) >= 3
    assert chunks[-1][0] - chunks[0][0] > 0.6


@pytest.mark.parametrize("sse", [True, False], ids=["sse", "json-array"])
@pytest.mark.parametrize("write_size", [7, 100_000], ids=["cut-events", "all-at-once"])
def test_relayed_events_stay_whole_however_the_upstream_writes_them(
    gateway: Gemgate, gemini: FakeGeminiAPI, sse: bool, write_size: int
) -> None:
    """Events cut anywhere by the upstream's writes, or all in one write, reach the client
    whole, in order, each once; and the usage at the end is recorded."""
    before = _requests_and_tokens(gateway)
    gemini.script(Reply.text("one two three four five six", chunks=6, write_size=write_size))
    events = _relayed_stream(gateway, sse)
    texts = [e["candidates"][0]["content"]["parts"][0]["text"] for e in events]
    assert "".join(texts) == "one two three four five six" and len(events) == 6
    final = events[-1]["usageMetadata"]["totalTokenCount"]
    deadline = time.monotonic() + 5
    while _requests_and_tokens(gateway) == before and time.monotonic() < deadline:
        time.sleep(0.1)
    assert _requests_and_tokens(gateway) == (before[0] + 1, before[1] + final)


def _relayed_stream(gateway: Gemgate, sse: bool) -> list[Any]:
    """A native stream's events as the client parses them: every SSE frame a whole event, or
    one valid JSON array."""
    query = "?alt=sse" if sse else ""
    status, _, chunks = post(
        gateway,
        f"/v1beta/models/gemini-2.5-flash:streamGenerateContent{query}",
        {"contents": [{"parts": [{"text": "go"}]}]},
    )
    raw = joined(chunks)
    assert status == 200
    if not sse:
        return orjson.loads(raw)  # type: ignore[no-any-return]
    frames = [e for e in raw.split(b"\r\n\r\n") if e.strip()]
    assert all(f.startswith(b"data: {") for f in frames)
    return [orjson.loads(f[6:]) for f in frames]


def _requests_and_tokens(gateway: Gemgate) -> tuple[int, int]:
    rows = gateway.usage("tests")
    return (
        sum(int(row["requests"]) for row in rows),
        sum(int(row["total_tokens"]) for row in rows),
    )


def test_count_tokens(gateway: Gemgate, gemini: FakeGeminiAPI) -> None:
    counted = client(gateway).models.count_tokens(
        model="gemini-2.5-flash", contents="How many tokens is this sentence?"
    )
    assert counted.total_tokens and counted.total_tokens > 0
    assert gemini.requests[-1].action == "countTokens"


def test_count_tokens_wrapped_request_names_the_routed_model(
    gateway: Gemgate, gemini: FakeGeminiAPI
) -> None:
    body = {
        "generateContentRequest": {
            "model": "models/gemini/gemini-2.5-flash",
            "contents": [{"role": "user", "parts": [{"text": "hello there"}]}],
            "systemInstruction": {"parts": [{"text": "be kind"}]},
        }
    }
    status, _, chunks = post(gateway, "/v1beta/models/gemini/gemini-2.5-flash:countTokens", body)
    assert status == 200, joined(chunks)
    assert orjson.loads(joined(chunks))["totalTokens"] > 0
    sent = gemini.requests[-1]
    assert sent.path == "/v1beta/models/gemini-2.5-flash:countTokens"
    assert sent.body["generateContentRequest"]["model"] == "models/gemini-2.5-flash"


def test_model_list_and_get(gateway: Gemgate, gemini: FakeGeminiAPI) -> None:
    sdk = client(gateway)
    names = [m.name for m in sdk.models.list()]
    assert "models/gemini-2.5-flash" in names and "models/gemini-3-flash-preview" in names
    model = sdk.models.get(model="gemini-2.5-pro")
    assert model.display_name == "Gemini 2.5 Pro"
    assert model.input_token_limit == 1048576
    with pytest.raises(genai_errors.ClientError) as caught:
        sdk.models.get(model="gemini-no-such-model")
    assert caught.value.code == 404


def test_wrong_key_gets_google_shaped_401(gateway: Gemgate, gemini: FakeGeminiAPI) -> None:
    with pytest.raises(genai_errors.ClientError) as caught:
        client(gateway, key="gg-wrong").models.generate_content(
            model="gemini-2.5-flash", contents="hi"
        )
    assert caught.value.code == 401
    assert caught.value.status == "UNAUTHENTICATED"
    status, _, chunks = post(
        gateway,
        "/gemini/v1beta/models/gemini-2.5-flash:generateContent",
        {"contents": []},
        headers={"x-goog-api-key": "gg-wrong"},
    )
    error = orjson.loads(joined(chunks))["error"]
    assert status == 401 and error["code"] == 401 and error["status"] == "UNAUTHENTICATED"
    assert error["message"]
    assert not gemini.requests


def test_upstream_error_is_relayed_with_secrets_scrubbed(
    gateway: Gemgate, gemini: FakeGeminiAPI
) -> None:
    gemini.script(Reply.error(400, f"Bad value near {POOL_KEY}: budget out of range"))
    with pytest.raises(genai_errors.ClientError) as caught:
        client(gateway).models.generate_content(model="gemini-2.5-flash", contents="hi")
    assert caught.value.code == 400
    assert caught.value.status == "INVALID_ARGUMENT"
    assert "budget out of range" in str(caught.value.message)
    assert POOL_KEY not in str(caught.value.details)


def test_google_field_errors_keep_their_details(gateway: Gemgate, gemini: FakeGeminiAPI) -> None:
    status, _, chunks = post(
        gateway,
        "/v1beta/models/gemini-2.5-flash:generateContent",
        {"contents": [{"parts": [{"text": "x"}]}], "generationConfig": {"madeUp": 1}},
    )
    error = orjson.loads(joined(chunks))["error"]
    assert status == 400
    # Google's own words and its BadRequest detail, which a re-shaped error would lose.
    assert "madeUp" in error["message"] or "made_up" in error["message"]
    assert error["details"][0]["@type"].endswith("BadRequest")


def test_rate_limit_cools_the_credential_down(gateway: Gemgate, gemini: FakeGeminiAPI) -> None:
    # A model no other test of this module uses: its cooldown must not leak into them.
    gemini.script(Reply.error(429, retry_delay="30s"), model="gemini-2.5-flash-lite")
    sdk = client(gateway)
    for _ in range(2):
        with pytest.raises(genai_errors.ClientError) as caught:
            sdk.models.generate_content(model="gemini-2.5-flash-lite", contents="hi")
        assert caught.value.code == 429
        assert caught.value.status == "RESOURCE_EXHAUSTED"
    # The second request never reached Google: the only credential is resting.
    assert len(gemini.requests) == 1


def test_channel_prefix_and_v1_path(gateway: Gemgate, gemini: FakeGeminiAPI) -> None:
    answer = client(gateway, "/gemini").models.generate_content(
        model="gemini-2.5-flash", contents="hi"
    )
    assert answer.text == "Hello from gemini-2.5-flash"
    status, _, chunks = post(
        gateway,
        "/v1/models/gemini-2.5-flash:generateContent",
        {"contents": [{"parts": [{"text": "hi"}]}]},
    )
    assert status == 200, joined(chunks)
    assert gemini.requests[-1].path == "/v1beta/models/gemini-2.5-flash:generateContent"


def test_endpoint_scope_applies(gateway: Gemgate, gemini: FakeGeminiAPI) -> None:
    chat_only = gateway.create_key("native-chat-only", "--endpoints", "chat")
    gateway.wait_reload()
    with pytest.raises(genai_errors.ClientError) as caught:
        client(gateway, key=chat_only).models.generate_content(
            model="gemini-2.5-flash", contents="hi"
        )
    assert caught.value.code == 403 and caught.value.status == "PERMISSION_DENIED"
    assert not gemini.requests


# -- the IR path (for channels that do not speak the Gemini API) ------------------------------


def test_native_request_survives_the_ir_round_trip() -> None:
    original = {
        "systemInstruction": {"parts": [{"text": "Be terse."}]},
        "contents": [
            {"role": "user", "parts": [{"text": "Weather in Paris?"}]},
            {
                "role": "model",
                "parts": [
                    {
                        "functionCall": {"name": "get_weather", "args": {"city": "Paris"}},
                        "thoughtSignature": "c2lnbmF0dXJl",
                    }
                ],
            },
            {
                "role": "user",
                "parts": [
                    {
                        "functionResponse": {
                            "name": "get_weather",
                            "response": {"output": "18C"},
                        }
                    }
                ],
            },
        ],
        "tools": [
            {
                "functionDeclarations": [
                    {
                        "name": "get_weather",
                        "description": "Weather by city",
                        "parametersJsonSchema": {
                            "type": "object",
                            "properties": {"city": {"type": "string"}},
                            "required": ["city"],
                        },
                    }
                ]
            },
            {"googleSearch": {}},
        ],
        "toolConfig": {"functionCallingConfig": {"mode": "ANY"}},
        "generationConfig": {
            "temperature": 0.2,
            "maxOutputTokens": 100,
            "stopSequences": ["END"],
            "thinkingConfig": {"thinkingBudget": 512, "includeThoughts": True},
        },
    }
    # Sent in snake_case, as Google also accepts.
    snake = json.dumps(original).replace("systemInstruction", "system_instruction")
    snake = snake.replace("generationConfig", "generation_config")
    snake = snake.replace('functionCall"', 'function_call"')
    request = GeminiNative("unary").decode(snake.encode(), "gemini-2.5-flash")
    assert request.model == "gemini-2.5-flash" and not request.stream
    assert wire.request_body(request, "gemini-2.5-flash") == original


def test_ir_answer_encodes_as_generate_content_response() -> None:
    upstream = {
        "candidates": [
            {
                "content": {
                    "role": "model",
                    "parts": [
                        {"text": "thinking...", "thought": True},
                        {"text": "Hello", "thoughtSignature": "c2ln"},
                    ],
                },
                "finishReason": "STOP",
                "index": 0,
            }
        ],
        "usageMetadata": {"promptTokenCount": 5, "candidatesTokenCount": 1, "totalTokenCount": 9},
        "modelVersion": "gemini-2.5-flash",
        "responseId": "r1",
    }
    fmt = GeminiNative("unary")
    request = ir.Request(model="gemini-2.5-flash", messages=[])
    events = wire.ChunkReader().events(upstream)
    encoded = orjson.loads(fmt.encode(ir.collect(events), request))
    assert encoded["candidates"] == upstream["candidates"]
    assert encoded["usageMetadata"]["promptTokenCount"] == 5
    assert encoded["responseId"] == "r1"


@pytest.mark.parametrize("mode", ["sse", "array"])
def test_ir_stream_encoder_frames(mode: str) -> None:
    fmt = GeminiNative(mode)  # type: ignore[arg-type]
    request = ir.Request(model="gemini-x", messages=[], stream=True)
    encoder = fmt.stream_encoder(request)
    frames = encoder.event(ir.Start("r9", "gemini-x"))
    frames += encoder.event(ir.PartEvent(ir.Text("Hel")))
    frames += encoder.event(ir.PartEvent(ir.Text("lo")))
    frames += encoder.event(ir.Finish("stop", 0, "STOP"))
    frames += encoder.event(ir.UsageEvent(ir.Usage(prompt_tokens=3, output_tokens=2)))
    frames += encoder.end()
    if mode == "sse":
        chunks = [orjson.loads(e[6:]) for e in frames.split(b"\r\n\r\n") if e]
    else:
        chunks = orjson.loads(frames)
    texts = [c["candidates"][0]["content"]["parts"][0]["text"] for c in chunks[:2]]
    assert texts == ["Hel", "lo"]
    assert chunks[-1]["candidates"][0]["finishReason"] == "STOP"
    assert chunks[-1]["usageMetadata"]["candidatesTokenCount"] == 2
    assert all(c["responseId"] == "r9" for c in chunks)


def test_mid_stream_failure_ends_the_relayed_stream_with_an_error(
    gateway: Gemgate, gemini: FakeGeminiAPI
) -> None:
    gemini.script(Reply.disconnect_after(2))
    status, _, chunks = post(
        gateway,
        "/v1beta/models/gemini-2.5-flash:streamGenerateContent?alt=sse",
        {"contents": [{"parts": [{"text": "go"}]}]},
    )
    events = [orjson.loads(e[6:]) for e in joined(chunks).split(b"\r\n\r\n") if e.strip()]
    assert status == 200
    assert events[0]["candidates"][0]["content"]["parts"][0]["text"] == "chunk 0 "
    assert events[-1]["error"]["code"] >= 500 and events[-1]["error"]["status"]


@pytest.mark.parametrize("sse", [True, False], ids=["sse", "json-array"])
def test_upstream_dying_mid_event_ends_on_an_event_boundary(
    gateway: Gemgate, gemini: FakeGeminiAPI, sse: bool
) -> None:
    """Half an event is never relayed: the error that ends the stream is an event of its own,
    so the client can parse everything it was sent."""
    gemini.script(Reply.cut_mid_event(2))
    events = _relayed_stream(gateway, sse)  # the array form: closed by the error element
    texts = [e["candidates"][0]["content"]["parts"][0]["text"] for e in events[:-1]]
    assert texts == ["chunk 0 ", "chunk 1 "]
    assert events[-1]["error"]["status"] == "UNAVAILABLE"
    assert events[-1]["error"]["code"] == 503


@pytest.mark.parametrize(
    "extra",
    [
        {"cachedContent": "cachedContents/abc"},
        {"cached_content": "cachedContents/abc"},
        {"generationConfig": {"audioTimestamp": True}},
        {"generationConfig": {"speechConfig": {"voiceConfig": {}}}},
    ],
)
def test_the_ir_path_refuses_what_it_cannot_carry(extra: dict[str, Any]) -> None:
    body = {"contents": [{"role": "user", "parts": [{"text": "hi"}]}], **extra}
    with pytest.raises(InvalidRequest) as caught:
        GeminiNative("unary").decode(json.dumps(body).encode(), "gemini-2.5-flash")
    assert "not supported on this channel" in caught.value.message
