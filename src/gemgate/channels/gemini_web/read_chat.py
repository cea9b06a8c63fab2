"""`hNvQHb`, the web app's "read chat": a conversation's turns as the server keeps them
(reference §4.3, §10.1). Work that goes on after a stream ends (a deep-research report) is
found here.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import orjson

from gemgate.channels.gemini_web.client import WebSession
from gemgate.channels.gemini_web.frames import at


@dataclass(slots=True)
class ChatTurn:
    rid: str | None
    prompt: str | None
    candidates: list[list[Any]]  # raw, in the StreamGenerate candidate layout (§6.3)


async def read_chat(session: WebSession, cid: str, limit: int = 10) -> list[ChatTurn]:
    """The chat's newest `limit` turns, newest first."""
    page, _ = await session.ready()
    payload = orjson.dumps([cid, limit, None, 1, [1], [4], None, 1]).decode()
    body = await session.batch(page, "hNvQHb", payload)
    turns = []
    for raw in at(body, 0) or ():
        if not isinstance(raw, list):
            continue
        rid = at(raw, 0, 1)
        prompt = at(raw, 2, 0, 0)
        candidates = at(raw, 3, 0)
        turns.append(
            ChatTurn(
                rid=rid if isinstance(rid, str) else None,
                prompt=prompt if isinstance(prompt, str) else None,
                candidates=[c for c in candidates or () if isinstance(c, list)],
            )
        )
    return turns
