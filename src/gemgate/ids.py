"""Ids for requests, answers and tool calls: unique across processes and restarts (a random
prefix drawn once per process) and cheap (a counter, no system call per id)."""

from __future__ import annotations

import itertools
import secrets

_PREFIX = secrets.token_hex(6)
_COUNTER = itertools.count(1)


def new_id() -> str:
    return f"{_PREFIX}{next(_COUNTER):010x}"
