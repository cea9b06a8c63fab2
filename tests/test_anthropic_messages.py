"""The Anthropic Messages front through the official `anthropic` SDK (and raw HTTP where the
exact event sequence matters) against a running gemgate and the strict fake Gemini API."""

from __future__ import annotations

import base64
import json
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from typing import Any

import anthropic
import pytest
from pydantic import BaseModel

from gemgate import signatures
from tests.conftest import start_gemgate
from tests.fakes.gemini_api import SENTINELS, TINY_PNG, FakeGeminiAPI, Reply
from tests.harness import Gemgate

GEMINI_3 = "gemini-3-flash-preview"
WEATHER_TOOL = {
    "name": "get_weather",
    "description": "Weather by city",
    "input_schema": {
        "$schema": "http://json-schema.org/draft-07/schema#",
        "type": "object",
        "properties": {"city": {"type": "string"}},
        "required": ["city"],
        "additionalProperties": False,
    },
}


@pytest.fixture(scope="module")
def gateway(
    tmp_path_factory: pytest.TempPathFactory, fake_gemini: FakeGeminiAPI
) -> Iterator[Gemgate]:
    """This module's gemgate maps Claude model names, as an operator serving Claude Code would."""
    aliases = {"claude-sonnet-4-5": "gemini/gemini-2.5-flash", "claude-haiku-4-5": GEMINI_3}
    server = start_gemgate(
        tmp_path_factory.mktemp("gemgate"), fake_gemini, {"GEMGATE_ALIASES": json.dumps(aliases)}
    )
    server.client_key = server.create_key("tests")  # type: ignore[attr-defined]
    server.add_api_key("AIzaFakeKeyAlpha0001", "--label", "alpha")
    server.start()
    yield server
    server.stop()


def client(gateway: Gemgate, prefix: str = "", key: str | None = None) -> anthropic.Anthropic:
    return anthropic.Anthropic(
        base_url=f"{gateway.url}{prefix}",
        api_key=key or gateway.client_key,  # type: ignore[attr-defined]
        max_retries=0,
        timeout=30,
    )


def raw_post(
    gateway: Gemgate, path: str, body: dict[str, Any], headers: dict[str, str] | None = None
) -> tuple[int, dict[str, str], bytes]:
    request = urllib.request.Request(
        gateway.url + path,
        data=json.dumps(body).encode(),
        headers={
            "content-type": "application/json",
            "x-api-key": gateway.client_key,  # type: ignore[attr-defined]
            "anthropic-version": "2023-06-01",
            **(headers or {}),
        },
        method="POST",
    )
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return (
                response.status,
                {k.lower(): v for k, v in response.headers.items()},
                (response.read()),
            )
    except urllib.error.HTTPError as error:
        return error.code, {k.lower(): v for k, v in error.headers.items()}, error.read()


def sse_events(raw: bytes) -> list[tuple[str, dict[str, Any]]]:
    events = []
    for block in raw.decode().split("\n\n"):
        if not block.strip():
            continue
        lines = dict(line.split(": ", 1) for line in block.split("\n"))
        data = json.loads(lines["data"])
        assert data["type"] == lines["event"]
        events.append((lines["event"], data))
    return events


def streamed_hi(gateway: Gemgate) -> tuple[int, list[tuple[str, dict[str, Any]]]]:
    """A streamed "hi" to gemini-2.5-flash: the status and the SSE events as they came."""
    body = {
        "model": "gemini-2.5-flash",
        "max_tokens": 100,
        "stream": True,
        "messages": [{"role": "user", "content": "hi"}],
    }
    status, _, raw = raw_post(gateway, "/v1/messages", body)
    return status, sse_events(raw)


