"""The gemini_cli channel seen through the official OpenAI, Anthropic and Google SDKs against a
running gemgate and the fake Code Assist: every front, the wrapper, models, suffixes, tools,
counting, client keys and errors."""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from typing import Any

import anthropic
import openai
import pytest
from google import genai
from google.genai import types

from tests.fakes.code_assist import FakeCodeAssist, Reply
from tests.gemini_cli_setup import add_oauth, cli_gemgate, write_oauth_file
from tests.harness import Gemgate

ALICE = "alice@example.com"
PROJECT = "proj-alice"
_clients: list[genai.Client] = []


@pytest.fixture(scope="session")
def fake_code_assist() -> Iterator[FakeCodeAssist]:
    with FakeCodeAssist() as fake:
        yield fake


@pytest.fixture
def code_assist(fake_code_assist: FakeCodeAssist) -> Iterator[FakeCodeAssist]:
    fake_code_assist.reset()
    yield fake_code_assist
    fake_code_assist.reset()


@pytest.fixture(scope="module")
def gateway(
    tmp_path_factory: pytest.TempPathFactory, fake_code_assist: FakeCodeAssist
) -> Iterator[Gemgate]:
    """One gemgate whose gemini_cli pool holds one onboarded Standard-tier account."""
    folder = tmp_path_factory.mktemp("gemini-cli")
    fake_code_assist.account(ALICE, project=PROJECT)
    server = cli_gemgate(folder / "data", fake_code_assist)
    server.client_key = server.create_key("tests")  # type: ignore[attr-defined]
    add_oauth(
        server, write_oauth_file(folder, "oauth_creds.json", fake_code_assist.oauth_file(ALICE))
    )
    server.start()
    yield server
    server.stop()


def oa(gateway: Gemgate, prefix: str = "/gemini_cli") -> openai.OpenAI:
    key = gateway.client_key  # type: ignore[attr-defined]
    return openai.OpenAI(base_url=f"{gateway.url}{prefix}/v1", api_key=key, max_retries=0)


def an(gateway: Gemgate) -> anthropic.Anthropic:
    key = gateway.client_key  # type: ignore[attr-defined]
    return anthropic.Anthropic(base_url=f"{gateway.url}/gemini_cli", api_key=key, max_retries=0)


def gg(gateway: Gemgate) -> genai.Client:
    sdk = genai.Client(
        api_key=gateway.client_key,  # type: ignore[attr-defined]
        http_options=types.HttpOptions(
            base_url=f"{gateway.url}/gemini_cli", api_version="v1beta", timeout=20_000
        ),
    )
    _clients.append(sdk)
    return sdk


def generate_calls(fake: FakeCodeAssist) -> list[Any]:
    return [r for r in fake.requests if r.action in ("generateContent", "streamGenerateContent")]


