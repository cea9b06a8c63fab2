"""Bad input is a 400 in the client's own shape that names the field and says what is wrong
with it, never a 500: the inputs that used to crash gemgate, wrong types, absurd nesting. And
whatever bug is left still answers as JSON in the client's shape, with the request id."""

from __future__ import annotations

import http.client
import json
import logging
from types import SimpleNamespace
from typing import Any

import anthropic
import openai
import orjson
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from gemgate.api.front_door import FrontDoor
from gemgate.api.uncaught import starlette_handler
from gemgate.channels import _gemini_wire as wire
from gemgate.errors import InvalidRequest
from gemgate.formats.gemini_native import GeminiNative
from tests.fakes.gemini_api import FakeGeminiAPI
from tests.harness import Gemgate
from tests.openai_sdk import client as openai_client

HI = [{"role": "user", "content": "hi"}]


def nested(depth: int, leaf: Any = 1) -> Any:
    value = leaf
    for _ in range(depth):
        value = {"x": value}
    return value


def post(gateway: Gemgate, path: str, body: bytes) -> tuple[int, str, Any]:
    conn = http.client.HTTPConnection("127.0.0.1", gateway.port, timeout=30)
    key = gateway.client_key  # type: ignore[attr-defined]
    conn.request(
        "POST",
        path,
        body=body,
        headers={"content-type": "application/json", "x-api-key": key, "x-goog-api-key": key},
    )
    response = conn.getresponse()
    raw = response.read()
    conn.close()
    return response.status, response.getheader("content-type") or "", json.loads(raw)


def anthropic_client(gateway: Gemgate) -> anthropic.Anthropic:
    return anthropic.Anthropic(
        base_url=gateway.url,
        api_key=gateway.client_key,  # type: ignore[attr-defined]
        max_retries=0,
        timeout=20,
    )


# -- what used to be a plain-text 500 ---------------------------------------------------------


@pytest.mark.parametrize(
    ("extra", "words"),
    [
        ({"reasoning_effort": {}}, "reasoning_effort must be"),
        ({"reasoning": {"effort": ["high"]}}, "reasoning_effort must be"),
        ({"messages": [{"role": "assistant", "tool_calls": -1}]}, "tool_calls must be an array"),
        ({"messages": [{"role": {"x": 1}, "content": "hi"}]}, "role (dict) is not supported"),
        (
            {"messages": [{"role": "user", "content": [{"type": {}}]}]},
            "every part needs a type",
        ),
        ({"tool_choice": {"type": "function", "function": {"name": ["a"]}}}, "tool_choice"),
        (
            {"tool_choice": {"type": "allowed_tools", "allowed_tools": {"tools": 7}}},
            "allowed_tools.tools must be an array",
        ),
        (
            {
                "messages": [
                    {"role": "user", "content": "what time is it?"},
                    {
                        "role": "assistant",
                        "tool_calls": [
                            {
                                "id": "c1",
                                "function": {"name": "f", "arguments": "{}"},
                                "extra_content": {"google": 5},
                            }
                        ],
                    },
                    {"role": "tool", "tool_call_id": "c1", "content": "ok"},
                ]
            },
            None,
        ),
        (
            {
                "tools": [
                    {
                        "type": "function",
                        "function": {"name": "f", "parameters": {"default": nested(250)}},
                    }
                ]
            },
            "tool 'f': a schema's 'default' value is nested more than 32 levels deep",
        ),
        (
            {
                "response_format": {
                    "type": "json_schema",
                    "json_schema": {
                        "name": "x",
                        "schema": {"type": "object", "enum": [nested(300)]},
                    },
                }
            },
            "the response schema: a schema's 'enum' value is nested more than 32 levels deep",
        ),
        (
            {
                "tools": [
                    {
                        "type": "function",
                        "function": {
                            "name": "f",
                            "parameters": {"type": "object", "default": nested(60)},
                        },
                    }
                ]
            },
            "tool 'f': a schema's 'default' value is nested more than 32 levels deep",
        ),
    ],
)
def test_openai_inputs_that_crashed_are_400s(
    gateway: Gemgate, gemini: FakeGeminiAPI, extra: dict[str, Any], words: str | None
) -> None:
    client = openai_client(gateway)
    if words is None:
        # A harmless oddity: the signature holder is ignored, the request goes through.
        answer = client.chat.completions.create(
            model="gemini-2.5-flash", messages=HI, extra_body=extra
        )
        assert answer.choices[0].message.content
        return
    with pytest.raises(openai.BadRequestError) as caught:
        client.chat.completions.create(model="gemini-2.5-flash", messages=HI, extra_body=extra)
    assert words in caught.value.body["message"]  # type: ignore[index]
    assert gemini.requests == []


