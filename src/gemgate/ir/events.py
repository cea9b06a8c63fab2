"""What a channel yields as upstream bytes arrive, and the whole response they add up to.

A non-streaming answer is the same events collected by `collect`, so every format has one
source of truth for how parts, usage and endings are read.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

from gemgate.ir.request import CodeCall, CodeResult, Media, Part, Text, ToolCall

# Neutral endings; each format maps them to its own vocabulary.
FinishReason = Literal["stop", "max_tokens", "safety", "blocked", "other"]


@dataclass(slots=True)
class Usage:
    prompt_tokens: int = 0
    output_tokens: int = 0  # answer tokens, thoughts excluded
    thought_tokens: int = 0
    cached_tokens: int = 0
    tool_prompt_tokens: int = 0
    total_tokens: int = 0
    # The part of prompt_tokens spent on images (what the images API reports apart).
    prompt_image_tokens: int = 0
    # Counted by gemgate, not reported by the upstream (the web app gives no counts).
    estimated: bool = False


@dataclass(slots=True)
class Start:
    """First event of every answer: upstream ids, known before any content."""

    response_id: str | None = None
    model_version: str | None = None


@dataclass(slots=True)
class PartEvent:
    """A new piece of candidate `index`: a text delta, a whole tool call, media, code."""

    part: Text | ToolCall | Media | CodeCall | CodeResult
    index: int = 0


@dataclass(slots=True)
class Finish:
    reason: FinishReason
    index: int = 0
    # The upstream's own word for it (SAFETY, RECITATION, a block reason...).
    detail: str | None = None


@dataclass(slots=True)
class Source:
    """A web page an answer was grounded on (Google Search grounding, URL context)."""

    url: str
    title: str | None = None


@dataclass(slots=True)
class Grounding:
    """The sources candidate `index` is grounded on so far; a later event adds to earlier ones.
    Formats render them as citations."""

    sources: list[Source]
    index: int = 0
    queries: list[str] = field(default_factory=list)


class UsageEvent:
    """Cumulative usage so far; the last one wins.

    A channel may hand on the upstream's own record of it with the function that reads it
    (`UsageEvent.later`): a stream's usage changes with every chunk and only the last is
    normally needed, so it is read the first time someone asks for `usage`. Consumers keep
    the event rather than its `usage` for the same reason."""

    __slots__ = ("_read", "_source", "_usage")

    def __init__(self, usage: Usage) -> None:
        self._usage: Usage | None = usage
        self._source: Any = None
        self._read: Callable[[Any], Usage] | None = None

    @classmethod
    def later(cls, source: Any, read: Callable[[Any], Usage]) -> UsageEvent:
        event = cls.__new__(cls)
        event._usage, event._source, event._read = None, source, read
        return event

    @property
    def usage(self) -> Usage:
        if self._usage is None:
            assert self._read is not None
            self._usage = self._read(self._source)
            self._source = self._read = None
        return self._usage

    def __eq__(self, other: object) -> bool:
        return isinstance(other, UsageEvent) and self.usage == other.usage

    def __repr__(self) -> str:
        return f"UsageEvent({self.usage!r})"


@dataclass(slots=True)
class Progress:
    """The upstream is still at work with nothing to show yet (a video rendering, a research
    running). A stream tells the client it is alive in its format's keep-alive shape; a
    collected answer drops it."""

    message: str


Event = Start | PartEvent | Finish | UsageEvent | Grounding | Progress
# The events one upstream read brought, never empty: handed on together through the pipeline,
# they reach the client in one write rather than one write (and one pass of every layer) each.
Batch = list[Event]


@dataclass(slots=True)
class Candidate:
    index: int
    parts: list[Part] = field(default_factory=list)
    finish: FinishReason | None = None
    finish_detail: str | None = None
    sources: list[Source] = field(default_factory=list)


@dataclass(slots=True)
class Response:
    response_id: str | None
    model_version: str | None
    candidates: list[Candidate]
    usage: Usage


def collect(events: list[Event]) -> Response:
    """Add streamed events up into one response, merging adjacent text of the same kind."""
    start = Start()
    usage = Usage()
    by_index: dict[int, Candidate] = {}
    for event in events:
        if isinstance(event, PartEvent):
            cand = by_index.setdefault(event.index, Candidate(event.index))
            _append(cand.parts, event.part)
        elif isinstance(event, Finish):
            cand = by_index.setdefault(event.index, Candidate(event.index))
            cand.finish, cand.finish_detail = event.reason, event.detail
        elif isinstance(event, UsageEvent):
            usage = event.usage
        elif isinstance(event, Grounding):
            cand = by_index.setdefault(event.index, Candidate(event.index))
            add_sources(cand.sources, event.sources)
        elif isinstance(event, Start):
            start = event
    candidates = [by_index[i] for i in sorted(by_index)] or [Candidate(0)]
    return Response(start.response_id, start.model_version, candidates, usage)


def add_sources(into: list[Source], new: list[Source]) -> None:
    """Add sources not yet listed (by URL), keeping first-seen order."""
    seen = {s.url for s in into}
    for source in new:
        if source.url not in seen:
            seen.add(source.url)
            into.append(source)


def _append(parts: list[Part], part: Part) -> None:
    last = parts[-1] if parts else None
    if (
        isinstance(part, Text)
        and isinstance(last, Text)
        and last.thought == part.thought
        and last.signature is None
    ):
        # Gemini puts the signature on the last piece of a run; keep it on the merged part.
        parts[-1] = Text(last.text + part.text, part.thought, part.signature)
        return
    parts.append(part)
