"""OpenAI tools through the official SDK: declarations, tool_choice, tool results, built-in
tools and thought signatures on Gemini 3 across two rounds."""

from __future__ import annotations

import json
from typing import Any

import pytest

from tests.fakes.gemini_api import FakeGeminiAPI, Reply
from tests.harness import Gemgate
from tests.openai_sdk import client, collect_stream

WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Weather for a city",
        "parameters": {
            "$schema": "http://json-schema.org/draft-07/schema#",
            "type": "object",
            "properties": {
                "city": {"type": "string"},
                "unit": {"$ref": "#/$defs/Unit"},
            },
            "required": ["city"],
            "additionalProperties": False,
            "$defs": {"Unit": {"type": ["string", "null"], "enum": ["C", "F"]}},
        },
        "strict": True,
    },
}
TIME = {
    "type": "function",
    "function": {"name": "get_time", "parameters": {"type": "object", "properties": {}}},
}
CALL = {"functionCall": {"name": "get_weather", "args": {"city": "Paris"}}}
QUESTION = {"role": "user", "content": "Weather in Paris?"}


def test_tools_are_declared_with_cleaned_schemas(gateway: Gemgate, gemini: FakeGeminiAPI) -> None:
    client(gateway).chat.completions.create(
        model="gemini-2.5-flash", messages=[QUESTION], tools=[WEATHER, TIME]
    )
    body = gemini.requests[-1].body
    declarations = body["tools"][0]["functionDeclarations"]
    assert [d["name"] for d in declarations] == ["get_weather", "get_time"]
    schema = declarations[0]["parametersJsonSchema"]
    assert schema["properties"]["unit"] == {"type": "string", "nullable": True, "enum": ["C", "F"]}
    assert "$schema" not in schema and "$defs" not in schema
    assert "strict" not in json.dumps(declarations)
    assert "toolConfig" not in body


@pytest.mark.parametrize(
    ("choice", "config"),
    [
        ("auto", None),
        ("none", {"mode": "NONE"}),
        ("required", {"mode": "ANY"}),
        (
            {"type": "function", "function": {"name": "get_time"}},
            {"mode": "ANY", "allowedFunctionNames": ["get_time"]},
        ),
        (
            {
                "type": "allowed_tools",
                "allowed_tools": {
                    "mode": "required",
                    "tools": [{"type": "function", "function": {"name": "get_weather"}}],
                },
            },
            {"mode": "ANY", "allowedFunctionNames": ["get_weather"]},
        ),
    ],
)
def test_tool_choice(gateway: Gemgate, gemini: FakeGeminiAPI, choice: Any, config: Any) -> None:
    client(gateway).chat.completions.create(
        model="gemini-2.5-flash", messages=[QUESTION], tools=[WEATHER, TIME], tool_choice=choice
    )
    body = gemini.requests[-1].body
    assert body.get("toolConfig") == (config and {"functionCallingConfig": config})


def test_allowed_tools_auto_offers_only_the_allowed(
    gateway: Gemgate, gemini: FakeGeminiAPI
) -> None:
    client(gateway).chat.completions.create(
        model="gemini-2.5-flash",
        messages=[QUESTION],
        tools=[WEATHER, TIME],
        tool_choice={
            "type": "allowed_tools",
            "allowed_tools": {
                "mode": "auto",
                "tools": [{"type": "function", "function": {"name": "get_time"}}],
            },
        },
    )
    body = gemini.requests[-1].body
    assert [d["name"] for d in body["tools"][0]["functionDeclarations"]] == ["get_time"]
    assert "toolConfig" not in body


@pytest.mark.parametrize("stream", [False, True])
def test_tool_calls_come_back_with_ids_and_json_arguments(
    gateway: Gemgate, gemini: FakeGeminiAPI, stream: bool
) -> None:
    gemini.script(
        Reply.parts(
            [
                {"text": "Checking."},
                CALL,
                {"functionCall": {"name": "get_time", "args": {}}},
            ]
        )
    )
    calls = _ask(gateway, "gemini-2.5-flash", [QUESTION], stream)
    assert [c["name"] for c in calls["tool_calls"]] == ["get_weather", "get_time"]
    assert json.loads(calls["tool_calls"][0]["arguments"]) == {"city": "Paris"}
    assert calls["tool_calls"][0]["id"] != calls["tool_calls"][1]["id"]
    assert calls["content"] == "Checking."
    assert calls["finish"] == "tool_calls"


