"""The OpenAI Responses API through the official SDK: text, streams, tools and thought
signatures on Gemini 3, structured output, media, kept answers and errors."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import openai
import pytest
from pydantic import BaseModel

from tests.conftest import start_gemgate
from tests.fakes.gemini_api import FakeGeminiAPI, Reply
from tests.harness import Gemgate
from tests.openai_sdk import client

WEATHER: Any = {
    "type": "function",
    "name": "get_weather",
    "description": "Weather for a city",
    "parameters": {
        "type": "object",
        "properties": {"city": {"type": "string"}},
        "required": ["city"],
        "additionalProperties": False,
    },
    "strict": True,
}
CALL = {"functionCall": {"name": "get_weather", "args": {"city": "Paris"}}}
MODEL3 = "gemini-3-flash-preview"


def _events(stream: Any) -> list[Any]:
    return list(stream)


def test_text_answer(gateway: Gemgate, gemini: FakeGeminiAPI) -> None:
    gemini.script(Reply.text("Hello there."))
    answer = client(gateway).responses.create(
        model="gemini-2.5-flash",
        instructions="Be brief.",
        input="Say hello",
        max_output_tokens=100,
        temperature=0.2,
        top_p=0.9,
    )
    assert answer.output_text == "Hello there."
    assert answer.status == "completed"
    assert answer.id.startswith("resp_")
    assert answer.model == "gemini-2.5-flash"
    assert answer.usage is not None and answer.usage.input_tokens > 0
    assert answer.usage.total_tokens == answer.usage.input_tokens + answer.usage.output_tokens
    body = gemini.requests[-1].body
    assert body["systemInstruction"] == {"parts": [{"text": "Be brief."}]}
    assert body["contents"] == [{"role": "user", "parts": [{"text": "Say hello"}]}]
    config = body["generationConfig"]
    assert config["maxOutputTokens"] == 100
    assert config["temperature"] == 0.2 and config["topP"] == 0.9


def test_stream_sends_the_full_event_sequence(gateway: Gemgate, gemini: FakeGeminiAPI) -> None:
    gemini.script(Reply.text("One two three four", chunks=3))
    with client(gateway).responses.stream(model="gemini-2.5-flash", input="Count") as stream:
        events = _events(stream)
        final = stream.get_final_response()
    kinds = [e.type for e in events]
    assert kinds[:4] == [
        "response.created",
        "response.in_progress",
        "response.output_item.added",
        "response.content_part.added",
    ]
    assert kinds.count("response.output_text.delta") == 3
    assert kinds[-4:] == [
        "response.output_text.done",
        "response.content_part.done",
        "response.output_item.done",
        "response.completed",
    ]
    assert [e.sequence_number for e in events] == list(range(len(events)))
    assert "".join(e.delta for e in events if e.type == "response.output_text.delta") == (
        "One two three four"
    )
    assert final.output_text == "One two three four"
    assert final.usage is not None and final.usage.output_tokens > 0
    assert final.id == events[0].response.id


def test_create_with_stream_true(gateway: Gemgate, gemini: FakeGeminiAPI) -> None:
    gemini.script(Reply.text("Streamed.", chunks=2))
    events = list(
        client(gateway).responses.create(model="gemini-2.5-flash", input="Hi", stream=True)
    )
    assert events[-1].type == "response.completed"
    assert events[-1].response.output_text == "Streamed."


@pytest.mark.parametrize("stream", [False, True])
def test_reasoning_summary(gateway: Gemgate, gemini: FakeGeminiAPI, stream: bool) -> None:
    gemini.script(Reply.text("42.", thought="Thinking about the question."))
    sdk = client(gateway)
    request: Any = {
        "model": "gemini-2.5-flash",
        "input": "Answer?",
        "reasoning": {"effort": "low", "summary": "auto"},
    }
    if stream:
        with sdk.responses.stream(**request) as events:
            seen = [e.type for e in events]
            answer = events.get_final_response()
        assert "response.reasoning_summary_text.delta" in seen
    else:
        answer = sdk.responses.create(**request)
    reasoning, message = answer.output
    assert reasoning.type == "reasoning"
    assert reasoning.summary[0].text == "Thinking about the question."
    assert message.type == "message" and answer.output_text == "42."
    assert answer.usage is not None and answer.usage.output_tokens_details.reasoning_tokens > 0
    thinking = gemini.requests[-1].body["generationConfig"]["thinkingConfig"]
    assert thinking == {"thinkingBudget": 1024, "includeThoughts": True}


# -- tools ------------------------------------------------------------------------------------


@pytest.mark.parametrize("stream", [False, True])
def test_function_call(gateway: Gemgate, gemini: FakeGeminiAPI, stream: bool) -> None:
    gemini.script(Reply.parts([{"text": "Checking."}, CALL]))
    answer = _ask(gateway, "gemini-2.5-flash", "Weather in Paris?", stream, tools=[WEATHER])
    calls = [item for item in answer.output if item.type == "function_call"]
    assert [(c.name, json.loads(c.arguments)) for c in calls] == [
        ("get_weather", {"city": "Paris"})
    ]
    assert calls[0].call_id
    assert answer.output_text == "Checking."
    declared = gemini.requests[-1].body["tools"][0]["functionDeclarations"][0]
    assert declared["name"] == "get_weather"
    assert "strict" not in json.dumps(declared)


@pytest.mark.parametrize(
    ("choice", "config"),
    [
        ("none", {"mode": "NONE"}),
        ("required", {"mode": "ANY"}),
        (
            {"type": "function", "name": "get_weather"},
            {"mode": "ANY", "allowedFunctionNames": ["get_weather"]},
        ),
    ],
)
def test_tool_choice(gateway: Gemgate, gemini: FakeGeminiAPI, choice: Any, config: Any) -> None:
    client(gateway).responses.create(
        model="gemini-2.5-flash", input="Hi", tools=[WEATHER], tool_choice=choice
    )
    assert gemini.requests[-1].body["toolConfig"] == {"functionCallingConfig": config}


def test_web_search_is_google_search(gateway: Gemgate, gemini: FakeGeminiAPI) -> None:
    client(gateway).responses.create(
        model="gemini-2.5-flash", input="News?", tools=[{"type": "web_search"}]
    )
    assert gemini.requests[-1].body["tools"] == [{"googleSearch": {}}]


def _tool_round(
    gateway: Gemgate, gemini: FakeGeminiAPI, stream: bool, **options: Any
) -> tuple[Any, Any]:
    """Round one asks for a call; round two sends the call and its output back."""
    gemini.script(Reply.parts([CALL]))
    first = _ask(gateway, MODEL3, "Weather in Paris?", stream, tools=[WEATHER], **options)
    (call,) = [item for item in first.output if item.type == "function_call"]
    gemini.script(Reply.text("It is sunny in Paris."))
    return first, call


@pytest.mark.parametrize("stream", [False, True])
def test_gemini_3_tool_round_with_store(
    gateway: Gemgate, gemini: FakeGeminiAPI, stream: bool
) -> None:
    first, call = _tool_round(gateway, gemini, stream)
    second = _ask(
        gateway,
        MODEL3,
        [{"type": "function_call_output", "call_id": call.call_id, "output": "sunny, 21C"}],
        stream,
        tools=[WEATHER],
        previous_response_id=first.id,
    )
    assert second.output_text == "It is sunny in Paris."
    sent = gemini.requests[-1].body["contents"]
    assert [c["role"] for c in sent] == ["user", "model", "user"]
    assert sent[0]["parts"] == [{"text": "Weather in Paris?"}]
    model_turn = sent[1]["parts"][0]
    assert model_turn["functionCall"] == CALL["functionCall"]
    assert model_turn["thoughtSignature"] != "skip_thought_signature_validator"
    assert sent[2]["parts"] == [
        {"functionResponse": {"name": "get_weather", "response": {"output": "sunny, 21C"}}}
    ]


@pytest.mark.parametrize("stream", [False, True])
def test_gemini_3_tool_round_stateless_with_encrypted_reasoning(
    gateway: Gemgate, gemini: FakeGeminiAPI, stream: bool
) -> None:
    """Codex's way: store off, reasoning items with encrypted content replayed as input."""
    options = {"store": False, "include": ["reasoning.encrypted_content"]}
    first, call = _tool_round(gateway, gemini, stream, **options)
    issued = gemini.requests[-1]
    reasoning = [item for item in first.output if item.type == "reasoning"]
    assert reasoning and reasoning[0].encrypted_content
    replay = [
        {"role": "user", "content": "Weather in Paris?"},
        *[item.model_dump(exclude_none=True) for item in first.output],
        {"type": "function_call_output", "call_id": call.call_id, "output": "sunny, 21C"},
    ]
    # A fresh gateway process would have no cache: the signature must come from the item.
    second = _ask(gateway, MODEL3, replay, stream, tools=[WEATHER], **options)
    assert second.output_text == "It is sunny in Paris."
    assert issued is not gemini.requests[-1]
    model_turn = gemini.requests[-1].body["contents"][1]["parts"][0]
    assert model_turn["thoughtSignature"] != "skip_thought_signature_validator"
    with pytest.raises(openai.NotFoundError):
        client(gateway).responses.retrieve(first.id)  # store: false kept nothing


