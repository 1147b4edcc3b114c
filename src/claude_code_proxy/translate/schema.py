"""JSON Schema clean-up for upstreams that accept only an OpenAPI-3.0-like subset (Gemini).

Gemini parses tool parameters into its `Schema` proto: an unknown keyword is a 400 ("Unknown
name ..."), and so are keywords on the wrong type ("enum: only allowed for STRING type",
"properties: only allowed for OBJECT type") and arrays without `items` ("items: missing
field"). The cleaner therefore rebuilds each subschema from an allow-list, per type.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from typing import Any

# Every keyword the cleaner may emit; anything else is dropped.
GEMINI_KEYWORDS = frozenset(
    {
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
)
# Gemini's documented formats per type; others (e.g. "uri") are dropped.
_FORMATS = {
    "string": frozenset({"enum", "date-time"}),
    "integer": frozenset({"int32", "int64"}),
    "number": frozenset({"float", "double"}),
}
_TYPES = frozenset({"string", "integer", "number", "boolean", "array", "object"})
_MAX_DEPTH = 32
# allOf merging: lower bounds take the larger value, upper bounds the smaller.
_LOWER_BOUNDS = frozenset({"minimum", "exclusiveMinimum", "minLength", "minItems"})
_UPPER_BOUNDS = frozenset({"maximum", "exclusiveMaximum", "maxLength", "maxItems"})


@dataclass(frozen=True)
class _Ctx:
    root: dict[str, Any]
    defs: dict[str, Any]
    seen: frozenset[int]  # ids of the $ref targets being inlined on this path
    depth: int

    def down(self, target: Any = None) -> _Ctx:
        seen = self.seen if target is None else self.seen | {id(target)}
        return _Ctx(self.root, self.defs, seen, self.depth + 1)


def clean_schema(schema: Any) -> dict[str, Any]:
    """Reduce a draft-2020-12 tool schema to the subset Gemini accepts, keeping its meaning."""
    root = schema if isinstance(schema, dict) else {}
    defs: dict[str, Any] = {}
    for key in ("definitions", "$defs"):
        if isinstance(root.get(key), dict):
            defs.update(root[key])
    out = _clean(root, _Ctx(root, defs, frozenset({id(root)}), 0)) or {}
    if "type" not in out and "anyOf" not in out:
        out["type"] = "object"  # tool input is always an object
    return out


def _clean(node: Any, ctx: _Ctx) -> dict[str, Any] | None:
    """One subschema; None for `false` (no value allowed)."""
    expanded = _expand(node, ctx)
    if expanded is None:
        return None
    node, ctx = expanded
    return _emit(node, ctx)


def _expand(node: Any, ctx: _Ctx) -> tuple[dict[str, Any], _Ctx] | None:
    """Inline `$ref`, merge `allOf`, fold a single `anyOf`/`oneOf` branch, at the raw level."""
    while True:
        if node is False:
            return None
        if not isinstance(node, dict) or ctx.depth > _MAX_DEPTH:
            return {}, ctx
        ref = node.get("$ref")
        if isinstance(ref, str):
            rest = {k: v for k, v in node.items() if k != "$ref"}
            target = _lookup(ref, ctx)
            if target is False:
                return None
            if isinstance(target, dict) and id(target) in ctx.seen:
                # Recursion: expand once, then stop at a plain object (Gemini limits nesting).
                stub: dict[str, Any] = {"type": "object"}
                if isinstance(rest.get("description"), str):
                    stub["description"] = rest["description"]
                return stub, ctx
            node = {**target, **rest} if isinstance(target, dict) else rest
            ctx = ctx.down(target)
            continue
        if "allOf" in node:
            merged = {k: v for k, v in node.items() if k != "allOf"}
            parts = node["allOf"] if isinstance(node["allOf"], list) else []
            patterns = [merged["pattern"]] if isinstance(merged.get("pattern"), str) else []
            for part in parts:
                sub = _expand(part, ctx.down())
                if sub is None:
                    return None
                part_node, part_ctx = sub
                ctx = _Ctx(ctx.root, ctx.defs, ctx.seen | part_ctx.seen, ctx.depth)
                if isinstance(part_node.get("pattern"), str):
                    patterns.append(part_node["pattern"])
                merged = _merge(merged, part_node)
            unique = list(dict.fromkeys(patterns))
            if len(unique) > 1:
                # One regex can't say "matches all" without lookahead (RE2 has none): describe.
                merged.pop("pattern", None)
                listed = ", ".join(f"`{p}`" for p in unique)
                merged["description"] = _append(
                    merged.get("description"), f"Must match all of: {listed}."
                )
            node = merged
            ctx = ctx.down()
            continue
        # Gemini knows only anyOf; oneOf's exclusivity is lost (the client still validates).
        key = "anyOf" if "anyOf" in node else "oneOf" if "oneOf" in node else None
        branches = node.get(key) if key else None
        if not isinstance(branches, list):
            return node, ctx
        rest = {k: v for k, v in node.items() if k not in ("anyOf", "oneOf")}
        live = [b for b in branches if b is not False]
        if branches and not live:
            return None
        kept = [b for b in live if not _is_null(b)]
        if len(kept) < len(live):
            rest["nullable"] = True
        if len(kept) > 1:
            return {**rest, "anyOf": kept}, ctx
        # `anyOf: [X, {type: null}]` (Optional[X]) → X + nullable; one branch = allOf of it.
        only = kept[0] if kept else True
        node = _merge(rest, only) if isinstance(only, dict) else rest
        ctx = ctx.down()


def _lookup(ref: str, ctx: _Ctx) -> Any:
    """The `$ref` target: a local JSON pointer, else a `$defs`/`definitions` name; None if unknown."""
    if ref == "#":
        return ctx.root
    if ref.startswith("#/"):
        target: Any = ctx.root
        for raw in ref[2:].split("/"):
            part = raw.replace("~1", "/").replace("~0", "~")
            if isinstance(target, dict) and part in target:
                target = target[part]
            elif isinstance(target, list) and part.isdigit() and int(part) < len(target):
                target = target[int(part)]
            else:
                target = None
                break
        if target is not None:
            return target
    return ctx.defs.get(ref.rsplit("/", 1)[-1])


def _merge(base: dict[str, Any], part: dict[str, Any]) -> dict[str, Any]:
    """Intersect two raw schemas as well as the subset can express (for `allOf`)."""
    out = dict(base)
    for key, value in part.items():
        if key not in out:
            out[key] = value
            continue
        mine = out[key]
        if key == "properties" and isinstance(mine, dict) and isinstance(value, dict):
            props = dict(mine)
            for name, sub in value.items():
                props[name] = {"allOf": [props[name], sub]} if name in props else sub
            out[key] = props
        elif key == "required" and isinstance(mine, list) and isinstance(value, list):
            out[key] = [*mine, *(r for r in value if isinstance(r, str) and r not in mine)]
        elif key in _LOWER_BOUNDS and _is_number(mine) and _is_number(value):
            out[key] = max(mine, value)
        elif key in _UPPER_BOUNDS and _is_number(mine) and _is_number(value):
            out[key] = min(mine, value)
        elif key == "items" and isinstance(mine, dict) and isinstance(value, dict):
            out[key] = {"allOf": [mine, value]}
        elif key == "enum" and isinstance(mine, list) and isinstance(value, list):
            allowed = {_key(v) for v in value}
            out[key] = [v for v in mine if _key(v) in allowed]
        elif key == "type" and {_key(mine), _key(value)} == {'"integer"', '"number"'}:
            out[key] = "integer"
        elif isinstance(mine, str) and isinstance(value, str) and key == "description":
            out[key] = mine if value in mine else f"{mine}\n{value}"
        # Anything else (a second anyOf, conflicting types): the first member wins.
    return out


def _emit(node: dict[str, Any], ctx: _Ctx) -> dict[str, Any]:
    """Rebuild an expanded subschema from the allow-list, with only its type's keywords."""
    nullable = node.get("nullable") is True
    raw_type = node.get("type")
    listed = [raw_type] if isinstance(raw_type, str) else raw_type
    types = [t for t in listed if isinstance(t, str)] if isinstance(listed, list) else []
    if "null" in types:
        nullable = True
    types = list(dict.fromkeys(t for t in types if t in _TYPES))
    values = _enum_values(node)
    if values is not None and None in values:
        nullable = True
        values = [v for v in values if v is not None]

    if len(types) > 1:  # `type: [A, B]` → one branch per type
        return _split(node, types, values, nullable, ctx)
    kind = types[0] if types else None
    if kind is None and values:
        kinds = list(dict.fromkeys(_json_type(v) for v in values))
        if "number" in kinds and "integer" in kinds:
            kinds.remove("integer")
        if len(kinds) > 1:
            return _split(node, kinds, values, nullable, ctx)
        kind = kinds[0]
    if kind is None:
        if isinstance(node.get("properties"), dict):
            kind = "object"
        elif "items" in node or "prefixItems" in node:
            kind = "array"
    if raw_type == ["null"] or raw_type == "null":
        kind = "string"  # no null type in the subset; nullable carries the meaning

    out: dict[str, Any] = {}
    notes: list[str] = []
    if kind is not None:
        out["type"] = kind
    for key in ("title", "description"):
        if isinstance(node.get(key), str):
            out[key] = node[key]
    if nullable:
        out["nullable"] = True
    if values:  # an empty enum (nothing allowed) has no Gemini spelling: dropped
        if kind == "string":
            out["enum"] = list(dict.fromkeys(v if isinstance(v, str) else _json(v) for v in values))
        else:
            # Gemini takes `enum` only on STRING. Retyping to string would make the model send
            # "1" where the client's own validator wants 1, so keep the type and describe.
            notes.append(_values_note(values))
    fmt = node.get("format")
    if kind in _FORMATS and isinstance(fmt, str) and fmt in _FORMATS[kind]:
        out["format"] = fmt

    if kind == "string":
        _copy_ints(node, out, ("minLength", "maxLength"))
        if isinstance(node.get("pattern"), str):
            out["pattern"] = node["pattern"]
    elif kind in ("integer", "number"):
        out.update(_bounds(node, kind))
    elif kind == "array":
        _copy_ints(node, out, ("minItems", "maxItems"))
        items, max_items = _items(node, ctx)
        out["items"] = items
        if max_items is not None:
            out["maxItems"] = min(out.get("maxItems", max_items), max_items)
    elif kind == "object":
        props: dict[str, Any] = {}
        raw_props = node.get("properties")
        for name, sub in raw_props.items() if isinstance(raw_props, dict) else ():
            cleaned = _clean(sub, ctx.down())
            if cleaned is not None:  # `p: false` forbids p: leave it out
                props[name] = cleaned
        if props:  # Gemini rejects an empty `properties` map ("should be non-empty")
            out["properties"] = props
        required = node.get("required")
        if isinstance(required, list):
            names = dict.fromkeys(r for r in required if isinstance(r, str) and r in props)
            if names:
                out["required"] = list(names)

    branches = node.get("anyOf")
    if isinstance(branches, list):
        unique: dict[str, tuple[dict[str, Any], Any]] = {}
        for branch in branches:
            if (cleaned := _clean(branch, ctx.down())) is not None:
                unique.setdefault(_key(cleaned), (cleaned, branch))
        if len(unique) == 1:  # the others were duplicates or `false`: intersect with it
            ((_, raw),) = unique.values()
            rest = {k: v for k, v in node.items() if k != "anyOf"}
            folded = _clean(_merge(rest, raw) if isinstance(raw, dict) else rest, ctx.down())
            if folded is not None:
                return folded
        # A branch allowing anything ({} from `true`) makes the whole anyOf a no-op.
        elif unique and {} not in [c for c, _ in unique.values()]:
            out["anyOf"] = [c for c, _ in unique.values()]
    if notes:
        out["description"] = _append(out.get("description"), " ".join(notes))
    return out