def test_text_system_and_parameters(gateway: Gemgate, gemini: FakeGeminiAPI) -> None:
    gemini.script(
        Reply.text(
            "Bonjour!",
            usage={
                "promptTokenCount": 20,
                "candidatesTokenCount": 3,
                "thoughtsTokenCount": 4,
                "cachedContentTokenCount": 5,
                "totalTokenCount": 27,
            },
        )
    )
    message = client(gateway).messages.create(
        model="gemini-2.5-flash",
        max_tokens=300,
        system=[{"type": "text", "text": "Answer in French."}],
        messages=[
            {"role": "user", "content": "Hi"},
            {"role": "assistant", "content": [{"type": "text", "text": "Hello."}]},
            {"role": "user", "content": "Say hi again"},
        ],
        stop_sequences=["END"],
        # This SDK version no longer lists the sampling fields; older clients still send them.
        extra_body={"temperature": 0.3, "top_p": 0.9, "top_k": 20},
    )
    assert message.content[0].type == "text" and message.content[0].text == "Bonjour!"
    assert message.stop_reason == "end_turn" and message.stop_sequence is None
    assert message.model == "gemini-2.5-flash" and message.role == "assistant"
    assert message.id.startswith("msg_")
    assert (message.usage.input_tokens, message.usage.output_tokens) == (15, 7)
    assert message.usage.cache_read_input_tokens == 5
    assert message._request_id  # the `request-id` header Anthropic's clients read
    sent = gemini.requests[-1].body
    assert sent["systemInstruction"] == {"parts": [{"text": "Answer in French."}]}
    assert [c["role"] for c in sent["contents"]] == ["user", "model", "user"]
    assert sent["generationConfig"] == {
        "temperature": 0.3,
        "topP": 0.9,
        "topK": 20,
        "maxOutputTokens": 300,
        "stopSequences": ["END"],
        "thinkingConfig": {"includeThoughts": False},
    }


def test_stop_reasons(gateway: Gemgate, gemini: FakeGeminiAPI) -> None:
    sdk = client(gateway)
    ask = {
        "model": "gemini-2.5-flash",
        "max_tokens": 50,
        "messages": [{"role": "user", "content": "go"}],
    }
    gemini.script(Reply.text("cut short", finish_reason="MAX_TOKENS"))
    assert sdk.messages.create(**ask).stop_reason == "max_tokens"  # type: ignore[call-overload]
    gemini.script(Reply.blocked())
    refused = sdk.messages.create(**ask)  # type: ignore[call-overload]
    assert refused.stop_reason == "refusal" and refused.content == []
    # An upstream that keeps the stop sequence in the text: the sequence is what ended it.
    gemini.script(Reply.text("one two STOP"))
    stopped = sdk.messages.create(**ask, stop_sequences=["HALT", "STOP"])  # type: ignore[call-overload]
    assert (stopped.stop_reason, stopped.stop_sequence) == ("stop_sequence", "STOP")


def test_content_blocks_reach_gemini(gateway: Gemgate, gemini: FakeGeminiAPI) -> None:
    pdf = base64.b64encode(b"%PDF-1.4 tiny").decode()
    client(gateway).messages.create(
        model="gemini-2.5-flash",
        max_tokens=100,
        messages=[
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "Look:"},
                    {
                        "type": "image",
                        "source": {"type": "base64", "media_type": "image/png", "data": TINY_PNG},
                    },
                    {
                        "type": "document",
                        "source": {"type": "base64", "media_type": "application/pdf", "data": pdf},
                    },
                    {
                        "type": "document",
                        "source": {"type": "text", "media_type": "text/plain", "data": "notes"},
                    },
                ],
            }
        ],
    )
    parts = gemini.requests[-1].body["contents"][0]["parts"]
    assert parts == [
        {"text": "Look:"},
        {"inlineData": {"mimeType": "image/png", "data": TINY_PNG}},
        {"inlineData": {"mimeType": "application/pdf", "data": pdf}},
        {"text": "notes"},
    ]


