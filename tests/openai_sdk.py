"""The official OpenAI SDK pointed at a running gemgate, as the OpenAI feature tests use it."""

from __future__ import annotations

from typing import Any

import openai

from tests.harness import Gemgate


def client(gateway: Gemgate, prefix: str = "") -> openai.OpenAI:
    return openai.OpenAI(
        base_url=f"{gateway.url}{prefix}/v1",
        api_key=gateway.client_key,  # type: ignore[attr-defined]
        max_retries=0,
        timeout=20,
    )


def collect_stream(stream: Any) -> dict[str, Any]:
    """What a streaming client ends up with: joined text, tool calls by index, extras."""
    out: dict[str, Any] = {
        "content": "",
        "reasoning": "",
        "tool_calls": {},
        "finish": None,
        "native_finish": None,
        "images": [],
        "annotations": [],
        "usage": None,
        "chunks": 0,
    }
    for chunk in stream:
        out["chunks"] += 1
        if chunk.usage:
            out["usage"] = chunk.usage
        for choice in chunk.choices:
            delta = choice.delta
            out["content"] += delta.content or ""
            extra = delta.model_extra or {}
            out["reasoning"] += extra.get("reasoning_content") or ""
            out["images"] += extra.get("images") or []
            out["annotations"] += extra.get("annotations") or []
            for call in delta.tool_calls or ():
                into = out["tool_calls"].setdefault(call.index, {"arguments": ""})
                if call.id:
                    into["id"] = call.id
                if call.function and call.function.name:
                    into["name"] = call.function.name
                if call.function and call.function.arguments:
                    into["arguments"] += call.function.arguments
                if (call.model_extra or {}).get("extra_content"):
                    into["extra_content"] = call.model_extra["extra_content"]
            if choice.finish_reason:
                out["finish"] = choice.finish_reason
                out["native_finish"] = (choice.model_extra or {}).get("native_finish_reason")
    return out
