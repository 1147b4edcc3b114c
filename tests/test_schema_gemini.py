"""Gemini tool-schema cleaner (protocol.md C.7; schemas from claude-code-client.md §4.6).

Gemini's function declarations take an OpenAPI-3.0-like `Schema`: unknown keywords, `enum` on a
non-string, `properties` off an object and arrays without `items` are all 400s. Every output
here is checked against that subset (`assert_gemini_subset`) and for preserved meaning.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from claude_code_proxy.translate.schema import GEMINI_KEYWORDS, clean_schema

FIXTURE = Path(__file__).resolve().parent / "fixtures" / "claude_code_request.json"
DRAFT = "https://json-schema.org/draft/2020-12/schema"

ALLOWED = {
    "type",
    "format",
    "title",
    "description",
    "nullable",
    "enum",
    "items",
    "minItems",
    "maxItems",
    "properties",
    "required",
    "anyOf",
    "minimum",
    "maximum",
    "minLength",
    "maxLength",
    "pattern",
}
# Keywords Gemini accepts only on one type.
SCOPED = {
    "properties": {"object"},
    "required": {"object"},
    "items": {"array"},
    "minItems": {"array"},
    "maxItems": {"array"},
    "minLength": {"string"},
    "maxLength": {"string"},
    "pattern": {"string"},
    "enum": {"string"},
    "minimum": {"integer", "number"},
    "maximum": {"integer", "number"},
    "format": {"string", "integer", "number"},
}
FORMATS = {
    "string": {"enum", "date-time"},
    "integer": {"int32", "int64"},
    "number": {"float", "double"},
}
TYPES = {"string", "integer", "number", "boolean", "array", "object"}


def assert_gemini_subset(schema: Any, path: str = "$") -> None:
    """Walk every subschema; fail on anything Gemini's `Schema` would reject."""
    assert isinstance(schema, dict), f"{path}: {schema!r} is not a schema object"
    extra = set(schema) - ALLOWED
    assert not extra, f"{path}: keywords outside the allow-list: {sorted(extra)}"
    kind = schema.get("type")
    if kind is not None:
        assert kind in TYPES, f"{path}: type {kind!r}"
    for key, kinds in SCOPED.items():
        if key in schema:
            assert kind in kinds, f"{path}: {key!r} on type {kind!r}"
    if "enum" in schema:
        assert schema["enum"] and all(isinstance(v, str) for v in schema["enum"]), path
    if "format" in schema:
        assert schema["format"] in FORMATS[kind], f"{path}: format {schema['format']!r}"
    if "nullable" in schema:
        assert schema["nullable"] is True, path
    for key in ("title", "description", "pattern"):
        if key in schema:
            assert isinstance(schema[key], str), f"{path}.{key}"
    for key in ("minItems", "maxItems", "minLength", "maxLength"):
        if key in schema:
            assert isinstance(schema[key], int) and schema[key] >= 0, f"{path}.{key}"
    for key in ("minimum", "maximum"):
        if key in schema:
            value = schema[key]
            assert isinstance(value, (int, float)) and not isinstance(value, bool), path
    if kind == "array":
        assert "items" in schema, f"{path}: array without items"
        items = schema["items"]
        assert "type" in items or "anyOf" in items, f"{path}.items: untyped"
    if "properties" in schema:
        assert isinstance(schema["properties"], dict) and schema["properties"], path
        for name, sub in schema["properties"].items():
            assert_gemini_subset(sub, f"{path}.properties.{name}")
    if "required" in schema:
        required = schema["required"]
        assert required and len(set(required)) == len(required), path
        assert set(required) <= set(schema.get("properties", {})), f"{path}: required {required}"
    if "items" in schema:
        assert_gemini_subset(schema["items"], f"{path}.items")
    if "anyOf" in schema:
        assert isinstance(schema["anyOf"], list) and len(schema["anyOf"]) >= 2, path
        for i, branch in enumerate(schema["anyOf"]):
            assert_gemini_subset(branch, f"{path}.anyOf[{i}]")