def test_tool_results_are_ordered_like_the_calls_and_completed(
    gateway: Gemgate, gemini: FakeGeminiAPI
) -> None:
    history: list[Any] = [
        QUESTION,
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                _call("call_a", "get_weather", {"city": "Paris"}),
                _call("call_b", "get_time", {}),
                _call("call_c", "get_weather", {"city": "Rome"}),
            ],
        },
        # Answered out of order, and call_b never answered.
        {"role": "tool", "tool_call_id": "call_c", "content": '{"temp": 30}'},
        {"role": "tool", "tool_call_id": "call_a", "content": "sunny"},
    ]
    answer = client(gateway).chat.completions.create(
        model="gemini-2.5-flash", messages=history, tools=[WEATHER, TIME]
    )
    assert answer.choices[0].message.content
    contents = gemini.requests[-1].body["contents"]
    assert [c["role"] for c in contents] == ["user", "model", "user"]
    assert [p["functionCall"]["name"] for p in contents[1]["parts"]] == [
        "get_weather",
        "get_time",
        "get_weather",
    ]
    responses = [p["functionResponse"] for p in contents[2]["parts"]]
    assert responses == [
        {"name": "get_weather", "response": {"output": "sunny"}},
        {"name": "get_time", "response": {"error": "tool result missing"}},
        {"name": "get_weather", "response": {"output": {"temp": 30}}},
    ]
    assert '"id"' not in json.dumps(contents[1]) and '"id"' not in json.dumps(contents[2])


# -- thought signatures on Gemini 3: round one gets a call, round two sends it back ------------

MODEL3 = "gemini-3-flash-preview"


def _keep_all(call: dict[str, Any]) -> dict[str, Any]:
    return call


def _drop_extra_fields(call: dict[str, Any]) -> dict[str, Any]:
    # Most clients: keep the id, forget fields they do not know.
    return {k: v for k, v in call.items() if k != "extra_content"}


def _short_ids(call: dict[str, Any]) -> dict[str, Any]:
    # A client that stores short ids: only what precedes gemgate's embedded signature.
    return {**_drop_extra_fields(call), "id": call["id"].split("__sig_")[0]}


def _new_ids(call: dict[str, Any]) -> dict[str, Any]:
    # A client that makes up its own ids and keeps nothing else.
    return {**_drop_extra_fields(call), "id": "call_from_client_1"}


def _new_ids_keep_extra(call: dict[str, Any]) -> dict[str, Any]:
    return {**call, "id": "call_from_client_2"}


@pytest.mark.parametrize("stream", [False, True])
@pytest.mark.parametrize(
    ("client_kind", "expect"),
    [
        (_keep_all, "issued"),
        (_drop_extra_fields, "issued"),  # the signature rides in the id
        (_short_ids, "issued"),  # the server's cache
        (_new_ids_keep_extra, "issued"),  # extra_content.google.thought_signature
        (_new_ids, "sentinel"),  # nothing left: Google's bypass value
    ],
)
def test_two_round_tool_use_on_gemini_3(
    gateway: Gemgate, gemini: FakeGeminiAPI, stream: bool, client_kind: Any, expect: str
) -> None:
    gemini.script(Reply.parts([CALL]))
    first = _ask(gateway, MODEL3, [QUESTION], stream)
    issued = gemini.requests[-1]  # round one
    (call,) = first["tool_calls"]
    signature = call["extra_content"]["google"]["thought_signature"]
    assert signature  # Google's compat field, as sent by the fake

    replayed = client_kind(_as_message_call(call))
    gemini.script(Reply.text("It is sunny in Paris."))
    second = _ask(
        gateway,
        MODEL3,
        [
            QUESTION,
            {"role": "assistant", "content": None, "tool_calls": [replayed]},
            {"role": "tool", "tool_call_id": replayed["id"], "content": "sunny, 21C"},
        ],
        stream,
    )
    assert second["content"] == "It is sunny in Paris."  # the fake accepted the signature
    sent = gemini.requests[-1].body["contents"]
    assert issued is not gemini.requests[-1]
    model_turn = sent[1]["parts"][0]
    want = signature if expect == "issued" else "skip_thought_signature_validator"
    assert model_turn["thoughtSignature"] == want
    assert model_turn["functionCall"] == {"name": "get_weather", "args": {"city": "Paris"}}
    assert sent[2]["parts"] == [
        {"functionResponse": {"name": "get_weather", "response": {"output": "sunny, 21C"}}}
    ]


def test_a_lost_signature_without_bypass_would_be_refused(
    gateway: Gemgate, gemini: FakeGeminiAPI
) -> None:
    """The fake really checks: a made-up signature on Gemini 3 is a 400 the client sees."""
    import openai

    bad = {**_call("call_x", "get_weather", {"city": "Paris"})}
    bad["extra_content"] = {"google": {"thought_signature": "bm90LWEtcmVhbC1zaWduYXR1cmU="}}
    with pytest.raises(openai.BadRequestError) as caught:
        client(gateway).chat.completions.create(
            model=MODEL3,
            messages=[
                QUESTION,
                {"role": "assistant", "content": None, "tool_calls": [bad]},
                {"role": "tool", "tool_call_id": "call_x", "content": "sunny"},
            ],
        )
    assert "Thought signature is not valid" in str(caught.value)


# -- built-in tools ---------------------------------------------------------------------------


