"""Model names as clients send them: one check, made as a request is decoded, so that no client
text reaches an upstream URL, a route or a key's scope in a form they do not expect.

A name is letters, digits, `.`, `_` and `-`, starting with a letter or a digit, so it is always
one plain URL path segment (never `..`, never a `/`, `?`, `#` or `%`). It may carry one
`channel/` prefix, which the router alone interprets, and Google's own `models/` prefix.
Patterns (key scopes, aliases) are matched segment by segment, so `*` never crosses a `/`.
"""

from __future__ import annotations

import re
from fnmatch import fnmatchcase
from typing import Any

from gemgate.errors import InvalidRequest

MAX_LENGTH = 128
_SEGMENT = r"[A-Za-z0-9][A-Za-z0-9._-]*"
_NAME = re.compile(_SEGMENT)
_QUALIFIED = re.compile(rf"(?:models/)?(?:({_SEGMENT})/)?({_SEGMENT})")
# Names already found good; emptied rather than let grow past its bound.
_VALID: set[str] = set()
_VALID_MAX = 4096


def check(value: Any, field: str = "model") -> str:
    """The model a client asked for, without Google's `models/` prefix; a 400 naming `field`
    when it is not a string or not a model name."""
    if isinstance(value, str) and value in _VALID:  # the same few names on every request
        return value.removeprefix("models/")
    if not isinstance(value, str):
        if value is None:
            raise InvalidRequest(f"{field} is required", param=field)
        raise InvalidRequest(f"{field} must be a string", param=field)
    if not value:
        raise InvalidRequest(f"{field} is required", param=field)
    if len(value) > MAX_LENGTH or _QUALIFIED.fullmatch(value) is None:
        raise InvalidRequest(
            f"{field} {value[:MAX_LENGTH]!r} is not a model name: use letters, digits, '.', '_'"
            " and '-', with at most one 'channel/' prefix",
            param=field,
        )
    if len(_VALID) >= _VALID_MAX:
        _VALID.clear()
    _VALID.add(value)
    return value.removeprefix("models/")


def split(name: str) -> tuple[str | None, str]:
    """A checked name as (channel prefix or None, model)."""
    channel, slash, model = name.partition("/")
    return (channel, model) if slash else (None, name)


def path_segment(model: str) -> str:
    """An upstream model name as a URL path segment. Channels build upstream URLs only through
    this: a name that could change the path is refused, whatever let it get this far."""
    if len(model) > MAX_LENGTH or _NAME.fullmatch(model) is None:
        raise InvalidRequest(f"{model[:MAX_LENGTH]!r} is not a model name", param="model")
    return model


def matches(name: str, pattern: str) -> bool:
    """A shell-style pattern match in which `*`, `?` and `[...]` stay inside one segment."""
    names, patterns = name.split("/"), pattern.split("/")
    return len(names) == len(patterns) and all(
        fnmatchcase(n, p) for n, p in zip(names, patterns, strict=True)
    )
