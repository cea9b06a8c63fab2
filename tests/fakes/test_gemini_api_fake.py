"""Checks that the fake Gemini API behaves like the real one where gateway tests depend on it."""

from __future__ import annotations

import base64
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from typing import Any

import aiohttp
import orjson
import pytest

from tests.fakes.gemini_api import AUTO_SIGNATURE, FakeGeminiAPI, Reply

KEY = "key-a"
USER_HI = {"role": "user", "parts": [{"text": "Hi"}]}


@pytest.fixture
def fake() -> Iterator[FakeGeminiAPI]:
    with FakeGeminiAPI(keys={KEY, "key-b"}) as server:
        yield server


def call(
    fake: FakeGeminiAPI,
    path: str,
    body: Any = None,
    *,
    key: str | None = KEY,
    method: str | None = None,
) -> tuple[int, dict[str, str], bytes]:
    headers = {"Content-Type": "application/json"}
    if key is not None:
        headers["x-goog-api-key"] = key
    data = orjson.dumps(body) if body is not None else None
    request = urllib.request.Request(
        fake.base_url + path,
        data=data,
        headers=headers,
        method=method or ("POST" if data is not None else "GET"),
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as resp:
            return resp.status, dict(resp.headers), resp.read()
    except urllib.error.HTTPError as err:
        return err.code, dict(err.headers), err.read()


def generate(
    fake: FakeGeminiAPI, body: dict[str, Any], model: str = "gemini-2.5-flash", **kwargs: Any
) -> tuple[int, Any]:
    status, _, raw = call(fake, f"/v1beta/models/{model}:generateContent", body, **kwargs)
    return status, orjson.loads(raw)


def sse_events(raw: bytes) -> list[dict[str, Any]]:
    assert raw.endswith(b"\r\n\r\n")
    frames = raw.split(b"\r\n\r\n")[:-1]
    assert all(frame.startswith(b"data: ") and b"\n" not in frame for frame in frames)
    return [orjson.loads(frame[len(b"data: ") :]) for frame in frames]


def text_of(response: dict[str, Any]) -> str:
    parts = response["candidates"][0]["content"]["parts"]
    return "".join(p.get("text", "") for p in parts if not p.get("thought"))


# ---- auth -----------------------------------------------------------------------------------


def test_auth_missing_invalid_and_query_key(fake: FakeGeminiAPI) -> None:
    body = {"contents": [USER_HI]}
    status, err = generate(fake, body, key=None)
    assert status == 403 and err["error"]["status"] == "PERMISSION_DENIED"
    assert err["error"]["message"].startswith("Method doesn't allow unregistered callers")

    status, err = generate(fake, body, key="nope")
    assert status == 400 and err["error"]["status"] == "INVALID_ARGUMENT"
    assert err["error"]["message"] == "API key not valid. Please pass a valid API key."
    info = err["error"]["details"][0]
    assert info["reason"] == "API_KEY_INVALID" and info["domain"] == "googleapis.com"

    status, _, _ = call(
        fake, f"/v1beta/models/gemini-2.5-flash:generateContent?key={KEY}", body, key=None
    )
    assert status == 200
    assert [r.api_key for r in fake.requests] == [None, "nope", KEY]


def test_auth_is_checked_before_scripts_are_consumed(fake: FakeGeminiAPI) -> None:
    fake.script(Reply.error(500))
    assert generate(fake, {"contents": [USER_HI]}, key="wrong")[0] == 400
    assert generate(fake, {"contents": [USER_HI]})[0] == 500
    assert generate(fake, {"contents": [USER_HI]})[0] == 200


# ---- models -----------------------------------------------------------------------------------


def test_models_list_pagination_and_get(fake: FakeGeminiAPI) -> None:
    names: list[str] = []
    token = ""
    pages = 0
    while True:
        status, _, raw = call(fake, f"/v1beta/models?pageSize=3&pageToken={token}")
        assert status == 200
        page = orjson.loads(raw)
        names += [m["name"] for m in page["models"]]
        pages += 1
        if "nextPageToken" not in page:
            break
        token = page["nextPageToken"]
    assert names == [m["name"] for m in fake.models] and pages == -(-len(names) // 3)
    for wanted in (
        "gemini-2.5-flash",
        "gemini-2.5-pro",
        "gemini-2.5-flash-lite",
        "gemini-3-flash-preview",
        "gemini-3-pro-preview",
        "gemini-2.5-flash-image",
    ):
        assert f"models/{wanted}" in names

    status, _, raw = call(fake, "/v1beta/models/gemini-2.5-pro")
    assert status == 200 and orjson.loads(raw)["baseModelId"] == "gemini-2.5-pro"
    status, _, raw = call(fake, "/v1beta/models/gemini-9")
    assert status == 404 and orjson.loads(raw)["error"]["status"] == "NOT_FOUND"


def test_unknown_model_on_generate(fake: FakeGeminiAPI) -> None:
    status, err = generate(fake, {"contents": [USER_HI]}, model="gemini-9-ultra")
    assert status == 404
    assert err["error"]["message"] == (
        "models/gemini-9-ultra is not found for API version v1beta, or is not supported for "
        "generateContent. Call ListModels to see the list of available models and their "
        "supported methods."
    )
    # the models/ prefix in the path is tolerated
    assert generate(fake, {"contents": [USER_HI]}, model="models/gemini-2.5-flash")[0] == 200


# ---- request strictness -------------------------------------------------------------------------


def test_unknown_field_message_and_bad_request_detail(fake: FakeGeminiAPI) -> None:
    status, err = generate(fake, {"contents": [USER_HI], "generation_config": {"foo": 1}})
    assert status == 400
    message = (
        "Invalid JSON payload received. Unknown name \"foo\" at 'generation_config': "
        "Cannot find field."
    )
    assert err["error"]["message"] == message
    assert err["error"]["details"][0] == {
        "@type": "type.googleapis.com/google.rpc.BadRequest",
        "fieldViolations": [{"field": "generation_config", "description": message}],
    }


@pytest.mark.parametrize(
    "extra",
    [
        {"model": "gemini-2.5-flash"},
        {"messages": []},
        {"generationConfig": {"max_tokens": 5}},
        {"generationConfig": {"thinkingConfig": {"reasoning_effort": "low"}}},
        {"toolConfig": {"functionCallingConfig": {"mode": "ANY", "tool_choice": "x"}}},
        {"tools": [{"function": {"name": "f"}}]},
        {"tools": [{"codeExecution": {"x": 1}}]},
        {"tools": [{"functionDeclarations": [{"name": "f", "strict": True}]}]},
        {"safetySettings": [{"category": "HARM_CATEGORY_JAILBREAK", "threshold": "OFF"}]},
    ],
)
def test_rejects_unknown_or_invalid_fields(fake: FakeGeminiAPI, extra: dict[str, Any]) -> None:
    status, err = generate(fake, {"contents": [USER_HI], **extra})
    assert status == 400, err
    assert err["error"]["status"] == "INVALID_ARGUMENT"


def test_accepts_camel_and_snake_case(fake: FakeGeminiAPI) -> None:
    body = {
        "system_instruction": {"parts": [{"text": "Be terse."}]},
        "contents": [
            {
                "role": "user",
                "parts": [
                    {"text": "look"},
                    {"inline_data": {"mime_type": "image/png", "data": "iVBORw0K"}},
                    {"fileData": {"mimeType": "application/pdf", "fileUri": "https://x/files/a"}},
                ],
            }
        ],
        "tools": [
            {
                "function_declarations": [
                    {
                        "name": "get_weather",
                        "description": "d",
                        "parameters": {
                            "type": "object",
                            "properties": {
                                # property names are free, even ones that look like schema keywords
                                "$schema": {"type": "string"},
                                "additionalProperties": {"type": "integer"},
                            },
                            "required": ["$schema"],
                            "property_ordering": ["$schema"],
                        },
                    }
                ]
            },
            {"googleSearch": {}},
            {"url_context": {}},
        ],
        "tool_config": {"function_calling_config": {"mode": "auto"}},
        "safety_settings": [{"category": "HARM_CATEGORY_HARASSMENT", "threshold": "BLOCK_NONE"}],
        "generation_config": {
            "max_output_tokens": 100,
            "temperature": 0.5,
            "stop_sequences": ["x"] * 5,
            "thinking_config": {"include_thoughts": True, "thinking_budget": 128},
            "response_mime_type": "application/json",
            "response_json_schema": {"$schema": "x", "additionalProperties": False},
        },
    }
    status, resp = generate(fake, body)
    assert status == 200, resp
    assert fake.requests[-1].body == body


@pytest.mark.parametrize(
    ("schema_key", "value"),
    [
        ("$schema", "http://json-schema.org/draft-07/schema#"),
        ("additionalProperties", False),
        ("const", "x"),
        ("exclusiveMinimum", 0),
    ],
)
def test_openapi_schema_subset_is_strict_recursively(
    fake: FakeGeminiAPI, schema_key: str, value: Any
) -> None:
    nested = {
        "type": "object",
        "properties": {
            "city": {
                "type": "object",
                "properties": {"name": {"type": "string", schema_key: value}},
            }
        },
    }
    decl = {"name": "f", "parameters": nested}
    status, err = generate(
        fake, {"contents": [USER_HI], "tools": [{"functionDeclarations": [decl]}]}
    )
    assert status == 400
    assert err["error"]["message"] == (
        f'Invalid JSON payload received. Unknown name "{schema_key}" at \'tools[0].function_'
        "declarations[0].parameters.properties[0].value.properties[0].value': Cannot find field."
    )
    # the same schema is fine as parametersJsonSchema, which is tolerant
    decl = {"name": "f", "parametersJsonSchema": nested}
    assert (
        generate(fake, {"contents": [USER_HI], "tools": [{"functionDeclarations": [decl]}]})[0]
        == 200
    )


def test_rejects_id_on_function_call_and_response(fake: FakeGeminiAPI) -> None:
    contents: list[dict[str, Any]] = [
        USER_HI,
        {"role": "model", "parts": [{"functionCall": {"id": "c1", "name": "f", "args": {}}}]},
        {"role": "user", "parts": [{"functionResponse": {"name": "f", "response": {}}}]},
    ]
    status, err = generate(fake, {"contents": contents})
    assert status == 400
    assert "Unknown name \"id\" at 'contents[1].parts[0].function_call'" in err["error"]["message"]
    contents[1]["parts"][0]["functionCall"].pop("id")
    contents[2]["parts"][0]["functionResponse"]["id"] = "c1"
    assert generate(fake, {"contents": contents})[0] == 400
    contents[2]["parts"][0]["functionResponse"].pop("id")
    assert generate(fake, {"contents": contents})[0] == 200


@pytest.mark.parametrize(
    "body",
    [
        {},
        {"contents": []},
        {"contents": [{"role": "assistant", "parts": [{"text": "x"}]}]},
        {"contents": [{"role": "user", "parts": []}]},
        {"contents": [{"role": "user", "parts": [{"thoughtSignature": "AAAA"}]}]},
        {"contents": [{"role": "user", "parts": [{"text": "a", "inlineData": {"data": "AA=="}}]}]},
        {"contents": [{"role": "user", "parts": [{"text": 5}]}]},
        {
            "contents": [USER_HI],
            "generationConfig": {
                "thinkingConfig": {"thinkingBudget": 1024, "thinkingLevel": "low"}
            },
        },
        {"contents": [USER_HI], "generationConfig": {"stopSequences": ["a"] * 6}},
        {
            "contents": [USER_HI],
            "generationConfig": {
                "responseMimeType": "application/json",
                "responseSchema": {"type": "STRING"},
                "responseJsonSchema": {"type": "string"},
            },
        },
        {
            "contents": [USER_HI],
            "generationConfig": {
                "responseSchema": {"type": ["string", "null"]},
                "responseMimeType": "application/json",
            },
        },
        {
            "contents": [USER_HI],
            "tools": [
                {
                    "functionDeclarations": [
                        {"name": "f", "parameters": {"type": "OBJECT"}, "parametersJsonSchema": {}}
                    ]
                }
            ],
        },
        {"contents": [USER_HI], "tools": [{"functionDeclarations": [{"name": "9bad name"}]}]},
    ],
)
def test_rejects_invalid_requests(fake: FakeGeminiAPI, body: dict[str, Any]) -> None:
    status, err = generate(fake, body)
    assert status == 400, err
    assert err["error"]["code"] == 400 and err["error"]["status"] == "INVALID_ARGUMENT"


def test_function_response_count_must_match_calls(fake: FakeGeminiAPI) -> None:
    call_part = {"functionCall": {"name": "f", "args": {"x": 1}}}
    reply_part = {"functionResponse": {"name": "f", "response": {"output": 1}}}
    contents: list[dict[str, Any]] = [
        USER_HI,
        {"role": "model", "parts": [call_part, call_part]},
        {"role": "user", "parts": [reply_part]},
    ]
    status, err = generate(fake, {"contents": contents})
    assert status == 400
    assert "number of function response parts is equal" in err["error"]["message"]
    contents[2]["parts"].append(reply_part)
    assert generate(fake, {"contents": contents})[0] == 200


# ---- Gemini 3 thought signatures ----------------------------------------------------------------


def tool_history(signature: str | None, name: str = "get_weather") -> list[dict[str, Any]]:
    first: dict[str, Any] = {"functionCall": {"name": name, "args": {"city": "Paris"}}}
    if signature is not None:
        first["thoughtSignature"] = signature
    return [
        {"role": "user", "parts": [{"text": "Weather in Paris and Rome?"}]},
        {"role": "model", "parts": [first, {"functionCall": {"name": name, "args": {}}}]},
        {"role": "user", "parts": [{"functionResponse": {"name": name, "response": {}}}] * 2},
    ]


def test_gemini3_missing_signature_exact_message(fake: FakeGeminiAPI) -> None:
    status, err = generate(fake, {"contents": tool_history(None)}, model="gemini-3-pro-preview")
    assert status == 400
    assert err["error"]["message"] == (
        "Function call is missing a thought_signature in functionCall parts. This is required for "
        "tools to work correctly, and missing thought_signature may lead to degraded model "
        "performance. Additional data, function call `default_api:get_weather` , position 2. "
        "Please refer to https://ai.google.dev/gemini-api/docs/thought-signatures for more "
        "details."
    )
    # 2.5 models do not enforce signatures
    assert generate(fake, {"contents": tool_history(None)})[0] == 200
    # only the current turn is validated
    later = [*tool_history(None), {"role": "model", "parts": [{"text": "Sunny."}]}, USER_HI]
    assert generate(fake, {"contents": later}, model="gemini-3-pro-preview")[0] == 200


@pytest.mark.parametrize(
    ("make", "ok"),
    [
        (lambda fake: "skip_thought_signature_validator", True),
        (lambda fake: "context_engineering_is_the_way_to_go", True),
        (lambda fake: fake.issue_signature("gemini-3-pro-preview"), True),
        (lambda fake: fake.issue_signature("gemini-3-pro-preview").rstrip("="), True),
        (lambda fake: base64.b64encode(b"skip_thought_signature_validator").decode(), False),
        (lambda fake: fake.issue_signature("gemini-3-flash-preview"), False),
        (lambda fake: base64.b64encode(b"fake-sig:gemini-3-pro-preview:forged").decode(), False),
        (lambda fake: "CtwBAdHtim9sdXRpb25fc2lnbmF0dXJl", False),
    ],
)
def test_gemini3_signature_validity(fake: FakeGeminiAPI, make: Any, ok: bool) -> None:
    body = {"contents": tool_history(make(fake))}
    status, err = generate(fake, body, model="gemini-3-pro-preview")
    if ok:
        assert status == 200, err
    else:
        assert status == 400 and err["error"]["message"] == "Thought signature is not valid"


def test_gemini3_function_call_reply_is_signed_and_round_trips(fake: FakeGeminiAPI) -> None:
    model = "gemini-3-flash-preview"
    fake.script(
        Reply.parts(
            [
                {"functionCall": {"name": "get_weather", "args": {"city": "P"}}},
                {"functionCall": {"name": "get_weather", "args": {"city": "R"}}},
            ]
        )
    )
    status, resp = generate(fake, {"contents": [tool_history(None)[0]]}, model=model)
    assert status == 200
    parts = resp["candidates"][0]["content"]["parts"]
    signature = parts[0]["thoughtSignature"]
    assert "thoughtSignature" not in parts[1]
    assert base64.b64decode(signature).decode().startswith(f"fake-sig:{model}:")
    history = tool_history(signature)
    history[1]["parts"] = parts
    assert generate(fake, {"contents": history}, model=model)[0] == 200
    assert generate(fake, {"contents": history}, model="gemini-3-pro-preview")[0] == 400


# ---- responses and streaming --------------------------------------------------------------------


def test_default_reply_and_usage(fake: FakeGeminiAPI) -> None:
    status, resp = generate(fake, {"contents": [USER_HI]})
    assert status == 200
    assert text_of(resp) == "Hello from gemini-2.5-flash"
    assert resp["modelVersion"] == "gemini-2.5-flash" and resp["responseId"]
    assert resp["candidates"][0]["finishReason"] == "STOP"
    usage = resp["usageMetadata"]
    assert usage["totalTokenCount"] == usage["promptTokenCount"] + usage["candidatesTokenCount"]


def test_thoughts_only_with_include_thoughts(fake: FakeGeminiAPI) -> None:
    fake.always(Reply.text("Answer", thought="Let me think", signature=AUTO_SIGNATURE))
    status, resp = generate(fake, {"contents": [USER_HI]})
    assert status == 200
    parts = resp["candidates"][0]["content"]["parts"]
    assert [p.get("thought", False) for p in parts] == [False]
    assert resp["usageMetadata"]["thoughtsTokenCount"] > 0
    assert parts[-1]["thoughtSignature"]
    config = {"thinkingConfig": {"includeThoughts": True}}
    _, resp = generate(fake, {"contents": [USER_HI], "generationConfig": config})
    parts = resp["candidates"][0]["content"]["parts"]
    assert parts[0] == {"text": "Let me think", "thought": True}
    assert text_of(resp) == "Answer"


def test_sse_framing_chunks_and_cumulative_usage(fake: FakeGeminiAPI) -> None:
    fake.script(
        Reply.text("The quick brown fox jumps", chunks=4, thought="hmm", signature="c2lnbmF0dXJl")
    )
    body = {
        "contents": [USER_HI],
        "generationConfig": {"thinkingConfig": {"includeThoughts": True}},
    }
    status, headers, raw = call(
        fake, "/v1beta/models/gemini-2.5-flash:streamGenerateContent?alt=sse", body
    )
    assert status == 200 and headers["Content-Type"].startswith("text/event-stream")
    assert b"[DONE]" not in raw
    events = sse_events(raw)
    assert len(events) == 5  # one thought chunk, then the four text chunks
    assert events[0]["candidates"][0]["content"]["parts"] == [{"text": "hmm", "thought": True}]
    assert "".join(text_of(e) for e in events) == "The quick brown fox jumps"
    assert [("finishReason" in e["candidates"][0]) for e in events] == [False] * 4 + [True]
    assert events[-1]["candidates"][0]["content"]["parts"][-1] == {
        "text": "",
        "thoughtSignature": "c2lnbmF0dXJl",
    }
    totals = [e["usageMetadata"]["totalTokenCount"] for e in events]
    assert totals == sorted(totals) and totals[0] < totals[-1]
    assert len({e["responseId"] for e in events}) == 1
    assert {e["modelVersion"] for e in events} == {"gemini-2.5-flash"}


def test_default_stream_has_three_chunks(fake: FakeGeminiAPI) -> None:
    _, _, raw = call(
        fake,
        "/v1beta/models/gemini-2.5-flash:streamGenerateContent?alt=sse",
        {"contents": [USER_HI]},
    )
    events = sse_events(raw)
    assert len(events) == 3 and "".join(map(text_of, events)) == "Hello from gemini-2.5-flash"


def test_array_stream_without_alt(fake: FakeGeminiAPI) -> None:
    fake.script(Reply.text("one two three", chunks=3))
    status, headers, raw = call(
        fake, "/v1beta/models/gemini-2.5-flash:streamGenerateContent", {"contents": [USER_HI]}
    )
    assert status == 200 and headers["Content-Type"].startswith("application/json")
    assert raw.startswith(b"[{") and raw.endswith(b"}]")
    assert raw.count(b"}\n,\r\n{") == 0 and raw.count(b"},\r\n{") == 2
    assert b'\n  "candidates"' in raw  # pretty-printed: a line splitter must not cope
    items = orjson.loads(raw)
    assert len(items) == 3 and "".join(map(text_of, items)) == "one two three"
    # errors on this endpoint come wrapped in the array too
    fake.script(Reply.error(503))
    status, _, raw = call(
        fake, "/v1beta/models/gemini-2.5-flash:streamGenerateContent", {"contents": [USER_HI]}
    )
    assert status == 503 and orjson.loads(raw)[0]["error"]["status"] == "UNAVAILABLE"


async def test_stream_is_not_buffered(fake: FakeGeminiAPI) -> None:
    fake.script(Reply.text("abcdef", chunks=3, delay=0.3))
    url = fake.base_url + "/v1beta/models/gemini-2.5-flash:streamGenerateContent?alt=sse"
    arrivals: list[float] = []
    start = time.monotonic()
    async with (
        aiohttp.ClientSession() as session,
        session.post(url, json={"contents": [USER_HI]}, headers={"x-goog-api-key": KEY}) as resp,
    ):
        buffer = b""
        async for data in resp.content.iter_any():
            buffer += data
            while b"\r\n\r\n" in buffer:
                _, buffer = buffer.split(b"\r\n\r\n", 1)
                arrivals.append(time.monotonic() - start)
    assert len(arrivals) == 3
    assert arrivals[0] < 0.25 and arrivals[1] > 0.25 and arrivals[2] > 0.55


def test_chunks_reply_merges_for_unary(fake: FakeGeminiAPI) -> None:
    chunks: list[dict[str, Any]] = [
        {"candidates": [{"content": {"role": "model", "parts": [{"text": "Hel"}]}, "index": 0}]},
        {
            "candidates": [
                {
                    "content": {"role": "model", "parts": [{"text": "lo"}]},
                    "finishReason": "MAX_TOKENS",
                    "index": 0,
                }
            ],
            "usageMetadata": {"promptTokenCount": 3, "totalTokenCount": 5},
        },
    ]
    fake.script(Reply.chunks(chunks))
    _, resp = generate(fake, {"contents": [USER_HI]})
    assert resp["candidates"][0]["content"]["parts"] == [{"text": "Hello"}]
    assert resp["candidates"][0]["finishReason"] == "MAX_TOKENS"
    assert resp["usageMetadata"]["totalTokenCount"] == 5


def test_blocked_and_no_content_replies(fake: FakeGeminiAPI) -> None:
    fake.script(Reply.blocked("SAFETY"))
    fake.script(Reply.no_content())
    _, resp = generate(fake, {"contents": [USER_HI]})
    assert "candidates" not in resp and resp["promptFeedback"]["blockReason"] == "SAFETY"
    _, resp = generate(fake, {"contents": [USER_HI]})
    assert "content" not in resp["candidates"][0]
    assert resp["candidates"][0]["finishReason"] == "MAX_TOKENS"


# ---- scripting ----------------------------------------------------------------------------------


def test_script_matching_order_and_reset(fake: FakeGeminiAPI) -> None:
    fake.script(Reply.text("generic 1"))
    fake.script(Reply.text("generic 2"))
    fake.script(Reply.text("for b"), key="key-b")
    fake.script(Reply.text("for pro"), model="gemini-2.5-pro")
    fake.always(Reply.text("standing"))
    fake.always(Reply.text("standing b"), key="key-b")
    body = {"contents": [USER_HI]}
    assert text_of(generate(fake, body, key="key-b")[1]) == "for b"
    assert text_of(generate(fake, body, model="gemini-2.5-pro")[1]) == "generic 1"
    assert text_of(generate(fake, body, model="gemini-2.5-pro")[1]) == "generic 2"
    assert text_of(generate(fake, body, model="gemini-2.5-pro")[1]) == "for pro"
    assert text_of(generate(fake, body)[1]) == "standing"
    assert text_of(generate(fake, body, key="key-b")[1]) == "standing b"
    recorded = fake.requests[1]
    assert recorded.method == "POST" and recorded.model == "gemini-2.5-pro"
    assert recorded.path == "/v1beta/models/gemini-2.5-pro:generateContent"
    assert recorded.headers["x-goog-api-key"] == KEY and recorded.body == body
    fake.reset()
    assert fake.requests == []
    assert text_of(generate(fake, body)[1]) == "Hello from gemini-2.5-flash"


def test_rate_limit_error_shape(fake: FakeGeminiAPI) -> None:
    fake.script(Reply.error(429, retry_delay="7s"))
    status, err = generate(fake, {"contents": [USER_HI]})
    assert status == 429
    error = err["error"]
    assert error["status"] == "RESOURCE_EXHAUSTED" and error["code"] == 429
    assert error["message"].endswith("Please retry in 7s.")
    types = [d["@type"].rsplit(".", 1)[1] for d in error["details"]]
    assert types == ["QuotaFailure", "Help", "RetryInfo"]
    assert error["details"][2]["retryDelay"] == "7s"
    assert error["details"][0]["violations"][0]["quotaDimensions"]["model"] == "gemini-2.5-flash"


def test_default_error_messages(fake: FakeGeminiAPI) -> None:
    fake.script(Reply.error(503))
    fake.script(Reply.error(500, "boom", status_name="INTERNAL"))
    status, err = generate(fake, {"contents": [USER_HI]})
    assert (status, err["error"]["message"]) == (
        503,
        "The model is overloaded. Please try again later.",
    )
    assert "details" not in err["error"]
    status, err = generate(fake, {"contents": [USER_HI]})
    assert (status, err["error"]["message"], err["error"]["status"]) == (500, "boom", "INTERNAL")


def test_raw_reply_is_sent_byte_for_byte(fake: FakeGeminiAPI) -> None:
    page = "<html><body><h1>502 Bad Gateway</h1></body></html>"
    fake.script(Reply.raw(502, page))
    status, headers, raw = call(
        fake, "/v1beta/models/gemini-2.5-flash:generateContent", {"contents": [USER_HI]}
    )
    assert (status, raw.decode()) == (502, page)
    assert {k.lower(): v for k, v in headers.items()}["content-type"].startswith("text/html")


async def test_stall_and_disconnect(fake: FakeGeminiAPI) -> None:
    fake.script(Reply.stall(5))
    url = fake.base_url + "/v1beta/models/gemini-2.5-flash:streamGenerateContent?alt=sse"
    headers = {"x-goog-api-key": KEY}
    async with aiohttp.ClientSession() as session:
        with pytest.raises(TimeoutError):
            async with session.post(
                url,
                json={"contents": [USER_HI]},
                headers=headers,
                timeout=aiohttp.ClientTimeout(total=0.3),
            ) as resp:
                await resp.read()
        fake.script(Reply.disconnect_after(2))
        received = b""
        with pytest.raises(aiohttp.ClientPayloadError):
            async with session.post(url, json={"contents": [USER_HI]}, headers=headers) as resp:
                assert resp.status == 200
                async for data in resp.content.iter_any():
                    received += data
        assert received.count(b"data: ") == 2 and b"finishReason" not in received


def test_count_tokens_both_forms(fake: FakeGeminiAPI) -> None:
    contents = [{"role": "user", "parts": [{"text": "hello there, how are you today?"}]}]
    path = "/v1beta/models/gemini-2.5-flash:countTokens"
    status, _, raw = call(fake, path, {"contents": contents})
    assert status == 200
    plain = orjson.loads(raw)
    assert plain["totalTokens"] > 0 and plain["promptTokensDetails"][0]["modality"] == "TEXT"
    status, _, raw = call(
        fake,
        path,
        {
            "generateContentRequest": {
                "model": "models/gemini-2.5-flash",
                "contents": contents,
                "systemInstruction": {"parts": [{"text": "You are a very helpful assistant."}]},
            }
        },
    )
    assert status == 200 and orjson.loads(raw)["totalTokens"] > plain["totalTokens"]
    assert (
        call(fake, path, {"contents": contents, "generateContentRequest": {"contents": contents}})[
            0
        ]
        == 400
    )
    # the same prompt costs the same in generateContent usage
    _, resp = generate(fake, {"contents": contents})
    assert resp["usageMetadata"]["promptTokenCount"] == plain["totalTokens"]


def test_google_genai_sdk_talks_to_the_fake(fake: FakeGeminiAPI) -> None:
    genai = pytest.importorskip("google.genai")
    client = genai.Client(
        api_key=KEY, http_options={"base_url": fake.base_url, "api_version": "v1beta"}
    )
    fake.script(Reply.text("streamed answer", chunks=3))
    config = {
        "temperature": 0.2,
        "max_output_tokens": 50,
        "stop_sequences": ["END"],
        "thinking_config": {"include_thoughts": True, "thinking_budget": 512},
        "system_instruction": "Be brief.",
    }
    pieces = [
        c.text
        for c in client.models.generate_content_stream(
            model="gemini-2.5-flash", contents="Hi", config=config
        )
    ]
    assert "".join(p or "" for p in pieces) == "streamed answer" and len(pieces) == 3
    result = client.models.generate_content(model="gemini-2.5-flash", contents="Hi", config=config)
    assert result.text == "Hello from gemini-2.5-flash"
    assert client.models.count_tokens(model="gemini-2.5-flash", contents="Hi").total_tokens


# -- image models and Imagen ------------------------------------------------------------------


def _image_size(b64: str) -> tuple[int, int]:
    import io

    from PIL import Image

    with Image.open(io.BytesIO(base64.b64decode(b64))) as image:
        return image.size


@pytest.mark.parametrize(
    ("model", "image_config", "size"),
    [
        ("gemini-2.5-flash-image", None, (1024, 1024)),
        ("gemini-2.5-flash-image", {"aspectRatio": "16:9"}, (1344, 768)),
        ("gemini-3-pro-image-preview", {"aspectRatio": "3:2", "imageSize": "2K"}, (2496, 1664)),
        ("gemini-3-pro-image-preview", {"aspectRatio": "8:1"}, (3072, 384)),
    ],
)
def test_image_models_make_the_shape_asked(
    fake: FakeGeminiAPI, model: str, image_config: Any, size: tuple[int, int]
) -> None:
    config: dict[str, Any] = {"responseModalities": ["IMAGE"]}
    if image_config:
        config["imageConfig"] = image_config
    status, body = generate(fake, {"contents": [USER_HI], "generationConfig": config}, model)
    assert status == 200
    parts = body["candidates"][0]["content"]["parts"]
    images = [p["inlineData"] for p in parts if "inlineData" in p]
    assert _image_size(images[0]["data"]) == size


@pytest.mark.parametrize(
    ("model", "config", "words"),
    [
        ("gemini-2.5-flash-image", {"imageConfig": {"imageSize": "2K"}}, "image_size"),
        ("gemini-2.5-flash-image", {"imageConfig": {"aspectRatio": "8:1"}}, "aspect ratio"),
        ("gemini-3-pro-image-preview", {"imageConfig": {"imageSize": "3K"}}, "image_size"),
        ("gemini-2.5-flash", {"responseModalities": ["IMAGE"]}, "modalities"),
        ("gemini-2.5-flash", {"imageConfig": {"aspectRatio": "1:1"}}, "image_config"),
    ],
)
def test_image_settings_a_model_rejects(
    fake: FakeGeminiAPI, model: str, config: dict[str, Any], words: str
) -> None:
    status, body = generate(fake, {"contents": [USER_HI], "generationConfig": config}, model)
    assert status == 400 and words in body["error"]["message"]


def test_imagen_predicts(fake: FakeGeminiAPI) -> None:
    path = "/v1beta/models/imagen-4.0-generate-001:predict"
    body = {
        "instances": [{"prompt": "a fox"}],
        "parameters": {"sampleCount": 2, "aspectRatio": "9:16"},
    }
    status, _, raw = call(fake, path, body)
    assert status == 200
    predictions = orjson.loads(raw)["predictions"]
    assert [_image_size(p["bytesBase64Encoded"]) for p in predictions] == [(768, 1408)] * 2
    fake.script(Reply.filtered("The prompt may violate our policies."))
    status, _, raw = call(fake, path, {**body, "parameters": {"includeRaiReason": True}})
    assert orjson.loads(raw)["predictions"][0]["raiFilteredReason"].startswith("The prompt")


@pytest.mark.parametrize(
    ("path", "body", "status"),
    [
        ("imagen-4.0-generate-001:predict", {"instances": [{"prompt": "x"}], "extra": 1}, 400),
        ("imagen-4.0-generate-001:predict", {"instances": [{"prompt": "x", "image": {}}]}, 400),
        (
            "imagen-4.0-generate-001:predict",
            {"instances": [{"prompt": "x"}], "parameters": {"aspectRatio": "3:2"}},
            400,
        ),
        (
            "imagen-4.0-generate-001:predict",
            {"instances": [{"prompt": "x"}], "parameters": {"sampleCount": 5}},
            400,
        ),
        ("imagen-4.0-generate-001:generateContent", {"contents": [USER_HI]}, 404),
        ("gemini-2.5-flash:predict", {"instances": [{"prompt": "x"}]}, 404),
    ],
)
def test_predict_is_strict(fake: FakeGeminiAPI, path: str, body: Any, status: int) -> None:
    assert call(fake, f"/v1beta/models/{path}", body)[0] == status