def clean(schema: dict[str, Any]) -> dict[str, Any]:
    """Clean, and check the invariants every result must have (subset, pure, idempotent)."""
    before = copy.deepcopy(schema)
    out = clean_schema(schema)
    assert schema == before, "input was mutated"
    assert_gemini_subset(out)
    assert "type" in out or "anyOf" in out
    assert clean_schema(out) == out, "cleaning a clean schema changed it"
    json.dumps(out, allow_nan=False)
    return out


def prop(schema: dict[str, Any], name: str = "p") -> dict[str, Any]:
    """Clean `schema` as the single property `name` of a tool schema; return its result."""
    out = clean({"type": "object", "properties": {name: schema}})
    result: dict[str, Any] = out["properties"][name]
    return result


# ------------------------------------------------------------------------------------------
# Claude Code's own tool schemas (§4.6)
# ------------------------------------------------------------------------------------------

WRITE = {
    "$schema": DRAFT,
    "type": "object",
    "properties": {
        "file_path": {
            "description": "The absolute path to the file to write (must be absolute, not relative)",
            "type": "string",
        },
        "content": {"description": "The content to write to the file", "type": "string"},
    },
    "required": ["file_path", "content"],
    "additionalProperties": False,
}

BASH = {
    "$schema": DRAFT,
    "type": "object",
    "properties": {
        "command": {"description": "The command to execute", "type": "string"},
        "timeout": {
            "description": "Optional timeout in milliseconds (max 600000)",
            "type": "number",
            "minimum": 1,
            "maximum": 600000,
        },
        "description": {"description": "What this command does", "type": "string"},
        "run_in_background": {"description": "Run in the background", "type": "boolean"},
        "dangerouslyDisableSandbox": {"description": "No sandbox", "type": "boolean"},
    },
    "required": ["command"],
    "additionalProperties": False,
}

READ = {
    "$schema": DRAFT,
    "type": "object",
    "properties": {
        "file_path": {"description": "The absolute path to the file to read", "type": "string"},
        "offset": {"description": "The line number to start from", "type": "integer", "minimum": 0},
        "limit": {"description": "The number of lines", "type": "integer", "exclusiveMinimum": 0},
        "pages": {
            "description": 'Page range for PDF files (e.g., "1-5")',
            "type": "string",
            "pattern": "^[0-9]+(-[0-9]+)?$",
        },
    },
    "required": ["file_path"],
    "additionalProperties": False,
}

TASK_UPDATE = {
    "$schema": DRAFT,
    "type": "object",
    "properties": {
        "taskId": {"description": "The ID of the task to update", "type": "string"},
        "status": {
            "description": "New status for the task",
            "anyOf": [
                {"type": "string", "const": "pending"},
                {"type": "string", "const": "in_progress"},
                {"type": "string", "const": "completed"},
                {"type": "string", "const": "deleted"},
            ],
        },
        "owner": {"description": "New owner", "type": "string", "minLength": 1},
        "addBlocks": {"type": "array", "items": {"type": "string"}, "maxItems": 20},
        "metadata": {
            "description": "Metadata keys to merge (null deletes a key)",
            "type": "object",
            "propertyNames": {"type": "string"},
            "additionalProperties": {},
        },
    },
    "required": ["taskId"],
    "additionalProperties": False,
}

SEND_MESSAGE = {
    "$schema": DRAFT,
    "type": "object",
    "properties": {
        "to": {
            "description": "Recipient",
            "type": "string",
            "allOf": [{"pattern": "^[^@]+$"}, {"pattern": "^(?!team-lead$)"}],
        },
        "message": {"type": "string", "maxLength": 10000},
    },
    "required": ["to", "message"],
    "additionalProperties": False,
}

WEB_FETCH = {
    "$schema": DRAFT,
    "type": "object",
    "properties": {
        "url": {"description": "The URL to fetch", "type": "string", "format": "uri"},
        "prompt": {"description": "What to extract", "type": "string"},
    },
    "required": ["url", "prompt"],
    "additionalProperties": False,
}


