"""Gemini thought signatures inside a Responses reasoning item's `encrypted_content`.

Stateless Responses clients (Codex with `store: false`, anything that asks for
`include: ["reasoning.encrypted_content"]`) replay reasoning items verbatim before the calls
they led to. That is where Gemini's signatures ride: the thought run's own signature, and the
signature of each function call by its call id, with the model that issued them (a signature
is only valid for that model). The prefix tells our tokens from OpenAI's own, which are
useless to Gemini and dropped.
"""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass, field

import orjson

PREFIX = "gmn1."


@dataclass(slots=True)
class Carried:
    model: str
    thought: str | None = None
    calls: dict[str, str] = field(default_factory=dict)


def pack(carried: Carried) -> str:
    payload: dict[str, object] = {"m": carried.model}
    if carried.thought:
        payload["t"] = carried.thought
    if carried.calls:
        payload["c"] = carried.calls
    return PREFIX + base64.urlsafe_b64encode(orjson.dumps(payload)).rstrip(b"=").decode()


def unpack(token: object) -> Carried | None:
    """What a token made by `pack` carries, or None for anything else."""
    if not isinstance(token, str) or not token.startswith(PREFIX):
        return None
    packed = token[len(PREFIX) :]
    try:
        payload = orjson.loads(base64.urlsafe_b64decode(packed + "=" * (-len(packed) % 4)))
    except (binascii.Error, ValueError, orjson.JSONDecodeError):
        return None
    if not isinstance(payload, dict) or not isinstance(payload.get("m"), str):
        return None
    thought = payload.get("t")
    calls = payload.get("c") or {}
    if not isinstance(calls, dict):
        return None
    return Carried(
        payload["m"],
        thought if isinstance(thought, str) else None,
        {str(k): v for k, v in calls.items() if isinstance(v, str)},
    )
