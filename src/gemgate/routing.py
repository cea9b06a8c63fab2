"""Which channel serves a request, and under which upstream model name.

Order of resolution: an operator alias; a `channel/model` form that pins the channel; the
route prefix (`/gemini/...`) that pins it; else the first channel that serves the model name,
preferring one that has a usable credential.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass

from gemgate.channels.base import Channel
from gemgate.errors import InvalidRequest, NotFound


@dataclass(frozen=True, slots=True)
class Route:
    channel: str
    model: str


class Router:
    def __init__(
        self,
        channels: Mapping[str, Channel],
        aliases: Mapping[str, str],
        has_usable: Callable[[str], bool],
    ) -> None:
        self.channels = channels
        self.aliases = aliases
        self.has_usable = has_usable

    def resolve(self, model: str, pinned: str | None = None) -> Route:
        name = model.removeprefix("models/")
        name = self.aliases.get(name, name)
        if "/" in name:
            channel, _, upstream = name.partition("/")
            if channel in self.channels:
                if pinned and pinned != channel:
                    raise InvalidRequest(
                        f"model {model!r} belongs to channel {channel!r}, not {pinned!r}",
                        param="model",
                    )
                return Route(channel, upstream)
        if pinned:
            if pinned not in self.channels:
                raise NotFound(f"channel {pinned!r} is not available on this gateway")
            return Route(pinned, name)
        serving = [cid for cid, channel in self.channels.items() if channel.serves(name)]
        for cid in serving:
            if self.has_usable(cid):
                return Route(cid, name)
        if serving:
            return Route(serving[0], name)
        raise NotFound(
            f"model {model!r} is not served by this gateway", param="model", code="model_not_found"
        )