def test_encrypted_reasoning_carries_signatures_to_another_gateway(
    gateway: Gemgate, gemini: FakeGeminiAPI, tmp_path: Path
) -> None:
    """No cache can help a second gemgate process: only the replayed reasoning item can."""
    options: Any = {"store": False, "include": ["reasoning.encrypted_content"]}
    first, call = _tool_round(gateway, gemini, False, **options)
    replay = [
        {"role": "user", "content": "Weather in Paris?"},
        *[item.model_dump(exclude_none=True) for item in first.output],
        {"type": "function_call_output", "call_id": call.call_id, "output": "sunny, 21C"},
    ]
    other = start_gemgate(tmp_path, gemini)
    other.client_key = other.create_key("other")  # type: ignore[attr-defined]
    other.add_api_key("AIzaFakeKeyAlpha0001")
    other.start()
    try:
        second = client(other).responses.create(
            model=MODEL3, input=replay, tools=[WEATHER], **options
        )
        assert second.output_text == "It is sunny in Paris."
        model_turn = gemini.requests[-1].body["contents"][1]["parts"][0]
        assert model_turn["thoughtSignature"] != "skip_thought_signature_validator"
        # Without the reasoning item, that process can only send the bypass value.
        gemini.script(Reply.text("Fine."))
        client(other).responses.create(
            model=MODEL3,
            input=[item for item in replay if item.get("type") != "reasoning"],
            tools=[WEATHER],
            **options,
        )
        model_turn = gemini.requests[-1].body["contents"][1]["parts"][0]
        assert model_turn["thoughtSignature"] == "skip_thought_signature_validator"
    finally:
        other.stop()