def test_write_schema_keeps_everything_gemini_understands() -> None:
    assert clean(WRITE) == {
        "type": "object",
        "properties": {
            "file_path": WRITE["properties"]["file_path"],  # type: ignore[index]
            "content": WRITE["properties"]["content"],  # type: ignore[index]
        },
        "required": ["file_path", "content"],
    }


def test_bash_schema_keeps_bounds_and_required() -> None:
    out = clean(BASH)
    assert list(out["properties"]) == list(BASH["properties"])  # type: ignore[call-overload]
    assert out["required"] == ["command"]
    assert out["properties"]["timeout"] == {
        "description": "Optional timeout in milliseconds (max 600000)",
        "type": "number",
        "minimum": 1,
        "maximum": 600000,
    }
    assert out["properties"]["run_in_background"]["type"] == "boolean"


def test_read_schema_exclusive_minimum_becomes_integer_minimum() -> None:
    out = clean(READ)
    assert out["required"] == ["file_path"]
    assert out["properties"]["offset"]["minimum"] == 0
    assert out["properties"]["limit"] == {
        "description": "The number of lines",
        "type": "integer",
        "minimum": 1,  # x > 0 for integers is exactly x >= 1
    }
    assert out["properties"]["pages"]["pattern"] == "^[0-9]+(-[0-9]+)?$"


def test_task_update_any_of_const_becomes_string_enums() -> None:
    out = clean(TASK_UPDATE)
    props = out["properties"]
    assert set(props) == set(TASK_UPDATE["properties"])  # type: ignore[arg-type]
    assert out["required"] == ["taskId"]
    status = props["status"]
    assert status["description"] == "New status for the task"
    assert [b["enum"] for b in status["anyOf"]] == [
        ["pending"],
        ["in_progress"],
        ["completed"],
        ["deleted"],
    ]
    assert all(b["type"] == "string" for b in status["anyOf"])
    assert props["owner"]["minLength"] == 1
    assert props["addBlocks"] == {"type": "array", "items": {"type": "string"}, "maxItems": 20}
    # propertyNames + additionalProperties:{} → a free-form object.
    assert props["metadata"] == {
        "type": "object",
        "description": "Metadata keys to merge (null deletes a key)",
    }


def test_send_message_all_of_patterns_move_to_description() -> None:
    to = clean(SEND_MESSAGE)["properties"]["to"]
    assert to["type"] == "string"
    assert "pattern" not in to
    assert to["description"].startswith("Recipient")
    assert "`^[^@]+$`" in to["description"] and "`^(?!team-lead$)`" in to["description"]


def test_web_fetch_uri_format_is_dropped() -> None:
    out = clean(WEB_FETCH)
    assert out["properties"]["url"] == {"description": "The URL to fetch", "type": "string"}
    assert out["required"] == ["url", "prompt"]


def test_captured_claude_code_tools() -> None:
    if not FIXTURE.exists():
        pytest.skip(f"{FIXTURE} not available")
    tools = json.loads(FIXTURE.read_text(encoding="utf-8"))["tools"]
    assert tools
    for tool in tools:
        original = tool["input_schema"]
        out = clean(original)
        assert out["type"] == "object", tool["name"]
        assert set(out.get("properties", {})) == set(original.get("properties", {})), tool["name"]
        assert out.get("required", []) == original.get("required", []), tool["name"]
        for name, sub in original.get("properties", {}).items():
            if isinstance(sub.get("enum"), list) and sub.get("type") == "string":
                assert out["properties"][name]["enum"] == sub["enum"], (tool["name"], name)


# ------------------------------------------------------------------------------------------
# enum / const
# ------------------------------------------------------------------------------------------


def test_integer_enum_keeps_integer_type_and_describes_values() -> None:
    # Gemini: "enum: only allowed for STRING type". A string enum would make the model send
    # "1", which the client's validator rejects; the values go to the description instead.
    assert prop({"type": "integer", "enum": [1, 2], "description": "Level"}) == {
        "type": "integer",
        "description": "Level Allowed values: 1, 2.",
    }


