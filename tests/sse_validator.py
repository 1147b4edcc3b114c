"""Strict validators for what the proxy sends to Anthropic clients.

The official SDKs (and therefore Claude Code) are unforgiving about the Anthropic SSE grammar:
nameless records are dropped, indexes are looked up by position, tool-input fragments are
re-parsed on every delta, and ``finalMessage()`` needs ``message_stop``
(protocol.md A.9, A.10, F).  Every stream test funnels the proxy's bytes through
:func:`validate_anthropic_stream` so that a violation fails with a message naming the event
and the rule, instead of surfacing later as an obscure client-side error.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

__all__ = [
    "ANTHROPIC_ERROR_TYPES",
    "STATUS_TO_ERROR_TYPES",
    "STOP_REASONS",
    "TOOL_ID_RE",
    "SSERecord",
    "ValidatedStream",
    "iter_sse_records",
    "parse_sse",
    "validate_anthropic_error",
    "validate_anthropic_message",
    "validate_anthropic_stream",
]

#: Anthropic ``stop_reason`` values a finished message may carry (GA ``StopReason``).
STOP_REASONS: frozenset[str] = frozenset(
    {
        "end_turn",
        "max_tokens",
        "stop_sequence",
        "tool_use",
        "pause_turn",
        "refusal",
        "model_context_window_exceeded",
    }
)

#: ``error.type`` values the Anthropic API uses (protocol.md A.13).
ANTHROPIC_ERROR_TYPES: frozenset[str] = frozenset(
    {
        "invalid_request_error",
        "authentication_error",
        "billing_error",
        "permission_error",
        "not_found_error",
        "request_too_large",
        "rate_limit_error",
        "api_error",
        "timeout_error",
        "overloaded_error",
    }
)

#: HTTP status → acceptable ``error.type`` values (protocol.md A.13 and E.8).
STATUS_TO_ERROR_TYPES: Mapping[int, frozenset[str]] = {
    400: frozenset({"invalid_request_error"}),
    401: frozenset({"authentication_error"}),
    402: frozenset({"billing_error"}),
    403: frozenset({"permission_error"}),
    404: frozenset({"not_found_error"}),
    409: frozenset({"api_error"}),
    413: frozenset({"request_too_large"}),
    429: frozenset({"rate_limit_error"}),
    500: frozenset({"api_error"}),
    502: frozenset({"api_error", "overloaded_error"}),
    503: frozenset({"api_error", "overloaded_error"}),
    504: frozenset({"timeout_error"}),
    529: frozenset({"overloaded_error"}),
}

#: Pattern the Anthropic API enforces on ``tool_use.id`` (protocol.md A.14).
TOOL_ID_RE = re.compile(r"^[A-Za-z0-9_-]+$")
_SERVER_TOOL_ID_RE = re.compile(r"^srvtoolu_[A-Za-z0-9_]+$")

_STREAM_EVENTS = frozenset(
    {
        "message_start",
        "content_block_start",
        "content_block_delta",
        "content_block_stop",
        "message_delta",
        "message_stop",
        "ping",
        "error",
    }
)

# Complete blocks that arrive whole in content_block_start and never take deltas.
_COMPLETE_BLOCKS = frozenset(
    {
        "redacted_thinking",
        "web_search_tool_result",
        "web_fetch_tool_result",
        "code_execution_tool_result",
        "bash_code_execution_tool_result",
        "text_editor_code_execution_tool_result",
        "tool_search_tool_result",
        "container_upload",
        "mcp_tool_result",
    }
)
_INPUT_BLOCKS = frozenset({"tool_use", "server_tool_use", "mcp_tool_use"})
_BLOCK_TYPES = _COMPLETE_BLOCKS | _INPUT_BLOCKS | {"text", "thinking", "compaction"}

# Which delta types each block type accepts (SDK accumulators ignore mismatches silently).
_DELTAS_FOR_BLOCK: Mapping[str, frozenset[str]] = {
    "text": frozenset({"text_delta", "citations_delta"}),
    "thinking": frozenset({"thinking_delta", "signature_delta"}),
    "tool_use": frozenset({"input_json_delta"}),
    "server_tool_use": frozenset({"input_json_delta"}),
    "mcp_tool_use": frozenset({"input_json_delta"}),
    "compaction": frozenset({"compaction_delta"}),
}

# `web_search_tool_result_error.error_code` values (protocol.md A.6).
WEB_SEARCH_ERROR_CODES = frozenset(
    {
        "invalid_tool_input",
        "unavailable",
        "max_uses_exceeded",
        "too_many_requests",
        "query_too_long",
        "request_too_large",
    }
)

# Stop reasons that may legitimately end a turn that contains tool_use blocks.
_STOP_REASONS_WITH_TOOLS = frozenset({"tool_use", "max_tokens", "model_context_window_exceeded"})


# --------------------------------------------------------------------------------------------
# SSE framing
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SSERecord:
    """One dispatched SSE record; ``event`` is None when the record had no ``event:`` line."""

    event: str | None
    data: str
    id: str | None = None
    #: 1-based line number of the record's first line, for error messages.
    line: int = 0


def _to_text(raw: bytes | bytearray | str) -> str:
    if isinstance(raw, (bytes, bytearray)):
        try:
            return bytes(raw).decode("utf-8")
        except UnicodeDecodeError as exc:  # a split multi-byte char that was never rejoined
            raise AssertionError(f"SSE stream is not valid UTF-8: {exc}") from exc
    return raw


def iter_sse_records(
    raw: bytes | bytearray | str, *, require_terminated: bool = True
) -> list[SSERecord]:
    """Split an SSE byte stream into records following the WHATWG event-stream rules.

    Handles ``\\n``, ``\\r\\n`` and ``\\r`` line endings, ``:`` comment lines, multi-line
    ``data:`` (joined with ``\\n``) and a leading BOM.  Records without any ``data:`` line are
    not dispatched (as in browsers and the SDKs).  With ``require_terminated`` a trailing record
    that is not followed by a blank line is an error: the Python SDK silently drops it.
    """
    text = _to_text(raw)
    if text.startswith("\ufeff"):
        text = text[1:]
    lines = re.split(r"\r\n|\r|\n", text)
    # re.split leaves a final "" when the text ends with a line break; that is not a line.
    trailing_partial = lines[-1] != ""
    if not trailing_partial:
        lines.pop()

    records: list[SSERecord] = []
    event: str | None = None
    data_lines: list[str] = []
    rec_id: str | None = None
    start_line = 0
    pending = False

    def dispatch() -> None:
        nonlocal event, data_lines, rec_id, pending
        if data_lines:
            records.append(SSERecord(event, "\n".join(data_lines), rec_id, start_line))
        elif event is not None:
            raise AssertionError(
                f"SSE record at line {start_line} has 'event: {event}' but no data: line"
            )
        event, data_lines, rec_id, pending = None, [], None, False

    for lineno, line in enumerate(lines, start=1):
        if line == "":
            dispatch()
            continue
        if line.startswith(":"):
            continue
        if not pending:
            start_line, pending = lineno, True
        name, sep, value = line.partition(":")
        if sep and value.startswith(" "):
            value = value[1:]
        if name == "event":
            event = value
        elif name == "data":
            data_lines.append(value)
        elif name == "id":
            rec_id = value
        # "retry" and unknown field names are ignored, as the spec says.

    if pending:
        if require_terminated or trailing_partial:
            raise AssertionError(
                f"SSE stream ends inside the record starting at line {start_line} "
                "(missing blank line terminator; the Python SDK would drop it)"
            )
        dispatch()
    return records


def parse_sse(
    raw: bytes | bytearray | str, *, require_terminated: bool = True
) -> list[tuple[str, dict[str, Any]]]:
    """Parse an SSE stream whose records carry JSON objects into ``(event_name, data)`` pairs.

    A record without an ``event:`` line yields ``""`` as its name so the caller can report it;
    non-JSON or non-object data raises ``AssertionError`` (``[DONE]`` included — use
    :func:`iter_sse_records` for OpenAI-style streams).
    """
    out: list[tuple[str, dict[str, Any]]] = []
    for rec in iter_sse_records(raw, require_terminated=require_terminated):
        try:
            obj = json.loads(rec.data)
        except ValueError as exc:
            raise AssertionError(
                f"SSE record at line {rec.line} (event {rec.event!r}) has non-JSON data "
                f"{rec.data[:200]!r}: {exc}"
            ) from exc
        if not isinstance(obj, dict):
            raise AssertionError(
                f"SSE record at line {rec.line} (event {rec.event!r}) data is "
                f"{type(obj).__name__}, expected a JSON object"
            )
        out.append((rec.event or "", obj))
    return out


# --------------------------------------------------------------------------------------------
# Shared field checks
# --------------------------------------------------------------------------------------------


def _fail(where: str, msg: str) -> AssertionError:
    return AssertionError(f"{where}: {msg}")


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _check_usage(where: str, usage: object, required: Iterable[str]) -> dict[str, Any]:
    if not isinstance(usage, dict):
        raise _fail(where, f"usage must be an object, got {usage!r}")
    for key in required:
        if key not in usage:
            raise _fail(where, f"usage.{key} is required")
    for key in (
        "input_tokens",
        "output_tokens",
        "cache_creation_input_tokens",
        "cache_read_input_tokens",
    ):
        if key not in usage:
            continue
        value = usage[key]
        if key in required and value is None:
            raise _fail(where, f"usage.{key} must be an integer, got null")
        if value is not None and (not _is_int(value) or value < 0):
            raise _fail(where, f"usage.{key} must be a non-negative integer, got {value!r}")
    return usage


def _check_tool_identity(where: str, block: Mapping[str, Any]) -> None:
    btype = block["type"]
    tool_id = block.get("id")
    if not isinstance(tool_id, str) or not tool_id:
        raise _fail(where, f"{btype}.id must be a non-empty string, got {tool_id!r}")
    pattern = _SERVER_TOOL_ID_RE if btype == "server_tool_use" else TOOL_ID_RE
    if not pattern.match(tool_id):
        raise _fail(where, f"{btype}.id {tool_id!r} does not match {pattern.pattern}")
    name = block.get("name")
    if not isinstance(name, str) or not name:
        raise _fail(where, f"{btype}.name must be a non-empty string, got {name!r}")


def _check_web_search_result(where: str, block: Mapping[str, Any], server_ids: set[str]) -> None:
    """A web_search_tool_result answers an earlier server_tool_use of the same message and
    holds either web_search_result items or one error object (protocol.md A.6)."""
    tool_use_id = block.get("tool_use_id")
    if tool_use_id not in server_ids:
        raise _fail(where, f"tool_use_id {tool_use_id!r} answers no earlier server_tool_use")
    content = block.get("content")
    if isinstance(content, dict):
        if content.get("type") != "web_search_tool_result_error":
            raise _fail(where, f"error content must be web_search_tool_result_error: {content!r}")
        if content.get("error_code") not in WEB_SEARCH_ERROR_CODES:
            raise _fail(where, f"unknown web search error_code {content.get('error_code')!r}")
        return
    if not isinstance(content, list):
        raise _fail(where, f"content must be a list or an error object, got {content!r}")
    for i, item in enumerate(content):
        if not isinstance(item, dict) or item.get("type") != "web_search_result":
            raise _fail(where, f"content[{i}] must be a web_search_result, got {item!r}")
        for key in ("url", "title", "encrypted_content"):
            if not isinstance(item.get(key), str):
                raise _fail(where, f"content[{i}].{key} must be a string, got {item.get(key)!r}")
        if item.get("page_age") is not None and not isinstance(item["page_age"], str):
            raise _fail(where, f"content[{i}].page_age must be a string or null")


def _check_server_tool_usage(where: str, usage: Mapping[str, Any]) -> None:
    server = usage.get("server_tool_use")
    if server is None:
        return
    if not isinstance(server, dict):
        raise _fail(where, f"usage.server_tool_use must be an object, got {server!r}")
    for key, value in server.items():
        if not _is_int(value) or value < 0:
            raise _fail(where, f"usage.server_tool_use.{key} must be a non-negative integer")


def _check_stop_fields(
    where: str,
    stop_reason: object,
    stop_sequence: object,
    tool_use_count: int,
    *,
    strict_tool_stop_reason: bool,
) -> None:
    if stop_reason is None:
        raise _fail(where, "stop_reason must not be null")
    if stop_reason not in STOP_REASONS:
        raise _fail(where, f"stop_reason {stop_reason!r} is not one of {sorted(STOP_REASONS)}")
    if stop_sequence is not None and not isinstance(stop_sequence, str):
        raise _fail(where, f"stop_sequence must be a string or null, got {stop_sequence!r}")
    if stop_reason == "stop_sequence" and not stop_sequence:
        raise _fail(where, "stop_reason 'stop_sequence' requires the matched stop_sequence")
    if stop_sequence is not None and stop_reason != "stop_sequence":
        raise _fail(
            where, f"stop_sequence {stop_sequence!r} set but stop_reason is {stop_reason!r}"
        )
    if stop_reason == "tool_use" and tool_use_count == 0:
        raise _fail(where, "stop_reason 'tool_use' but the message has no tool_use block")
    if strict_tool_stop_reason and tool_use_count and stop_reason not in _STOP_REASONS_WITH_TOOLS:
        raise _fail(
            where,
            f"message has {tool_use_count} tool_use block(s) but stop_reason is "
            f"{stop_reason!r} (expected 'tool_use')",
        )


def _check_error_object(where: str, err: object) -> dict[str, Any]:
    if not isinstance(err, dict):
        raise _fail(where, f"'error' must be an object, got {err!r}")
    etype = err.get("type")
    if not isinstance(etype, str) or not etype:
        raise _fail(where, f"error.type must be a non-empty string, got {etype!r}")
    if etype not in ANTHROPIC_ERROR_TYPES:
        raise _fail(where, f"error.type {etype!r} is not an Anthropic error type")
    message = err.get("message")
    if not isinstance(message, str) or not message:
        raise _fail(where, f"error.message must be a non-empty string, got {message!r}")
    return err


# --------------------------------------------------------------------------------------------
# Streaming
# --------------------------------------------------------------------------------------------


@dataclass
class ValidatedStream:
    """What a strict client would have accumulated from a valid stream."""

    #: Every parsed ``(event_name, data)`` pair, pings included, in order.
    events: list[tuple[str, dict[str, Any]]]
    #: The reconstructed message (``message_start.message`` with content, stop fields and usage
    #: filled in), or None when the stream was an ``error`` before ``message_start``.
    message: dict[str, Any] | None
    #: ``error`` object (``{"type", "message"}``) when the stream ended with an error event.
    error: dict[str, Any] | None = None
    #: True when the stream ended with ``message_stop``.
    completed: bool = False
    #: Per tool_use block index: the concatenated ``partial_json`` fragments.
    tool_input_json: dict[int, str] = field(default_factory=dict)
    #: The tool_use block an ``error`` event left open (its input cut), if any.
    left_open: dict[str, Any] | None = None

    @property
    def event_types(self) -> list[str]:
        """Event names in order, handy for asserting on the overall shape."""
        return [name for name, _ in self.events]

    @property
    def content(self) -> list[dict[str, Any]]:
        """Final content blocks (empty when no message was started)."""
        return [] if self.message is None else self.message["content"]

    @property
    def stop_reason(self) -> str | None:
        return None if self.message is None else self.message.get("stop_reason")

    @property
    def stop_sequence(self) -> str | None:
        return None if self.message is None else self.message.get("stop_sequence")

    @property
    def usage(self) -> dict[str, Any]:
        """Merged usage: message_start values overwritten by non-null message_delta values."""
        return {} if self.message is None else self.message["usage"]

    @property
    def text(self) -> str:
        """Concatenated text of all text blocks."""
        return "".join(b["text"] for b in self.content if b["type"] == "text")

    @property
    def thinking(self) -> str:
        """Concatenated text of all thinking blocks."""
        return "".join(b["thinking"] for b in self.content if b["type"] == "thinking")

    @property
    def tool_uses(self) -> list[dict[str, Any]]:
        """The tool_use blocks, with ``input`` parsed."""
        return [b for b in self.content if b["type"] == "tool_use"]

    @property
    def ping_count(self) -> int:
        return sum(1 for name, _ in self.events if name == "ping")


@dataclass
class _OpenBlock:
    index: int
    block: dict[str, Any]
    json_parts: list[str] = field(default_factory=list)
    saw_json_delta: bool = False
    non_empty_text: bool = False
    signatures: int = 0
    last_delta: str | None = None


class _StreamChecker:
    """Event-by-event state machine mirroring the SDK accumulators, plus the proxy's own rules."""

    def __init__(
        self,
        *,
        allow_empty_text: bool,
        require_closed_before_error: bool,
        strict_tool_stop_reason: bool,
    ) -> None:
        self.allow_empty_text = allow_empty_text
        self.require_closed_before_error = require_closed_before_error
        self.strict_tool_stop_reason = strict_tool_stop_reason
        self.message: dict[str, Any] | None = None
        self.open: _OpenBlock | None = None
        self.tool_ids: set[str] = set()
        self.server_ids: set[str] = set()
        self.tool_json: dict[int, str] = {}
        self.saw_message_delta = False
        self.finished: str | None = None  # "message_stop" | "error"
        self.error: dict[str, Any] | None = None
        self.left_open: dict[str, Any] | None = None

    # -- dispatch ------------------------------------------------------------------------

    def feed(self, n: int, name: str, data: dict[str, Any]) -> None:
        where = f"event #{n} ({name or '<no event: line>'})"
        if not name:
            raise _fail(where, f"record has no 'event:' line (data type {data.get('type')!r})")
        dtype = data.get("type")
        if dtype != name:
            raise _fail(where, f"event name {name!r} != data.type {dtype!r}")
        if name not in _STREAM_EVENTS:
            raise _fail(where, f"unknown event type {name!r}")
        if self.finished is not None:
            raise _fail(where, f"event after {self.finished!r}; the stream must end there")
        if name == "ping":
            return
        if name == "error":
            self._error(where, data)
            return
        if self.message is None and name != "message_start":
            raise _fail(where, "first event must be message_start")
        getattr(self, f"_{name}")(where, data)

    def finish(self) -> None:
        if self.finished is None:
            state = "no events" if self.message is None else "no message_stop"
            if self.open is not None:
                state += f"; block {self.open.index} ({self.open.block['type']}) still open"
            raise AssertionError(f"stream ended without message_stop or error ({state})")

    # -- message level -------------------------------------------------------------------

    def _message_start(self, where: str, data: dict[str, Any]) -> None:
        if self.message is not None:
            raise _fail(where, "message_start sent twice")
        msg = data.get("message")
        if not isinstance(msg, dict):
            raise _fail(where, f"'message' must be an object, got {msg!r}")
        mid = msg.get("id")
        if not isinstance(mid, str) or not mid.startswith("msg_") or len(mid) <= 4:
            raise _fail(where, f"message.id must look like 'msg_…', got {mid!r}")
        if msg.get("type") != "message":
            raise _fail(where, f"message.type must be 'message', got {msg.get('type')!r}")
        if msg.get("role") != "assistant":
            raise _fail(where, f"message.role must be 'assistant', got {msg.get('role')!r}")
        model = msg.get("model")
        if not isinstance(model, str) or not model:
            raise _fail(where, f"message.model must be a non-empty string, got {model!r}")
        if msg.get("content") != []:
            raise _fail(where, f"message.content must be [], got {msg.get('content')!r}")
        if "stop_reason" not in msg or msg["stop_reason"] is not None:
            raise _fail(where, f"message.stop_reason must be null, got {msg.get('stop_reason')!r}")
        if msg.get("stop_sequence") is not None:
            raise _fail(where, f"message.stop_sequence must be null, got {msg['stop_sequence']!r}")
        usage = _check_usage(where, msg.get("usage"), ("input_tokens", "output_tokens"))
        self.message = {**msg, "content": [], "usage": dict(usage)}
        self.message.setdefault("stop_sequence", None)

    def _message_delta(self, where: str, data: dict[str, Any]) -> None:
        assert self.message is not None
        if self.open is not None:
            raise _fail(
                where,
                f"message_delta while block {self.open.index} ({self.open.block['type']}) is open",
            )
        delta = data.get("delta")
        if not isinstance(delta, dict):
            raise _fail(where, f"'delta' must be an object, got {delta!r}")
        if "stop_reason" not in delta:
            raise _fail(where, "delta.stop_reason is required")
        usage = _check_usage(where, data.get("usage"), ("output_tokens",))
        _check_server_tool_usage(where, usage)
        tool_count = sum(1 for b in self.message["content"] if b["type"] == "tool_use")
        _check_stop_fields(
            where,
            delta["stop_reason"],
            delta.get("stop_sequence"),
            tool_count,
            strict_tool_stop_reason=self.strict_tool_stop_reason,
        )
        self.message["stop_reason"] = delta["stop_reason"]
        self.message["stop_sequence"] = delta.get("stop_sequence")
        for key, value in usage.items():
            if value is not None:
                self.message["usage"][key] = value
        self.saw_message_delta = True

    def _message_stop(self, where: str, data: dict[str, Any]) -> None:
        if self.open is not None:
            raise _fail(where, f"message_stop while block {self.open.index} is open")
        if not self.saw_message_delta:
            raise _fail(where, "message_stop without a preceding message_delta")
        self.finished = "message_stop"

    def _error(self, where: str, data: dict[str, Any]) -> None:
        opened = self.open
        if opened is not None and opened.block["type"] in _INPUT_BLOCKS:
            # The Anthropic API itself ends a stream cut in a tool call's input this way; the
            # client discards the turn instead of running a call it never got whole.
            self.tool_json[opened.index] = "".join(opened.json_parts)
            self.left_open = opened.block
        elif self.require_closed_before_error and opened is not None:
            raise _fail(
                where,
                f"error while block {self.open.index} ({self.open.block['type']}) is still open "
                "(close blocks before sending event: error)",
            )
        self.error = _check_error_object(where, data.get("error"))
        self.finished = "error"

    # -- blocks --------------------------------------------------------------------------

    def _content_block_start(self, where: str, data: dict[str, Any]) -> None:
        assert self.message is not None
        content = self.message["content"]
        if self.saw_message_delta:
            raise _fail(where, "content_block_start after message_delta")
        if self.open is not None:
            raise _fail(
                where,
                f"block {data.get('index')!r} started while block {self.open.index} "
                f"({self.open.block['type']}) is still open",
            )
        index = data.get("index")
        if not _is_int(index) or index != len(content):
            raise _fail(where, f"index {index!r} but expected {len(content)} (contiguous from 0)")
        block = data.get("content_block")
        if not isinstance(block, dict):
            raise _fail(where, f"'content_block' must be an object, got {block!r}")
        btype = block.get("type")
        if btype not in _BLOCK_TYPES:
            raise _fail(where, f"unknown content block type {btype!r}")
        block = dict(block)
        opened = _OpenBlock(index, block)
        if btype == "text":
            if not isinstance(block.get("text"), str):
                raise _fail(where, f"text block skeleton needs text: str, got {block!r}")
            opened.non_empty_text = bool(block["text"])
        elif btype == "thinking":
            if not isinstance(block.get("thinking"), str):
                raise _fail(where, f"thinking block skeleton needs thinking: str, got {block!r}")
            if not isinstance(block.get("signature", ""), str):
                raise _fail(where, f"thinking block signature must be a string, got {block!r}")
            block.setdefault("signature", "")
        elif btype == "redacted_thinking":
            if not isinstance(block.get("data"), str) or not block["data"]:
                raise _fail(where, f"redacted_thinking needs non-empty data, got {block!r}")
        elif btype in _INPUT_BLOCKS:
            _check_tool_identity(where, block)
            if block["id"] in self.tool_ids:
                raise _fail(where, f"duplicate tool id {block['id']!r}")
            self.tool_ids.add(block["id"])
            if btype == "server_tool_use":
                self.server_ids.add(block["id"])
            if not isinstance(block.get("input"), dict):
                raise _fail(where, f"{btype}.input must be an object, got {block.get('input')!r}")
        elif btype == "web_search_tool_result":
            _check_web_search_result(where, block, self.server_ids)
        content.append(block)
        self.open = opened

    def _content_block_delta(self, where: str, data: dict[str, Any]) -> None:
        index = data.get("index")
        if self.open is None:
            raise _fail(where, f"delta for index {index!r} but no block is open")
        if index != self.open.index:
            raise _fail(where, f"delta for index {index!r} but the open block is {self.open.index}")
        delta = data.get("delta")
        if not isinstance(delta, dict):
            raise _fail(where, f"'delta' must be an object, got {delta!r}")
        dtype = delta.get("type")
        block = self.open.block
        btype = block["type"]
        allowed = _DELTAS_FOR_BLOCK.get(btype, frozenset())
        if dtype not in allowed:
            raise _fail(where, f"delta type {dtype!r} not allowed in a {btype!r} block")
        if btype == "thinking" and self.open.last_delta == "signature_delta":
            raise _fail(where, f"{dtype} after signature_delta (signature must come last)")
        self.open.last_delta = dtype
        if dtype == "text_delta":
            text = self._str_field(where, delta, "text")
            block["text"] += text
            self.open.non_empty_text = self.open.non_empty_text or bool(text)
        elif dtype == "citations_delta":
            citation = delta.get("citation")
            if not isinstance(citation, dict):
                raise _fail(where, f"citations_delta.citation must be an object, got {citation!r}")
            block.setdefault("citations", None)
            block["citations"] = [*(block["citations"] or []), citation]
        elif dtype == "thinking_delta":
            block["thinking"] += self._str_field(where, delta, "thinking")
        elif dtype == "signature_delta":
            block["signature"] = self._str_field(where, delta, "signature")
            self.open.signatures += 1
        elif dtype == "input_json_delta":
            self.open.json_parts.append(self._str_field(where, delta, "partial_json"))
            self.open.saw_json_delta = True
        # compaction_delta: fields are optional; nothing to accumulate for tests.

    def _content_block_stop(self, where: str, data: dict[str, Any]) -> None:
        index = data.get("index")
        if self.open is None:
            raise _fail(where, f"stop for index {index!r} but no block is open")
        if index != self.open.index:
            raise _fail(where, f"stop for index {index!r} but the open block is {self.open.index}")
        opened, block = self.open, self.open.block
        btype = block["type"]
        if btype == "text" and not self.allow_empty_text and not opened.non_empty_text:
            raise _fail(where, f"text block {index} is empty (no non-empty text_delta)")
        if btype == "thinking":
            if opened.signatures != 1:
                raise _fail(
                    where,
                    f"thinking block {index} needs exactly one signature_delta, "
                    f"got {opened.signatures}",
                )
            if opened.last_delta != "signature_delta":
                raise _fail(where, f"thinking block {index}: signature_delta must come last")
        if btype in _INPUT_BLOCKS:
            raw = "".join(opened.json_parts)
            self.tool_json[index] = raw
            if opened.saw_json_delta:
                block["input"] = self._parse_tool_input(where, index, raw)
        self.open = None

    # -- helpers -------------------------------------------------------------------------

    @staticmethod
    def _str_field(where: str, delta: Mapping[str, Any], key: str) -> str:
        value = delta.get(key)
        if not isinstance(value, str):
            raise _fail(where, f"{delta.get('type')}.{key} must be a string, got {value!r}")
        return value

    @staticmethod
    def _parse_tool_input(where: str, index: int, raw: str) -> dict[str, Any]:
        if raw.strip() == "":
            return {}
        try:
            value = json.loads(raw)
        except ValueError as exc:
            raise _fail(
                where,
                f"tool block {index}: concatenated input_json_delta is not valid JSON "
                f"({exc}): {raw[:300]!r}",
            ) from exc
        if not isinstance(value, dict):
            raise _fail(where, f"tool block {index}: input must be a JSON object, got {raw!r}")
        return value


