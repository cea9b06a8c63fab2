"""The StreamGenerate request: the model table (configuration, not code, because Google
re-points ids without notice), the model header, and the inner request array.

Reference: gemini-web-protocol.md §5.2 (inner array, 2026-11 browser shape) and §5.3 (header).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from typing import Any

import orjson

from gemgate.errors import InvalidRequest

# Browser captures (Sep 2026) hold 98 slots; short arrays are tolerated but not relied on.
INNER_LENGTH = 98

# The defaults of GEMGATE_WEB_MODELS. `id`: the model id for a signed-in account; `tier_ids`:
# a different id for some tier (capacity) values; `mode`: header index 14 and inner slot 79;
# `thinking`: 2 = extended thinking (header index 15, slots 80 and 96); `answers`: ids that may
# answer for it in body[42] (ids re-pointed in place stay acceptable).
DEFAULT_MODELS: dict[str, Any] = {
    "models": {
        "gemini-3-fast": {
            "id": "fbb127bbb056c959",
            "mode": 1,
            "thinking": 1,
            "answers": ["fbb127bbb056c959", "56fdd199312815e2", "797f3d0293f288ad"],
        },
        "gemini-3-thinking": {
            "id": "fbb127bbb056c959",
            "mode": 1,
            "thinking": 2,
            "answers": ["fbb127bbb056c959", "56fdd199312815e2", "797f3d0293f288ad"],
        },
        "gemini-3-pro": {
            "id": "9d8ca3786ebdfbea",
            "mode": 3,
            "thinking": 1,
            "answers": ["9d8ca3786ebdfbea", "e6fa609c3fa255c0"],
        },
    },
    "aliases": {
        "gemini-2.5-flash": "gemini-3-fast",
        "gemini-2.5-pro": "gemini-3-pro",
        "gemini-2.5-flash-thinking": "gemini-3-thinking",
    },
    # What a signed-out (guest) session is served by: an answer from it means lost cookies.
    "guest_ids": ["cf41b0e0dd7d53e5"],
    # otAQ7b flags -> capacity (header index 11): tier flags [16] and capability flags [17].
    "tier_flags": {"8": 2, "16": 3},
    "capability_flags": {"115": 4, "106": 3, "19": 2},
    "free_capacity": 1,
    "header": [
        1, None, None, None, "{id}", None, None, 0, [4, 5, 6, 8], None, None, "{capacity}",
        None, None, "{mode}", "{thinking}", "{session}",
    ],
}  # fmt: skip

FREE_SUFFIX = "-free"


@dataclass(frozen=True, slots=True)
class Tool:
    """One of the web app's tools, asked for by a model-name suffix (`gemini-3-pro-imagen`).
    `name` says what the channel does with the answer; `selector` is inner slot 49 (§5.2),
    `slots` any further inner slots the tool sets."""

    name: str
    selector: int | None = None
    slots: tuple[tuple[int, Any], ...] = ()
    # Needs a signed-in account on a paid plan (Veo and deep research do, §8.5, §9.2).
    paid: bool = False


# Model-name suffix -> tool. A name is `<model>[<tool suffix>][-free]`.
TOOLS: dict[str, Tool] = {
    "-imagen": Tool("image", selector=14),
    # Nothing known selects Veo but asking for a video in words (§8.5).
    "-video": Tool("video", paid=True),
    # Slots 3 and 4 (a fresh token per turn) are set by research.prepare.
    "-deepsearch": Tool(
        "deepsearch", selector=1, slots=((54, [[[[[1]]]]]), (55, [[1]])), paid=True
    ),
    # Nothing known selects a canvas: the answer as it comes, placeholders removed (§9.3).
    "-canvas": Tool("canvas"),
    "-storybook": Tool("storybook", slots=((19, "storybook"),)),  # a predefined gem (§9.4)
}


def split_tool(name: str) -> tuple[str, Tool | None]:
    """A name without `-free` as (the model, the tool its suffix asks for or None)."""
    for suffix, tool in TOOLS.items():
        if name.endswith(suffix):
            return name.removesuffix(suffix), tool
    return name, None


@dataclass(frozen=True, slots=True)
class WebModel:
    name: str  # the client-facing name (after aliasing, with its suffixes)
    id: str
    mode: int
    thinking: int
    free: bool = False
    answers: frozenset[str] = frozenset()
    tier_ids: dict[str, str] = field(default_factory=dict)
    tool: Tool | None = None

    def id_for(self, capacity: int) -> str:
        return self.tier_ids.get(str(capacity), self.id)


class ModelTable:
    def __init__(self, config: dict[str, Any]) -> None:
        self.config = config
        self.models: dict[str, dict[str, Any]] = dict(config["models"])
        self.aliases: dict[str, str] = dict(config.get("aliases") or {})
        self.guest_ids = frozenset(config.get("guest_ids") or ())
        self.header_template: list[Any] = list(config["header"])

    @classmethod
    def from_setting(cls, text: str) -> ModelTable:
        """GEMGATE_WEB_MODELS: a JSON object whose keys replace the defaults' keys."""
        if not text.strip():
            return cls(DEFAULT_MODELS)
        try:
            given = orjson.loads(text)
        except orjson.JSONDecodeError as exc:
            raise ValueError(f"GEMGATE_WEB_MODELS is not valid JSON: {exc}") from None
        if not isinstance(given, dict):
            raise ValueError("GEMGATE_WEB_MODELS must be a JSON object")
        return cls({**DEFAULT_MODELS, **given})

    def names(self) -> list[str]:
        base = [*self.models, *self.aliases]
        tools = [name + suffix for suffix in TOOLS for name in base]
        return base + [name + FREE_SUFFIX for name in base] + tools

    def lookup(self, name: str) -> WebModel | None:
        free = name.endswith(FREE_SUFFIX)
        bare = name.removesuffix(FREE_SUFFIX) if free else name
        bare, tool = split_tool(bare)
        bare = self.aliases.get(bare, bare)
        entry = self.models.get(bare)
        if entry is None:
            return None
        model_id = str(entry["id"])
        return WebModel(
            name=name,
            id=model_id,
            mode=int(entry.get("mode", 1)),
            thinking=int(entry.get("thinking", 1)),
            free=free,
            answers=frozenset(entry.get("answers") or [model_id]) | {model_id},
            tier_ids={str(k): str(v) for k, v in (entry.get("tier_ids") or {}).items()},
            tool=tool,
        )

    def resolve(self, name: str) -> WebModel:
        model = self.lookup(name)
        if model is None:
            raise InvalidRequest(
                f"model {name!r} is not served by gemini_official; use one of "
                + ", ".join(self.names()),
                param="model",
                code="model_not_found",
            )
        return model

    def capacity(self, tier_flags: list[Any], capability_flags: list[Any]) -> int:
        """The header's tier value for an account, from its otAQ7b flags (§11.1)."""
        capacity = int(self.config.get("free_capacity", 1))
        for flags, table in (
            (capability_flags, self.config.get("capability_flags") or {}),
            (tier_flags, self.config.get("tier_flags") or {}),
        ):
            for flag in flags:
                value = table.get(str(flag))
                if value is not None:
                    return int(value)
        return capacity

    def header(self, model: WebModel, capacity: int, session: str) -> str:
        """The x-goog-ext-525001261-jspb value: the template with its placeholders filled."""
        values: dict[str, Any] = {
            "{id}": model.id_for(capacity),
            "{capacity}": capacity,
            "{mode}": model.mode,
            "{thinking}": model.thinking,
            "{session}": session,
        }
        filled = [values.get(v, v) if isinstance(v, str) else v for v in self.header_template]
        return orjson.dumps(filled).decode()


