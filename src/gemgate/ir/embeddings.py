"""Embeddings: a request for vectors of some texts, and the vectors that come back.

Separate from `ir.Request` because an embedding is not a conversation: no messages, no
generation settings, no stream, one vector per input in input order.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from gemgate.ir.events import Usage


@dataclass(slots=True)
class EmbedRequest:
    model: str
    inputs: list[str]
    # Length of each vector; None lets the model choose (its full size).
    dimensions: int | None = None
    # Gemini's taskType (RETRIEVAL_QUERY, SEMANTIC_SIMILARITY...), when the client names one.
    task_type: str | None = None
    # Format-private options its encoder needs later; channels never read it.
    client_options: dict[str, Any] = field(default_factory=dict)


@dataclass(slots=True)
class Embeddings:
    vectors: list[list[float]]
    usage: Usage
