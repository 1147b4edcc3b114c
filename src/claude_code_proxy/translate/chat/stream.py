"""OpenAI chat-completion chunks → Anthropic SSE events: an explicit state machine.

Invariants (protocol.md A.9, A.10, E.6, F): `message_start` first; exactly one content block
open at a time; indexes contiguous from 0; thinking ends with a `signature_delta`; tool
input fragments always concatenate to a JSON object (or, when `max_tokens` cut the call, a
valid prefix of one); `message_delta` carries cumulative usage and comes after the upstream's
trailing usage chunk; `message_stop` last, or an `error` event instead. A tool_use block is
closed only once its arguments arrived whole or the upstream said the reply is finished: a
failure in the middle of the arguments ends the stream with `error` while the block is open.
"""

from __future__ import annotations

import logging
from typing import Any

from claude_code_proxy.translate.chat.response import (
    content_text,
    details_text,
    first_choice,
    matched_stop,
    stop_reason,
    thought_signature,
)
from claude_code_proxy.translate.errors import embedded_error, redact_secrets
from claude_code_proxy.translate.ids import client_tool_id, new_message_id
from claude_code_proxy.translate.reasoning import (
    PLAIN_SIGNATURE,
    ThinkTagSplitter,
    encode_signature,
)
from claude_code_proxy.translate.rescue import RescueContext, Rescuer
from claude_code_proxy.translate.tool_args import (
    JsonPrefixScanner,
    complete_prefix,
    dump_json,
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
    """One upstream tool call, assembled from fragments keyed by index or id.

    Arguments go out only up to the scanner's safe point, so what was sent can always be
    closed or extended into valid JSON, whatever arrives later.
    """

    __slots__ = (
        "chunks",
        "closed",
        "emitted",
        "google",
        "handled",
        "name",
        "pending",
        "received",
        "scanner",
        "upstream_id",
    )

    def __init__(self) -> None:
        self.upstream_id: str | None = None
        self.name: str | None = None
        self.google: str | None = None  # Gemini's thought signature
        self.scanner = JsonPrefixScanner()
        self.chunks: list[str] = []  # every argument character received, in order
        self.received = 0
        self.pending: list[str] = []  # valid text not sent yet
        self.emitted = 0
        self.closed = False  # its block was closed
        self.handled = 0  # text up to here was sent or split into glued calls

    def text(self) -> str:
        chunks = self.chunks
        if len(chunks) > 1:
            self.chunks = chunks = ["".join(chunks)]
        return chunks[0] if chunks else ""

    def is_snapshot(self, text: str) -> bool:
        """The fragment repeats everything received so far: a cumulative upstream."""
        return 0 < self.received <= len(text) and text.startswith(self.text())

    def add(self, text: str) -> None:
        if self.is_snapshot(text):
            text = text[self.received :]  # only what is new
            if not text:
                return
        self.chunks.append(text)
        self.received += len(text)
        scanner = self.scanner
        if scanner.valid and not scanner.complete:
            used = scanner.feed(text)
            if used:
                self.pending.append(text if used == len(text) else text[:used])

    def take(self, upto: int) -> str:
        """The valid text from what was sent to position `upto`, now counted as sent."""
        count = upto - self.emitted
        if count <= 0:
            return ""
        text = "".join(self.pending) if len(self.pending) > 1 else self.pending[0]
        piece, rest = text[:count], text[count:]
        self.pending = [rest] if rest else []
        self.emitted = upto
        return piece

    @property
    def done_receiving(self) -> bool:
        """The object closed. An invalid call may still be receiving: it ends at finish."""
        return self.scanner.complete

    def continues(self, call_id: str | None, name: str | None, arguments: str) -> bool:
        """Whether a fragment belongs to this call rather than starting a new one.

        Gemini reuses index 0 (or sends none) for parallel calls, and some servers repeat the
        name on later fragments: only a new id, a different name, or new arguments after a
        finished object start a new call.
        """
        if call_id and self.upstream_id:
            return call_id == self.upstream_id
        if not name or self.name is None:
            return True
        if name != self.name:
            return not self.received  # before any arguments it is ambiguous: keep the first
        if not arguments.strip() or self.is_snapshot(arguments):
            return True
        if self.scanner.complete:
            return False
        # An invalid object goes on until a new one starts.
        return self.scanner.valid or not arguments.lstrip().startswith("{")


class StreamTranslator:
    """Feed it parsed upstream chunks; it returns the Anthropic events to send."""

    IGNORED: tuple[bytes, ...] = ()  # raw chunks skipped unparsed (none: every chunk counts)

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
        tool_names: dict[str, str] | None = None,
        under_counts: bool = False,
        rescue: RescueContext | None = None,
    ) -> None:
        self.model = model
        self.message_id = message_id or new_message_id()
        self.input_tokens = input_tokens
        self.stop_sequences = tuple(stop_sequences)
        self.expect_usage = expect_usage
        self.under_counts = under_counts  # the upstream's prompt count leaves out cached tokens
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
        self._held: list[tuple[str, str]] = []  # text/reasoning that came mid-call
        self._saw_tool = False
        self._secrets = secrets
        self._tool_names = tool_names or {}  # upstream name → the client's
        self._splitter = ThinkTagSplitter() if think_tags else None
        self._stash = stash_reasoning
        self._thought: list[str] = []
        self._details: list[Any] = []
        # Tool calls written as text (rescue.py): text that may be one waits here.
        self._rescue = rescue
        self._rescuer = Rescuer(rescue.tools) if rescue is not None and rescue.tools else None

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
            failure = embedded_error(error, prompt_tokens=self.input_tokens or None)
            return self.fail(failure.error_type, failure.message)
        usage = chunk.get("usage")
        if isinstance(usage, dict):
            self.usage = usage
        choices = chunk.get("choices")
        if not choices or not isinstance(choices, list):
            return out  # Azure content-filter results, the usage chunk, keep-alives
        choice = choices[0]
        if not isinstance(choice, dict) or choice.get("index") not in (0, None):
            choice = first_choice(choices)  # n > 1 or an odd order: find index 0
        if choice is None or self.finish_reason is not None:
            return out
        delta = choice.get("delta") or choice.get("message") or {}
        if isinstance(delta, dict):
            self._delta(delta, out)
        finish = choice.get("finish_reason")
        if finish:
            if finish in ("error", "abort"):
                return out + self.fail("api_error", f"upstream ended the generation ({finish})")
            self.finish_reason = str(finish)
            self.matched_stop = matched_stop(choice)
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
        usage = anthropic_usage(
            self.usage, fallback_input=self.input_tokens, under_counts=self.under_counts
        )
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
        """End the stream with an `error` event, after closing the open block.

        Except a tool call whose arguments the failure cut: its block stays open, as the
        Anthropic API leaves it, so the client discards the turn. Closing it would make the
        client run the call with repaired (truncated or empty) arguments.
        """
        if self.ended:
            return []
        out: list[Event] = []
        call = self._open_call
        if call is not None and not call.done_receiving:
            logger.warning(
                "upstream failed in tool call %s's arguments; leaving it open", call.name
            )
            self._held = []  # what came after the call belongs to the discarded turn
        else:
            self._close_open(out, cut=False)
            if self._held:
                self._release_held(out)
                self._close_open(out, cut=False)
            if self._give_up_rescue(out):
                self._close_open(out, cut=False)
        message = redact_secrets(message, self._secrets)
        out.append({"type": "error", "error": {"type": error_type, "message": message}})
        self.error_type = error_type
        self.ended = True
        return out

    # ------------------------------------------------------------------- deltas

    def _delta(self, delta: dict[str, Any], out: list[Event]) -> None:
        # Truthiness first: most deltas carry one short string, and this runs per chunk.
        reasoning = delta.get("reasoning_content") or delta.get("reasoning")
        details = delta.get("reasoning_details")
        opaque = False  # reasoning state without text (OpenRouter's reasoning.encrypted)
        if details and isinstance(details, list):
            if self._stash:
                self._details.extend(details)
            if not reasoning:
                reasoning = details_text(details)
                opaque = self._stash and not reasoning
        if (reasoning or opaque) and isinstance(reasoning, str):
            self._flush_splitter(out)
            self._deliver(THINKING, reasoning, out)
        content = delta.get("content")
        if content and not isinstance(content, str):
            content = content_text(content)  # a list of parts
        if content:
            if self._splitter is None:
                self._deliver(TEXT, content, out)
            else:
                self._split_content(content, out)
        refusal = delta.get("refusal")
        if refusal and isinstance(refusal, str):
            self._deliver(TEXT, refusal, out)
        calls = delta.get("tool_calls") or delta.get("function_call")
        if calls:
            if isinstance(calls, dict):  # the pre-tools API: one call, as index 0
                calls = [{"index": 0, "function": calls}]
            if isinstance(calls, list):
                self._tool_fragments(calls, out)

    def _deliver(self, kind: str, text: str, out: list[Event]) -> None:
        """Text or reasoning from the upstream; held while a tool call is mid-arguments."""
        call = self._open_call
        if call is not None and not call.scanner.complete:
            self._held.append((kind, text))  # closing the call now would cut its arguments
        elif kind == TEXT:
            self._text(text, out)
        else:
            self._thinking(text, out)

    def _release_held(self, out: list[Event]) -> None:
        held, self._held = self._held, []
        for kind, text in held:
            (self._thinking if kind == THINKING else self._text)(text, out)

    def _split_content(self, content: str, out: list[Event]) -> None:
        splitter = self._splitter
        assert splitter is not None
        for kind, piece in splitter.feed(content):
            self._deliver(THINKING if kind == "thinking" else TEXT, piece, out)
        if splitter.settled:
            self._splitter = None  # plain text from here on: skip the splitter

    def _flush_splitter(self, out: list[Event]) -> None:
        """Release a `<think>` tag prefix held at a chunk boundary before another block."""
        if self._splitter is not None:
            for kind, piece in self._splitter.flush():
                (self._thinking if kind == "thinking" else self._text)(piece, out)

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
            self._finalize_arguments(self._open_call, out, cut=cut)
        out.append({"type": "content_block_stop", "index": index})
        self._open = None
        self._open_call = None

    def _close_all(self, out: list[Event]) -> None:
        cut = self.finish_reason == "length"
        call = self._open_call
        if call is not None and not call.done_receiving:
            self._close_open(out, cut=cut)  # before the content that waited for it
        self._release_held(out)
        self._flush_splitter(out)
        self._finish_rescue(out)
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
        if text:  # empty for reasoning that is only opaque state
            self.output_chars += len(text)
            if self._stash:
                self._thought.append(text)
            delta = {"type": "thinking_delta", "thinking": text}
            out.append(
                {"type": "content_block_delta", "index": self._next_index - 1, "delta": delta}
            )

    def _text(self, text: str, out: list[Event]) -> None:
        if self._rescuer is not None:
            text = self._rescuer.feed(text)
            if not text:
                return
        self._emit_text(text, out)

    def _emit_text(self, text: str, out: list[Event]) -> None:
        if self._open != TEXT:
            self._close_open(out, cut=False)
            self._start_block(TEXT, {"type": "text", "text": ""}, out)
        self.output_chars += len(text)
        delta = {"type": "text_delta", "text": text}
        out.append({"type": "content_block_delta", "index": self._next_index - 1, "delta": delta})

    # --------------------------------------------------------------- tool calls

    def _find_call(
        self, index: Any, call_id: str | None, name: str | None, arguments: str
    ) -> _ToolCall:
        keyed = isinstance(index, int) and not isinstance(index, bool)
        call = self._calls_by_index.get(index) if keyed else self._last_call
        if call is None or not call.continues(call_id, name, arguments):
            call = _ToolCall()
            if keyed:
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
            arguments = function.get("arguments")
            if isinstance(arguments, dict):
                arguments = dump_json(arguments)
            if not isinstance(arguments, str):
                arguments = ""
            call = self._find_call(fragment.get("index"), call_id or None, name or None, arguments)
            if name and not call.name:
                call.name = name
            if call_id and not call.upstream_id:
                call.upstream_id = call_id
            if call.google is None:
                call.google = thought_signature(fragment)
            if arguments:
                received = call.received
                call.add(arguments)
                self.output_chars += call.received - received
                if call.closed:
                    self._queue_glued(call)  # more objects after its block already closed
        self._pump(out)

    def _open_tool(self, call: _ToolCall, out: list[Event]) -> None:
        self._flush_splitter(out)
        self._give_up_rescue(out)  # the server parses calls itself: text is text
        self._close_open(out, cut=False)
        if call.google:
            # Gemini 3 wants the signature back on this call: a thinking block carries it.
            signature = encode_signature("", google=call.google)
            index = self._start_block(
                THINKING, {"type": "thinking", "thinking": "", "signature": ""}, out
            )
            delta = {"type": "signature_delta", "signature": signature}
            out.append({"type": "content_block_delta", "index": index, "delta": delta})
            out.append({"type": "content_block_stop", "index": index})
            self._open = None
        name = call.name or ""
        # The upstream's id rides in the client's (docs/tool-ids.md), salted per block.
        salt = f"{self.message_id}:{self._next_index}"
        block: dict[str, Any] = {
            "type": "tool_use",
            "id": client_tool_id(call.upstream_id, salt),
            "name": self._tool_names.get(name, name),
            "input": {},
        }
        self._start_block(TOOL, block, out)
        self._open_call = call
        self._saw_tool = True

    def _give_up_rescue(self, out: list[Event]) -> bool:
        """Send what the rescuer held as text and stop rescuing; True if it held any."""
        rescuer, self._rescuer = self._rescuer, None
        text = rescuer.abandon() if rescuer is not None else ""
        if text:
            self._emit_text(text, out)
        return bool(text)

    def _finish_rescue(self, out: list[Event]) -> None:
        """The text ended: what it held is text, or the tool calls it ends with."""
        rescuer = self._rescuer
        if rescuer is None or self._rescue is None:
            return
        if self._queue or self._saw_tool:
            self._give_up_rescue(out)
            return
        self._rescuer = None
        text, calls = rescuer.finish()
        if text:
            self._emit_text(text, out)
        for found in calls:
            call = _ToolCall()
            call.name = found.name
            call.add(dump_json(found.arguments))
            self.output_chars += call.received
            self._open_tool(call, out)
            self._send(call.take(call.scanner.pos), out)
            self._close_open(out, cut=False)
        self._rescue.rescued.extend(calls)

    def _pump(self, out: list[Event]) -> None:
        """Stream the open call's new fragments; once it is done, what waited for it."""
        call = self._open_call
        if call is not None:
            self._send(call.take(call.scanner.safe), out)
            if not call.done_receiving:
                return
            self._release_held(out)
        while self._queue and self._queue[0].name is not None:
            self._flush_splitter(out)
            self._close_open(out, cut=False)  # may queue the objects glued to its call first
            following = self._queue.pop(0)
            self._open_tool(following, out)
            self._send(following.take(following.scanner.safe), out)
            if not following.done_receiving:
                break

    def _send(self, piece: str, out: list[Event]) -> None:
        if piece:
            delta = {"type": "input_json_delta", "partial_json": piece}
            out.append(
                {"type": "content_block_delta", "index": self._next_index - 1, "delta": delta}
            )

    def _queue_glued(self, call: _ToolCall) -> None:
        """`{…}{…}` in one call: a repeat of the object is dropped (some servers resend the
        full arguments), a different object becomes a call of its own, queued next."""
        text = call.text()
        extra = text[call.handled :]
        if not extra.strip():
            call.handled = len(text)
            return
        objects = split_objects(text[: call.scanner.pos] + extra)
        if not objects:
            if not extra.lstrip().startswith("{"):
                logger.info("ignoring %d characters after a complete tool-call object", len(extra))
                call.handled = len(text)
            return  # maybe an object still arriving
        call.handled = len(text)
        first, position = objects[0], 0
        for value in objects[1:]:
            if value == first:
                continue
            glued = _ToolCall()
            glued.name = call.name
            glued.add(dump_json(value))
            self._queue.insert(position, glued)
            position += 1

    def _finalize_arguments(self, call: _ToolCall, out: list[Event], *, cut: bool) -> None:
        scanner = call.scanner
        call.closed = True
        if scanner.complete:
            self._send(call.take(scanner.pos), out)
            call.handled = scanner.pos
            self._queue_glued(call)
            return
        if scanner.valid:
            if not scanner.started:
                return  # nothing or whitespace: the input stays {}
            if cut:
                # max_tokens: a valid prefix of the object, as Anthropic leaves it.
                self._send(call.take(scanner.pos), out)
                return
            logger.warning("tool call %s arguments were cut off; closing the object", call.name)
            self._send(call.take(scanner.safe) + scanner.closing_suffix(), out)
            return
        if cut and scanner.started:
            self._send(call.take(scanner.pos), out)  # the valid prefix of what came
            return
        # Invalid JSON: repair all of it, then extend what already went out to match.
        logger.warning("tool call %s arguments are not valid JSON; repairing them", call.name)
        self._send(call.take(scanner.safe), out)
        text = call.text()
        closer = scanner.closing_suffix() if call.emitted else ""
        self._send(complete_prefix(text[: call.emitted], closer, parse_arguments(text)), out)
