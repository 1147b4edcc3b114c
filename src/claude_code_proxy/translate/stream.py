"""OpenAI chat-completion chunks → Anthropic SSE events: an explicit state machine.

Invariants (protocol.md A.9, A.10, F): `message_start` first; exactly one content block
open at a time; indexes contiguous from 0; thinking ends with a `signature_delta`;
tool input fragments always concatenate to a JSON object (or, when `max_tokens` cut
the call, a prefix of one); `message_delta` carries cumulative usage and comes after
the upstream's trailing usage chunk; `message_stop` last, or an `error` event instead.
"""

from __future__ import annotations

import logging
from typing import Any

import orjson

from claude_code_proxy.translate.errors import redact_secrets
from claude_code_proxy.translate.ids import new_message_id, new_tool_use_id
from claude_code_proxy.translate.reasoning import (
    PLAIN_SIGNATURE,
    ThinkTagSplitter,
    encode_signature,
)
from claude_code_proxy.translate.response import stop_reason
from claude_code_proxy.translate.tool_args import (
    JsonPrefixScanner,
    parse_arguments,
    split_objects,
)
from claude_code_proxy.translate.usage import anthropic_usage

logger = logging.getLogger(__name__)

Event = dict[str, Any]

TEXT = "text"
THINKING = "thinking"
TOOL = "tool_use"


class _ToolCall:
    """One upstream tool call, assembled from fragments keyed by index or id."""

    __slots__ = ("anthropic_id", "buffer", "emitted", "extra", "name", "scanner", "upstream_id")

    def __init__(self) -> None:
        self.upstream_id: str | None = None
        self.name: str | None = None
        self.anthropic_id = new_tool_use_id()
        self.scanner = JsonPrefixScanner()
        self.buffer = ""  # the part of the arguments that is a valid JSON-object prefix
        self.extra: list[str] = []  # text after the object closed, or after it went invalid
        self.emitted = 0

    def add(self, text: str) -> None:
        scanner = self.scanner
        if scanner.valid and not scanner.complete:
            used = scanner.feed(text)
            self.buffer += text[:used] if used < len(text) else text
            if used < len(text):
                self.extra.append(text[used:])
        else:
            self.extra.append(text)

    @property
    def done_receiving(self) -> bool:
        return self.scanner.complete or not self.scanner.valid

    @property
    def streamable(self) -> bool:
        """Fragments go out as they arrive only while they form a valid object prefix."""
        return self.scanner.valid


