"""Which client API a path belongs to: decides the error shape before a route has run."""

from __future__ import annotations

from gemgate.formats.anthropic_messages import AnthropicMessages
from gemgate.formats.base import Format
from gemgate.formats.gemini_native import GeminiNative
from gemgate.formats.openai_chat import OpenAIChat
from gemgate.formats.openai_embeddings import OpenAIEmbeddings
from gemgate.formats.openai_responses import OpenAIResponses
from gemgate.formats.openai_speech import OpenAISpeech

CHANNEL_PREFIXES = ("gemini", "gemini_cli", "gemini_official")
# /media/ links are their own permission (signed, expiring) and are opened by image viewers.
_PUBLIC = ("/healthz", "/metrics", "/admin", "/media/")

OPENAI_CHAT = OpenAIChat()
OPENAI_RESPONSES = OpenAIResponses()
ANTHROPIC = AnthropicMessages()
ANTHROPIC_COUNT = AnthropicMessages(counting=True)
NATIVE = GeminiNative("unary")
NATIVE_SSE = GeminiNative("sse")
NATIVE_ARRAY = GeminiNative("array")
# Native embedding methods belong to the embeddings scope, like OpenAI's /v1/embeddings.
NATIVE_EMBED = GeminiNative("unary", endpoint="embeddings")
EMBEDDINGS = OpenAIEmbeddings()
SPEECH = OpenAISpeech()
_NATIVE_ACTIONS = (
    ":generateContent",
    ":streamGenerateContent",
    ":countTokens",
    ":embedContent",
    ":batchEmbedContents",
)


def is_public(path: str) -> bool:
    # "/" itself is public (clients probe it on start-up); the paths under it are not.
    return path == "/" or path.startswith(_PUBLIC)


def error_format(path: str) -> Format:
    """The format whose error shape a client on this path understands."""
    for prefix in ("", *(f"/{c}" for c in CHANNEL_PREFIXES)):
        if path.startswith(f"{prefix}/v1/messages"):
            return ANTHROPIC
        if path.startswith(f"{prefix}/v1beta/"):
            return NATIVE
    if path.endswith(_NATIVE_ACTIONS):
        return NATIVE
    return OPENAI_CHAT
