"""Thinking controls through the OpenAI SDK: reasoning_effort, google.thinking_config, the
`-thinking` model suffix, and thoughts shown as reasoning_content."""

from __future__ import annotations

from typing import Any

import pytest

from tests.fakes.gemini_api import FakeGeminiAPI, Reply
from tests.harness import Gemgate
from tests.openai_sdk import client, collect_stream

HI = [{"role": "user", "content": "Think, then say hi."}]


@pytest.mark.parametrize(
    ("model", "effort", "config"),
    [
        ("gemini-2.5-flash", "low", {"thinkingBudget": 1024, "includeThoughts": True}),
        ("gemini-2.5-flash", "high", {"thinkingBudget": 24576, "includeThoughts": True}),
        ("gemini-2.5-flash", "none", {"thinkingBudget": 0}),
        ("gemini-2.5-pro", "none", {"thinkingBudget": 128}),  # 2.5 Pro cannot stop thinking
        ("gemini-2.5-flash-lite", "minimal", {"thinkingBudget": 1024, "includeThoughts": True}),
        (
            "gemini-3-flash-preview",
            "minimal",
            {"thinkingLevel": "minimal", "includeThoughts": True},
        ),
        ("gemini-3-flash-preview", "none", {"thinkingLevel": "minimal"}),
        ("gemini-3-pro-preview", "medium", {"thinkingLevel": "high", "includeThoughts": True}),
        ("gemini-3-pro-preview", "low", {"thinkingLevel": "low", "includeThoughts": True}),
    ],
)
def test_reasoning_effort_per_model_family(
    gateway: Gemgate, gemini: FakeGeminiAPI, model: str, effort: str, config: dict[str, Any]
) -> None:
    client(gateway).chat.completions.create(
        model=model,
        messages=HI,
        reasoning_effort=effort,  # type: ignore[arg-type]
    )
    sent = gemini.requests[-1].body["generationConfig"]["thinkingConfig"]
    assert sent == config


@pytest.mark.parametrize("nested", [False, True])
def test_google_thinking_config_in_both_placements(
    gateway: Gemgate, gemini: FakeGeminiAPI, nested: bool
) -> None:
    google = {"thinking_config": {"thinking_budget": 800, "include_thoughts": True}}
    extra = {"extra_body": {"google": google}} if nested else {"google": google}
    client(gateway).chat.completions.create(
        model="gemini-2.5-flash", messages=HI, reasoning_effort="high", extra_body=extra
    )
    config = gemini.requests[-1].body["generationConfig"]["thinkingConfig"]
    # The explicit thinking_config wins over reasoning_effort; never a budget and a level.
    assert config == {"thinkingBudget": 800, "includeThoughts": True}


def test_thinking_level_on_gemini_3(gateway: Gemgate, gemini: FakeGeminiAPI) -> None:
    client(gateway).chat.completions.create(
        model="gemini-3-flash-preview",
        messages=HI,
        extra_body={"google": {"thinking_config": {"thinking_level": "low"}}},
    )
    config = gemini.requests[-1].body["generationConfig"]["thinkingConfig"]
    assert config == {"thinkingLevel": "low"}


def test_budget_on_gemini_3_becomes_a_level(gateway: Gemgate, gemini: FakeGeminiAPI) -> None:
    client(gateway).chat.completions.create(
        model="gemini-3-flash-preview",
        messages=HI,
        extra_body={"google": {"thinking_config": {"thinking_budget": 8000}}},
    )
    config = gemini.requests[-1].body["generationConfig"]["thinkingConfig"]
    assert config == {"thinkingLevel": "medium"}


@pytest.mark.parametrize("stream", [False, True])
def test_thinking_suffix_shows_thoughts_apart_from_the_answer(
    gateway: Gemgate, gemini: FakeGeminiAPI, stream: bool
) -> None:
    gemini.script(Reply.text("Hi!", thought="The user wants a greeting.", chunks=2))
    sdk = client(gateway)
    if stream:
        got = collect_stream(
            sdk.chat.completions.create(
                model="gemini-2.5-flash-thinking",
                messages=HI,
                stream=True,
                stream_options={"include_usage": True},
            )
        )
        content, reasoning, usage = got["content"], got["reasoning"], got["usage"]
    else:
        answer = sdk.chat.completions.create(model="gemini-2.5-flash-thinking", messages=HI)
        assert answer.model == "gemini-2.5-flash-thinking"
        message = answer.choices[0].message
        content, usage = message.content, answer.usage
        reasoning = (message.model_extra or {}).get("reasoning_content")
    assert content == "Hi!"
    assert reasoning == "The user wants a greeting."
    assert usage is not None
    assert usage.completion_tokens_details.reasoning_tokens > 0
    sent = gemini.requests[-1]
    assert "/models/gemini-2.5-flash:" in sent.path
    assert sent.body["generationConfig"]["thinkingConfig"] == {"includeThoughts": True}


def test_without_asking_no_thoughts_are_shown(gateway: Gemgate, gemini: FakeGeminiAPI) -> None:
    gemini.script(Reply.text("Hi!", thought="hidden"))
    answer = client(gateway).chat.completions.create(model="gemini-2.5-flash", messages=HI)
    assert answer.choices[0].message.content == "Hi!"
    assert "reasoning_content" not in (answer.choices[0].message.model_extra or {})
    assert "thinkingConfig" not in gemini.requests[-1].body.get("generationConfig", {})


def test_bad_effort_is_a_clear_400(gateway: Gemgate, gemini: FakeGeminiAPI) -> None:
    import openai

    with pytest.raises(openai.BadRequestError) as caught:
        client(gateway).chat.completions.create(
            model="gemini-2.5-flash",
            messages=HI,
            reasoning_effort="enormous",  # type: ignore[arg-type]
        )
    assert "reasoning_effort" in str(caught.value)
    assert gemini.requests == []