def test_gemini_3_stateless_without_anything_uses_the_bypass(
    gateway: Gemgate, gemini: FakeGeminiAPI
) -> None:
    gemini.script(Reply.text("Fine."))
    replay = [
        {"role": "user", "content": "Weather in Paris?"},
        {
            "type": "function_call",
            "call_id": "call_made_up",
            "name": "get_weather",
            "arguments": '{"city":"Paris"}',
        },
        {"type": "function_call_output", "call_id": "call_made_up", "output": "sunny"},
    ]
    answer = client(gateway).responses.create(
        model=MODEL3, input=replay, tools=[WEATHER], store=False
    )
    assert answer.output_text == "Fine."
    part = gemini.requests[-1].body["contents"][1]["parts"][0]
    assert part["thoughtSignature"] == "skip_thought_signature_validator"


# -- structured output and media --------------------------------------------------------------


class Weather(BaseModel):
    city: str
    celsius: int


def test_parse_with_a_pydantic_model(gateway: Gemgate, gemini: FakeGeminiAPI) -> None:
    gemini.script(Reply.text('{"city": "Paris", "celsius": 21}'))
    answer = client(gateway).responses.parse(
        model="gemini-2.5-flash", input="Weather in Paris as JSON", text_format=Weather
    )
    assert answer.output_parsed == Weather(city="Paris", celsius=21)
    config = gemini.requests[-1].body["generationConfig"]
    assert config["responseMimeType"] == "application/json"
    assert config["responseJsonSchema"]["properties"]["celsius"] == {
        "title": "Celsius",
        "type": "integer",
    }


