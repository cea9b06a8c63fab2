"""Make a client's JSON Schema acceptable to Gemini's `parametersJsonSchema` /
`responseJsonSchema`, changing keywords only at schema positions, never property names."""

from __future__ import annotations

from typing import Any

# Keywords Gemini's JSON-Schema dialect rejects or that carry no meaning for it.
_DROPPED = frozenset({"$schema", "$comment", "strict"})


def clean_schema(schema: dict[str, Any]) -> dict[str, Any]:
    return _clean(schema)


def _clean(node: Any) -> Any:
    if isinstance(node, list):
        return [_clean(item) for item in node]
    if not isinstance(node, dict):
        return node
    out: dict[str, Any] = {}
    for key, value in node.items():
        if key in _DROPPED or key.startswith("x-"):
            continue
        if key == "const":
            out["enum"] = [value]
        elif key in ("properties", "$defs", "definitions", "patternProperties"):
            # Keys of these maps are names chosen by the client, not keywords.
            out[key] = (
                {name: _clean(sub) for name, sub in value.items()}
                if isinstance(value, dict)
                else value
            )
        else:
            out[key] = _clean(value)
    return out
