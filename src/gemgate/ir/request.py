"""The neutral request: what a client asked for, independent of its API and of the upstream."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal


@dataclass(slots=True)
class Text:
    text: str
    thought: bool = False
    # Gemini's opaque thought signature, carried on the part it came with.
    signature: str | None = None


@dataclass(slots=True)
class Media:
    """Inline bytes (base64 `data`) or a reference (`uri`) with its MIME type."""

    mime_type: str
    data: str | None = None
    uri: str | None = None


@dataclass(slots=True)
class ToolCall:
    id: str
    name: str
    arguments: dict[str, Any]
    signature: str | None = None


@dataclass(slots=True)
class ToolResult:
    call_id: str
    name: str
    output: Any
    is_error: bool = False
    # Media returned by the tool (images in an Anthropic tool_result, say).
    media: list[Media] = field(default_factory=list)


@dataclass(slots=True)
class CodeCall:
    language: str
    code: str
    signature: str | None = None


@dataclass(slots=True)
class CodeResult:
    outcome: str
    output: str


Part = Text | Media | ToolCall | ToolResult | CodeCall | CodeResult
Role = Literal["user", "model"]


@dataclass(slots=True)
class Message:
    role: Role
    parts: list[Part]


@dataclass(slots=True)
class FunctionTool:
    name: str
    description: str | None = None
    # JSON Schema as the client sent it; the wire module makes it acceptable upstream.
    parameters: dict[str, Any] | None = None


@dataclass(slots=True)
class BuiltinTool:
    kind: Literal["googleSearch", "codeExecution", "urlContext"]


Tool = FunctionTool | BuiltinTool


@dataclass(slots=True)
class ToolChoice:
    mode: Literal["auto", "none", "required"]
    # With mode "required": only these functions may be called.
    names: list[str] | None = None


@dataclass(slots=True)
class Thinking:
    """Thinking as the client expressed it; the channel resolves it for the actual model."""

    effort: str | None = None  # none | minimal | low | medium | high | max
    budget: int | None = None  # tokens; 0 = off, -1 = dynamic
    level: str | None = None  # minimal | low | medium | high
    include_thoughts: bool | None = None


@dataclass(slots=True)
class Speech:
    """Speech out: which of Gemini's prebuilt voices speaks (None: the model's default)."""

    voice: str | None = None
    language: str | None = None


@dataclass(slots=True)
class Generation:
    temperature: float | None = None
    top_p: float | None = None
    top_k: int | None = None
    max_tokens: int | None = None
    stop: list[str] = field(default_factory=list)
    candidates: int | None = None
    seed: int | None = None
    presence_penalty: float | None = None
    frequency_penalty: float | None = None
    logprobs: int | None = None
    response_mime_type: str | None = None
    response_schema: dict[str, Any] | None = None
    response_modalities: list[str] | None = None
    image_config: dict[str, Any] | None = None
    speech: Speech | None = None


@dataclass(slots=True)
class ImageOutput:
    """What becomes of the images a model makes before the client gets them (the images API):
    channel-independent, applied by the pipeline to every generated image."""

    # Delivered at exactly this size; the channel asks its upstream for the nearest shape.
    width: int | None = None
    height: int | None = None
    # Re-encoded as this type when the upstream made another.
    mime_type: str | None = None
    # The visible sparkle Gemini paints on its images, removed where it is found.
    remove_watermark: bool = False
    # The upstream's full-size original, where it keeps one (the web app).
    original: bool = False


@dataclass(slots=True)
class Request:
    model: str
    messages: list[Message]
    system: list[Text] = field(default_factory=list)
    tools: list[Tool] = field(default_factory=list)
    tool_choice: ToolChoice | None = None
    generation: Generation = field(default_factory=Generation)
    thinking: Thinking | None = None
    safety: list[dict[str, Any]] | None = None
    stream: bool = False
    # Answers made by separate upstream calls, run concurrently, returned as candidates
    # 0..answers-1 (image models make one image per call).
    answers: int = 1
    image_output: ImageOutput | None = None
    # Format-private options its encoder needs later (OpenAI's include_usage, say); channels
    # never read it.
    client_options: dict[str, Any] = field(default_factory=dict)


def spoken_text(request: Request) -> str:
    """The text of the last user message: what a speech model is asked to say aloud."""
    for message in reversed(request.messages):
        if message.role == "user":
            texts = [p.text for p in message.parts if isinstance(p, Text) and not p.thought]
            if texts:
                return "".join(texts)
    return ""