def test_json_object(gateway: Gemgate, gemini: FakeGeminiAPI) -> None:
    gemini.script(Reply.text("{}"))
    client(gateway).responses.create(
        model="gemini-2.5-flash", input="JSON please", text={"format": {"type": "json_object"}}
    )
    config = gemini.requests[-1].body["generationConfig"]
    assert config["responseMimeType"] == "application/json"
    assert "responseJsonSchema" not in config


PNG = (
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNkYPhfDwAChwGA60e6kg"
    "AAAABJRU5ErkJggg=="
)


def test_image_input(gateway: Gemgate, gemini: FakeGeminiAPI) -> None:
    gemini.script(Reply.text("A dot."))
    answer = client(gateway).responses.create(
        model="gemini-2.5-flash",
        input=[
            {
                "role": "user",
                "content": [
                    {"type": "input_text", "text": "What is this?"},
                    {
                        "type": "input_image",
                        "image_url": f"data:image/png;base64,{PNG}",
                        "detail": "auto",
                    },
                ],
            }
        ],
    )
    assert answer.output_text == "A dot."
    parts = gemini.requests[-1].body["contents"][0]["parts"]
    assert parts == [
        {"text": "What is this?"},
        {"inlineData": {"mimeType": "image/png", "data": PNG}},
    ]


# -- kept answers -----------------------------------------------------------------------------


def test_kept_answers_are_retrieved_continued_and_deleted(
    gateway: Gemgate, gemini: FakeGeminiAPI
) -> None:
    sdk = client(gateway)
    gemini.script(Reply.text("Nice to meet you, Ada."))
    first = sdk.responses.create(model="gemini-2.5-flash", input="I am Ada.")
    assert sdk.responses.retrieve(first.id).output_text == "Nice to meet you, Ada."
    gemini.script(Reply.text("You are Ada."))
    second = sdk.responses.create(
        model="gemini-2.5-flash", input="Who am I?", previous_response_id=first.id
    )
    assert second.previous_response_id == first.id
    assert gemini.requests[-1].body["contents"] == [
        {"role": "user", "parts": [{"text": "I am Ada."}]},
        {"role": "model", "parts": [{"text": "Nice to meet you, Ada."}]},
        {"role": "user", "parts": [{"text": "Who am I?"}]},
    ]
    # A third turn follows the whole chain.
    sdk.responses.create(model="gemini-2.5-flash", input="Again?", previous_response_id=second.id)
    assert len(gemini.requests[-1].body["contents"]) == 5

    sdk.responses.delete(first.id)
    with pytest.raises(openai.NotFoundError) as caught:
        sdk.responses.retrieve(first.id)
    assert caught.value.body["message"] == f"Response with id '{first.id}' not found."  # type: ignore[index]
    with pytest.raises(openai.BadRequestError) as refused:
        sdk.responses.create(model="gemini-2.5-flash", input="x", previous_response_id=first.id)
    assert refused.value.code == "previous_response_not_found"


def test_a_key_sees_only_its_own_answers(gateway: Gemgate, gemini: FakeGeminiAPI) -> None:
    gemini.script(Reply.text("Secret."))
    mine = client(gateway).responses.create(model="gemini-2.5-flash", input="Hi")
    other = openai.OpenAI(
        base_url=f"{gateway.url}/v1",
        api_key=gateway.create_key("responses-other"),
        max_retries=0,
    )
    gateway.wait_reload()
    with pytest.raises(openai.NotFoundError):
        other.responses.retrieve(mine.id)
    with pytest.raises(openai.NotFoundError):
        other.responses.delete(mine.id)
    with pytest.raises(openai.BadRequestError):
        other.responses.create(model="gemini-2.5-flash", input="x", previous_response_id=mine.id)
    assert client(gateway).responses.retrieve(mine.id).output_text == "Secret."