def test_boolean_const_uses_json_spelling() -> None:
    assert prop({"type": "boolean", "const": True}) == {
        "type": "boolean",
        "description": "Must be true.",
    }


def test_string_const_becomes_one_value_enum() -> None:
    assert prop({"const": "issue"}) == {"type": "string", "enum": ["issue"]}


def test_string_enum_is_kept_and_deduplicated() -> None:
    assert prop({"type": "string", "enum": ["a", "b", "a"]}) == {
        "type": "string",
        "enum": ["a", "b"],
    }


def test_enum_with_null_becomes_nullable() -> None:
    assert prop({"type": ["string", "null"], "enum": ["x", None]}) == {
        "type": "string",
        "nullable": True,
        "enum": ["x"],
    }


def test_string_typed_enum_with_numbers_uses_json_text() -> None:
    assert prop({"type": "string", "enum": ["a", 1, True]}) == {
        "type": "string",
        "enum": ["a", "1", "true"],
    }


def test_untyped_mixed_enum_splits_by_type() -> None:
    out = prop({"enum": ["auto", 0, False]})
    assert out == {
        "anyOf": [
            {"type": "string", "enum": ["auto"]},
            {"type": "integer", "description": "Must be 0."},
            {"type": "boolean", "description": "Must be false."},
        ]
    }


def test_untyped_numeric_enum_infers_number() -> None:
    assert prop({"enum": [1, 2.5]}) == {"type": "number", "description": "Allowed values: 1, 2.5."}


# ------------------------------------------------------------------------------------------
# combinators
# ------------------------------------------------------------------------------------------


def test_one_of_becomes_any_of() -> None:
    out = prop({"oneOf": [{"type": "string"}, {"type": "integer", "minimum": 0}]})
    assert out == {"anyOf": [{"type": "string"}, {"type": "integer", "minimum": 0}]}


def test_optional_any_of_folds_into_nullable() -> None:
    out = prop({"description": "When", "anyOf": [{"type": "string"}, {"type": "null"}]})
    assert out == {"type": "string", "description": "When", "nullable": True}


def test_any_of_with_an_unconstrained_branch_is_dropped() -> None:
    assert prop({"anyOf": [{"type": "string"}, True], "description": "d"}) == {"description": "d"}


def test_any_of_false_branches_are_removed() -> None:
    assert prop({"anyOf": [False, {"type": "integer"}, {"type": "string"}]}) == {
        "anyOf": [{"type": "integer"}, {"type": "string"}]
    }


def test_all_of_merges_properties_required_and_bounds() -> None:
    out = prop(
        {
            "allOf": [
                {
                    "type": "object",
                    "properties": {"a": {"type": "string"}, "n": {"type": "integer", "minimum": 0}},
                    "required": ["a"],
                },
                {
                    "properties": {"b": {"type": "boolean"}, "n": {"maximum": 9, "minimum": 2}},
                    "required": ["b", "a"],
                },
            ]
        }
    )
    assert out == {
        "type": "object",
        "properties": {
            "a": {"type": "string"},
            "n": {"type": "integer", "minimum": 2, "maximum": 9},
            "b": {"type": "boolean"},
        },
        "required": ["a", "b"],
    }


def test_all_of_single_pattern_is_kept() -> None:
    assert prop({"type": "string", "allOf": [{"pattern": "^x"}, {"maxLength": 5}]}) == {
        "type": "string",
        "maxLength": 5,
        "pattern": "^x",
    }


def test_all_of_with_refs_and_nested_all_of() -> None:
    schema = {
        "type": "object",
        "properties": {
            "p": {"allOf": [{"$ref": "#/$defs/Base"}, {"allOf": [{"required": ["id"]}]}]}
        },
        "$defs": {"Base": {"type": "object", "properties": {"id": {"type": "string"}}}},
    }
    assert clean(schema)["properties"]["p"] == {
        "type": "object",
        "properties": {"id": {"type": "string"}},
        "required": ["id"],
    }