@pytest.mark.parametrize(
    ("blocks", "words"),
    [
        ([{"type": {}}], "every block needs a type"),
        ([{"type": ["text"], "text": "hi"}], "every block needs a type"),
        ([{"type": "text", "text": {"a": 1}}], "messages.0.content.text must be a string"),
        ([{"type": "image", "source": {"type": "content", "content": 3}}], "must be an array"),
        ([{"type": "image", "source": {"type": {}}}], "source type (not a string)"),
        (
            [{"type": "tool_use", "id": "t", "name": "f", "input": nested(250)}],
            "messages.0.content.input is nested more than 100 levels deep",
        ),
    ],
)
def test_anthropic_inputs_that_crashed_are_400s(
    gateway: Gemgate, gemini: FakeGeminiAPI, blocks: list[Any], words: str
) -> None:
    role = "assistant" if blocks[0].get("type") == "tool_use" else "user"
    with pytest.raises(anthropic.BadRequestError) as caught:
        anthropic_client(gateway).messages.create(
            model="gemini-2.5-flash",
            max_tokens=10,
            messages=[{"role": role, "content": blocks}],  # type: ignore[typeddict-item]
        )
    assert words in caught.value.body["error"]["message"]  # type: ignore[index]
    assert gemini.requests == []


def test_anthropic_schema_nested_250_deep_is_a_400(gateway: Gemgate, gemini: FakeGeminiAPI) -> None:
    with pytest.raises(anthropic.BadRequestError) as caught:
        anthropic_client(gateway).messages.create(
            model="gemini-2.5-flash",
            max_tokens=10,
            messages=HI,  # type: ignore[arg-type]
            tools=[
                {"name": "f", "input_schema": {"type": "object", "properties": {"a": nested(250)}}}
            ],  # type: ignore[list-item]
        )
    assert (
        "tool 'f': a schema's 'x' value is nested more than 32 levels deep"
        in (
            caught.value.body["error"]["message"]  # type: ignore[index]
        )
    )


@pytest.mark.parametrize(
    "path",
    [
        "/v1beta/models/gemini-2.5-flash:generateContent",
        "/v1beta/models/gemini-2.5-flash:streamGenerateContent?alt=sse",
        "/v1beta/models/gemini-2.5-flash:countTokens",
        "/v1/chat/completions",
        "/v1/messages",
        "/v1/messages/count_tokens",
    ],
)
@pytest.mark.parametrize("depth", [250, 100_000])
def test_absurdly_deep_json_is_a_4xx_in_the_fronts_shape(
    gateway: Gemgate, gemini: FakeGeminiAPI, path: str, depth: int
) -> None:
    deep = b"[" * depth + b"]" * depth
    body = (
        b'{"model":"gemini-2.5-flash","max_tokens":5,"messages":'
        + deep
        + b',"contents":'
        + deep
        + b"}"
    )
    status, content_type, answer = post(gateway, path, body)
    assert 400 <= status < 500, answer
    assert content_type == "application/json"
    if path.startswith("/v1beta"):
        assert answer["error"]["code"] == status
    elif path.startswith("/v1/messages"):
        assert answer["type"] == "error"
    else:
        assert answer["error"]["type"] == "invalid_request_error"


def test_native_decoder_refuses_deep_and_mistyped_input() -> None:
    # The Gemini-native decoder serves channels that cannot relay a native body as it is.
    fmt = GeminiNative()
    cases = [
        ({"contents": [{"parts": [{"functionCall": {"name": "f", "args": nested(150)}}]}]}, "args"),
        ({"contents": [{"parts": 5}]}, "contents[0].parts must be an array"),
        ({"contents": [{"parts": [{"inlineData": []}]}]}, "inlineData must be an object"),
        ({"contents": [], "systemInstruction": 5}, "systemInstruction must be an object"),
        ({"contents": [], "generationConfig": []}, "generationConfig must be an object"),
        (
            {"contents": [], "generationConfig": {"temperature": "hot"}},
            "temperature must be a number",
        ),
        (
            {"contents": [], "generationConfig": {"maxOutputTokens": "ten"}},
            "maxOutputTokens must be an integer",
        ),
        (
            {
                "contents": [],
                "tools": [{"functionDeclarations": [{"name": "f", "parameters": nested(200)}]}],
            },
            "nested more than 100",
        ),
        (
            {"contents": [], "toolConfig": {"functionCallingConfig": {"allowedFunctionNames": 3}}},
            "allowedFunctionNames",
        ),
    ]
    for body, words in cases:
        with pytest.raises(InvalidRequest) as caught:
            request = fmt.decode(orjson.dumps(body), "gemini-2.5-flash")
            orjson.dumps(wire.request_body(request, "gemini-2.5-flash"))
        assert words in caught.value.message, body


# -- wrong types are named as wrong types (issue item 18) -------------------------------------


