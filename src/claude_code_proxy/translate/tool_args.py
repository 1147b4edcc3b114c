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


def dump_json(value: Any) -> str:
    """Compact JSON text; the stdlib covers what orjson refuses (integers beyond 64 bits)."""
    try:
        return orjson.dumps(value).decode()
    except TypeError:
        return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


def complete_prefix(prefix: str, closer: str, target: dict[str, Any]) -> str:
    """Text that, appended to an object prefix already streamed, makes it parse as `target`.

    `prefix + closer` must parse (a scanner's safe prefix and closing suffix). Members the
    prefix already holds with the right value stay; the others follow, so a member whose
    streamed value was cut or wrong appears twice and the later one wins, as in every JSON
    parser that matters here (JSON.parse, jiter, Python's json, orjson).
    """
    if not prefix.strip():
        return dump_json(target)
    try:
        sent = json.loads(prefix + closer)
    except ValueError:
        sent = None
    if not isinstance(sent, dict) or not closer.endswith("}"):  # not a safe, open prefix
        logger.warning("could not extend streamed tool arguments; closing them as they are")
        return closer
    members = [
        f"{dump_json(key)}:{dump_json(value)}"
        for key, value in target.items()
        if key not in sent or dump_json(sent[key]) != dump_json(value)  # 1 == True in Python
    ]
    stale = [key for key in sent if key not in target]
    if stale:
        logger.info("streamed tool arguments keep keys the repair dropped: %s", stale)
    body = ("," if sent and members else "") + ",".join(members)
    return closer[:-1] + body + "}"


_STRING_STOP = re.compile(r'["\\\x00-\x1f]')
_WHITESPACE = frozenset(" \t\r\n")
_ESCAPES = frozenset('"\\/bfnrt')
_HEX = frozenset("0123456789abcdefABCDEF")
_DIGITS = frozenset("0123456789")
_LITERALS = {"t": "rue", "f": "alse", "n": "ull"}

# Grammar states outside strings.
_START, _OBJ_FIRST, _OBJ_KEY, _COLON, _VALUE = range(5)
_ARR_FIRST, _AFTER, _NUMBER, _LITERAL, _DONE = range(5, 10)
# Number sub-states; the ones in _NUMBER_ENDS may end the number.
_N_MINUS, _N_ZERO, _N_INT, _N_DOT, _N_FRAC, _N_E, _N_ESIGN, _N_EXP = range(8)
_NUMBER_ENDS = frozenset((_N_ZERO, _N_INT, _N_FRAC, _N_EXP))
# String kinds.
_NO_STRING, _KEY, _TEXT = 0, 1, 2