def test_all_of_with_false_member_forbids_the_property() -> None:
    out = clean(
        {"type": "object", "properties": {"a": {"allOf": [{"type": "string"}, False]}, "b": {}}}
    )
    assert out["properties"] == {"b": {}}


# ------------------------------------------------------------------------------------------
# $ref
# ------------------------------------------------------------------------------------------


def test_ref_is_inlined_with_sibling_keywords() -> None:
    schema = {
        "type": "object",
        "properties": {"user": {"$ref": "#/$defs/User", "description": "Who"}},
        "$defs": {
            "User": {
                "type": "object",
                "properties": {"login": {"type": "string", "default": "me"}},
                "additionalProperties": False,
            }
        },
    }
    assert clean(schema)["properties"]["user"] == {
        "type": "object",
        "description": "Who",
        "properties": {"login": {"type": "string"}},
    }


def test_draft4_definitions_and_pointer_escapes() -> None:
    schema = {
        "type": "object",
        "properties": {
            "a": {"$ref": "#/definitions/A"},
            "b": {"$ref": "#/definitions/a~1b"},
            "c": {"$ref": "#/properties/a"},
        },
        "definitions": {"A": {"type": "integer"}, "a/b": {"type": "boolean"}},
    }
    assert clean(schema)["properties"] == {
        "a": {"type": "integer"},
        "b": {"type": "boolean"},
        "c": {"type": "integer"},
    }


def test_recursive_ref_is_expanded_once() -> None:
    schema = {
        "type": "object",
        "properties": {"tree": {"$ref": "#/$defs/Node"}},
        "$defs": {
            "Node": {
                "type": "object",
                "properties": {
                    "name": {"type": "string"},
                    "children": {"type": "array", "items": {"$ref": "#/$defs/Node"}},
                },
            }
        },
    }
    tree = clean(schema)["properties"]["tree"]
    assert tree == {
        "type": "object",
        "properties": {
            "name": {"type": "string"},
            "children": {"type": "array", "items": {"type": "object"}},
        },
    }


def test_mutual_recursion_and_root_recursion_stop() -> None:
    schema = {
        "type": "object",
        "properties": {"a": {"$ref": "#/$defs/A"}, "again": {"$ref": "#"}},
        "$defs": {
            "A": {"type": "object", "properties": {"b": {"$ref": "#/$defs/B"}}},
            "B": {"type": "object", "properties": {"a": {"$ref": "#/$defs/A"}}},
        },
    }
    out = clean(schema)
    assert out["properties"]["a"] == {
        "type": "object",
        "properties": {"b": {"type": "object", "properties": {"a": {"type": "object"}}}},
    }
    assert out["properties"]["again"] == {"type": "object"}


def test_self_aliasing_ref_terminates() -> None:
    schema = {
        "type": "object",
        "properties": {"x": {"$ref": "#/$defs/X"}},
        "$defs": {"X": {"$ref": "#/$defs/X"}},
    }
    assert clean(schema)["properties"]["x"] == {"type": "object"}


def test_unknown_ref_keeps_sibling_keywords() -> None:
    assert prop({"$ref": "https://example.com/s.json", "type": "string", "description": "d"}) == {
        "type": "string",
        "description": "d",
    }


def test_shared_non_recursive_ref_is_inlined_everywhere() -> None:
    schema = {
        "type": "object",
        "properties": {"from": {"$ref": "#/$defs/P"}, "to": {"$ref": "#/$defs/P"}},
        "$defs": {"P": {"type": "object", "properties": {"x": {"type": "number"}}}},
    }
    props = clean(schema)["properties"]
    assert (
        props["from"] == props["to"] == {"type": "object", "properties": {"x": {"type": "number"}}}
    )


# ------------------------------------------------------------------------------------------
# boolean subschemas and arrays
# ------------------------------------------------------------------------------------------


def test_boolean_property_schemas() -> None:
    out = clean(
        {
            "type": "object",
            "properties": {"any": True, "never": False},
            "required": ["any", "never"],
        }
    )
    assert out == {"type": "object", "properties": {"any": {}}, "required": ["any"]}