def validate_anthropic_stream(
    raw: bytes | bytearray | str,
    *,
    allow_empty_text: bool = False,
    require_closed_before_error: bool = True,
    strict_tool_stop_reason: bool = True,
    expect_error: bool | None = None,
) -> ValidatedStream:
    """Validate a complete Anthropic SSE body and return what a client would reconstruct.

    Raises ``AssertionError`` naming the offending event on the first violation.
    ``strict_tool_stop_reason`` additionally demands that a turn with tool_use blocks ends with
    ``tool_use`` (or ``max_tokens``); ``expect_error`` True/False insists the stream did/did not
    end with an ``error`` event (None accepts both). ``require_closed_before_error`` is the
    proxy's own rule for text and thinking blocks; a tool_use block may be open at an ``error``
    (the Anthropic API ends a stream cut in a tool call's input that way), reported as
    ``left_open``.
    """
    events = parse_sse(raw)
    checker = _StreamChecker(
        allow_empty_text=allow_empty_text,
        require_closed_before_error=require_closed_before_error,
        strict_tool_stop_reason=strict_tool_stop_reason,
    )
    for n, (name, data) in enumerate(events):
        checker.feed(n, name, data)
    checker.finish()
    if expect_error is True and checker.error is None:
        raise AssertionError("expected the stream to end with an error event, it ended normally")
    if expect_error is False and checker.error is not None:
        raise AssertionError(f"stream ended with an error event: {checker.error}")
    return ValidatedStream(
        events=events,
        message=checker.message,
        error=checker.error,
        completed=checker.finished == "message_stop",
        tool_input_json=checker.tool_json,
        left_open=checker.left_open,
    )


