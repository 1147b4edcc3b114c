"""JSON Schema clean-up for upstreams that accept only an OpenAPI-3.0-like subset (Gemini)."""

from __future__ import annotations

from typing import Any

# Keywords Gemini's function declarations understand; everything else is removed.
GEMINI_KEYWORDS = frozenset(
    {
        "type",
        "description",
        "enum",
        "items",
        "properties",
        "required",
        "anyOf",
        "nullable",
        "minimum",
        "maximum",
        "minItems",
        "maxItems",
        "minLength",
        "maxLength",
        "pattern",
        "title",
    }
)
_STRING_FORMATS = frozenset({"enum", "date-time"})


def clean_schema(schema: Any, *, defs: dict[str, Any] | None = None, depth: int = 0) -> Any:
    """Recursively reduce a draft-2020-12 schema to the subset Gemini accepts.

    `$ref`s are inlined from `$defs`/`definitions`, `const` becomes a one-value `enum`,
    `type: [T, "null"]` becomes `type: T, nullable: true`, `allOf` is merged.
    """
    if not isinstance(schema, dict) or depth > 32:
        return schema if not isinstance(schema, dict) else {}
    if defs is None:
        defs = {**schema.get("definitions", {}), **schema.get("$defs", {})}
    ref = schema.get("$ref")
    if isinstance(ref, str):
        target = defs.get(ref.rsplit("/", 1)[-1])
        merged = {**(target if isinstance(target, dict) else {}), **schema}
        merged.pop("$ref", None)
        return clean_schema(merged, defs=defs, depth=depth + 1)
    source = dict(schema)
    for part in source.pop("allOf", None) or []:
        if isinstance(part, dict):
            for key, value in part.items():
                source.setdefault(key, value)
    out: dict[str, Any] = {}
    if "const" in source and "enum" not in source:
        source["enum"] = [source["const"]]
    kind = source.get("type")
    if isinstance(kind, list):
        types = [t for t in kind if t != "null"]
        if len(types) < len(kind):
            out["nullable"] = True
        source["type"] = types[0] if types else "string"
    for key, value in source.items():
        if key == "format":
            if value in _STRING_FORMATS:
                out[key] = value
        elif key not in GEMINI_KEYWORDS:
            continue
        elif key == "properties" and isinstance(value, dict):
            out[key] = {
                name: clean_schema(sub, defs=defs, depth=depth + 1) for name, sub in value.items()
            }
        elif key == "items":
            out[key] = clean_schema(value, defs=defs, depth=depth + 1)
        elif key == "anyOf" and isinstance(value, list):
            out[key] = [clean_schema(v, defs=defs, depth=depth + 1) for v in value]
        elif key == "enum" and isinstance(value, list):
            out[key] = [str(v) for v in value if v is not None]  # Gemini enums are strings
            out.setdefault("type", "string")
        else:
            out[key] = value
    if "required" in out and isinstance(out.get("properties"), dict):
        out["required"] = [r for r in out["required"] if r in out["properties"]]
    return out