def test_stream_event_sequence_with_thinking(gateway: Gemgate, gemini: FakeGeminiAPI) -> None:
    gemini.script(
        Reply.text(
            "The answer is 4.",
            chunks=3,
            thought="Two plus two...",
        )
    )
    status, headers, raw = raw_post(
        gateway,
        "/v1/messages",
        {
            "model": "gemini-2.5-flash",
            "max_tokens": 4000,
            "thinking": {"type": "enabled", "budget_tokens": 2048},
            "stream": True,
            "messages": [{"role": "user", "content": "2+2?"}],
        },
    )
    assert status == 200 and headers["content-type"].startswith("text/event-stream")
    assert headers.get("request-id")
    events = sse_events(raw)
    names = [name for name, _ in events]
    assert names[0] == "message_start" and names[-2:] == ["message_delta", "message_stop"]
    blocks = [
        data["content_block"]["type"] for name, data in events if name == "content_block_start"
    ]
    assert blocks == ["thinking", "text"]
    # One block open at a time: every start is closed before the next one starts.
    open_index = None
    for name, data in events:
        if name == "content_block_start":
            assert open_index is None
            open_index = data["index"]
        elif name == "content_block_delta":
            assert data["index"] == open_index
        elif name == "content_block_stop":
            assert data["index"] == open_index
            open_index = None
    assert open_index is None
    thinking = "".join(
        d["delta"].get("thinking", "") for n, d in events if n == "content_block_delta"
    )
    text = "".join(d["delta"].get("text", "") for n, d in events if n == "content_block_delta")
    assert (thinking, text) == ("Two plus two...", "The answer is 4.")
    start = events[0][1]["message"]
    assert start["content"] == [] and start["usage"]["input_tokens"] > 0
    final = events[-2][1]
    assert final["delta"]["stop_reason"] == "end_turn"
    assert final["usage"]["output_tokens"] > 0
    sent = gemini.requests[-1]
    assert sent.query.get("alt") == "sse"
    assert sent.body["generationConfig"]["thinkingConfig"] == {
        "thinkingBudget": 2048,
        "includeThoughts": True,
    }


def test_words_before_a_mid_stream_error_reach_the_client(
    gateway: Gemgate, gemini: FakeGeminiAPI
) -> None:
    """The first words wait for the prompt's size (message_start reports it); a chunk with no
    usage followed by an error must not take those words with it."""
    gemini.script(Reply.overloaded_after("Half"))
    status, events = streamed_hi(gateway)
    assert status == 200
    names = [name for name, _ in events]
    assert names[0] == "message_start" and names[-1] == "error"
    text = "".join(d["delta"].get("text", "") for n, d in events if n == "content_block_delta")
    assert text == "Half"
    assert "overloaded" in events[-1][1]["error"]["message"]


def test_sdk_stream_accumulates_the_message(gateway: Gemgate, gemini: FakeGeminiAPI) -> None:
    # 0.6 s between the first words and the last: a busy machine's hiccup cannot close it.
    gemini.script(Reply.text("streamed words arrive", chunks=3, delay=0.3))
    pieces = []
    with client(gateway).messages.stream(
        model="gemini-2.5-flash",
        max_tokens=100,
        messages=[{"role": "user", "content": "hi"}],
    ) as stream:
        for text in stream.text_stream:
            pieces.append((time.monotonic(), text))
        final = stream.get_final_message()
    assert "".join(t for _, t in pieces) == "streamed words arrive"
    assert pieces[-1][0] - pieces[0][0] > 0.3  # relayed as produced, not buffered
    assert final.stop_reason == "end_turn" and final.content[0].text == "streamed words arrive"


def _tool_round(gateway: Gemgate, stream: bool) -> anthropic.types.Message:
    sdk = client(gateway)
    ask = {
        "model": GEMINI_3,
        "max_tokens": 1000,
        "tools": [WEATHER_TOOL],
        "messages": [{"role": "user", "content": "Weather in Paris?"}],
    }
    if not stream:
        return sdk.messages.create(**ask)  # type: ignore[call-overload,no-any-return]
    with sdk.messages.stream(**ask) as events:  # type: ignore[arg-type]
        return events.get_final_message()