def _split(
    node: dict[str, Any], kinds: list[str], values: list[Any] | None, nullable: bool, ctx: _Ctx
) -> dict[str, Any]:
    """`anyOf` with one branch per type, each keeping the keywords (and enum values) it owns."""
    shared = ("type", "enum", "const", "title", "description", "nullable")
    rest = {k: v for k, v in node.items() if k not in shared}
    branches = []
    for kind in kinds:
        branch: dict[str, Any] = {**rest, "type": kind}
        if values is not None:
            own = [v for v in values if _matches(v, kind)]
            if not own:
                continue  # no allowed value has this type
            branch["enum"] = own
        branches.append(_emit(branch, ctx))
    branches = list({_key(b): b for b in branches}.values())
    out = {k: node[k] for k in ("title", "description") if isinstance(node.get(k), str)}
    if nullable:
        out["nullable"] = True
    if len(branches) == 1:
        return {**branches[0], **out}
    return {**out, "anyOf": branches} if branches else out


def _items(node: dict[str, Any], ctx: _Ctx) -> tuple[dict[str, Any], int | None]:
    """(items schema, maxItems cap or None); tuple forms become one schema for all members."""
    items = node.get("items")
    prefix = node.get("prefixItems")
    members: list[Any] | None = None
    extra: Any = None
    if isinstance(prefix, list):
        members, extra = prefix, items
    elif isinstance(items, list):
        members, extra = items, node.get("additionalItems")
    cap: int | None = None
    if members is not None:
        cleaned = [c for m in members if (c := _clean(m, ctx.down())) is not None]
        if extra is False:
            cap = len(members)
        elif extra is not None and (more := _clean(extra, ctx.down())) is not None:
            cleaned.append(more)
        unique = list({_key(c): c for c in cleaned}.values())
        schema: dict[str, Any] | None = (
            None if not unique else unique[0] if len(unique) == 1 else {"anyOf": unique}
        )
        if {} in unique:
            schema = {}
    else:
        schema = _clean(True if items is None else items, ctx.down())
    if schema is None:  # `items: false`: only the empty array
        return {"type": "string"}, 0 if cap is None else cap
    if "type" not in schema and "anyOf" not in schema:
        # Gemini 400s on an array without typed items; any string satisfies an unconstrained
        # item schema, so this narrows without ever contradicting the original.
        schema = {**schema, "type": "string"}
    return schema, cap