# --------------------------------------------------------------------------------------------
# Non-streaming JSON
# --------------------------------------------------------------------------------------------


def _load_json(obj: object) -> object:
    if isinstance(obj, (bytes, bytearray, str)):
        try:
            return json.loads(obj)
        except ValueError as exc:
            raise AssertionError(f"body is not JSON: {exc}: {obj[:200]!r}") from exc
    return obj


def validate_anthropic_message(
    obj: Mapping[str, Any] | bytes | str,
    *,
    allow_empty_text: bool = False,
    strict_tool_stop_reason: bool = True,
) -> dict[str, Any]:
    """Validate a non-streaming ``Message`` body with the same content rules as the stream.

    Accepts the parsed dict or the raw JSON body; returns the parsed dict.
    """
    msg = _load_json(obj)
    where = "message"
    if not isinstance(msg, dict):
        raise _fail(where, f"body must be a JSON object, got {type(msg).__name__}")
    mid = msg.get("id")
    if not isinstance(mid, str) or not mid.startswith("msg_") or len(mid) <= 4:
        raise _fail(where, f"id must look like 'msg_…', got {mid!r}")
    if msg.get("type") != "message":
        raise _fail(where, f"type must be 'message', got {msg.get('type')!r}")
    if msg.get("role") != "assistant":
        raise _fail(where, f"role must be 'assistant', got {msg.get('role')!r}")
    if not isinstance(msg.get("model"), str) or not msg["model"]:
        raise _fail(where, f"model must be a non-empty string, got {msg.get('model')!r}")
    content = msg.get("content")
    if not isinstance(content, list):
        raise _fail(where, f"content must be a list, got {content!r}")
    tool_ids: set[str] = set()
    server_ids: set[str] = set()
    for i, block in enumerate(content):
        bwhere = f"message.content[{i}]"
        if not isinstance(block, dict):
            raise _fail(bwhere, f"block must be an object, got {block!r}")
        btype = block.get("type")
        if btype not in _BLOCK_TYPES:
            raise _fail(bwhere, f"unknown content block type {btype!r}")
        if btype == "text":
            if not isinstance(block.get("text"), str):
                raise _fail(bwhere, f"text must be a string, got {block.get('text')!r}")
            if not allow_empty_text and not block["text"]:
                raise _fail(bwhere, "empty text block")
        elif btype == "thinking":
            for key in ("thinking", "signature"):
                if not isinstance(block.get(key), str):
                    raise _fail(bwhere, f"thinking.{key} must be a string, got {block.get(key)!r}")
        elif btype == "redacted_thinking":
            if not isinstance(block.get("data"), str) or not block["data"]:
                raise _fail(bwhere, "redacted_thinking.data must be a non-empty string")
        elif btype in _INPUT_BLOCKS:
            _check_tool_identity(bwhere, block)
            if block["id"] in tool_ids:
                raise _fail(bwhere, f"duplicate tool id {block['id']!r}")
            tool_ids.add(block["id"])
            if btype == "server_tool_use":
                server_ids.add(block["id"])
            if not isinstance(block.get("input"), dict):
                raise _fail(bwhere, f"{btype}.input must be an object, got {block.get('input')!r}")
        elif btype == "web_search_tool_result":
            _check_web_search_result(bwhere, block, server_ids)
    usage = _check_usage(where, msg.get("usage"), ("input_tokens", "output_tokens"))
    _check_server_tool_usage(where, usage)
    _check_stop_fields(
        where,
        msg.get("stop_reason"),
        msg.get("stop_sequence"),
        sum(1 for b in content if b["type"] == "tool_use"),
        strict_tool_stop_reason=strict_tool_stop_reason,
    )
    return msg