def new_chat_metadata() -> list[Any]:
    return ["", "", "", None, None, None, None, None, None, ""]


def inner_request(
    prompt: str,
    *,
    model: WebModel,
    language: str,
    metadata: list[Any],
    turn: int,
    files: list[Any] | None,
    request_id: str,
) -> list[Any]:
    """The inner array as a browser sends it (§5.2 with the 2026-11 changes). Slots 3/4
    (attestation) stay empty: plain chat works without them."""
    inner: list[Any] = [None] * INNER_LENGTH
    inner[0] = [prompt, 0, None, files or None, None, None, 0]
    inner[1] = [language]
    inner[2] = metadata
    inner[6] = [0]
    inner[7] = 1  # streaming
    inner[10] = 1
    inner[11] = 0
    inner[17] = [[turn]]  # the turn index within the conversation
    inner[18] = 0
    inner[27] = 1
    inner[30] = [4]
    inner[41] = [1]
    inner[53] = 0
    inner[59] = request_id
    inner[61] = []
    inner[68] = 1
    inner[79] = model.mode
    inner[80] = model.thinking
    inner[91] = 0
    inner[96] = 1 if model.thinking == 2 else 0
    if model.tool is not None:
        if model.tool.selector is not None:
            inner[49] = model.tool.selector
        for slot, value in model.tool.slots:
            inner[slot] = value
    return inner


def new_request_id() -> str:
    return str(uuid.uuid4()).upper()
