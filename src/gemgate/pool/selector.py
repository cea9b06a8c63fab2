"""Which usable credential goes first."""

from __future__ import annotations

import itertools
from collections.abc import Sequence

from gemgate.pool.credential import Credential


class RoundRobin:
    """Each call starts one step further along the list, so load spreads evenly."""

    def __init__(self) -> None:
        self._counter = itertools.count()

    def order(self, usable: Sequence[Credential]) -> list[Credential]:
        if len(usable) < 2:
            return list(usable)
        start = next(self._counter) % len(usable)
        return [*usable[start:], *usable[:start]]