def _bounds(node: dict[str, Any], kind: str) -> dict[str, Any]:
    """minimum/maximum, folding in exclusive bounds (exact for integers, inclusive otherwise)."""
    low: Any = node.get("minimum") if _is_number(node.get("minimum")) else None
    high: Any = node.get("maximum") if _is_number(node.get("maximum")) else None
    ex_low: Any = node.get("exclusiveMinimum")
    ex_high: Any = node.get("exclusiveMaximum")
    integer = kind == "integer"
    if _is_number(ex_low):
        bound = math.floor(ex_low) + 1 if integer else ex_low
        low = bound if low is None else max(low, bound)
    elif ex_low is True and low is not None and integer:  # draft-4 boolean form
        low = math.floor(low) + 1
    if _is_number(ex_high):
        bound = math.ceil(ex_high) - 1 if integer else ex_high
        high = bound if high is None else min(high, bound)
    elif ex_high is True and high is not None and integer:
        high = math.ceil(high) - 1
    out: dict[str, Any] = {}
    if low is not None:
        out["minimum"] = low
    if high is not None:
        out["maximum"] = high
    return out


def _enum_values(node: dict[str, Any]) -> list[Any] | None:
    """`enum` (or `const` as a one-value enum), deduplicated by JSON value."""
    if isinstance(node.get("enum"), list):
        raw = node["enum"]
    elif "const" in node:
        raw = [node["const"]]
    else:
        return None
    return list({_key(v): v for v in raw}.values())