@pytest.mark.parametrize("stream", [False, True], ids=["unary", "stream"])
def test_two_round_tool_use_on_gemini_3(
    gateway: Gemgate, gemini: FakeGeminiAPI, stream: bool
) -> None:
    gemini.script(
        Reply.parts(
            [
                {"text": "Let me check."},
                {"functionCall": {"name": "get_weather", "args": {"city": "Paris"}}},
            ]
        )
    )
    first = _tool_round(gateway, stream)
    assert first.stop_reason == "tool_use"
    use = next(block for block in first.content if block.type == "tool_use")
    assert use.name == "get_weather" and use.input == {"city": "Paris"}
    issued = gemini.requests[-1]
    declaration = issued.body["tools"][0]["functionDeclarations"][0]
    assert "$schema" not in json.dumps(declaration)

    gemini.script(Reply.text("It is 18C in Paris."))
    second = client(gateway).messages.create(
        model=GEMINI_3,
        max_tokens=1000,
        tools=[WEATHER_TOOL],
        messages=[
            {"role": "user", "content": "Weather in Paris?"},
            {"role": "assistant", "content": [b.model_dump() for b in first.content]},
            {
                "role": "user",
                "content": [{"type": "tool_result", "tool_use_id": use.id, "content": "18C"}],
            },
        ],
    )
    # The strict fake checked the Gemini-3 signature; a lost or mangled one would be a 400.
    assert second.content[0].text == "It is 18C in Paris."
    contents = gemini.requests[-1].body["contents"]
    call_part = next(p for p in contents[1]["parts"] if "functionCall" in p)
    assert call_part["thoughtSignature"] not in SENTINELS  # the real one came back
    assert "id" not in call_part["functionCall"]
    assert contents[2]["parts"] == [
        {"functionResponse": {"name": "get_weather", "response": {"output": "18C"}}}
    ]


def test_tool_use_id_carries_the_signature_in_anthropic_charset(
    gateway: Gemgate, gemini: FakeGeminiAPI
) -> None:
    gemini.script(
        Reply.parts([{"functionCall": {"name": "get_weather", "args": {"city": "Oslo"}}}])
    )
    message = _tool_round(gateway, stream=False)
    use = next(block for block in message.content if block.type == "tool_use")
    assert all(c.isalnum() or c in "_-" for c in use.id)
    # Recoverable from the id alone, for a client that talks to another gemgate instance.
    assert signatures.split(use.id)[1]


def test_thinking_signatures_replay_and_foreign_ones_are_dropped(
    gateway: Gemgate, gemini: FakeGeminiAPI
) -> None:
    signature = gemini.issue_signature("gemini-2.5-flash")
    gemini.script(
        Reply.parts(
            [
                {"text": "Pondering.", "thought": True, "thoughtSignature": signature},
                {"text": "Done."},
            ]
        )
    )
    sdk = client(gateway)
    first = sdk.messages.create(
        model="gemini-2.5-flash",
        max_tokens=4000,
        thinking={"type": "enabled", "budget_tokens": 1024},
        messages=[{"role": "user", "content": "think"}],
    )
    thinking = first.content[0]
    assert thinking.type == "thinking" and thinking.thinking == "Pondering."
    assert thinking.signature.startswith("gmn1.")
    sdk.messages.create(
        model="gemini-2.5-flash",
        max_tokens=4000,
        thinking={"type": "enabled", "budget_tokens": 1024},
        messages=[
            {"role": "user", "content": "think"},
            {"role": "assistant", "content": [b.model_dump() for b in first.content]},
            {"role": "user", "content": "again"},
            {
                "role": "assistant",
                "content": [
                    {"type": "thinking", "thinking": "Claude's own.", "signature": "EqQBCgIYAh"},
                    {"type": "redacted_thinking", "data": "opaque"},
                    {"type": "text", "text": "Sure."},
                ],
            },
            {"role": "user", "content": "and once more"},
        ],
    )
    contents = gemini.requests[-1].body["contents"]
    assert contents[1]["parts"][0] == {
        "text": "Pondering.",
        "thought": True,
        "thoughtSignature": signature,
    }
    assert contents[3]["parts"] == [{"text": "Sure."}]


