"""Make a client's JSON Schema acceptable to Gemini's `parametersJsonSchema` /
`responseJsonSchema` (protocol notes C.2.6).

Keywords change only at schema positions: the keys of `properties` are names the client chose,
so a property called `format` or `const` is kept as it is.
"""

from __future__ import annotations

from typing import Any

from gemgate import json_depth
from gemgate.errors import InvalidRequest

# Keywords Gemini rejects, or that mean nothing to it and only risk a 400.
_DROPPED = frozenset(
    {
        "$schema",
        "$id",
        "$comment",
        "$anchor",
        "$dynamicRef",
        "$dynamicAnchor",
        "strict",
        "examples",
        "deprecated",
        "readOnly",
        "writeOnly",
    }
)
# Maps whose values are schemas but whose keys are names.
_SCHEMA_MAPS = frozenset({"properties", "patternProperties", "dependentSchemas"})
# Keywords whose value is one schema, or a list of schemas.
_SCHEMA_VALUES = frozenset(
    {"items", "additionalProperties", "not", "contains", "propertyNames", "if", "then", "else"}
)
_SCHEMA_LISTS = frozenset({"anyOf", "prefixItems"})
# Gemini rejects schemas nested deeper than this; recursive `$ref`s are cut off here.
MAX_DEPTH = 12
# Values that are not schemas (`default`, `enum`, `example`...) are copied as they are, so
# they get a bound of their own.
MAX_VALUE_DEPTH = 32
_CONTAINERS = (dict, list)


def clean_schema(schema: dict[str, Any]) -> dict[str, Any]:
    cleaner = _Cleaner(schema)
    cleaned = cleaner.clean(schema, 0, ())
    return cleaned if isinstance(cleaned, dict) else {}


class _Cleaner:
    def __init__(self, root: dict[str, Any]) -> None:
        self.root = root

    def clean(self, node: Any, depth: int, refs: tuple[str, ...]) -> Any:
        if not isinstance(node, dict):
            return node
        if depth > MAX_DEPTH:
            return {"type": "object", "description": "(nested too deeply; shape not given)"}
        node = self._inline_ref(node, refs)
        if isinstance(node, _Cut):
            return {"type": "object", "description": f"(recursive reference to {node.ref})"}
        ref = node.pop("\0ref", None)
        if ref is not None:
            refs = (*refs, ref)
        node = _merge_all_of(node)
        out: dict[str, Any] = {}
        for key, value in node.items():
            if key in _DROPPED or key.startswith("x-") or key in ("$defs", "definitions"):
                continue
            if key == "const":
                out["enum"] = [value]
            elif key == "oneOf":
                out["anyOf"] = self._list(value, depth, refs)
            elif key in _SCHEMA_LISTS:
                out[key] = self._list(value, depth, refs)
            elif key in _SCHEMA_MAPS and isinstance(value, dict):
                out[key] = {name: self.clean(sub, depth + 1, refs) for name, sub in value.items()}
            elif key in _SCHEMA_VALUES:
                out[key] = (
                    self._list(value, depth, refs)
                    if isinstance(value, list)
                    else self.clean(value, depth + 1, refs)
                )
            elif type(value) in _CONTAINERS and _too_deep(value):
                raise InvalidRequest(
                    f"a schema's {key!r} value is nested more than {MAX_VALUE_DEPTH} levels deep"
                )
            else:
                out[key] = value
        _fix_types(out)
        _fix_required(out)
        return out

    def _list(self, value: Any, depth: int, refs: tuple[str, ...]) -> Any:
        if not isinstance(value, list):
            return value
        return [self.clean(item, depth + 1, refs) for item in value]

    def _inline_ref(self, node: dict[str, Any], refs: tuple[str, ...]) -> dict[str, Any] | _Cut:
        ref = node.get("$ref")
        if not isinstance(ref, str):
            return node
        if ref in refs:
            return _Cut(ref.rsplit("/", 1)[-1])
        target = self._lookup(ref)
        if target is None:
            # A reference we cannot follow; an open object beats a 400 from Google.
            rest = {k: v for k, v in node.items() if k != "$ref"}
            return {"type": "object", **rest}
        siblings = {k: v for k, v in node.items() if k != "$ref"}
        return {**target, **siblings, "\0ref": ref}

    def _lookup(self, ref: str) -> dict[str, Any] | None:
        if not ref.startswith("#"):
            return None
        node: Any = self.root
        for token in ref[1:].split("/"):
            if not token:
                continue
            token = token.replace("~1", "/").replace("~0", "~")
            if not isinstance(node, dict) or token not in node:
                return None
            node = node[token]
        return dict(node) if isinstance(node, dict) else None


def _too_deep(value: dict[str, Any] | list[Any]) -> bool:
    if type(value) is list:
        # Most such values are flat lists (`enum`, `required`): no walk for those.
        for item in value:
            if type(item) in _CONTAINERS:
                break
        else:
            return False
    return json_depth.deeper_than(value, MAX_VALUE_DEPTH)


class _Cut:
    def __init__(self, ref: str) -> None:
        self.ref = ref


def _merge_all_of(node: dict[str, Any]) -> dict[str, Any]:
    """`allOf` folded into the schema itself: properties and required lists add up."""
    parts = node.get("allOf")
    if not isinstance(parts, list):
        return node
    merged = {k: v for k, v in node.items() if k != "allOf"}
    for part in parts:
        if not isinstance(part, dict):
            continue
        for key, value in part.items():
            own = merged.get(key)
            if key == "properties" and isinstance(value, dict) and isinstance(own, dict | None):
                merged["properties"] = {**value, **(own or {})}
            elif key == "required" and isinstance(value, list) and isinstance(own, list | None):
                names = [n for n in (*(own or ()), *value) if isinstance(n, str)]
                merged["required"] = list(dict.fromkeys(names))
            else:
                merged.setdefault(key, value)
    return merged


def _fix_types(out: dict[str, Any]) -> None:
    types = out.get("type")
    if not isinstance(types, list):
        return
    concrete = [t for t in types if t != "null"]
    nullable = len(concrete) < len(types)
    if len(concrete) == 1:
        out["type"] = concrete[0]
    elif not concrete:
        out["type"] = "null"
        return
    else:
        # Several real types: one branch each, sharing nothing but the type.
        del out["type"]
        out["anyOf"] = [*out.get("anyOf", []), *({"type": t} for t in concrete)]
    if nullable:
        out["nullable"] = True


def _fix_required(out: dict[str, Any]) -> None:
    required = out.get("required")
    if not isinstance(required, list):
        return
    # Names only: anything else in the list would make Google refuse the whole schema.
    required = [name for name in required if isinstance(name, str)]
    properties = out.get("properties")
    if isinstance(properties, dict):
        required = [name for name in required if name in properties]
    if required:
        out["required"] = required
    else:
        del out["required"]