def _copy_ints(node: dict[str, Any], out: dict[str, Any], keys: tuple[str, ...]) -> None:
    for key in keys:
        value = node.get(key)
        if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
            out[key] = value


def _is_null(branch: Any) -> bool:
    return isinstance(branch, dict) and (
        branch.get("type") == "null" or ("const" in branch and branch["const"] is None)
    )


def _is_number(value: Any) -> bool:
    if isinstance(value, bool):
        return False
    return isinstance(value, int) or (isinstance(value, float) and math.isfinite(value))


def _json_type(value: Any) -> str:
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "number"
    if isinstance(value, str):
        return "string"
    return "array" if isinstance(value, list) else "object"


def _matches(value: Any, kind: str) -> bool:
    found = _json_type(value)
    return found == kind or (kind == "number" and found == "integer")


def _json(value: Any) -> str:
    try:
        return json.dumps(value, ensure_ascii=False, default=str)
    except (RecursionError, ValueError):  # absurdly deep enum values
        return "…"


def _key(value: Any) -> str:
    """Identity by JSON value (Python's 1 == True would merge them)."""
    try:
        return json.dumps(value, sort_keys=True, default=str)
    except (RecursionError, ValueError):
        return f"id:{id(value)}"


def _values_note(values: list[Any]) -> str:
    if len(values) == 1:
        return f"Must be {_json(values[0])}."
    return f"Allowed values: {', '.join(_json(v) for v in values)}."


def _append(description: Any, note: str) -> str:
    return f"{description} {note}" if isinstance(description, str) and description else note
