"""From a stateless `messages` list to one web-chat turn, and the map of web chats gemgate
produced, so a history that extends one of them continues that chat (reference §10).

A history is identified by a hash over its turns as text (system, roles, text, media digests).
After an answer, the hash of the history plus that answer points at the chat (account, model,
cid/rid/rcid, context token) for a limited time; a request whose history up to its last model
turn hashes to a stored value continues that chat and sends only the turns after it.
"""

from __future__ import annotations

import base64
import hashlib
import re
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any

from gemgate import ir
from gemgate.errors import InvalidRequest
from gemgate.store import Store

_ROLE_LABEL = {"user": "User", "model": "Assistant"}
# An image the gateway put in a model answer, as the client keeps it: a Markdown image (a link
# or a data URL) in OpenAI chat, an image block or inline data elsewhere.
_ANSWER_IMAGE = re.compile(r"!\[[^\]\n]*\]\((?:https?://|data:)[^)\s]*\)")
# Chats held in memory; older ones are read from the store when continued.
_RECENT_LIMIT = 10_000
_LEAD = (
    "The conversation so far is below, each message under a label. Reply as the Assistant to "
    "the last User message; do not write the labels."
)
_FILE_LEAD = (
    "The conversation so far is in the attached file conversation.txt, each message under a "
    "label. Reply as the Assistant to the last User message in it; do not write the labels."
)


@dataclass(slots=True)
class Chat:
    """A web chat that a request may continue."""

    credential_id: int
    model: str
    cid: str
    rid: str
    rcid: str
    context: str
    turn: int

    def metadata(self) -> list[Any]:
        return [self.cid, self.rid, self.rcid, None, None, None, None, None, None, self.context]


@dataclass(slots=True)
class Turn:
    """What one StreamGenerate call sends: the prompt text and the files to attach."""

    prompt: str
    files: list[ir.Media] = field(default_factory=list)
    # A text file made of the history when the prompt would pass the size wall.
    history_file: bytes | None = None


def history_hash(request: ir.Request, messages: list[ir.Message], model: str) -> str:
    digest = hashlib.sha256(model.encode())
    for text in request.system:
        digest.update(b"\x00s" + text.text.strip().encode())
    for message in messages:
        answer = message.role == "model"
        digest.update(b"\x00" + message.role.encode())
        for part in message.parts:
            if isinstance(part, ir.Text):
                if not part.thought:
                    said = part.text
                    if answer and "![" in said:
                        # The images of an answer are the web chat's own: it is continued
                        # whichever form the client keeps them in.
                        said = _ANSWER_IMAGE.sub("", said)
                    digest.update(b"\x01" + said.strip().encode())
            elif answer and isinstance(part, ir.Media):
                continue
            elif isinstance(part, ir.Media):
                digest.update(
                    b"\x02" + hashlib.sha256((part.data or part.uri or "").encode()).digest()
                )
    return digest.hexdigest()


def split_at_last_answer(request: ir.Request) -> tuple[list[ir.Message], list[ir.Message]]:
    """The history up to and including its last model turn, and the turns after it."""
    for i in range(len(request.messages) - 1, -1, -1):
        if request.messages[i].role == "model":
            return request.messages[: i + 1], request.messages[i + 1 :]
    return [], list(request.messages)


