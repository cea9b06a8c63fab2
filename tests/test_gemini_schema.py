"""Client JSON Schemas made acceptable to Gemini (protocol notes C.2.6)."""

from __future__ import annotations

from gemgate.channels._gemini_schema import MAX_DEPTH, clean_schema


def test_drops_what_gemini_rejects_but_keeps_property_names() -> None:
    schema = {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": "urn:x",
        "type": "object",
        "x-vendor": 1,
        "properties": {
            "format": {"type": "string", "format": "date-time", "$comment": "kept name"},
            "const": {"const": "fixed"},
            "$schema": {"type": "string"},
        },
        "required": ["format", "const", "ghost"],
    }
    assert clean_schema(schema) == {
        "type": "object",
        "properties": {
            "format": {"type": "string", "format": "date-time"},
            "const": {"enum": ["fixed"]},
            "$schema": {"type": "string"},
        },
        "required": ["format", "const"],
    }


def test_refs_are_inlined_and_defs_dropped() -> None:
    schema = {
        "type": "object",
        "properties": {"home": {"$ref": "#/$defs/Address", "description": "where"}},
        "$defs": {
            "Address": {
                "type": "object",
                "properties": {"city": {"type": "string"}, "zip": {"$ref": "#/definitions/Zip"}},
            }
        },
        "definitions": {"Zip": {"type": "string", "pattern": "^[0-9]{5}$"}},
    }
    assert clean_schema(schema) == {
        "type": "object",
        "properties": {
            "home": {
                "type": "object",
                "description": "where",
                "properties": {
                    "city": {"type": "string"},
                    "zip": {"type": "string", "pattern": "^[0-9]{5}$"},
                },
            }
        },
    }


def test_recursive_refs_are_cut_off() -> None:
    schema = {
        "$defs": {
            "Node": {
                "type": "object",
                "properties": {"children": {"type": "array", "items": {"$ref": "#/$defs/Node"}}},
            }
        },
        "$ref": "#/$defs/Node",
    }
    cleaned = clean_schema(schema)
    items = cleaned["properties"]["children"]["items"]
    assert items["type"] == "object"
    assert "recursive" in items["description"]
    assert "$ref" not in str(cleaned)


def test_deep_nesting_is_bounded() -> None:
    schema: dict = {"type": "string"}
    for _ in range(MAX_DEPTH * 2):
        schema = {"type": "object", "properties": {"a": schema}}
    depth, node = 0, clean_schema(schema)
    while "properties" in node:
        node, depth = node["properties"]["a"], depth + 1
    assert depth <= MAX_DEPTH + 1


def test_type_lists_one_of_and_all_of() -> None:
    schema = {
        "type": "object",
        "properties": {
            "maybe": {"type": ["string", "null"]},
            "either": {"type": ["string", "integer"]},
            "choice": {"oneOf": [{"type": "string"}, {"type": "number"}]},
        },
        "allOf": [
            {"properties": {"extra": {"type": "boolean"}}, "required": ["extra"]},
        ],
    }
    assert clean_schema(schema) == {
        "type": "object",
        "properties": {
            "maybe": {"type": "string", "nullable": True},
            "either": {"anyOf": [{"type": "string"}, {"type": "integer"}]},
            "choice": {"anyOf": [{"type": "string"}, {"type": "number"}]},
            "extra": {"type": "boolean"},
        },
        "required": ["extra"],
    }


def test_the_client_schema_is_not_modified() -> None:
    schema = {"type": "object", "properties": {"a": {"$ref": "#/$defs/A"}}, "$defs": {"A": {}}}
    before = repr(schema)
    clean_schema(schema)
    assert repr(schema) == before