# -- errors and routes ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("extra", "param"),
    [
        ({"background": True}, "background"),
        ({"truncation": "auto"}, "truncation"),
        ({"tools": [{"type": "file_search", "vector_store_ids": ["vs_1"]}]}, "tools"),
        ({"input": [{"type": "item_reference", "id": "msg_1"}]}, "input"),
        ({"text": {"verbosity": "low"}}, "text.verbosity"),
    ],
)
def test_what_cannot_be_honoured_is_refused(
    gateway: Gemgate, gemini: FakeGeminiAPI, extra: dict[str, Any], param: str
) -> None:
    request = {"model": "gemini-2.5-flash", "input": "Hi", **extra}
    with pytest.raises(openai.BadRequestError) as caught:
        client(gateway).responses.create(**request)
    assert caught.value.param == param
    assert not gemini.requests


def test_stream_failure_after_the_first_byte(gateway: Gemgate, gemini: FakeGeminiAPI) -> None:
    gemini.script(Reply.disconnect_after(2))
    events = list(
        client(gateway).responses.create(model="gemini-2.5-flash", input="Hi", stream=True)
    )
    kinds = [e.type for e in events]
    assert kinds[0] == "response.created"
    assert kinds[-2:] == ["error", "response.failed"]
    assert events[-1].response.error.code == "server_error"
    assert events[-1].response.status == "failed"


@pytest.mark.parametrize("prefix", ["", "/gemini"])
def test_routes_under_every_prefix(gateway: Gemgate, gemini: FakeGeminiAPI, prefix: str) -> None:
    gemini.script(Reply.text("ok"))
    answer = client(gateway, prefix).responses.create(model="gemini-2.5-flash", input="Hi")
    assert answer.output_text == "ok"


# -- helpers ----------------------------------------------------------------------------------


def _ask(gateway: Gemgate, model: str, input: Any, stream: bool, **options: Any) -> Any:
    """One request, streamed or not: the finished response either way."""
    sdk = client(gateway)
    if stream:
        with sdk.responses.stream(model=model, input=input, **options) as events:
            for _ in events:
                pass
            return events.get_final_response()
    return sdk.responses.create(model=model, input=input, **options)


def test_kept_answers_outlive_a_restart_within_their_size_cap(
    gemini: FakeGeminiAPI, tmp_path: Path
) -> None:
    server = start_gemgate(tmp_path, gemini, {"GEMGATE_RESPONSES_MAX_BYTES": "4000"})
    server.client_key = server.create_key("keeper")  # type: ignore[attr-defined]
    server.add_api_key("AIzaFakeKeyAlpha0001")
    server.start()
    try:
        gemini.script(Reply.text("Short."))
        short = client(server).responses.create(model="gemini-2.5-flash", input="Hi")
        gemini.script(Reply.text("Long. " * 1000))
        long = client(server).responses.create(model="gemini-2.5-flash", input="Talk")
        assert long.output_text.startswith("Long.")  # answered, though too large to keep
    finally:
        server.stop()
    server.start()  # the kept answer is read back from the database now
    try:
        assert client(server).responses.retrieve(short.id).output_text == "Short."
        with pytest.raises(openai.NotFoundError):
            client(server).responses.retrieve(long.id)
        gemini.script(Reply.text("Hello again."))
        client(server).responses.create(
            model="gemini-2.5-flash", input="Me again", previous_response_id=short.id
        )
        assert [c["role"] for c in gemini.requests[-1].body["contents"]] == [
            "user",
            "model",
            "user",
        ]
    finally:
        server.stop()


def test_kept_answers_expire(gemini: FakeGeminiAPI, tmp_path: Path) -> None:
    server = start_gemgate(tmp_path, gemini, {"GEMGATE_RESPONSES_TTL": "0"})
    server.client_key = server.create_key("keeper")  # type: ignore[attr-defined]
    server.add_api_key("AIzaFakeKeyAlpha0001")
    server.start()
    try:
        answer = client(server).responses.create(model="gemini-2.5-flash", input="Hi")
        with pytest.raises(openai.NotFoundError):
            client(server).responses.retrieve(answer.id)
    finally:
        server.stop()


