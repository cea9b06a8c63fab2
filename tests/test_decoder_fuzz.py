"""Property: no body a client can send makes gemgate answer 5xx. Hypothesis mutates valid
requests of each front (values replaced by any JSON, keys dropped or added, values wrapped)
and sends them over HTTP to a running gemgate with the fake Gemini API behind it, so the whole
pipeline is exercised: decoder, routing, key checks, media checks, the channel and the encoder.
Bounded: a few hundred examples per front, the same ones on every run (derandomised)."""

from __future__ import annotations

import copy
import http.client
import json
from collections.abc import Iterator
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gemgate.channels import _gemini_wire as wire
from gemgate.errors import GatewayError
from gemgate.formats.anthropic_messages import AnthropicMessages
from gemgate.formats.gemini_native import GeminiNative
from gemgate.formats.openai_chat import OpenAIChat
from gemgate.formats.openai_responses import OpenAIResponses
from tests.fakes.gemini_api import TINY_PNG, FakeGeminiAPI
from tests.harness import Gemgate

EXAMPLES = 300
FUZZ = settings(
    max_examples=EXAMPLES,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[
        HealthCheck.function_scoped_fixture,
        HealthCheck.too_slow,
        HealthCheck.data_too_large,
    ],
)
# What our own catch-alls say: seeing one means a bug was caught, not that input was refused.
INTERNAL = (b"gemgate failed on this request", b"the gateway failed while streaming")

SCHEMA = {
    "type": "object",
    "properties": {
        "city": {"type": "string", "description": "a city"},
        "days": {"type": "integer"},
    },
    "required": ["city"],
}
OPENAI = {
    "model": "gemini-2.5-flash",
    "messages": [
        {"role": "system", "content": "Be brief."},
        {
            "role": "user",
            "content": [
                {"type": "text", "text": "What is in this image?"},
                {
                    "type": "image_url",
                    "image_url": {"url": f"data:image/png;base64,{TINY_PNG}", "detail": "low"},
                },
            ],
        },
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {
                    "id": "call_1",
                    "type": "function",
                    "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'},
                }
            ],
        },
        {"role": "tool", "tool_call_id": "call_1", "content": '{"temp": 21}'},
        {"role": "user", "content": "thanks"},
    ],
    "tools": [
        {
            "type": "function",
            "function": {"name": "get_weather", "description": "Weather", "parameters": SCHEMA},
        }
    ],
    "tool_choice": "auto",
    "temperature": 0.5,
    "top_p": 0.9,
    "max_tokens": 100,
    "stop": ["END"],
    "n": 1,
    "seed": 7,
    "reasoning_effort": "low",
    "response_format": {"type": "text"},
    "stream": False,
    "stream_options": {"include_usage": True},
    "extra_body": {
        "google": {
            "thinking_config": {"include_thoughts": True},
            "safety_settings": [
                {"category": "HARM_CATEGORY_HARASSMENT", "threshold": "BLOCK_NONE"}
            ],
        }
    },
}
ANTHROPIC = {
    "model": "gemini-2.5-flash",
    "max_tokens": 100,
    "system": [{"type": "text", "text": "Be brief."}],
    "messages": [
        {
            "role": "user",
            "content": [
                {"type": "text", "text": "Look at this and check the weather"},
                {
                    "type": "image",
                    "source": {"type": "base64", "media_type": "image/png", "data": TINY_PNG},
                },
            ],
        },
        {
            "role": "assistant",
            "content": [
                {"type": "thinking", "thinking": "hmm", "signature": "claude-signature"},
                {
                    "type": "tool_use",
                    "id": "toolu_1",
                    "name": "get_weather",
                    "input": {"city": "Paris"},
                },
            ],
        },
        {
            "role": "user",
            "content": [
                {
                    "type": "tool_result",
                    "tool_use_id": "toolu_1",
                    "content": [{"type": "text", "text": "21C"}],
                }
            ],
        },
    ],
    "tools": [{"name": "get_weather", "description": "Weather", "input_schema": SCHEMA}],
    "tool_choice": {"type": "auto"},
    "temperature": 0.5,
    "top_k": 5,
    "stop_sequences": ["END"],
    "thinking": {"type": "enabled", "budget_tokens": 1024},
    "stream": False,
    "metadata": {"user_id": "u-1"},
}
NATIVE = {
    "contents": [
        {
            "role": "user",
            "parts": [
                {"text": "hi"},
                {"inlineData": {"mimeType": "image/png", "data": TINY_PNG}},
            ],
        },
        {
            "role": "model",
            "parts": [{"functionCall": {"name": "get_weather", "args": {"city": "Paris"}}}],
        },
        {
            "role": "user",
            "parts": [{"functionResponse": {"name": "get_weather", "response": {"output": "21C"}}}],
        },
    ],
    "systemInstruction": {"parts": [{"text": "Be brief."}]},
    "tools": [
        {
            "functionDeclarations": [
                {
                    "name": "get_weather",
                    "description": "Weather",
                    "parameters": {"type": "OBJECT", "properties": {"city": {"type": "STRING"}}},
                }
            ]
        }
    ],
    "toolConfig": {"functionCallingConfig": {"mode": "AUTO"}},
    "generationConfig": {
        "temperature": 0.5,
        "maxOutputTokens": 100,
        "stopSequences": ["END"],
        "thinkingConfig": {"thinkingBudget": 128, "includeThoughts": True},
    },
    "safetySettings": [{"category": "HARM_CATEGORY_HARASSMENT", "threshold": "BLOCK_NONE"}],
}
RESPONSES = {
    "model": "gemini-2.5-flash",
    "instructions": "Be brief.",
    "input": [
        {"role": "developer", "content": "Answer in English."},
        {
            "role": "user",
            "content": [
                {"type": "input_text", "text": "What is in this image?"},
                {"type": "input_image", "image_url": f"data:image/png;base64,{TINY_PNG}"},
            ],
        },
        {
            "type": "reasoning",
            "id": "rs_1",
            "summary": [{"type": "summary_text", "text": "Look at it."}],
            "encrypted_content": "gmn1.eyJtIjoiZ2VtaW5pLTIuNS1mbGFzaCJ9",
        },
        {
            "type": "function_call",
            "call_id": "call_1",
            "name": "get_weather",
            "arguments": '{"city": "Paris"}',
        },
        {"type": "function_call_output", "call_id": "call_1", "output": "sunny"},
    ],
    "tools": [
        {"type": "function", "name": "get_weather", "parameters": SCHEMA, "strict": True},
        {"type": "web_search"},
    ],
    "tool_choice": "auto",
    "text": {"format": {"type": "json_schema", "name": "w", "schema": SCHEMA}},
    "reasoning": {"effort": "low", "summary": "auto"},
    "max_output_tokens": 100,
    "temperature": 0.5,
    "top_p": 0.9,
    "store": False,
    "include": ["reasoning.encrypted_content"],
}
FRONTS = {
    "openai": (OPENAI, ["/v1/chat/completions", "/gemini/v1/chat/completions"]),
    "responses": (RESPONSES, ["/v1/responses", "/gemini/v1/responses"]),
    "anthropic": (ANTHROPIC, ["/v1/messages", "/v1/messages/count_tokens"]),
    "native": (
        NATIVE,
        [
            "/v1beta/models/gemini-2.5-flash:generateContent",
            "/v1beta/models/gemini-2.5-flash:streamGenerateContent?alt=sse",
            "/v1beta/models/gemini-2.5-flash:streamGenerateContent",
            "/v1beta/models/gemini-2.5-flash:countTokens",
        ],
    ),
}