def validate_anthropic_error(
    obj: Mapping[str, Any] | bytes | str,
    *,
    status: int | None = None,
    error_type: str | None = None,
) -> dict[str, Any]:
    """Validate an Anthropic error body ``{"type":"error","error":{"type","message"}}``.

    ``status`` checks the HTTP status ↔ ``error.type`` pairing the SDKs rely on for retries
    (statuses outside the table only need a known type); ``error_type`` pins the exact type.
    Returns the inner ``error`` object.
    """
    body = _load_json(obj)
    where = "error body"
    if not isinstance(body, dict):
        raise _fail(where, f"must be a JSON object, got {type(body).__name__}")
    if body.get("type") != "error":
        raise _fail(where, f"type must be 'error', got {body.get('type')!r}")
    err = _check_error_object(where, body.get("error"))
    if body.get("request_id") is not None and not isinstance(body["request_id"], str):
        raise _fail(where, f"request_id must be a string, got {body['request_id']!r}")
    if error_type is not None and err["type"] != error_type:
        raise _fail(where, f"error.type is {err['type']!r}, expected {error_type!r}")
    if status is not None:
        if status < 400:
            raise _fail(where, f"HTTP status {status} is not an error status")
        allowed = STATUS_TO_ERROR_TYPES.get(status)
        if allowed is not None and err["type"] not in allowed:
            raise _fail(where, f"HTTP {status} should carry {sorted(allowed)}, got {err['type']!r}")
    return err