def test_tool_results_with_errors_json_and_images(gateway: Gemgate, gemini: FakeGeminiAPI) -> None:
    client(gateway).messages.create(
        model="gemini-2.5-flash",
        max_tokens=100,
        tools=[WEATHER_TOOL, {"type": "web_search_20250305", "name": "web_search"}],
        tool_choice={"type": "tool", "name": "get_weather"},
        messages=[
            {"role": "user", "content": "Weather?"},
            {
                "role": "assistant",
                "content": [
                    {"type": "tool_use", "id": "toolu_1", "name": "get_weather", "input": {}},
                    {"type": "tool_use", "id": "toolu_2", "name": "get_weather", "input": {}},
                ],
            },
            {
                "role": "user",
                "content": [
                    {
                        "type": "tool_result",
                        "tool_use_id": "toolu_1",
                        "content": "city is required",
                        "is_error": True,
                    },
                    {
                        "type": "tool_result",
                        "tool_use_id": "toolu_2",
                        "content": [
                            {"type": "text", "text": '{"temp": 18}'},
                            {
                                "type": "image",
                                "source": {
                                    "type": "base64",
                                    "media_type": "image/png",
                                    "data": TINY_PNG,
                                },
                            },
                        ],
                    },
                ],
            },
        ],
    )
    body = gemini.requests[-1].body
    assert body["contents"][2]["parts"] == [
        {"functionResponse": {"name": "get_weather", "response": {"error": "city is required"}}},
        {"functionResponse": {"name": "get_weather", "response": {"output": {"temp": 18}}}},
        {"inlineData": {"mimeType": "image/png", "data": TINY_PNG}},
    ]
    assert {"googleSearch": {}} in body["tools"]
    assert body["toolConfig"] == {
        "functionCallingConfig": {"mode": "ANY", "allowedFunctionNames": ["get_weather"]}
    }


def test_count_tokens(gateway: Gemgate, gemini: FakeGeminiAPI) -> None:
    counted = client(gateway).messages.count_tokens(
        model="gemini-2.5-flash",
        system="You are terse.",
        tools=[WEATHER_TOOL],
        messages=[{"role": "user", "content": "How many tokens is this?"}],
    )
    assert counted.input_tokens > 0
    sent = gemini.requests[-1]
    assert sent.action == "countTokens"
    inner = sent.body["generateContentRequest"]
    assert inner["model"] == "models/gemini-2.5-flash" and inner["systemInstruction"]


def test_missing_max_tokens_is_400(gateway: Gemgate, gemini: FakeGeminiAPI) -> None:
    status, headers, raw = raw_post(
        gateway,
        "/v1/messages",
        {"model": "gemini-2.5-flash", "messages": [{"role": "user", "content": "hi"}]},
    )
    body = json.loads(raw)
    assert status == 400 and body["type"] == "error"
    assert body["error"]["type"] == "invalid_request_error"
    assert "max_tokens" in body["error"]["message"]
    assert headers.get("request-id")
    assert not gemini.requests


def test_wrong_key_is_anthropic_shaped(gateway: Gemgate, gemini: FakeGeminiAPI) -> None:
    with pytest.raises(anthropic.AuthenticationError) as caught:
        client(gateway, key="gg-nope").messages.create(
            model="gemini-2.5-flash", max_tokens=10, messages=[{"role": "user", "content": "x"}]
        )
    assert caught.value.status_code == 401
    assert caught.value.body["error"]["type"] == "authentication_error"  # type: ignore[index]
    assert caught.value.request_id
    status, _, raw = raw_post(
        gateway,
        "/gemini/v1/messages/count_tokens",
        {"model": "gemini-2.5-flash", "messages": []},
        headers={"x-api-key": "", "authorization": "Bearer gg-nope"},
    )
    assert status == 401 and json.loads(raw)["error"]["type"] == "authentication_error"