def test_items_false_allows_only_the_empty_array() -> None:
    assert prop({"type": "array", "items": False}) == {
        "type": "array",
        "items": {"type": "string"},
        "maxItems": 0,
    }


@pytest.mark.parametrize("items", [None, True, {}, {"description": "anything"}])
def test_untyped_items_get_string_type(items: Any) -> None:
    # Gemini: "items: missing field". Strings satisfy an unconstrained item schema.
    schema: dict[str, Any] = {"type": "array"}
    if items is not None:
        schema["items"] = items
    out = prop(schema)
    assert out["items"]["type"] == "string"
    if isinstance(items, dict) and "description" in items:
        assert out["items"]["description"] == "anything"


def test_tuple_items_become_one_any_of_schema() -> None:
    out = prop({"type": "array", "items": [{"type": "string"}, {"type": "integer"}]})
    assert out == {"type": "array", "items": {"anyOf": [{"type": "string"}, {"type": "integer"}]}}


def test_prefix_items_with_identical_members_and_closed_tail() -> None:
    out = prop(
        {"type": "array", "prefixItems": [{"type": "number"}, {"type": "number"}], "items": False}
    )
    assert out == {"type": "array", "items": {"type": "number"}, "maxItems": 2}


def test_prefix_items_with_open_tail_include_tail_schema() -> None:
    out = prop(
        {
            "type": "array",
            "prefixItems": [{"type": "string"}],
            "items": {"type": "integer"},
            "minItems": 1,
        }
    )
    assert out == {
        "type": "array",
        "minItems": 1,
        "items": {"anyOf": [{"type": "string"}, {"type": "integer"}]},
    }


def test_draft4_additional_items_false_caps_length() -> None:
    out = prop({"type": "array", "items": [{"type": "string"}], "additionalItems": False})
    assert out == {"type": "array", "items": {"type": "string"}, "maxItems": 1}


def test_nested_array_items_are_cleaned() -> None:
    out = prop(
        {
            "type": "array",
            "items": {
                "type": "object",
                "properties": {"n": {"type": "integer", "enum": [3]}},
                "additionalProperties": False,
                "required": ["n", "ghost"],
            },
            "uniqueItems": True,
            "contains": {"type": "string"},
        }
    )
    assert out == {
        "type": "array",
        "items": {
            "type": "object",
            "properties": {"n": {"type": "integer", "description": "Must be 3."}},
            "required": ["n"],
        },
    }


# ------------------------------------------------------------------------------------------
# types, formats, bounds, dropped keywords
# ------------------------------------------------------------------------------------------


def test_nullable_type_list() -> None:
    assert prop({"type": ["string", "null"], "format": "date-time"}) == {
        "type": "string",
        "nullable": True,
        "format": "date-time",
    }


def test_multi_type_list_becomes_any_of_with_type_scoped_keywords() -> None:
    out = prop({"type": ["string", "integer", "null"], "maxLength": 3, "minimum": 1})
    assert out == {
        "nullable": True,
        "anyOf": [{"type": "string", "maxLength": 3}, {"type": "integer", "minimum": 1}],
    }


@pytest.mark.parametrize(
    ("schema", "expected"),
    [
        ({"type": "string", "format": "uri"}, {"type": "string"}),
        ({"type": "string", "format": "email"}, {"type": "string"}),
        ({"type": "string", "format": "date-time"}, {"type": "string", "format": "date-time"}),
        ({"type": "integer", "format": "int64"}, {"type": "integer", "format": "int64"}),
        ({"type": "number", "format": "double"}, {"type": "number", "format": "double"}),
        ({"type": "integer", "format": "date-time"}, {"type": "integer"}),
    ],
)
def test_formats(schema: dict[str, Any], expected: dict[str, Any]) -> None:
    assert prop(schema) == expected


