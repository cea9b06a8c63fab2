"""The three official SDKs pointed at a running gemgate's `/gemini_official` prefix, as the web
channel's tests use them (a longer timeout: some web answers wait on polls)."""

from __future__ import annotations

import anthropic
import openai
from google import genai
from google.genai import types

from tests.harness import Gemgate

PREFIX = "/gemini_official"


def oai(gateway: Gemgate, prefix: str = PREFIX) -> openai.OpenAI:
    return openai.OpenAI(
        base_url=f"{gateway.url}{prefix}/v1",
        api_key=gateway.client_key,  # type: ignore[attr-defined]
        max_retries=0,
        timeout=30,
    )


def claude(gateway: Gemgate) -> anthropic.Anthropic:
    return anthropic.Anthropic(
        base_url=f"{gateway.url}{PREFIX}",
        api_key=gateway.client_key,  # type: ignore[attr-defined]
        max_retries=0,
        timeout=30,
    )


def google(gateway: Gemgate) -> genai.Client:
    return genai.Client(
        api_key=gateway.client_key,  # type: ignore[attr-defined]
        http_options=types.HttpOptions(base_url=f"{gateway.url}{PREFIX}", timeout=30_000),
    )