class JsonPrefixScanner:
    """An incremental JSON grammar check for streamed tool arguments (one top-level object).

    `feed` consumes only the new fragment and keeps the parser state, so the cost is linear
    in the arguments (string bodies are skipped with one regex search). It tracks:

    * `valid`: everything consumed is a prefix of some valid JSON object;
    * `complete`: the top-level object closed (later text is not consumed);
    * `safe`: the longest consumed prefix that `closing_suffix()` turns into valid JSON by
      appending only a quote and closers. A dangling key, colon, comma, half a number or
      literal, or an unfinished escape lies after it, so a streamer that forwards text only up
      to `safe` can always close what it sent without taking anything back.
    """

    __slots__ = (
        "_hex",
        "_literal",
        "_number",
        "_stack",
        "_state",
        "_string",
        "complete",
        "pos",
        "safe",
        "safe_in_string",
        "started",
        "valid",
    )

    def __init__(self) -> None:
        self.started = False
        self.valid = True
        self.complete = False
        self.pos = 0  # characters consumed (all of them valid)
        self.safe = 0
        self.safe_in_string = False
        self._state = _START
        self._stack: list[str] = []  # the closers of the open containers
        self._string = _NO_STRING
        self._hex = -1  # -1: no escape; 0: after a backslash; 1-4: \u hex digits seen + 1
        self._number = _N_INT
        self._literal = ""

    def feed(self, text: str) -> int:
        """Consume a fragment; returns how many of its characters extend the valid object.

        Stops at the first character that breaks the grammar (`valid` turns False) and after
        the character that closes the top-level object (`complete` turns True).
        """
        if not self.valid or self.complete:
            return 0
        base, i, n = self.pos, 0, len(text)
        state, stack = self._state, self._stack
        while i < n:
            if self._string:
                if self._hex >= 0:
                    ch = text[i]
                    if self._hex == 0:
                        if ch == "u":
                            self._hex = 1
                        elif ch in _ESCAPES:
                            self._hex = -1
                        else:
                            break
                    elif ch in _HEX:
                        self._hex = -1 if self._hex == 4 else self._hex + 1
                    else:
                        break
                    i += 1
                    if self._hex < 0 and self._string == _TEXT:
                        self.safe, self.safe_in_string = base + i, True
                    continue
                match = _STRING_STOP.search(text, i)
                end = n if match is None else match.start()
                if self._string == _TEXT and end > i:
                    self.safe, self.safe_in_string = base + end, True
                if match is None:
                    i = n
                    continue
                ch = text[end]
                i = end + 1
                if ch == "\\":
                    self._hex = 0
                elif ch == '"':
                    if self._string == _KEY:
                        state = _COLON
                    else:
                        state = _AFTER
                        self.safe, self.safe_in_string = base + i, False
                    self._string = _NO_STRING
                else:  # a raw control character: not allowed inside a JSON string
                    i -= 1
                    break
                continue
            ch = text[i]
            if state == _NUMBER:
                number = self._number
                if ch in _DIGITS:
                    if number == _N_ZERO:
                        break  # leading zero
                    if number == _N_MINUS:
                        number = _N_ZERO if ch == "0" else _N_INT
                    elif number in (_N_DOT, _N_FRAC):
                        number = _N_FRAC
                    elif number != _N_INT:
                        number = _N_EXP
                elif ch == "." and number in (_N_ZERO, _N_INT):
                    number = _N_DOT
                elif ch in "eE" and number in (_N_ZERO, _N_INT, _N_FRAC):
                    number = _N_E
                elif ch in "+-" and number == _N_E:
                    number = _N_ESIGN
                elif number in _NUMBER_ENDS:
                    state = _AFTER  # the number ended: this character follows it
                else:
                    break
                if state == _NUMBER:
                    self._number = number
                    i += 1
                    if number in _NUMBER_ENDS:
                        self.safe, self.safe_in_string = base + i, False
                    continue
            elif state == _LITERAL:
                if ch != self._literal[0]:
                    break
                self._literal = self._literal[1:]
                i += 1
                if not self._literal:
                    state = _AFTER
                    self.safe, self.safe_in_string = base + i, False
                continue
            if ch in _WHITESPACE:
                i += 1
                if state in (_AFTER, _OBJ_FIRST, _ARR_FIRST):
                    self.safe = base + i
                continue
            if state == _AFTER:
                if ch == ",":
                    state = _OBJ_KEY if stack[-1] == "}" else _VALUE
                elif ch == stack[-1]:
                    stack.pop()
                else:
                    break
            elif state in (_VALUE, _ARR_FIRST):
                if ch == '"':
                    self._string = _TEXT
                    self.safe, self.safe_in_string = base + i + 1, True
                elif ch == "{":
                    stack.append("}")
                    state = _OBJ_FIRST
                elif ch == "[":
                    stack.append("]")
                    state = _ARR_FIRST
                elif ch in _DIGITS or ch == "-":
                    state = _NUMBER
                    self._number = _N_MINUS if ch == "-" else _N_ZERO if ch == "0" else _N_INT
                    if ch != "-":
                        self.safe, self.safe_in_string = base + i + 1, False
                elif ch in _LITERALS:
                    state = _LITERAL
                    self._literal = _LITERALS[ch]
                elif ch == "]" and state == _ARR_FIRST:
                    stack.pop()
                    state = _AFTER
                else:
                    break
            elif state in (_OBJ_FIRST, _OBJ_KEY):
                if ch == '"':
                    self._string = _KEY
                elif ch == "}" and state == _OBJ_FIRST:
                    stack.pop()
                    state = _AFTER
                else:
                    break
            elif state == _COLON:
                if ch != ":":
                    break
                state = _VALUE
            else:  # _START: only an object may open the arguments
                if ch != "{":
                    break
                self.started = True
                stack.append("}")
                state = _OBJ_FIRST
            i += 1
            if state in (_OBJ_FIRST, _ARR_FIRST, _AFTER) and not self._string:
                self.safe, self.safe_in_string = base + i, False
                if not stack:
                    state = _DONE
                    self.complete = True
                    break
        else:
            self._state = state
            self.pos = base + n
            return n
        # Stopped early: at an invalid character, or just after the object closed.
        self._state = state
        self.pos = base + i
        if not self.complete:
            self.valid = False
        return i

    def closing_suffix(self) -> str:
        """What turns the text up to `safe` into a JSON object: a quote and the closers.

        Every push or pop of a container lands in a safe state, so the containers open at
        `safe` are the ones open now.
        """
        closers = "".join(reversed(self._stack))
        return '"' + closers if self.safe_in_string else closers