class StreamTranslator:
    """Feed it parsed upstream chunks; it returns the Anthropic events to send."""

    def __init__(
        self,
        *,
        model: str,
        message_id: str | None = None,
        input_tokens: int = 0,
        stop_sequences: list[str] | tuple[str, ...] = (),
        expect_usage: bool = True,
        think_tags: bool = False,
        stash_reasoning: bool = False,
        secrets: tuple[str, ...] = (),
    ) -> None:
        self.model = model
        self.message_id = message_id or new_message_id()
        self.input_tokens = input_tokens
        self.stop_sequences = tuple(stop_sequences)
        self.expect_usage = expect_usage
        self.finish_reason: str | None = None
        self.matched_stop: Any = None
        self.usage: dict[str, Any] | None = None
        self.ended = False  # message_stop or error sent
        self.stop_reason: str | None = None
        self.error_type: str | None = None
        self.output_chars = 0
        self._started = False
        self._next_index = 0
        self._open: str | None = None
        self._open_call: _ToolCall | None = None
        self._calls_by_index: dict[int, _ToolCall] = {}
        self._last_call: _ToolCall | None = None
        self._queue: list[_ToolCall] = []
        self._saw_tool = False
        self._secrets = secrets
        self._splitter = ThinkTagSplitter() if think_tags else None
        self._stash = stash_reasoning
        self._thought: list[str] = []
        self._details: list[Any] = []

    # ----------------------------------------------------------------- lifecycle

    def start(self) -> list[Event]:
        """`message_start` (and a ping, as the Messages API sends one)."""
        self._started = True
        message: dict[str, Any] = {
            "id": self.message_id,
            "type": "message",
            "role": "assistant",
            "model": self.model,
            "content": [],
            "stop_reason": None,
            "stop_sequence": None,
            "usage": {
                "input_tokens": self.input_tokens,
                "output_tokens": 1,
                "cache_creation_input_tokens": 0,
                "cache_read_input_tokens": 0,
            },
        }
        return [{"type": "message_start", "message": message}, {"type": "ping"}]

    @property
    def complete(self) -> bool:
        """The upstream said all it will say: finish reason and (if requested) usage are in."""
        return self.finish_reason is not None and (self.usage is not None or not self.expect_usage)

    def feed(self, chunk: Any) -> list[Event]:
        """Translate one parsed upstream chunk."""
        out: list[Event] = []
        if self.ended or not isinstance(chunk, dict):
            return out
        error = chunk.get("error")
        if error:
            message = error.get("message") if isinstance(error, dict) else str(error)
            return self.fail("api_error", f"upstream error: {message or error}")
        usage = chunk.get("usage")
        if isinstance(usage, dict):
            self.usage = usage
        choices = chunk.get("choices")
        if not choices or not isinstance(choices, list):
            return out  # Azure content-filter results, the usage chunk, keep-alives
        choice = choices[0]
        if not isinstance(choice, dict) or self.finish_reason is not None:
            return out
        delta = choice.get("delta") or choice.get("message") or {}
        if isinstance(delta, dict):
            reasoning = delta.get("reasoning_content") or delta.get("reasoning")
            details = delta.get("reasoning_details")
            if isinstance(details, list) and details:
                self._details.extend(details)
                if not reasoning:
                    reasoning = "".join(
                        d.get("text") or d.get("summary") or ""
                        for d in details
                        if isinstance(d, dict)
                        and isinstance(d.get("text") or d.get("summary") or "", str)
                    )
            if isinstance(reasoning, str) and reasoning:
                self._thinking(reasoning, out)
            content = delta.get("content")
            if isinstance(content, str) and content:
                if self._splitter is None:
                    self._text(content, out)
                else:
                    self._split_content(content, out)
            refusal = delta.get("refusal")
            if isinstance(refusal, str) and refusal:
                self._text(refusal, out)
            calls = delta.get("tool_calls")
            if isinstance(calls, list) and calls:
                self._tool_fragments(calls, out)
        finish = choice.get("finish_reason")
        if finish:
            if finish in ("error", "abort"):
                return out + self.fail("api_error", f"upstream ended the generation ({finish})")
            self.finish_reason = str(finish)
            self.matched_stop = choice.get("stop_reason", choice.get("matched_stop"))
            self._close_all(out)
        return out

    def finish(self) -> list[Event]:
        """The upstream ended normally: close everything and report stop reason and usage."""
        if self.ended:
            return []
        out: list[Event] = []
        self._close_all(out)
        reason, sequence = stop_reason(
            self.finish_reason,
            saw_tool_call=self._saw_tool,
            matched_stop=self.matched_stop,
            stop_sequences=self.stop_sequences,
        )
        self.stop_reason = reason
        usage = anthropic_usage(self.usage, fallback_input=self.input_tokens)
        if not usage["output_tokens"]:
            usage["output_tokens"] = max(1, self.output_chars // 4) if self.output_chars else 0
        out.append(
            {
                "type": "message_delta",
                "delta": {"stop_reason": reason, "stop_sequence": sequence},
                "usage": usage,
            }
        )
        out.append({"type": "message_stop"})
        self.ended = True
        return out

    def fail(self, error_type: str, message: str) -> list[Event]:
        """End the stream with an `error` event (after closing the open block)."""
        if self.ended:
            return []
        out: list[Event] = []
        self._close_open(out, cut=False)
        message = redact_secrets(message, self._secrets)
        out.append({"type": "error", "error": {"type": error_type, "message": message}})
        self.error_type = error_type
        self.ended = True
        return out

    # ------------------------------------------------------------------- blocks

    def _start_block(self, kind: str, block: dict[str, Any], out: list[Event]) -> int:
        index = self._next_index
        self._next_index += 1
        self._open = kind
        out.append({"type": "content_block_start", "index": index, "content_block": block})
        return index

    def _close_open(self, out: list[Event], *, cut: bool) -> None:
        kind = self._open
        if kind is None:
            return
        index = self._next_index - 1
        if kind == THINKING:
            signature = PLAIN_SIGNATURE
            if self._stash:
                signature = encode_signature("".join(self._thought), self._details or None)
                self._thought, self._details = [], []
            delta = {"type": "signature_delta", "signature": signature}
            out.append({"type": "content_block_delta", "index": index, "delta": delta})
        elif kind == TOOL and self._open_call is not None:
            self._finalize_arguments(self._open_call, index, out, cut=cut)
        out.append({"type": "content_block_stop", "index": index})
        self._open = None
        self._open_call = None

    def _split_content(self, content: str, out: list[Event]) -> None:
        splitter = self._splitter
        assert splitter is not None
        for kind, piece in splitter.feed(content):
            (self._thinking if kind == "thinking" else self._text)(piece, out)
        if splitter.settled:
            self._splitter = None  # plain text from here on: skip the splitter

    def _close_all(self, out: list[Event]) -> None:
        if self._splitter is not None:
            for kind, piece in self._splitter.flush():
                (self._thinking if kind == "thinking" else self._text)(piece, out)
        cut = self.finish_reason == "length"
        self._close_open(out, cut=cut)
        while self._queue:
            call = self._queue.pop(0)
            if call.name is None:
                logger.warning("dropping an upstream tool call that never received a name")
                continue
            self._open_tool(call, out)
            self._close_open(out, cut=cut)

    def _thinking(self, text: str, out: list[Event]) -> None:
        if self._open != THINKING:
            self._close_open(out, cut=False)
            self._start_block(THINKING, {"type": "thinking", "thinking": "", "signature": ""}, out)
        self.output_chars += len(text)
        if self._stash:
            self._thought.append(text)
        delta = {"type": "thinking_delta", "thinking": text}
        out.append({"type": "content_block_delta", "index": self._next_index - 1, "delta": delta})

    def _text(self, text: str, out: list[Event]) -> None:
        if self._open != TEXT:
            self._close_open(out, cut=False)
            self._start_block(TEXT, {"type": "text", "text": ""}, out)
        self.output_chars += len(text)
        delta = {"type": "text_delta", "text": text}
        out.append({"type": "content_block_delta", "index": self._next_index - 1, "delta": delta})

    # --------------------------------------------------------------- tool calls

    def _find_call(self, index: Any, call_id: str | None, name: str | None) -> _ToolCall:
        call: _ToolCall | None
        if isinstance(index, int) and not isinstance(index, bool):
            call = self._calls_by_index.get(index)
            if call is not None and (
                (call_id and call.upstream_id and call_id != call.upstream_id)
                or (name and call.name and call.done_receiving)
            ):
                call = None  # Gemini reuses index 0 for parallel calls.
        else:
            call = self._last_call
            if call is not None and (
                (call_id and call.upstream_id and call_id != call.upstream_id)
                or (name and call.name and call.done_receiving)
            ):
                call = None
        if call is None:
            call = _ToolCall()
            if isinstance(index, int):
                self._calls_by_index[index] = call
            self._queue.append(call)
        self._last_call = call
        return call

    def _tool_fragments(self, fragments: list[Any], out: list[Event]) -> None:
        for fragment in fragments:
            if not isinstance(fragment, dict):
                continue
            function = fragment.get("function")
            if not isinstance(function, dict):
                function = {}
            call_id = fragment.get("id") if isinstance(fragment.get("id"), str) else None
            name = function.get("name") if isinstance(function.get("name"), str) else None
            call = self._find_call(fragment.get("index"), call_id or None, name or None)
            if name and not call.name:
                call.name = name
            if call_id and not call.upstream_id:
                call.upstream_id = call_id
            arguments = function.get("arguments")
            if isinstance(arguments, dict):
                arguments = orjson.dumps(arguments).decode()
            if isinstance(arguments, str) and arguments:
                call.add(arguments)
                self.output_chars += len(arguments)
        self._pump(out)

    def _open_tool(self, call: _ToolCall, out: list[Event]) -> None:
        self._close_open(out, cut=False)
        block: dict[str, Any] = {
            "type": "tool_use",
            "id": call.anthropic_id,
            "name": call.name,
            "input": {},
        }
        self._start_block(TOOL, block, out)
        self._open_call = call
        self._saw_tool = True

    def _pump(self, out: list[Event]) -> None:
        """Stream the open call's new fragments; open queued calls once it is done."""
        call = self._open_call
        if call is not None:
            self._emit_arguments(call, out)
        while self._queue:
            following = self._queue[0]
            if following.name is None or (call is not None and not call.done_receiving):
                break
            self._queue.pop(0)
            self._open_tool(following, out)
            call = following
            self._emit_arguments(call, out)

    def _emit_arguments(self, call: _ToolCall, out: list[Event]) -> None:
        if call.streamable and call.emitted < len(call.buffer):
            piece = call.buffer[call.emitted :]
            call.emitted = len(call.buffer)
            self._json_delta(piece, out)

    def _json_delta(self, piece: str, out: list[Event]) -> None:
        delta = {"type": "input_json_delta", "partial_json": piece}
        out.append({"type": "content_block_delta", "index": self._next_index - 1, "delta": delta})

    def _split_glued_calls(self, call: _ToolCall, extra: str) -> None:
        """`{…}{…}` in one call: a repeat of the same object is dropped (some servers resend
        the full arguments), a different object becomes a call of its own."""
        objects = split_objects(call.buffer + extra)
        if not objects:
            logger.info("ignoring %d characters after a complete tool-call object", len(extra))
            return
        first, position = objects[0], 0
        for value in objects[1:]:
            if value == first:
                continue
            glued = _ToolCall()
            glued.name = call.name
            glued.add(orjson.dumps(value).decode())
            self._queue.insert(position, glued)
            position += 1

    def _finalize_arguments(
        self, call: _ToolCall, index: int, out: list[Event], *, cut: bool
    ) -> None:
        scanner = call.scanner
        extra = "".join(call.extra)
        if scanner.valid:
            self._emit_arguments(call, out)
            if scanner.complete:
                if extra.strip():
                    self._split_glued_calls(call, extra)
            elif scanner.started and not cut:
                logger.warning("tool call %s arguments were cut off; closing the object", call.name)
                self._json_delta(scanner.closing_suffix(), out)
            return
        if call.emitted and call.buffer[: call.emitted].strip():
            # Part of the object already went out: close what was valid and say so.
            logger.warning("tool call %s arguments became invalid JSON mid-stream", call.name)
            self._json_delta(call.buffer[call.emitted :] + scanner.closing_suffix(), out)
            return
        repaired = parse_arguments(call.buffer + extra)
        self._json_delta(orjson.dumps(repaired).decode(), out)