def test_upstream_rate_limit_is_anthropic_shaped(gateway: Gemgate, gemini: FakeGeminiAPI) -> None:
    # A model no other test here uses, so its cooldown does not leak into them.
    gemini.script(Reply.error(429, retry_delay="20s"), model="gemini-2.5-flash-lite")
    with pytest.raises(anthropic.RateLimitError) as caught:
        client(gateway).messages.create(
            model="gemini-2.5-flash-lite",
            max_tokens=10,
            messages=[{"role": "user", "content": "x"}],
        )
    assert caught.value.body["error"]["type"] == "rate_limit_error"  # type: ignore[index]
    assert int(caught.value.response.headers["retry-after"]) >= 19


def test_mid_stream_failure_ends_with_an_error_event(
    gateway: Gemgate, gemini: FakeGeminiAPI
) -> None:
    gemini.script(Reply.disconnect_after(2))
    status, events = streamed_hi(gateway)
    assert status == 200
    assert events[0][0] == "message_start"
    assert events[-1][0] == "error" and events[-1][1]["error"]["type"]
    assert "message_stop" not in [name for name, _ in events]


def test_claude_code_shaped_request(gateway: Gemgate, gemini: FakeGeminiAPI) -> None:
    """A request as Claude Code sends it (aliased model, cache_control everywhere, metadata,
    betas, thinking, context management): accepted, its Anthropic-only parts ignored."""
    gemini.script(Reply.text("Reading the file now.", chunks=2, thought="User wants a read."))
    body = {
        "model": "claude-sonnet-4-5",
        "max_tokens": 32000,
        "stream": True,
        "metadata": {"user_id": "user_abc_account_123_session_456"},
        "system": [
            {"type": "text", "text": "You are Claude Code, Anthropic's official CLI for Claude."},
            {
                "type": "text",
                "text": "Use the tools available to you.",
                "cache_control": {"type": "ephemeral"},
            },
        ],
        "messages": [
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "<system-reminder>context</system-reminder>"},
                    {
                        "type": "text",
                        "text": "read main.py",
                        "cache_control": {"type": "ephemeral"},
                    },
                ],
            }
        ],
        "tools": [
            {
                "name": "Read",
                "description": "Reads a file",
                "input_schema": {
                    "$schema": "http://json-schema.org/draft-07/schema#",
                    "type": "object",
                    "properties": {
                        "file_path": {"type": "string"},
                        "limit": {"type": "number", "exclusiveMinimum": 0},
                    },
                    "required": ["file_path"],
                    "additionalProperties": False,
                },
                "cache_control": {"type": "ephemeral"},
            }
        ],
        "tool_choice": {"type": "auto"},
        "thinking": {"type": "enabled", "budget_tokens": 31999},
        "context_management": {"edits": [{"type": "clear_thinking_20251015", "keep": "all"}]},
        "temperature": 1,
    }
    status, _, raw = raw_post(
        gateway,
        "/v1/messages?beta=true",
        body,
        headers={
            "anthropic-beta": "claude-code-20250219,interleaved-thinking-2025-05-14,"
            "context-management-2025-06-27",
            "anthropic-dangerous-direct-browser-access": "true",
            "x-app": "cli",
            "user-agent": "claude-cli/2.0.0 (external, cli)",
        },
    )
    assert status == 200, raw
    events = sse_events(raw)
    text = "".join(d["delta"].get("text", "") for n, d in events if n == "content_block_delta")
    assert text == "Reading the file now."
    assert events[0][1]["message"]["model"] == "claude-sonnet-4-5"
    sent = gemini.requests[-1]
    assert sent.path == "/v1beta/models/gemini-2.5-flash:streamGenerateContent"
    assert sent.body["generationConfig"]["thinkingConfig"] == {
        "thinkingBudget": 24576,
        "includeThoughts": True,
    }
    assert "cache_control" not in json.dumps(sent.body)


