"""Tool calls a local model wrote as text, turned back into calls (docs/local-models.md).

A server that does not parse the model's tool calls (vLLM without `--enable-auto-tool-choice`,
a llama.cpp template it cannot analyse, an Ollama model without the tools tag) passes them on
as text. Four forms are recognised, each only when it names an offered tool and its arguments
parse to an object:

* bare JSON at the start of a line: `{"name": "Read", "arguments": {...}}` (also
  `"parameters"`, and `"type": "function"`);
* the same object in a fenced block: ```` ```json … ``` ````;
* Hermes tags: `<tool_call>{…}</tool_call>`;
* Qwen3-Coder XML: `<tool_call><function=Read><parameter=p>v</parameter></function></tool_call>`.

The calls must end the answer (whitespace between and after them aside); text before them
stays text. Anything else is text, byte for byte. `Rescuer` works incrementally: text that
cannot start a call is released at once, text that may be one is held until it is decided.
A candidate whose tool name is not known within `HEADER_LIMIT` characters is given up, so
ordinary answers never wait for more than that.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

import orjson

from claude_code_proxy.translate.tool_args import JsonPrefixScanner

#: Characters a candidate may run before its tool name must be known.
HEADER_LIMIT = 2048

Form = Literal["json", "fenced", "hermes", "xml"]
Tools = Mapping[str, Mapping[str, Any]]  # offered tool name → its parameters schema

HERMES_OPEN = "<tool_call>"
HERMES_CLOSE = "</tool_call>"
FENCE = "```"
FUNCTION_OPEN = "<function="
FUNCTION_CLOSE = "</function>"
CALL_KEYS = frozenset({"name", "arguments", "parameters", "type"})
FENCE_LANGUAGES = ("json", "tool_call")
WHITESPACE = " \t\r\n"

_FIRST_KEY = re.compile(r'\{\s*"([^"\\]*)"\s*:')
_NAME_FIRST = re.compile(r'\{\s*"name"\s*:\s*(?:"((?:[^"\\]|\\.)*)"|[^\s"])')
_FENCE_HEAD = re.compile(r"```[ \t]*([A-Za-z_]*)[ \t]*\r?\n")
_FENCE_PARTIAL = re.compile(r"`{1,3}(?:[ \t]*[A-Za-z_]*[ \t]*\r?)?")
_FUNCTION_NAME = re.compile(r"<function=([^>\s<]{1,200})>")
_PARAMETER = re.compile(r"<parameter=([^>\n]{1,200})>(.*?)</parameter>", re.DOTALL)


@dataclass(frozen=True)
class RescuedCall:
    name: str
    arguments: dict[str, Any]
    form: Form


@dataclass
class RescueContext:
    """What a translator needs to rescue calls, and the record of what it rescued."""

    tools: Tools
    rescued: list[RescuedCall] = field(default_factory=list)


def offered_tools(payload: Mapping[str, Any]) -> dict[str, Mapping[str, Any]]:
    """The function tools of an OpenAI request (none when `tool_choice` is "none")."""
    if payload.get("tool_choice") == "none":
        return {}
    tools: dict[str, Mapping[str, Any]] = {}
    for tool in payload.get("tools") or ():
        function = tool.get("function") if isinstance(tool, dict) else None
        if isinstance(function, dict) and isinstance(function.get("name"), str):
            parameters = function.get("parameters")
            tools[function["name"]] = parameters if isinstance(parameters, dict) else {}
    return tools


def rescue_text(text: str, tools: Tools) -> tuple[str, list[RescuedCall]]:
    """(text before the calls, calls); `(text, [])` unchanged when it holds no call."""
    rescuer = Rescuer(tools)
    before = rescuer.feed(text)
    rest, calls = rescuer.finish()
    return before + rest, calls


def _call(value: Any, tools: Tools, form: Form) -> RescuedCall | None:
    """A parsed JSON object as a call of an offered tool, or None."""
    if not isinstance(value, dict) or not value.keys() <= CALL_KEYS:
        return None
    name = value.get("name")
    if not isinstance(name, str) or name not in tools:
        return None
    if value.get("type", "function") != "function":
        return None
    if ("arguments" in value) == ("parameters" in value):
        return None  # neither, or both
    arguments = value.get("arguments", value.get("parameters"))
    if isinstance(arguments, str):
        try:
            arguments = orjson.loads(arguments)
        except orjson.JSONDecodeError:
            return None
    if not isinstance(arguments, dict):
        return None
    return RescuedCall(name, arguments, form)


def _xml_value(raw: str, schema: Mapping[str, Any]) -> Any:
    """A Qwen3-Coder parameter value, typed by the tool's schema (as vLLM's parser does)."""
    if raw.startswith("\n"):
        raw = raw[1:]
    if raw.endswith("\n"):
        raw = raw[:-1]
    kind = schema.get("type") if isinstance(schema, Mapping) else None
    if kind is None or kind == "string" or (isinstance(kind, list) and "string" in kind):
        return raw
    try:
        return orjson.loads(raw.strip())
    except orjson.JSONDecodeError:
        return raw


class _Json:
    """One JSON call object from `start`, checked as it arrives (grammar, then its name)."""

    def __init__(self, start: int) -> None:
        self.start = start
        self.fed = start
        self.scanner = JsonPrefixScanner()
        self.named = False

    def step(self, buf: str, tools: Tools, form: Form) -> RescuedCall | Literal[False] | None:
        """A call when complete, False when it cannot be one, None while undecided."""
        scanner = self.scanner
        if self.fed < len(buf):
            self.fed += scanner.feed(buf[self.fed :])
        if not scanner.valid:
            return False
        if not self.named:
            head = buf[self.start : self.start + HEADER_LIMIT]
            first = _FIRST_KEY.match(head)
            if first is not None and first.group(1) not in CALL_KEYS:
                return False
            named = _NAME_FIRST.match(head)
            if named is not None:
                if named.group(1) is None or _unescape(named.group(1)) not in tools:
                    return False
                self.named = True
            elif scanner.pos > HEADER_LIMIT:
                return False  # decided by position, so any chunking gives the same answer
        if not scanner.complete:
            return None
        try:
            value = orjson.loads(buf[self.start : self.start + scanner.pos])
        except orjson.JSONDecodeError:
            return False
        return _call(value, tools, form) or False

    @property
    def end(self) -> int:
        return self.start + self.scanner.pos


def _unescape(text: str) -> str:
    try:
        value = orjson.loads(f'"{text}"')
    except orjson.JSONDecodeError:
        return text
    return value if isinstance(value, str) else text


def _skip_space(buf: str, i: int) -> int:
    while i < len(buf) and buf[i] in WHITESPACE:
        i += 1
    return i


def _wait_for(buf: str, i: int, literal: str) -> bool | None:
    """Whether `literal` is at `i`; None while what is there is a prefix of it."""
    have = buf[i : i + len(literal)]
    if have == literal:
        return True
    return None if literal.startswith(have) else False


class _Candidate:
    """One possible call from `start`: a small state machine over the held text."""

    def __init__(self, start: int, form: Form) -> None:
        self.start = start
        self.form: Form = form
        self.stage = "head"
        self.at = start  # where the current stage reads
        self.json: _Json | None = None
        self.call: RescuedCall | None = None
        self.end = start
        self.search = start  # Qwen XML: where to look for </function> next

    def step(self, buf: str, tools: Tools, final: bool) -> bool | None:
        """True when a call ends at `self.end`, False when this is no call, None: undecided."""
        result = self._step(buf, tools, final)
        if result is None and final:
            return False
        return result

    def _step(self, buf: str, tools: Tools, final: bool) -> bool | None:
        while True:
            if self.stage == "head":
                if not self._head(buf):
                    return None if self.stage == "head" else False
            elif self.stage == "body":
                i = _skip_space(buf, self.at)
                if i >= len(buf):
                    return None
                if buf[i] == "{":
                    self.json, self.stage = _Json(i), "json"
                elif self.form == "hermes":
                    found = _wait_for(buf, i, FUNCTION_OPEN)
                    if found is None:
                        return None
                    if not found:
                        return False
                    self.form, self.stage, self.at = "xml", "xml", i
                else:
                    return False
            elif self.stage == "json":
                assert self.json is not None
                call = self.json.step(buf, tools, self.form)
                if call is None or call is False:
                    return call
                self.call, self.at = call, self.json.end
                if self.form == "json":
                    self.end = self.at
                    return True
                self.stage = "close"
            elif self.stage == "xml":
                parsed = self._xml(buf, tools)
                if parsed is not True:
                    return parsed
                self.stage = "close"
            else:  # close: the fence or the closing tag
                closer = FENCE if self.form == "fenced" else HERMES_CLOSE
                i = _skip_space(buf, self.at)
                found = _wait_for(buf, i, closer)
                if found:
                    self.end = i + len(closer)
                    return True
                if i >= len(buf) and final:
                    self.end = i  # the answer ended before the closer: still a call
                    return True
                return None if found is None else False

    def _head(self, buf: str) -> bool:
        """Read the opening; True once it is complete (the stage moves on)."""
        if self.form == "json":
            self.json, self.stage = _Json(self.start), "json"
            return True
        if self.form == "hermes":
            self.stage, self.at = "body", self.start + len(HERMES_OPEN)
            return True
        head = _FENCE_HEAD.match(buf, self.start)
        if head is None:
            partial = _FENCE_PARTIAL.fullmatch(buf, self.start)
            language = partial.group(0).strip("` \t\r").lower() if partial else ""
            if partial is None or not any(
                lang.startswith(language) for lang in ("", *FENCE_LANGUAGES)
            ):
                self.stage = "failed"
            return False
        if head.group(1).lower() not in ("", *FENCE_LANGUAGES):
            self.stage = "failed"
            return False
        self.stage, self.at = "body", head.end()
        return True

    def _xml(self, buf: str, tools: Tools) -> bool | None:
        named = _FUNCTION_NAME.match(buf, self.at)
        if named is None:
            opening = buf[self.at : self.at + 220]
            return None if ">" not in opening and len(opening) < 220 else False
        name = named.group(1)
        if name not in tools:
            return False
        close = buf.find(FUNCTION_CLOSE, max(self.search, named.end()))
        if close < 0:
            self.search = max(named.end(), len(buf) - len(FUNCTION_CLOSE))
            return None
        body = buf[named.end() : close]
        properties = tools[name].get("properties")
        properties = properties if isinstance(properties, Mapping) else {}
        arguments: dict[str, Any] = {}
        for parameter in _PARAMETER.finditer(body):
            key = parameter.group(1).strip()
            arguments[key] = _xml_value(parameter.group(2), properties.get(key, {}))
        if _PARAMETER.sub("", body).strip(WHITESPACE):
            return False  # something other than parameters: not this format
        self.call, self.at = RescuedCall(name, arguments, "xml"), close + len(FUNCTION_CLOSE)
        return True


class Rescuer:
    """Feed an answer's text in pieces; get back what can be shown now, and at the end the
    calls (or, when there are none, the rest of the text)."""

    def __init__(self, tools: Tools) -> None:
        self.tools = tools
        self.buf = ""  # held text: undecided, or calls waiting for the end of the answer
        self.prev = "\n"  # the character before `buf` (the answer starts a line)
        self.calls: list[RescuedCall] = []
        self.pos = 0  # in `buf`: where the next candidate or text starts
        self.candidate: _Candidate | None = None

    @property
    def held(self) -> int:
        return len(self.buf)

    def feed(self, text: str) -> str:
        """Text that is certainly not part of a call, to send now."""
        self.buf += text
        return self._advance(final=False)

    def finish(self) -> tuple[str, list[RescuedCall]]:
        """The answer ended: (text still to send, the calls it ends with)."""
        text = self._advance(final=True)
        calls, self.calls = self.calls, []
        self.buf, self.pos = "", 0
        return text, calls

    def abandon(self) -> str:
        """Give up (a real tool call arrived, or the stream failed): all held text, as text."""
        text, self.buf, self.calls, self.candidate, self.pos = self.buf, "", [], None, 0
        return text

    def _release(self, upto: int) -> str:
        """Send `buf[:upto]` as text: any calls held in it were text after all."""
        text = self.buf[:upto]
        if text:
            self.prev = text[-1]
        self.buf, self.calls, self.pos, self.candidate = self.buf[upto:], [], 0, None
        return text

    def _advance(self, final: bool) -> str:
        out: list[str] = []
        while True:
            candidate = self.candidate
            if candidate is not None:
                verdict = candidate.step(self.buf, self.tools, final)
                if verdict is None:
                    break
                if verdict:
                    assert candidate.call is not None
                    self.calls.append(candidate.call)
                    self.pos, self.candidate = candidate.end, None
                else:
                    out.append(self._release(candidate.start + 1))
                continue
            if self.calls:
                i = _skip_space(self.buf, self.pos)
                if i >= len(self.buf):
                    break  # whitespace after the calls: they may end the answer
                kind = self._start_at(i, after_call=True, final=final)
                if kind is None:
                    break  # whitespace, or the start of something still arriving
                if kind == "text":
                    out.append(self._release(i))
                    continue
                self.candidate = _Candidate(i, kind)
                continue
            start, kind = self._find(final)
            if kind is None:
                out.append(self._release(start))
                break
            out.append(self._release(start))
            self.candidate = _Candidate(0, kind)
        if final and self.candidate is None and not self.calls:
            out.append(self._release(len(self.buf)))
        return "".join(out)

    def _line_start(self, i: int) -> bool:
        """Only spaces or tabs between the last newline and `i`."""
        j = i
        while j > 0 and self.buf[j - 1] in " \t":
            j -= 1
        return (self.buf[j - 1] if j else self.prev) == "\n"

    def _start_at(self, i: int, *, after_call: bool, final: bool) -> Form | Literal["text"] | None:
        """What starts at `i`: a candidate form, "text", or None (undecided or nothing yet)."""
        buf = self.buf
        if i >= len(buf):
            return None if not final else "text"
        if buf[i] == "<":
            found = _wait_for(buf, i, HERMES_OPEN)
            if found:
                return "hermes"
            return None if found is None and not final else "text"
        if not (after_call or self._line_start(i)):
            return "text"
        if buf[i] == "{":
            return "json"
        if buf[i] == "`":
            found = _wait_for(buf, i, FENCE)
            if found:
                return "fenced"
            return None if found is None and not final else "text"
        return "text"

    def _find(self, final: bool) -> tuple[int, Form | None]:
        """The first candidate in `buf` (its index and form), or where held text must start."""
        buf, i = self.buf, 0
        while i < len(buf):
            ch = buf[i]
            if ch in "<{`":
                kind = self._start_at(i, after_call=False, final=final)
                if kind is None:
                    return i, None  # hold from here
                if kind != "text":
                    return i, kind
            elif ch in " \t" and not final and self._line_start(i) and buf[i:].strip(" \t") == "":
                return i, None  # indentation that may lead to a call
            i += 1
        return len(buf), None