@pytest.mark.parametrize(
    ("schema", "expected"),
    [
        ({"type": "integer", "exclusiveMinimum": 0, "exclusiveMaximum": 10}, (1, 9)),
        ({"type": "integer", "exclusiveMinimum": 0.5, "minimum": 0}, (1, None)),
        ({"type": "integer", "minimum": 5, "exclusiveMinimum": 2}, (5, None)),
        ({"type": "integer", "minimum": 0, "exclusiveMinimum": True}, (1, None)),  # draft 4
        ({"type": "integer", "maximum": 10, "exclusiveMaximum": True}, (None, 9)),
        ({"type": "number", "exclusiveMinimum": 0, "maximum": 1.5}, (0, 1.5)),
        ({"type": "number", "minimum": "1", "maximum": True}, (None, None)),
    ],
)
def test_numeric_bounds(schema: dict[str, Any], expected: tuple[Any, Any]) -> None:
    out = prop(schema)
    assert (out.get("minimum"), out.get("maximum")) == expected


def test_keywords_on_the_wrong_type_are_dropped() -> None:
    out = prop(
        {
            "type": "string",
            "properties": {"x": {"type": "string"}},
            "items": {"type": "string"},
            "minimum": 1,
            "minLength": 2,
        }
    )
    assert out == {"type": "string", "minLength": 2}


def test_properties_without_type_infer_object() -> None:
    assert prop({"properties": {"id": {"type": "string"}}, "required": ["id"]}) == {
        "type": "object",
        "properties": {"id": {"type": "string"}},
        "required": ["id"],
    }


def test_empty_properties_keep_type_object() -> None:
    assert clean({"type": "object", "properties": {}, "required": []}) == {"type": "object"}
    assert prop({"type": "object", "properties": {}}) == {"type": "object"}


def test_required_without_matching_properties_is_removed() -> None:
    assert clean({"type": "object", "required": ["a"]}) == {"type": "object"}


def test_unsupported_keywords_are_dropped_recursively() -> None:
    schema = {
        "$schema": DRAFT,
        "$id": "https://example.com/tool",
        "$comment": "internal",
        "$anchor": "top",
        "title": "Tool input",
        "type": "object",
        "properties": {
            "x": {
                "type": "object",
                "title": "X",
                "properties": {"y": {"type": "string", "examples": ["a"], "default": "a"}},
                "additionalProperties": {"type": "string"},
                "patternProperties": {"^z": {"type": "string"}},
                "unevaluatedProperties": False,
                "propertyNames": {"pattern": "^[a-z]+$"},
                "dependentRequired": {"y": ["z"]},
                "dependentSchemas": {"y": {"required": ["z"]}},
                "minProperties": 1,
                "if": {"required": ["y"]},
                "then": {"required": ["z"]},
                "else": {},
                "not": {"required": ["w"]},
                "readOnly": True,
                "deprecated": True,
            },
            "n": {"type": "number", "multipleOf": 2, "default": 4},
            "s": {"type": "string", "contentEncoding": "base64", "contentMediaType": "image/png"},
        },
        "additionalProperties": False,
    }
    assert clean(schema) == {
        "title": "Tool input",
        "type": "object",
        "properties": {
            "x": {"type": "object", "title": "X", "properties": {"y": {"type": "string"}}},
            "n": {"type": "number"},
            "s": {"type": "string"},
        },
    }


def test_property_names_that_look_like_keywords_survive() -> None:
    names = ["type", "properties", "$ref", "enum", "additionalProperties", "title"]
    out = clean({"type": "object", "properties": {n: {"type": "string"} for n in names}})
    assert list(out["properties"]) == names


def test_root_without_type_becomes_object() -> None:
    assert clean({}) == {"type": "object"}
    assert clean({"$schema": DRAFT, "additionalProperties": False}) == {"type": "object"}
    assert clean_schema(None) == {"type": "object"}


def test_malformed_values_do_not_crash() -> None:
    schema = {
        "type": "object",
        "properties": {
            "a": {"type": ["string", ["x"]], "format": ["uri"], "enum": "nope"},
            "b": {"type": 5, "description": 7, "title": None, "pattern": 3},
            "c": {"allOf": "nope", "anyOf": {"x": 1}, "$ref": 4},
            "d": {"type": "array", "items": 3, "minItems": -1, "maxItems": 2.5},
            "e": "not a schema",
        },
        "required": "a",
    }
    out = clean(schema)
    assert set(out["properties"]) == {"a", "b", "c", "d", "e"}