# -- mutations --------------------------------------------------------------------------------

_TRICKY_TEXT = st.sampled_from(
    [
        "",
        "-1",
        "null",
        "gemini-2.5-flash/../gemini-2.5-pro",
        "gemini/gemini-2.5-pro",
        "models/",
        "data:image/png;base64,AAAA",
        "data:text/plain,hi",
        "file:///etc/passwd",
        "http://127.0.0.1:1/x.png",
        "https://www.youtube.com/watch?v=x",
        "user",
        "assistant",
        "model",
        "tool",
        "function",
        "text",
        "image",
        "tool_use",
        "tool_result",
        "thinking",
        "enabled",
        "json_schema",
        "required",
        "none",
        "OBJECT",
        "\u0000",
        "\ud7ff" * 3,
    ]
)
_SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**63), max_value=2**64 - 1),  # what JSON writers write
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=20),
    _TRICKY_TEXT,
)
JSON_VALUES = st.recursive(
    _SCALARS,
    lambda children: st.one_of(
        st.lists(children, max_size=4),
        st.dictionaries(st.one_of(st.text(max_size=8), _TRICKY_TEXT), children, max_size=4),
    ),
    max_leaves=12,
)


def _paths(value: Any, prefix: tuple[Any, ...] = ()) -> Iterator[tuple[Any, ...]]:
    yield prefix
    if isinstance(value, dict):
        for key, child in value.items():
            yield from _paths(child, (*prefix, key))
    elif isinstance(value, list):
        for index, child in enumerate(value):
            yield from _paths(child, (*prefix, index))