def test_every_front_chats_and_streams_through_the_wrapper(
    gateway: Gemgate, code_assist: FakeCodeAssist
) -> None:
    answer = oa(gateway).chat.completions.create(
        model="gemini-2.5-pro",
        messages=[{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"}],
    )
    assert answer.choices[0].message.content == "Hello from gemini-2.5-pro"
    assert answer.usage is not None and answer.usage.total_tokens > 0

    code_assist.script(Reply.text("one two three four", chunks=4), key=ALICE)
    stream = oa(gateway).chat.completions.create(
        model="gemini-2.5-flash", messages=[{"role": "user", "content": "count"}], stream=True
    )
    pieces = [
        c.choices[0].delta.content for c in stream if c.choices and c.choices[0].delta.content
    ]
    assert "".join(pieces) == "one two three four" and len(pieces) == 4

    message = an(gateway).messages.create(
        model="gemini-2.5-flash", max_tokens=100, messages=[{"role": "user", "content": "Hi"}]
    )
    assert message.content[0].text == "Hello from gemini-2.5-flash"  # type: ignore[union-attr]
    code_assist.script(Reply.text("streamed to claude", chunks=3), key=ALICE)
    with an(gateway).messages.stream(
        model="gemini-2.5-flash", max_tokens=100, messages=[{"role": "user", "content": "Hi"}]
    ) as events:
        assert "".join(events.text_stream) == "streamed to claude"

    native = gg(gateway).models.generate_content(model="gemini-2.5-flash", contents="Hi")
    assert native.text == "Hello from gemini-2.5-flash"
    code_assist.script(Reply.text("native stream", chunks=2), key=ALICE)
    chunks = list(
        gg(gateway).models.generate_content_stream(model="gemini-2.5-flash", contents="x")
    )
    assert "".join(c.text or "" for c in chunks) == "native stream"

    calls = generate_calls(code_assist)
    assert len(calls) == 6
    first = calls[0]
    assert first.path == "/v1internal:generateContent"
    assert set(first.body) == {"model", "project", "user_prompt_id", "request"}
    assert first.body["model"] == "gemini-2.5-pro" and first.body["project"] == PROJECT
    assert first.body["request"]["systemInstruction"] == {"parts": [{"text": "Be brief."}]}
    assert first.headers["authorization"].startswith("Bearer ya29.")
    agent = first.headers["user-agent"]
    assert agent.startswith("GeminiCLI/") and agent.split("/")[2].startswith("gemini-2.5-pro (")
    streamed = calls[1]
    assert streamed.path == "/v1internal:streamGenerateContent"
    assert streamed.query == {"alt": "sse"}


def test_models_are_the_code_assist_list_with_vertex_buckets(gateway: Gemgate) -> None:
    ids = {m.id for m in oa(gateway).models.list()}
    for model in ("gemini-2.5-pro", "gemini-3-pro-preview", "gemini-3.5-flash"):
        assert model in ids and f"{model}_vertex" in ids
    assert "gemini-2.5-flash-image" not in ids
    native = {m.name for m in gg(gateway).models.list()}
    assert "models/gemini-2.5-flash_vertex" in native


def test_vertex_ids_thinking_suffix_and_renamed_models(
    gateway: Gemgate, code_assist: FakeCodeAssist
) -> None:
    vertex = oa(gateway).chat.completions.create(
        model="gemini-2.5-pro_vertex", messages=[{"role": "user", "content": "hi"}]
    )
    assert vertex.choices[0].message.content == "Hello from gemini-2.5-pro_vertex"
    assert generate_calls(code_assist)[-1].body["model"] == "gemini-2.5-pro_vertex"

    code_assist.script(Reply.text("Answer.", thought="Thinking it over."), key=ALICE)
    thought = oa(gateway).chat.completions.create(
        model="gemini-2.5-flash-thinking", messages=[{"role": "user", "content": "hi"}]
    )
    sent = generate_calls(code_assist)[-1].body
    assert sent["model"] == "gemini-2.5-flash"
    assert sent["request"]["generationConfig"]["thinkingConfig"]["includeThoughts"] is True
    assert thought.choices[0].message.content == "Answer."
    extra = thought.choices[0].message.model_extra or {}
    assert extra.get("reasoning_content") == "Thinking it over."

    code_assist.script(Reply.text("Fine.", thought="Pondering."), key=ALICE)
    claude = an(gateway).messages.create(
        model="gemini-3-flash-preview_vertex-thinking",
        max_tokens=200,
        messages=[{"role": "user", "content": "hi"}],
    )
    assert [b.type for b in claude.content] == ["thinking", "text"]
    assert generate_calls(code_assist)[-1].body["model"] == "gemini-3-flash-preview_vertex"

    renamed = oa(gateway).chat.completions.create(
        model="gemini-3.5-flash", messages=[{"role": "user", "content": "hi"}]
    )
    assert generate_calls(code_assist)[-1].body["model"] == "gemini-3-flash"
    assert renamed.choices[0].message.content == "Hello from gemini-3-flash"


def test_a_gemini_3_tool_round_keeps_its_signature(
    gateway: Gemgate, code_assist: FakeCodeAssist
) -> None:
    tools: Any = [
        {
            "type": "function",
            "function": {
                "name": "get_weather",
                "parameters": {
                    "$schema": "http://json-schema.org/draft-07/schema#",
                    "type": "object",
                    "properties": {"city": {"type": "string"}},
                    "required": ["city"],
                    "additionalProperties": False,
                },
            },
        }
    ]
    code_assist.script(
        Reply.parts([{"functionCall": {"name": "get_weather", "args": {"city": "Paris"}}}]),
        key=ALICE,
    )
    messages: list[Any] = [{"role": "user", "content": "Weather in Paris?"}]
    first = oa(gateway).chat.completions.create(
        model="gemini-3-pro-preview", messages=messages, tools=tools
    )
    call = first.choices[0].message.tool_calls[0]  # type: ignore[index]
    assert call.function.name == "get_weather"  # type: ignore[union-attr]
    assert json.loads(call.function.arguments) == {"city": "Paris"}  # type: ignore[union-attr]
    messages += [
        first.choices[0].message.model_dump(exclude_none=True),
        {"role": "tool", "tool_call_id": call.id, "content": '{"temp": 18}'},
    ]
    code_assist.script(Reply.text("18 degrees in Paris."), key=ALICE)
    second = oa(gateway).chat.completions.create(
        model="gemini-3-pro-preview", messages=messages, tools=tools
    )
    assert second.choices[0].message.content == "18 degrees in Paris."
    replayed = generate_calls(code_assist)[-1].body["request"]["contents"]
    assert [c["role"] for c in replayed] == ["user", "model", "user"]
    assert "id" not in replayed[1]["parts"][0]["functionCall"]


def test_token_counts_use_code_assist_shape(gateway: Gemgate, code_assist: FakeCodeAssist) -> None:
    counted = an(gateway).messages.count_tokens(
        model="gemini-2.5-flash",
        system="You are terse.",
        messages=[{"role": "user", "content": "Count these words please"}],
    )
    assert counted.input_tokens > 0
    sent = code_assist.requests[-1]
    assert sent.path == "/v1internal:countTokens"
    assert sent.body["request"]["model"] == "models/gemini-2.5-flash"
    assert set(sent.body) == {"request"} and set(sent.body["request"]) == {"model", "contents"}
    native = gg(gateway).models.count_tokens(model="gemini-2.5-pro_vertex", contents="hello there")
    assert native.total_tokens and native.total_tokens > 0


def raw(
    gateway: Gemgate, path: str, body: dict[str, Any] | None, headers: dict[str, str]
) -> tuple[int, dict[str, Any]]:
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(
        gateway.url + path, data=data, headers={"content-type": "application/json", **headers}
    )
    try:
        with urllib.request.urlopen(request, timeout=20) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


def test_client_keys_in_bearer_goog_header_and_query(gateway: Gemgate) -> None:
    key = gateway.client_key  # type: ignore[attr-defined]
    body = {"contents": [{"role": "user", "parts": [{"text": "hi"}]}]}
    path = "/gemini_cli/v1beta/models/gemini-2.5-flash:generateContent"
    for headers, query in (
        ({"authorization": f"Bearer {key}"}, ""),
        ({"x-goog-api-key": key}, ""),
        ({}, f"?key={key}"),
    ):
        status, answer = raw(gateway, path + query, body, headers)
        assert status == 200, answer
        assert (
            answer["candidates"][0]["content"]["parts"][0]["text"] == "Hello from gemini-2.5-flash"
        )
    status, answer = raw(gateway, path, body, {"x-goog-api-key": "gg-wrong"})
    assert status == 401 and answer["error"]["status"] == "UNAUTHENTICATED"


def test_errors_come_back_in_each_clients_shape_without_tokens(
    gateway: Gemgate, code_assist: FakeCodeAssist
) -> None:
    with pytest.raises(openai.NotFoundError) as missing:
        oa(gateway).chat.completions.create(
            model="gemini-2.5-flash-image", messages=[{"role": "user", "content": "hi"}]
        )
    assert missing.value.body["code"] == "model_not_found"  # type: ignore[index]
    with pytest.raises(anthropic.NotFoundError) as missing_claude:
        an(gateway).messages.create(
            model="claude-nope", max_tokens=10, messages=[{"role": "user", "content": "hi"}]
        )
    assert missing_claude.value.body["error"]["type"] == "not_found_error"  # type: ignore[index]
    status, answer = raw(
        gateway,
        "/gemini_cli/v1beta/models/gemini-1.0-pro:generateContent",
        {"contents": [{"parts": [{"text": "hi"}]}]},
        {"x-goog-api-key": gateway.client_key},  # type: ignore[attr-defined]
    )
    assert status == 404 and answer["error"]["status"] == "NOT_FOUND"
    assert not generate_calls(code_assist)

    code_assist.script(
        Reply.error(
            400, 'Invalid JSON payload received. Unknown name "x".', status_name="INVALID_ARGUMENT"
        ),
        key=ALICE,
    )
    with pytest.raises(openai.BadRequestError) as bad:
        oa(gateway).chat.completions.create(
            model="gemini-2.5-flash", messages=[{"role": "user", "content": "hi"}]
        )
    assert "Unknown name" in str(bad.value)
    token = code_assist.requests[-1].headers["authorization"].removeprefix("Bearer ")
    code_assist.script(Reply.error(503), key=ALICE)
    with pytest.raises(anthropic.APIStatusError) as down:
        an(gateway).messages.create(
            model="gemini-2.5-flash", max_tokens=10, messages=[{"role": "user", "content": "hi"}]
        )
    assert down.value.status_code == 503
    for text in (str(bad.value), str(down.value.body), gateway.log()):
        assert token not in text


def test_streams_are_unwrapped_as_they_arrive_and_a_cut_ends_in_an_error(
    gateway: Gemgate, code_assist: FakeCodeAssist
) -> None:
    code_assist.script(Reply.text("one two three four five six", chunks=6, delay=0.25), key=ALICE)
    arrivals: list[float] = []
    stream = oa(gateway).chat.completions.create(
        model="gemini-2.5-flash", messages=[{"role": "user", "content": "count"}], stream=True
    )
    for chunk in stream:
        if chunk.choices and chunk.choices[0].delta.content:
            arrivals.append(time.monotonic())
    assert len(arrivals) == 6
    # Unbuffered: the first pieces reached the client long before the last was produced.
    assert arrivals[-1] - arrivals[0] > 0.8

    code_assist.script(Reply.disconnect_after(2), key=ALICE)
    request = urllib.request.Request(
        gateway.url + "/gemini_cli/v1beta/models/gemini-2.5-flash:streamGenerateContent?alt=sse",
        data=json.dumps({"contents": [{"parts": [{"text": "go"}]}]}).encode(),
        headers={"x-goog-api-key": gateway.client_key},  # type: ignore[attr-defined]
    )
    with urllib.request.urlopen(request, timeout=20) as response:
        assert response.status == 200
        frames = [f for f in response.read().split(b"\r\n\r\n") if f.strip()]
    events = [json.loads(f.removeprefix(b"data: ")) for f in frames]
    assert events[0]["candidates"][0]["content"]["parts"][0]["text"] == "chunk 0 "
    assert events[-1]["error"]["code"] >= 500


def test_responses_api_tool_round_on_gemini_3(
    gateway: Gemgate, code_assist: FakeCodeAssist
) -> None:
    """The Responses API on this channel: streamed, stateless as Codex runs it, the call's
    signature carried back in the replayed reasoning item."""
    tool: Any = {
        "type": "function",
        "name": "get_weather",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
    }
    options: Any = {"store": False, "include": ["reasoning.encrypted_content"], "tools": [tool]}
    code_assist.script(
        Reply.parts([{"functionCall": {"name": "get_weather", "args": {"city": "Paris"}}}]),
        key=ALICE,
    )
    sdk = oa(gateway)
    with sdk.responses.stream(
        model="gemini-3-pro-preview", input="Weather in Paris?", **options
    ) as stream:
        first = stream.get_final_response()
    (call,) = [item for item in first.output if item.type == "function_call"]
    assert (call.name, json.loads(call.arguments)) == ("get_weather", {"city": "Paris"})
    replay = [
        {"role": "user", "content": "Weather in Paris?"},
        *[item.model_dump(exclude_none=True) for item in first.output],
        {"type": "function_call_output", "call_id": call.call_id, "output": '{"temp": 18}'},
    ]
    code_assist.script(Reply.text("18 degrees in Paris."), key=ALICE)
    second = sdk.responses.create(model="gemini-3-pro-preview", input=replay, **options)
    assert second.output_text == "18 degrees in Paris."
    replayed = generate_calls(code_assist)[-1].body["request"]["contents"]
    assert [c["role"] for c in replayed] == ["user", "model", "user"]
    signature = replayed[1]["parts"][0].get("thoughtSignature")
    assert signature and signature != "skip_thought_signature_validator"
