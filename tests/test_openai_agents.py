"""The `openai-agents` SDK with its default model class (the Responses API) running an agent
with one function tool against gemgate."""

from __future__ import annotations

import asyncio

import pytest

agents = pytest.importorskip("agents")

from openai import AsyncOpenAI  # noqa: E402

from tests.fakes.gemini_api import FakeGeminiAPI, Reply  # noqa: E402
from tests.harness import Gemgate  # noqa: E402

asked: list[str] = []


@agents.function_tool
def get_weather(city: str) -> str:
    """The weather in a city."""
    asked.append(city)
    return f"sunny, 21C in {city}"


@pytest.mark.parametrize("model", ["gemini-2.5-flash", "gemini-3-flash-preview"])
def test_an_agent_runs_a_function_tool(gateway: Gemgate, gemini: FakeGeminiAPI, model: str) -> None:
    asked.clear()
    gemini.script(
        Reply.parts([{"functionCall": {"name": "get_weather", "args": {"city": "Paris"}}}])
    )
    gemini.script(Reply.text("It is sunny in Paris, 21C."))
    sdk = AsyncOpenAI(
        base_url=f"{gateway.url}/v1",
        api_key=gateway.client_key,  # type: ignore[attr-defined]
        max_retries=0,
    )
    agent = agents.Agent(
        name="Weather",
        instructions="Answer with the weather tool.",
        tools=[get_weather],
        # The SDK's default model class: the Responses API.
        model=agents.OpenAIResponsesModel(model=model, openai_client=sdk),
    )
    run_config = agents.RunConfig(tracing_disabled=True)
    result = asyncio.run(agents.Runner.run(agent, "Weather in Paris?", run_config=run_config))
    assert result.final_output == "It is sunny in Paris, 21C."
    assert asked == ["Paris"]
    second = gemini.requests[-1].body
    assert second["systemInstruction"] == {"parts": [{"text": "Answer with the weather tool."}]}
    call, answer = second["contents"][1]["parts"][0], second["contents"][2]["parts"][0]
    assert call["functionCall"] == {"name": "get_weather", "args": {"city": "Paris"}}
    if model.startswith("gemini-3"):
        assert call["thoughtSignature"] != "skip_thought_signature_validator"
    assert answer["functionResponse"]["response"] == {"output": "sunny, 21C in Paris"}
