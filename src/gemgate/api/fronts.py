"""Which client API a path belongs to: decides the error shape before a route has run."""

from __future__ import annotations

from gemgate.formats.base import Format
from gemgate.formats.openai_chat import OpenAIChat

CHANNEL_PREFIXES = ("gemini", "gemini_cli", "gemini_official")
_PUBLIC = ("/healthz", "/metrics", "/admin")

OPENAI_CHAT = OpenAIChat()


def is_public(path: str) -> bool:
    return path.startswith(_PUBLIC)


def error_format(path: str) -> Format:
    """The format whose error shape a client on this path understands."""
    return OPENAI_CHAT
