"""Gemini thought signatures carried through clients that have no field for them.

Gemini 3 rejects a function-call turn that comes back without the signature it was issued
with. OpenAI and Anthropic clients keep tool-call ids faithfully but drop unknown fields, so a
signature travels two ways: inside the tool-call id (base64url, which both APIs allow in
ids), and in a server-side cache keyed by the id. Either recovers it; the wire module falls
back to Google's documented bypass value when both fail.
"""

from __future__ import annotations

import base64
import time
from collections import OrderedDict
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from gemgate.store.redis_state import SharedState

# Between the gateway's own id and the signature; neither base64url nor hex contains it.
_SEPARATOR = "__sig_"


def embed(call_id: str, signature: str | None) -> str:
    """The id a client sees: the call id with the signature folded in, when there is one."""
    if not signature:
        return call_id
    packed = base64.urlsafe_b64encode(signature.encode()).rstrip(b"=").decode()
    return f"{call_id}{_SEPARATOR}{packed}"


def split(client_id: str) -> tuple[str, str | None]:
    """The call id and the signature embedded in an id made by `embed` (None when absent or
    mangled)."""
    call_id, found, packed = client_id.partition(_SEPARATOR)
    if not found or not packed:
        return client_id, None
    try:
        signature = base64.urlsafe_b64decode(packed + "=" * (-len(packed) % 4)).decode()
    except (ValueError, UnicodeDecodeError):
        return call_id, None
    return call_id, signature


class SignatureCache:
    """Recently issued signatures by call id, bound to the model that issued them: a signature
    replayed to another model is invalid, so `recall` for another model finds nothing. With
    several instances, each signature is also written to the shared state, so a tool round
    begun on one instance completes on another."""

    def __init__(
        self, ttl: float = 3 * 3600, max_entries: int = 50_000, shared: SharedState | None = None
    ) -> None:
        self.ttl = ttl
        self.max_entries = max_entries
        self.shared = shared
        self._entries: OrderedDict[str, tuple[str, str, float]] = OrderedDict()

    def remember(self, call_id: str, signature: str, model: str) -> None:
        self._entries[call_id] = (signature, model, time.monotonic() + self.ttl)
        self._entries.move_to_end(call_id)
        while len(self._entries) > self.max_entries:
            self._entries.popitem(last=False)
        if self.shared is not None:
            self.shared.remember_signature(call_id, signature, model, self.ttl)

    async def recall_shared(self, call_ids: list[str], model: str) -> dict[str, str]:
        """Signatures for `model` that other instances issued, by call id (one round trip)."""
        if self.shared is None:
            return {}
        found = await self.shared.recall_signatures(call_ids)
        return {c: sig for c, (issued_for, sig) in found.items() if issued_for == model}

    def recall(self, call_id: str, model: str) -> str | None:
        entry = self._entries.get(call_id)
        if entry is None:
            return None
        signature, issued_for, expires = entry
        if time.monotonic() > expires:
            del self._entries[call_id]
            return None
        return signature if issued_for == model else None