def test_ping_during_a_long_silence(gateway: Gemgate, gemini: FakeGeminiAPI) -> None:
    # The upstream pauses longer than the ping interval (10 s) between two chunks.
    gemini.script(Reply.text("slow answer", chunks=2, delay=11))
    status, _, raw = raw_post(
        gateway,
        "/v1/messages",
        {
            "model": "gemini-2.5-flash",
            "max_tokens": 100,
            "stream": True,
            "messages": [{"role": "user", "content": "hi"}],
        },
    )
    names = [name for name, _ in sse_events(raw)]
    assert status == 200 and "ping" in names
    assert names.index("ping") > names.index("content_block_start")
    assert names[-1] == "message_stop"


# -- structured output ------------------------------------------------------------------------


class _Weather(BaseModel):
    city: str
    celsius: int


def test_structured_output_with_output_config(gateway: Gemgate, gemini: FakeGeminiAPI) -> None:
    """What pydantic-ai's native output and the SDK's parse send: output_config.format."""
    gemini.script(Reply.text('{"city": "Paris", "celsius": 21}'))
    answer = client(gateway).messages.parse(
        model="claude-sonnet-4-5",
        max_tokens=200,
        messages=[{"role": "user", "content": "Weather in Paris as JSON"}],
        output_format=_Weather,
    )
    assert answer.parsed_output == _Weather(city="Paris", celsius=21)
    config = gemini.requests[-1].body["generationConfig"]
    assert config["responseMimeType"] == "application/json"
    schema = config["responseJsonSchema"]
    assert schema["properties"]["celsius"]["type"] == "integer"
    assert "additionalProperties" not in schema or schema["additionalProperties"] is False


def test_structured_output_beta_output_format(gateway: Gemgate, gemini: FakeGeminiAPI) -> None:
    """What LiteLLM sends: output_format with the structured-outputs beta header."""
    gemini.script(Reply.text('{"answer": "yes"}'))
    schema = {
        "$schema": "http://json-schema.org/draft-07/schema#",
        "type": "object",
        "properties": {"answer": {"type": "string", "x-order": 1}},
        "required": ["answer"],
    }
    answer = client(gateway).beta.messages.create(
        model="claude-sonnet-4-5",
        max_tokens=200,
        messages=[{"role": "user", "content": "Yes or no?"}],
        betas=["structured-outputs-2025-11-13"],
        extra_body={"output_format": {"type": "json_schema", "schema": schema}},
    )
    assert json.loads(answer.content[0].text) == {"answer": "yes"}  # type: ignore[union-attr]
    sent = gemini.requests[-1].body["generationConfig"]["responseJsonSchema"]
    assert sent == {
        "type": "object",
        "properties": {"answer": {"type": "string"}},
        "required": ["answer"],
    }


@pytest.mark.parametrize(
    "extra",
    [
        {"output_format": {"type": "xml"}},
        {"output_config": {"format": {"type": "json_schema"}}},
        {"mcp_servers": [{"type": "url", "url": "https://mcp.example/sse", "name": "x"}]},
        {"container": "container_1"},
    ],
)
def test_fields_that_cannot_be_honoured_are_400(
    gateway: Gemgate, gemini: FakeGeminiAPI, extra: dict[str, Any]
) -> None:
    body = {
        "model": "claude-sonnet-4-5",
        "max_tokens": 10,
        "messages": [{"role": "user", "content": "Hi"}],
        **extra,
    }
    status, _, raw = raw_post(gateway, "/v1/messages", body)
    assert status == 400
    error = json.loads(raw)
    assert error["type"] == "error"
    assert error["error"]["type"] == "invalid_request_error"
    assert next(iter(extra)) in error["error"]["message"]
    assert not gemini.requests