def test_very_deep_schema_is_cut_without_recursion_error() -> None:
    deep: dict[str, Any] = {"type": "string"}
    for _ in range(5000):
        deep = {"type": "object", "properties": {"p": deep}}
    out = clean_schema(deep)
    assert_gemini_subset(out)
    depth = 0
    node = out
    while "properties" in node:
        node = node["properties"]["p"]
        depth += 1
    assert 0 < depth < 64


def test_deep_enum_values_and_huge_numbers_do_not_crash() -> None:
    deep: Any = "x"
    for _ in range(3000):
        deep = [deep]
    out = clean_schema({"type": "object", "properties": {"p": {"enum": [deep, deep, "a"]}}})
    assert_gemini_subset(out)
    assert {"type": "string", "enum": ["a"]} in out["properties"]["p"]["anyOf"]
    assert prop({"type": "integer", "exclusiveMinimum": 10**400}) == {
        "type": "integer",
        "minimum": 10**400 + 1,
    }


def test_module_allow_list_matches_this_one() -> None:
    assert set(GEMINI_KEYWORDS) == ALLOWED


# ------------------------------------------------------------------------------------------
# property: anything schema-shaped comes out inside the subset
# ------------------------------------------------------------------------------------------

_SCALARS = st.one_of(
    st.none(), st.booleans(), st.integers(-5, 5), st.floats(-3, 3), st.sampled_from(["a", "b", ""])
)
_TYPE_NAMES = st.sampled_from(["string", "integer", "number", "boolean", "array", "object", "null"])


def _schemas(children: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    keyword = st.one_of(
        st.tuples(st.just("type"), st.one_of(_TYPE_NAMES, st.lists(_TYPE_NAMES, max_size=3))),
        st.tuples(st.just("enum"), st.lists(_SCALARS, max_size=4)),
        st.tuples(st.just("const"), _SCALARS),
        st.tuples(
            st.sampled_from(["anyOf", "oneOf", "allOf", "prefixItems"]),
            st.lists(children, max_size=3),
        ),
        st.tuples(
            st.sampled_from(["items", "additionalProperties", "not", "additionalItems"]), children
        ),
        st.tuples(
            st.just("properties"),
            st.dictionaries(st.sampled_from(["a", "b", "c"]), children, max_size=3),
        ),
        st.tuples(st.just("required"), st.lists(st.sampled_from(["a", "b", "z"]), max_size=3)),
        st.tuples(st.just("$ref"), st.sampled_from(["#", "#/$defs/D", "#/$defs/E", "#/nope"])),
        st.tuples(
            st.sampled_from(
                [
                    "minimum",
                    "maximum",
                    "exclusiveMinimum",
                    "exclusiveMaximum",
                    "minLength",
                    "maxItems",
                ]
            ),
            st.one_of(st.integers(-3, 10), st.floats(-3, 10), st.booleans()),
        ),
        st.tuples(st.just("format"), st.sampled_from(["uri", "date-time", "int32", "enum"])),
        st.tuples(
            st.sampled_from(["description", "title", "pattern"]), st.sampled_from(["x", "^y$"])
        ),
    )
    return st.one_of(st.booleans(), st.lists(keyword, max_size=5).map(dict))


SCHEMAS = st.recursive(st.booleans() | st.just({}), _schemas, max_leaves=25)


@settings(max_examples=1000, deadline=None, suppress_health_check=list(HealthCheck))
@given(root=SCHEMAS, defs=st.dictionaries(st.sampled_from(["D", "E"]), SCHEMAS, max_size=2))
def test_any_schema_comes_out_inside_the_subset(root: Any, defs: dict[str, Any]) -> None:
    schema = {**root, "$defs": defs} if isinstance(root, dict) else {"$defs": defs}
    before = copy.deepcopy(schema)
    out = clean_schema(schema)
    assert schema == before
    assert_gemini_subset(out)
    assert clean_schema(out) == out