@pytest.mark.parametrize("encrypted", [False, True])
def test_stream_of_thoughts_text_sources_and_a_signed_call(
    gateway: Gemgate, gemini: FakeGeminiAPI, encrypted: bool
) -> None:
    """Every kind of item in one stream; the SDK's own accumulator checks the sequence."""
    signature = gemini.issue_signature(MODEL3)
    usage = {"promptTokenCount": 5, "candidatesTokenCount": 9, "thoughtsTokenCount": 4}
    chunk: Any = lambda parts, **extra: {  # noqa: E731
        "candidates": [{"content": {"role": "model", "parts": parts}, "index": 0, **extra}],
        "usageMetadata": {**usage, "totalTokenCount": 18},
    }
    gemini.script(
        Reply.chunks(
            [
                chunk([{"text": "Plan: ", "thought": True}]),
                chunk([{"text": "search, then call.", "thought": True}]),
                chunk([{"text": "Paris is sunny."}]),
                chunk(
                    [{**CALL, "thoughtSignature": signature}],
                    finishReason="STOP",
                    groundingMetadata={
                        "groundingChunks": [{"web": {"uri": "https://w.example/p", "title": "W"}}]
                    },
                ),
            ]
        )
    )
    options: Any = {"reasoning": {"summary": "auto"}, "tools": [WEATHER]}
    if encrypted:
        options["include"] = ["reasoning.encrypted_content"]
    with client(gateway).responses.stream(model=MODEL3, input="Weather?", **options) as stream:
        events = list(stream)
        final = stream.get_final_response()
    assert [e.sequence_number for e in events] == list(range(len(events)))
    kinds = [item.type for item in final.output]
    # The call's signature rides in a reasoning item of its own, shown only to a client that
    # asked for encrypted reasoning; the sources follow as a message of their own.
    carried = ["reasoning"] if encrypted else []
    assert kinds == ["reasoning", "message", *carried, "function_call", "message"]
    assert final.output[0].summary[0].text == "Plan: search, then call."
    assert final.output_text.startswith("Paris is sunny.")
    sources = final.output[-1].content[0]
    assert sources.annotations[0].url == "https://w.example/p"
    assert sources.text[sources.annotations[0].start_index :].startswith("1. [W]")
    carrier = [i for i in final.output if i.type == "reasoning"][-1]
    if encrypted:
        assert carrier.encrypted_content and carrier.encrypted_content.startswith("gmn1.")
    else:
        assert carrier.encrypted_content is None and carrier.summary
    assert final.usage is not None and final.usage.output_tokens_details.reasoning_tokens == 4


@pytest.mark.parametrize("stream", [False, True])
def test_a_cut_short_answer_is_incomplete(
    gateway: Gemgate, gemini: FakeGeminiAPI, stream: bool
) -> None:
    gemini.script(Reply.text("Once upon a", finish_reason="MAX_TOKENS"))
    request: Any = {"model": "gemini-2.5-flash", "input": "Story", "max_output_tokens": 3}
    if stream:
        # As OpenAI does, the stream ends with response.incomplete, not response.completed.
        events = list(client(gateway).responses.create(**request, stream=True))
        assert events[-1].type == "response.incomplete"
        answer = events[-1].response
    else:
        answer = client(gateway).responses.create(**request)
    assert answer.status == "incomplete"
    assert answer.incomplete_details.reason == "max_output_tokens"
    assert answer.output_text == "Once upon a"


def test_upstream_rate_limit_is_openai_shaped(gateway: Gemgate, gemini: FakeGeminiAPI) -> None:
    gemini.script(Reply.error(429, retry_delay="7s"))
    with pytest.raises(openai.RateLimitError) as caught:
        client(gateway).responses.create(model="gemini-2.5-flash", input="Hi")
    assert caught.value.response.headers["retry-after"] == "7"
    assert caught.value.body["type"] == "rate_limit_error"  # type: ignore[index]
