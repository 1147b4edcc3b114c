"""Structured output: Anthropic `output_config.format` → an OpenAI JSON-schema format."""

from __future__ import annotations

from typing import Any


def response_format(body: dict[str, Any]) -> dict[str, Any] | None:
    config = body.get("output_config")
    fmt = config.get("format") if isinstance(config, dict) else None
    if fmt is None:
        fmt = body.get("output_format")
    if not isinstance(fmt, dict) or fmt.get("type") != "json_schema":
        return None
    schema = fmt.get("schema")
    if not isinstance(schema, dict):
        return None
    json_schema: dict[str, Any] = {"name": "output", "schema": schema}
    if strict_compatible(schema):
        json_schema["strict"] = True
    return {"type": "json_schema", "json_schema": json_schema}


def strict_compatible(schema: Any, depth: int = 0) -> bool:
    """OpenAI's strict mode needs every object closed and every property required."""
    if depth > 32:
        return False
    if isinstance(schema, list):
        return all(strict_compatible(s, depth + 1) for s in schema)
    if not isinstance(schema, dict):
        return True
    if schema.get("type") == "object" or "properties" in schema:
        properties = schema.get("properties") or {}
        if schema.get("additionalProperties") is not False or not isinstance(properties, dict):
            return False
        if set(schema.get("required") or ()) != set(properties):
            return False
    return all(
        strict_compatible(value, depth + 1)
        for key, value in schema.items()
        if key in ("properties", "items", "anyOf", "$defs", "definitions")
        or (key in ("additionalProperties",) and isinstance(value, dict))
    ) and all(
        strict_compatible(value, depth + 1)
        for value in (schema.get("properties") or {}).values()
        if isinstance(schema.get("properties"), dict)
    )
