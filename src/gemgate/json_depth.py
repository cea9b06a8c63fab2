"""How deeply client JSON may nest once it is on its way upstream.

Google's parsers refuse messages nested more than 100 levels deep, and orjson writes no more
than 254: tool arguments, tool results or schemas nested deeper get a 400 naming the field,
rather than failing when the upstream body is written.
"""

from __future__ import annotations

from typing import Any

from gemgate.errors import InvalidRequest

MAX_DEPTH = 100


def deeper_than(value: Any, limit: int = MAX_DEPTH) -> bool:
    """Whether `value` nests objects or arrays more than `limit` levels deep. Called on every
    request for what clients replay (tool arguments), so it walks containers only, a level at
    a time, without recursion."""
    level = [value] if type(value) is dict or type(value) is list else []
    depth = 0
    while level:
        depth += 1
        if depth > limit:
            return True
        below = []
        for node in level:
            for child in node.values() if type(node) is dict else node:
                if type(child) is dict or type(child) is list:
                    below.append(child)
        level = below
    return False


def check(value: Any, where: str, param: str | None = None) -> Any:
    """`value` itself, or a 400 saying that `where` nests too deeply."""
    if deeper_than(value):
        raise InvalidRequest(f"{where} is nested more than {MAX_DEPTH} levels deep", param=param)
    return value