def test_openai_wrong_types_name_the_field(gateway: Gemgate, gemini: FakeGeminiAPI) -> None:
    client = openai_client(gateway)
    for extra, words, param in (
        ({"model": 123}, "model must be a string", "model"),
        ({"model": ""}, "model is required", "model"),
        ({"max_tokens": "ten"}, "max_tokens must be an integer", "max_tokens"),
        ({"max_completion_tokens": 2.5}, "max_completion_tokens must be an integer", None),
        ({"temperature": "hot"}, "temperature must be a number", "temperature"),
        ({"stream": "yes"}, "stream must be true or false", "stream"),
    ):
        with pytest.raises(openai.BadRequestError) as caught:
            client.chat.completions.create(model="gemini-2.5-flash", messages=HI, extra_body=extra)
        assert caught.value.body["message"] == words  # type: ignore[index]
        if param:
            assert caught.value.body["param"] == param  # type: ignore[index]
    with pytest.raises(openai.BadRequestError) as missing:
        client.chat.completions.create(model="x", messages=HI, extra_body={"model": None})
    assert missing.value.body["message"] == "model is required"  # type: ignore[index]
    assert gemini.requests == []


def test_anthropic_wrong_types_name_the_field(gateway: Gemgate, gemini: FakeGeminiAPI) -> None:
    client = anthropic_client(gateway)
    for extra, words in (
        ({"model": 123}, "model must be a string"),
        ({"max_tokens": "ten"}, "max_tokens must be an integer"),
        ({"max_tokens": 0}, "max_tokens must be a positive integer"),
        ({"top_k": 1.5}, "top_k must be an integer"),
        (
            {"thinking": {"type": "enabled", "budget_tokens": "lots"}},
            "thinking.budget_tokens must be an integer",
        ),
    ):
        with pytest.raises(anthropic.BadRequestError) as caught:
            client.messages.create(
                model="gemini-2.5-flash", max_tokens=10, messages=HI, extra_body=extra
            )
        error = caught.value.body["error"]  # type: ignore[index]
        assert (error["type"], error["message"]) == ("invalid_request_error", words)
    status, _, answer = post(
        gateway, "/v1/messages", orjson.dumps({"model": "gemini-2.5-flash", "messages": HI})
    )
    assert (status, answer["error"]["message"]) == (400, "max_tokens is required")
    assert gemini.requests == []


# -- the last line of defence -----------------------------------------------------------------


async def _call(app: Any, path: str, method: str = "POST") -> tuple[int, dict[str, str], bytes]:
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    scope = {
        "type": "http",
        "method": method,
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"key=gg-secret-in-query",
        "headers": [(b"x-request-id", b"req-fixed-1"), (b"content-length", b"0")],
    }
    await app(scope, receive, send)
    start = sent[0]
    headers = {k.decode(): v.decode() for k, v in start["headers"]}
    return start["status"], headers, b"".join(m.get("body", b"") for m in sent[1:])


async def test_an_unexpected_exception_is_json_in_the_clients_shape(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async def broken(request: Request) -> Response:
        raise RuntimeError("a bug nobody expected")

    starlette = Starlette(
        routes=[
            Route("/v1/chat/completions", broken, methods=["POST"]),
            Route("/v1/messages", broken, methods=["POST"]),
            Route("/v1beta/models/{target:path}", broken, methods=["POST"]),
            Route("/{path:path}", broken, methods=["GET"]),
        ],
        exception_handlers={Exception: starlette_handler},
    )
    # The front door's own key check, standing in for a gateway that knows the key.
    gateway = SimpleNamespace(
        keys=SimpleNamespace(lookup=lambda secret: object()),
        usage=SimpleNamespace(check=lambda key: None),
    )
    app = FrontDoor(starlette, gateway, 1000)  # type: ignore[arg-type]
    # A bug in a route the front door dispatches itself, and in one Starlette's router runs.
    for method in ("POST", "GET"):
        for path, shape in (
            ("/v1/chat/completions", "openai"),
            ("/v1/messages", "anthropic"),
            ("/v1beta/models/gemini-2.5-flash:generateContent", "google"),
        ):
            caplog.clear()
            with caplog.at_level(logging.ERROR, logger="gemgate"):
                status, headers, body = await _call(app, path, method)
            assert status == 500
            assert headers["content-type"] == "application/json"
            assert headers["x-request-id"] == "req-fixed-1"
            answer = json.loads(body)
            if shape == "openai":
                message = answer["error"]["message"]
                assert answer["error"]["type"] == "server_error"
            elif shape == "anthropic":
                message = answer["error"]["message"]
                assert answer["type"] == "error" and answer["error"]["type"] == "api_error"
            else:
                message = answer["error"]["message"]
                assert answer["error"]["status"] == "INTERNAL"
            assert "req-fixed-1" in message
            assert "bug" not in message  # internals stay in the log
            # Logged once, with its traceback, and without the query string's key.
            records = [r for r in caplog.records if r.exc_info]
            assert len(records) == 1
            assert "gg-secret-in-query" not in caplog.text
