"""The channel seam: what every upstream must do, and nothing more."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

from gemgate import ir
from gemgate.pool import Credential

# One holder at a time for a name (an account's token refresh, its cookie rotation), over every
# instance with Redis and every worker of one server without it (gateway.py).
Exclusive = Callable[[str], AbstractAsyncContextManager[None]]


@dataclass(frozen=True, slots=True)
class ModelInfo:
    id: str
    display_name: str | None = None
    input_token_limit: int | None = None
    output_token_limit: int | None = None
    # The upstream's own description, for the Gemini-native model listing.
    raw: dict[str, Any] = field(default_factory=dict)


class Channel(Protocol):
    id: str

    def serves(self, model: str) -> bool:
        """Whether an unprefixed request for `model` may be routed here."""
        ...

    def generate(
        self, request: ir.Request, model: str, credential: Credential
    ) -> AsyncIterator[ir.Event | ir.Batch]:
        """Send the request upstream and yield IR events as the answer arrives: one at a time,
        or the events of one upstream read together as a batch. Before the first, failures are
        raised as `UpstreamFailed` so the pool can try another credential; after it, as
        `GatewayError`."""
        ...

    async def count_tokens(
        self, request: ir.Request, model: str, credential: Credential
    ) -> int: ...

    async def list_models(self, credential: Credential) -> list[ModelInfo]: ...


@runtime_checkable
class Embedder(Protocol):
    """A channel that also turns texts into embedding vectors."""

    async def embed(
        self, request: ir.EmbedRequest, model: str, credential: Credential
    ) -> ir.Embeddings: ...
