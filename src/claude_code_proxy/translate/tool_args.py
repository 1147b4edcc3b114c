"""Tool-call arguments from upstream models: parsing, repair and incremental checking."""

from __future__ import annotations

import json
import logging
import re
from typing import Any

import orjson

logger = logging.getLogger(__name__)


def parse_arguments(text: str | None) -> dict[str, Any]:
    """Arguments text → a JSON object for `tool_use.input`; repaired, never silently `{}`.

    Weak models emit trailing prose, single quotes or Python literals; json-repair
    recovers those. What cannot be recovered is kept verbatim under `_raw_arguments`.
    """
    if text is None or not text.strip():
        return {}
    try:
        value = orjson.loads(text)
    except orjson.JSONDecodeError:
        value = _repair(text)
        if value is None:
            logger.warning("tool arguments are not valid JSON and could not be repaired")
            return {"_raw_arguments": text}
    if isinstance(value, dict):
        return value
    if isinstance(value, str):
        # Double-encoded JSON ("{\"a\": 1}") is common with some servers.
        inner = parse_arguments(value) if value.strip().startswith("{") else None
        if inner and "_raw_arguments" not in inner:
            return inner
    return {"value": value}


def _repair(text: str) -> Any:
    try:
        from json_repair import repair_json

        repaired = repair_json(text, return_objects=True, skip_json_loads=True)
    except Exception:  # json-repair is best effort; any failure means "not repairable"
        return None
    if repaired in ("", None) or (isinstance(repaired, list) and not repaired):
        return None
    if (
        isinstance(repaired, list)
        and len(repaired) > 1
        and all(isinstance(x, dict) for x in repaired)
    ):
        return repaired[0]  # Two concatenated objects: keep the first call's arguments.
    return repaired


def split_objects(text: str | None) -> list[dict[str, Any]] | None:
    """Two or more JSON objects back to back (`{…}{…}`): several calls in one, else None."""
    if not text:
        return None
    decoder = json.JSONDecoder()
    objects: list[dict[str, Any]] = []
    index, size = 0, len(text)
    while index < size:
        while index < size and text[index] in " \t\r\n,;":
            index += 1
        if index >= size:
            break
        try:
            value, index = decoder.raw_decode(text, index)
        except ValueError:
            return None
        if not isinstance(value, dict):
            return None
        objects.append(value)
    return objects if len(objects) > 1 else None


_STRING_SPECIAL = re.compile(r'["\\]')
_STRUCTURAL = frozenset("{}[],: \t\r\n")
_SCALAR_CHARS = frozenset("0123456789-+.eEtrufalsn")


class JsonPrefixScanner:
    """Tracks whether streamed text is still a plausible JSON-object prefix, cheaply.

    Fragments are forwarded to the client as they arrive only while this holds; it
    knows when the top-level object closed, and how to close it if the stream stops.
    """

    __slots__ = ("closers", "complete", "escape", "in_string", "started", "valid")

    def __init__(self) -> None:
        self.started = False
        self.valid = True
        self.complete = False
        self.in_string = False
        self.escape = False
        self.closers: list[str] = []

    def feed(self, text: str) -> int:
        """Consume text; returns how many characters belong to the JSON object.

        Characters after the object closes (a repeated or second object) are not counted.
        """
        i, n = 0, len(text)
        while i < n:
            if self.complete or not self.valid:
                return i
            if self.in_string:
                if self.escape:
                    self.escape = False
                    i += 1
                    continue
                match = _STRING_SPECIAL.search(text, i)
                if match is None:
                    return n
                i = match.end()
                if match.group() == "\\":
                    self.escape = True
                else:
                    self.in_string = False
                continue
            ch = text[i]
            i += 1
            if not self.started:
                if ch in " \t\r\n":
                    continue
                if ch != "{":
                    self.valid = False
                    return i - 1
                self.started = True
                self.closers.append("}")
            elif ch == '"':
                self.in_string = True
            elif ch in "{[":
                self.closers.append("}" if ch == "{" else "]")
            elif ch in "}]":
                if not self.closers or self.closers[-1] != ch:
                    self.valid = False
                    return i - 1
                self.closers.pop()
                if not self.closers:
                    self.complete = True
            elif ch not in _STRUCTURAL and ch not in _SCALAR_CHARS:
                self.valid = False
                return i - 1
        return n

    def closing_suffix(self) -> str:
        """Text that turns the consumed prefix into a parseable object (for cut-off calls)."""
        suffix = ""
        if self.in_string:
            suffix += "\\" if self.escape else ""
            suffix += '"'
        return suffix + "".join(reversed(self.closers))