def test_builtin_tools_by_name_and_web_search_options(
    gateway: Gemgate, gemini: FakeGeminiAPI
) -> None:
    tools: Any = [
        WEATHER,
        {"type": "function", "function": {"name": "googleSearch"}},
        {"type": "function", "function": {"name": "code_execution"}},
        {"type": "function", "function": {"name": "urlContext"}},
    ]
    client(gateway).chat.completions.create(
        model="gemini-2.5-flash", messages=[QUESTION], tools=tools
    )
    assert gemini.requests[-1].body["tools"] == [
        {"functionDeclarations": [gemini.requests[-1].body["tools"][0]["functionDeclarations"][0]]},
        {"googleSearch": {}},
        {"codeExecution": {}},
        {"urlContext": {}},
    ]
    client(gateway).chat.completions.create(
        model="gemini-2.5-flash", messages=[QUESTION], web_search_options={}
    )
    assert gemini.requests[-1].body["tools"] == [{"googleSearch": {}}]


@pytest.mark.parametrize("stream", [False, True])
def test_executed_code_is_shown(gateway: Gemgate, gemini: FakeGeminiAPI, stream: bool) -> None:
    gemini.script(
        Reply.parts(
            [
                {"text": "Let me compute."},
                {"executableCode": {"language": "PYTHON", "code": "print(2 + 2)"}},
                {"codeExecutionResult": {"outcome": "OUTCOME_OK", "output": "4\n"}},
                {"text": "The answer is 4."},
            ]
        )
    )
    tools: Any = [{"type": "function", "function": {"name": "codeExecution"}}]
    answer = _ask(gateway, "gemini-2.5-flash", [{"role": "user", "content": "2+2?"}], stream, tools)
    assert "```python\nprint(2 + 2)\n```" in answer["content"]
    assert "```\n4\n\n```" in answer["content"]
    assert answer["content"].startswith("Let me compute.")
    assert answer["content"].endswith("The answer is 4.")
    assert answer["finish"] == "stop"


GROUNDED = [
    {"candidates": [{"content": {"role": "model", "parts": [{"text": "Paris is "}]}, "index": 0}]},
    {
        "candidates": [
            {
                "content": {"role": "model", "parts": [{"text": "sunny today."}]},
                "finishReason": "STOP",
                "index": 0,
                "groundingMetadata": {
                    "webSearchQueries": ["paris weather"],
                    "groundingChunks": [
                        {"web": {"uri": "https://weather.example/paris", "title": "Paris"}},
                        {"web": {"uri": "https://news.example/today", "title": "News"}},
                    ],
                    "groundingSupports": [
                        {
                            "segment": {"startIndex": 0, "endIndex": 21, "text": "x"},
                            "groundingChunkIndices": [0],
                        }
                    ],
                },
            }
        ],
        "usageMetadata": {"promptTokenCount": 5, "candidatesTokenCount": 4, "totalTokenCount": 9},
    },
]


@pytest.mark.parametrize("stream", [False, True])
def test_search_grounding_becomes_citations(
    gateway: Gemgate, gemini: FakeGeminiAPI, stream: bool
) -> None:
    gemini.script(Reply.chunks(GROUNDED))
    tools: Any = [{"type": "function", "function": {"name": "google_search"}}]
    answer = _ask(gateway, "gemini-2.5-flash", [QUESTION], stream, tools)
    content = answer["content"]
    assert content.startswith("Paris is sunny today.")
    assert "1. [Paris](https://weather.example/paris)" in content
    assert "2. [News](https://news.example/today)" in content
    citations = [a["url_citation"] for a in answer["annotations"]]
    assert [c["url"] for c in citations] == [
        "https://weather.example/paris",
        "https://news.example/today",
    ]
    first = citations[0]
    assert content[first["start_index"] : first["end_index"]] == (
        "1. [Paris](https://weather.example/paris)"
    )


# -- helpers ----------------------------------------------------------------------------------


def _call(call_id: str, name: str, args: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": call_id,
        "type": "function",
        "function": {"name": name, "arguments": json.dumps(args)},
    }


def _as_message_call(call: dict[str, Any]) -> dict[str, Any]:
    out = _call(call["id"], call["name"], json.loads(call["arguments"]))
    if "extra_content" in call:
        out["extra_content"] = call["extra_content"]
    return out


def _ask(
    gateway: Gemgate,
    model: str,
    messages: list[Any],
    stream: bool,
    tools: Any = None,
) -> dict[str, Any]:
    """One request, streamed or not, boiled down to what the user sees."""
    tools = tools if tools is not None else [WEATHER, TIME]
    sdk = client(gateway)
    if stream:
        got = collect_stream(
            sdk.chat.completions.create(model=model, messages=messages, tools=tools, stream=True)
        )
        got["tool_calls"] = [got["tool_calls"][i] for i in sorted(got["tool_calls"])]
        return got
    answer = sdk.chat.completions.create(model=model, messages=messages, tools=tools)
    message = answer.choices[0].message
    extra = message.model_extra or {}
    return {
        "content": message.content or "",
        "finish": answer.choices[0].finish_reason,
        "annotations": [a.model_dump() for a in message.annotations or ()]
        or extra.get("annotations", []),
        "tool_calls": [
            {
                "id": c.id,
                "name": c.function.name,
                "arguments": c.function.arguments,
                **({"extra_content": c.model_extra["extra_content"]} if c.model_extra else {}),
            }
            for c in message.tool_calls or ()
        ],
    }