def _mutate(body: Any, data: st.DataObject) -> Any:
    body = copy.deepcopy(body)
    for _ in range(data.draw(st.integers(min_value=1, max_value=3), label="mutations")):
        paths = list(_paths(body))
        path = data.draw(st.sampled_from(paths), label="path")
        action = data.draw(st.sampled_from(["replace", "delete", "insert", "wrap"]), label="do")
        if not path:
            if action == "replace":
                body = data.draw(JSON_VALUES, label="body")
            continue
        parent: Any = body
        for step in path[:-1]:
            parent = parent[step]
        last = path[-1]
        if action == "replace":
            parent[last] = data.draw(JSON_VALUES, label="value")
        elif action == "delete":
            del parent[last]
        elif action == "wrap":
            parent[last] = [parent[last]]
        else:
            target = parent[last]
            if isinstance(target, dict):
                target[data.draw(st.one_of(st.text(max_size=8), _TRICKY_TEXT))] = data.draw(
                    JSON_VALUES
                )
            elif isinstance(target, list):
                target.append(data.draw(JSON_VALUES))
    return body


# -- against a running gemgate ----------------------------------------------------------------


class _Client:
    """One kept-alive connection, reopened when the server closes it."""

    def __init__(self, gateway: Gemgate) -> None:
        self.gateway = gateway
        self.conn: http.client.HTTPConnection | None = None

    def post(self, path: str, body: bytes) -> tuple[int, str, bytes]:
        for attempt in range(2):
            if self.conn is None:
                self.conn = http.client.HTTPConnection("127.0.0.1", self.gateway.port, timeout=30)
            key = self.gateway.client_key  # type: ignore[attr-defined]
            try:
                self.conn.request(
                    "POST",
                    path,
                    body=body,
                    headers={
                        "content-type": "application/json",
                        "authorization": f"Bearer {key}",
                    },
                )
                response = self.conn.getresponse()
                raw = response.read()
            except (http.client.HTTPException, ConnectionError):
                self.close()
                if attempt:
                    raise
                continue
            if response.getheader("connection", "").lower() == "close":
                self.close()
            return response.status, response.getheader("content-type") or "", raw
        raise AssertionError("unreachable")

    def close(self) -> None:
        if self.conn is not None:
            self.conn.close()
            self.conn = None


@pytest.fixture
def http_client(gateway: Gemgate) -> Iterator[_Client]:
    client = _Client(gateway)
    yield client
    client.close()


def _check(gateway: Gemgate, path: str, body: Any, answer: tuple[int, str, bytes]) -> None:
    status, content_type, raw = answer
    shown = json.dumps(body)[:2000]
    assert status < 500, (
        f"{path} {status} {raw[:500]!r}\nbody: {shown}\nlog:\n{gateway.log()[-3000:]}"
    )
    if status >= 400:
        assert content_type == "application/json", (path, status, raw[:200])
        orjson.loads(raw)
    assert not any(marker in raw for marker in INTERNAL), f"{path}: {raw[:500]!r}\nbody: {shown}"


@pytest.mark.parametrize("front", list(FRONTS))
def test_the_seed_bodies_are_valid(
    gateway: Gemgate, gemini: FakeGeminiAPI, http_client: _Client, front: str
) -> None:
    seed, paths = FRONTS[front]
    for path in paths:
        status, _, raw = http_client.post(path, orjson.dumps(seed))
        # Google counts a full generate request only when it is wrapped in one.
        wrapped_only = front == "native" and path.endswith(":countTokens")
        assert status == (400 if wrapped_only else 200), (path, raw[:500])


@pytest.mark.parametrize("front", list(FRONTS))
def test_no_mutated_body_gets_a_5xx(
    gateway: Gemgate, gemini: FakeGeminiAPI, http_client: _Client, front: str
) -> None:
    seed, paths = FRONTS[front]

    @FUZZ
    @given(data=st.data())
    def run(data: st.DataObject) -> None:
        body = _mutate(seed, data)
        path = data.draw(st.sampled_from(paths), label="path")
        _check(gateway, path, body, http_client.post(path, orjson.dumps(body)))

    run()
    # Every outcome is a clean error, never a bug caught by the last line of defence.
    assert "Traceback" not in gateway.log()


# -- the Gemini-native decoder, for the channels that cannot relay a native body --------------


@pytest.mark.parametrize(
    ("front", "fmt"),
    [
        ("native", GeminiNative()),
        ("openai", OpenAIChat()),
        ("responses", OpenAIResponses()),
        ("anthropic", AnthropicMessages()),
    ],
)
def test_decoders_and_the_wire_raise_only_client_errors(front: str, fmt: Any) -> None:
    seed = FRONTS[front][0]

    @FUZZ
    @given(data=st.data())
    def run(data: st.DataObject) -> None:
        body = orjson.dumps(_mutate(seed, data))
        try:
            request = fmt.decode(body, "gemini-2.5-flash" if front == "native" else None)
            orjson.dumps(wire.request_body(request, "gemini-2.5-flash"))
        except GatewayError as error:
            assert error.status < 500

    run()
