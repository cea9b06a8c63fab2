"""Which channel serves a request, and under which upstream model name.

Order of resolution: an operator alias (an exact name, else the most specific glob pattern);
a `channel/model` form that pins the channel; the route prefix (`/gemini/...`) that pins it;
else the first channel that serves the model name, preferring one that has a usable credential.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from gemgate import model_names
from gemgate.channels.base import Channel
from gemgate.errors import InvalidRequest, NotFound
from gemgate.services.keys import CHANNELS

_WILDCARDS = frozenset("*?[")
# How long the channels found serving a model name are reused before they are asked again: a
# channel's model list can grow while gemgate runs, and asking every channel on every request
# was a few per cent of gemgate's CPU on the fast path.
SERVING_TTL = 1.0
# Model names are few; the cache is emptied rather than let grow past this.
_SERVING_MAX = 1024


@dataclass(frozen=True, slots=True)
class Route:
    channel: str
    # The model sent upstream, after aliases and suffixes.
    model: str
    # The model the client asked for, without a `models/` or `channel/` prefix.
    asked: str


class Aliases:
    """Client-facing names → `channel/model` or a plain upstream model. A name given exactly
    wins; else the matching pattern with the most literal characters (`claude-haiku-*` before
    `claude-*`), earlier in the settings on a tie."""

    def __init__(self, table: Mapping[str, str]) -> None:
        self.exact: dict[str, str] = {}
        patterns: list[tuple[str, str]] = []
        for name, target in table.items():
            try:
                model_names.check(target, "alias target")
            except InvalidRequest as error:
                raise ValueError(f"alias {name!r}: {error.message}") from None
            if _WILDCARDS.isdisjoint(name):
                self.exact[name] = target
            else:
                patterns.append((name, target))
        self.patterns = sorted(patterns, key=lambda p: -sum(c not in _WILDCARDS for c in p[0]))

    def target(self, name: str) -> str | None:
        found = self.exact.get(name)
        if found is not None or not self.patterns:
            return found
        for pattern, target in self.patterns:
            if model_names.matches(name, pattern):
                return target
        return None


class Router:
    def __init__(
        self,
        channels: Mapping[str, Channel],
        aliases: Mapping[str, str],
        has_usable: Callable[[str], bool],
    ) -> None:
        self.channels = channels
        self.aliases = Aliases(aliases)
        self.has_usable = has_usable
        self._serving: dict[str, tuple[str, ...]] = {}
        self._serving_until = 0.0

    def resolve(self, model: str, pinned: str | None = None) -> Route:
        asked = model_names.check(model)
        target = self.aliases.target(asked) or asked
        channel, name = model_names.split(target)
        asked_name = model_names.split(asked)[1]
        if channel is not None:
            if channel not in self.channels:
                if channel in CHANNELS:
                    raise NotFound(f"channel {channel!r} is not available on this gateway")
                raise InvalidRequest(
                    f"model {model!r}: {channel!r} is not a channel; a model name may start"
                    f" with one of {', '.join(self.channels)} and a '/'",
                    param="model",
                )
            if pinned and pinned != channel:
                raise InvalidRequest(
                    f"model {model!r} belongs to channel {channel!r}, not {pinned!r}",
                    param="model",
                )
            return Route(channel, name, asked_name)
        if pinned:
            if pinned not in self.channels:
                raise NotFound(f"channel {pinned!r} is not available on this gateway")
            return Route(pinned, name, asked_name)
        serving = self._channels_serving(name)
        for cid in serving:
            if self.has_usable(cid):
                return Route(cid, name, asked_name)
        if serving:
            return Route(serving[0], name, asked_name)
        raise NotFound(
            f"model {model!r} is not served by this gateway", param="model", code="model_not_found"
        )

    def _channels_serving(self, name: str) -> tuple[str, ...]:
        """The channels that serve an unprefixed `name`, in the configured order. Only names
        some channel serves are kept: one that none serves yet is asked about again."""
        now = time.monotonic()
        if now >= self._serving_until or len(self._serving) >= _SERVING_MAX:
            self._serving.clear()
            self._serving_until = now + SERVING_TTL
        serving = self._serving.get(name)
        if serving is None:
            serving = tuple(cid for cid, channel in self.channels.items() if channel.serves(name))
            if serving:
                self._serving[name] = serving
        return serving