class ChatMap:
    """Held in memory for this instance at once, and written to the store in batches (with
    the usage records) for restarts and other instances: no write on a request's path."""

    def __init__(self, store: Store, ttl: float) -> None:
        self.store = store
        self.ttl = ttl
        # Oldest first: with one time limit for all, also the order in which they expire.
        self._recent: OrderedDict[str, dict[str, Any]] = OrderedDict()
        self._pending: list[dict[str, Any]] = []

    async def find(self, request: ir.Request, model: str) -> tuple[Chat, list[ir.Message]] | None:
        """The chat this request continues, and the new turns to send, if gemgate made it."""
        history, new = split_at_last_answer(request)
        if not history or not new:
            return None
        key = history_hash(request, history, model)
        row = self._recent.get(key)
        if row is None or row["expires_at"] < time.time():
            row = await self.store.find_web_chat(key)
        if row is None or row["model"] != model:
            return None
        chat = Chat(
            row["credential_id"], row["model"], row["cid"], row["rid"], row["rcid"],
            row["context"] or "", row["turn"],
        )  # fmt: skip
        return chat, new

    def remember(self, request: ir.Request, model: str, answer: str, chat: Chat) -> None:
        messages = [*request.messages, ir.Message("model", [ir.Text(answer)])]
        now = time.time()
        key = history_hash(request, messages, model)
        row: dict[str, Any] = {
            "key_hash": key,
            "credential_id": chat.credential_id,
            "model": model,
            "cid": chat.cid,
            "rid": chat.rid,
            "rcid": chat.rcid,
            "context": chat.context,
            "turn": chat.turn,
            "expires_at": now + self.ttl,
        }
        self._recent[key] = row
        self._recent.move_to_end(key)
        # Past the limit the oldest go, expired or not: the store still has them for `find`.
        while len(self._recent) > _RECENT_LIMIT or _expired(self._recent, now):
            self._recent.popitem(last=False)
        self._pending.append(row)

    async def flush(self) -> None:
        if not self._pending:
            return
        rows, self._pending = self._pending, []
        try:
            await self.store.save_web_chats(rows)
        except Exception:
            self._pending = rows + self._pending
            raise


def _expired(recent: OrderedDict[str, dict[str, Any]], now: float) -> bool:
    oldest = next(iter(recent.values()), None)
    return oldest is not None and oldest["expires_at"] < now


def build_turn(
    request: ir.Request,
    messages: list[ir.Message],
    *,
    continuing: bool,
    prompt_limit: int,
    file_limit: int,
) -> Turn:
    """The prompt for `messages`: alone when they are the only user turn of a new chat or the
    new turns of a continued one; else the whole history labelled in order. A prompt past the
    web app's size wall (it silently cuts the tail, losing the newest message) goes as a text
    attachment, and past what the app reads from one, it is refused."""
    files = [p for m in messages for p in m.parts if isinstance(p, ir.Media)]
    plain = continuing or (not request.system and len(messages) == 1 and messages[0].role == "user")
    if plain:
        text = "\n\n".join(_text_of(m) for m in messages if _text_of(m))
    else:
        text = _LEAD + "\n\n" + _labelled(request, messages)
    size = len(text.encode())
    if size <= prompt_limit:
        return Turn(text, files)
    history = (
        _labelled(request, messages) if plain else text.removeprefix(_LEAD + "\n\n")
    ).encode()
    if len(history) > file_limit:
        raise InvalidRequest(
            f"the prompt is {len(history):,} bytes; gemini_official takes at most "
            f"{file_limit:,} bytes (the web app cuts longer prompts): shorten the conversation",
            code="context_length_exceeded",
        )
    return Turn(_FILE_LEAD, files, history_file=history)


def _labelled(request: ir.Request, messages: list[ir.Message]) -> str:
    blocks = []
    system = "\n\n".join(t.text for t in request.system if t.text)
    if system:
        blocks.append(f"System:\n{system}")
    for message in messages:
        text = _text_of(message)
        if text:
            blocks.append(f"{_ROLE_LABEL[message.role]}:\n{text}")
    return "\n\n".join(blocks)


def _text_of(message: ir.Message) -> str:
    pieces = []
    for part in message.parts:
        if isinstance(part, ir.Text) and not part.thought and part.text:
            pieces.append(part.text)
        elif isinstance(part, ir.Media):
            pieces.append(f"[attached: {part.mime_type}]")
    return "\n".join(pieces)


def media_bytes(media: ir.Media) -> bytes:
    if media.data is None:
        raise InvalidRequest(
            f"a {media.mime_type} file given by reference cannot be sent to gemini_official; "
            "send its bytes (a data URL or inline data) or an http(s) URL"
        )
    # Clients send either alphabet (the google-genai SDK sends the URL-safe one), padded or not.
    data = media.data.strip().replace("-", "+").replace("_", "/")
    try:
        return base64.b64decode(data + "=" * (-len(data) % 4), validate=True)
    except ValueError:
        raise InvalidRequest(f"a {media.mime_type} file is not valid base64") from None
