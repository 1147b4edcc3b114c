"""OpenAI Responses API stream events → Anthropic SSE events: an explicit state machine.

Invariants (the same as translate/chat/stream.py): `message_start` first; exactly one content
block open at a time; indexes contiguous from 0; a thinking block ends with a
`signature_delta` (the reasoning item, for the next request to send back); tool input
fragments always concatenate to a JSON object (or, when `max_output_tokens` cut the call, a
valid prefix of one); `message_delta` carries the usage of the terminal event and comes after
it; `message_stop` last, or an `error` event instead.

Output items stream one after another. Each becomes one block when it is the current item;
should an upstream interleave items, events for a later item wait in that item until the
current one is done, so blocks never interleave.
"""

from __future__ import annotations

import logging
from typing import Any

from claude_code_proxy.translate.errors import redact_secrets
from claude_code_proxy.translate.ids import client_tool_id, new_message_id
from claude_code_proxy.translate.responses.response import (
    SUMMARY_SEPARATOR,
    failure,
    message_text,
    reasoning_signature,
    stop_reason,
    summary_texts,
)
from claude_code_proxy.translate.tool_args import (
    JsonPrefixScanner,
    complete_prefix,
    dump_json,
    parse_arguments,
)
from claude_code_proxy.translate.usage import anthropic_usage

logger = logging.getLogger(__name__)

Event = dict[str, Any]

TEXT = "text"
THINKING = "thinking"
TOOL = "tool_use"
_ITEM_KINDS = {"message": TEXT, "reasoning": THINKING, "function_call": TOOL}
_TERMINAL = frozenset({"response.completed", "response.incomplete"})


class _Item:
    """One output item: its block kind, what waits for it, and (for calls) its arguments."""

    __slots__ = (
        "arguments",
        "block_open",
        "done",
        "final",
        "kind",
        "name",
        "scanner",
        "sent",
        "summary_index",
        "waiting",
        "wrote",
    )

    def __init__(self, kind: str, item: dict[str, Any]) -> None:
        self.kind = kind
        self.final: dict[str, Any] = item  # replaced by the `output_item.done` item
        self.done = False
        self.block_open = False
        self.wrote = False  # some text or thinking went out
        self.summary_index: Any = None
        self.waiting: list[tuple[str, str]] = []  # (kind, text) while another item is current
        name = item.get("name")
        self.name = name if isinstance(name, str) else ""
        self.arguments: list[str] = []
        self.scanner = JsonPrefixScanner()
        self.sent = 0  # argument characters sent


class ResponsesStreamTranslator:
    """Feed it parsed Responses API events; it returns the Anthropic events to send."""

    # Raw events that carry nothing this translator reads, recognised before parsing (OpenAI
    # writes `type` first); `response.created` and `in_progress` echo the whole request's
    # instructions and tools, tens of KB each. Events not matched are parsed and fed.
    IGNORED: tuple[bytes, ...] = tuple(
        b'{"type":"response.' + name + b'"'
        for name in (
            b"created",
            b"in_progress",
            b"queued",
            b"content_part.added",
            b"content_part.done",
            b"output_text.done",
            b"refusal.done",
            b"reasoning_summary_part.added",
            b"reasoning_summary_part.done",
            b"reasoning_summary_text.done",
            b"reasoning_text.done",
        )
    )

    def __init__(
        self,
        *,
        model: str,
        message_id: str | None = None,
        input_tokens: int = 0,
        secrets: tuple[str, ...] = (),
        tool_names: dict[str, str] | None = None,
    ) -> None:
        self.model = model
        self.message_id = message_id or new_message_id()
        self.input_tokens = input_tokens
        self.finish_reason: str | None = None  # the terminal status, once it arrived
        self.usage: dict[str, Any] | None = None
        self.ended = False
        self.stop_reason: str | None = None
        self.error_type: str | None = None
        self.output_chars = 0
        self._secrets = secrets
        self._tool_names = tool_names or {}
        self._next_index = 0
        self._items: dict[Any, _Item] = {}
        self._queue: list[_Item] = []  # items not yet current, in output order
        self._current: _Item | None = None
        self._saw_item = False
        self._saw_tool = False
        self._refused = False
        self._incomplete: Any = None

    # ----------------------------------------------------------------- lifecycle

    def start(self) -> list[Event]:
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
        """A terminal event arrived: nothing more will come."""
        return self.finish_reason is not None

    def feed(self, event: Any) -> list[Event]:
        out: list[Event] = []
        if self.ended or self.finish_reason is not None or not isinstance(event, dict):
            return out
        kind = event.get("type")
        if kind == "response.output_text.delta" or kind == "response.refusal.delta":
            self._refused = self._refused or kind == "response.refusal.delta"
            self._content(event, TEXT, out)
        elif kind in ("response.reasoning_summary_text.delta", "response.reasoning_text.delta"):
            self._content(event, THINKING, out)
        elif kind == "response.function_call_arguments.delta":
            self._arguments(event, out)
        elif kind == "response.output_item.added":
            self._added(event, out)
        elif kind == "response.output_item.done":
            self._done(event, out)
        elif kind == "response.function_call_arguments.done":
            item = self._item(event)
            if item is not None and not item.arguments and not item.waiting:
                # Arguments sent whole, without deltas.
                self._arguments({**event, "delta": event.get("arguments")}, out)
        elif kind in _TERMINAL:
            self._terminal(event, out)
        elif kind == "response.failed":
            response = event.get("response")
            error = failure(response if isinstance(response, dict) else {})
            return out + self.fail(error.error_type, error.message)
        elif kind == "error":
            error_object = event.get("error") if isinstance(event.get("error"), dict) else event
            error = failure({"error": error_object})
            return out + self.fail(error.error_type, error.message)
        # created, in_progress, content_part and summary_part events, *.done: nothing to do.
        return out

    def finish(self) -> list[Event]:
        """The terminal event arrived: close everything and report stop reason and usage."""
        if self.ended:
            return []
        out: list[Event] = []
        self._close_all(out, cut=False)
        reason, sequence = stop_reason(
            self.finish_reason,
            self._incomplete,
            saw_tool_call=self._saw_tool,
            refused=self._refused,
        )
        self.stop_reason = reason
        usage = anthropic_usage(self.usage, fallback_input=self.input_tokens)
        if not usage["output_tokens"] and self.output_chars:
            usage["output_tokens"] = max(1, self.output_chars // 4)
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
        self._close_block(out, cut=False)
        message = redact_secrets(message, self._secrets)
        out.append({"type": "error", "error": {"type": error_type, "message": message}})
        self.error_type = error_type
        self.ended = True
        return out

    # -------------------------------------------------------------------- items

    def _item(self, event: dict[str, Any]) -> _Item | None:
        item = self._items.get(event.get("output_index"))
        if item is None:
            item = self._items.get(event.get("item_id"))
        return item

    def _added(self, event: dict[str, Any], out: list[Event]) -> None:
        raw = event.get("item")
        if not isinstance(raw, dict):
            return
        kind = _ITEM_KINDS.get(str(raw.get("type")))
        if kind is None:
            return  # hosted tools and other items the client has no block for
        item = _Item(kind, raw)
        self._saw_item = True
        for key in (event.get("output_index"), raw.get("id")):
            if key is not None:
                self._items[key] = item
        self._queue.append(item)
        if self._current is None:
            self._advance(out)

    def _done(self, event: dict[str, Any], out: list[Event]) -> None:
        item = self._item(event)
        raw = event.get("item")
        if item is None:
            if isinstance(raw, dict) and raw.get("type") in _ITEM_KINDS:
                self._added(event, out)  # a done without its added: take it whole
                item = self._item(event)
            if item is None:
                return
        if isinstance(raw, dict):
            item.final = raw
        item.done = True
        if item is self._current:
            self._finish_current(out)

    def _advance(self, out: list[Event]) -> None:
        """Make the next waiting item current; replay what waited; finish it if done."""
        while self._current is None and self._queue:
            item = self._queue.pop(0)
            self._current = item
            kind = item.kind
            if kind == THINKING:
                self._open(THINKING, {"type": "thinking", "thinking": "", "signature": ""}, out)
            elif kind == TOOL:
                self._open_tool(item, out)
            waiting, item.waiting = item.waiting, []
            for piece_kind, text in waiting:
                if piece_kind == TOOL:
                    self._add_arguments(item, text, out)
                else:
                    self._write(item, piece_kind, text, out)
            if item.done:
                self._finish_current(out)

    def _finish_current(self, out: list[Event]) -> None:
        item = self._current
        if item is None:
            return
        kind = item.kind
        if kind == TOOL:
            final = item.final.get("arguments")
            received = "".join(item.arguments)
            if isinstance(final, str) and len(final) > len(received) and final.startswith(received):
                self._add_arguments(item, final[len(received) :], out)
            elif not received and isinstance(final, str):
                self._add_arguments(item, final, out)
        elif kind == TEXT and not item.wrote:
            text, refusal = message_text(item.final)  # a done item whose text never streamed
            self._refused = self._refused or bool(refusal)
            if text or refusal:
                self._write(item, TEXT, text or refusal, out)
        elif kind == THINKING and not item.wrote:
            summary = SUMMARY_SEPARATOR.join(summary_texts(item.final))
            if summary:
                self._write(item, THINKING, summary, out)
        self._close_block(out, cut=False)
        self._current = None
        self._advance(out)

    # ------------------------------------------------------------------ content

    def _content(self, event: dict[str, Any], kind: str, out: list[Event]) -> None:
        text = event.get("delta")
        if not isinstance(text, str) or not text:
            return
        item = self._item(event)
        if item is None:
            return
        if kind == THINKING:
            index = event.get("summary_index", event.get("content_index"))
            if item.wrote and index != item.summary_index:
                text = SUMMARY_SEPARATOR + text  # the next summary part
            item.summary_index = index
        if item is self._current:
            self._write(item, kind, text, out)
        else:
            item.waiting.append((kind, text))
            item.wrote = True

    def _write(self, item: _Item, kind: str, text: str, out: list[Event]) -> None:
        item.wrote = True
        self.output_chars += len(text)
        if kind == TEXT:
            if not item.block_open:
                self._open(TEXT, {"type": "text", "text": ""}, out)
                item.block_open = True
            delta = {"type": "text_delta", "text": text}
        else:
            delta = {"type": "thinking_delta", "thinking": text}
        out.append({"type": "content_block_delta", "index": self._next_index - 1, "delta": delta})

    # --------------------------------------------------------------- tool calls

    def _open_tool(self, item: _Item, out: list[Event]) -> None:
        call_id = item.final.get("call_id")
        # The upstream's call_id rides in the client's id (docs/tool-ids.md), salted per block.
        salt = f"{self.message_id}:{self._next_index}"
        block = {
            "type": "tool_use",
            "id": client_tool_id(call_id if isinstance(call_id, str) and call_id else None, salt),
            "name": self._tool_names.get(item.name, item.name),
            "input": {},
        }
        self._open(TOOL, block, out)
        self._saw_tool = True

    def _arguments(self, event: dict[str, Any], out: list[Event]) -> None:
        text = event.get("delta")
        item = self._item(event)
        if item is None or not isinstance(text, str) or not text:
            return
        if item is self._current:
            self._add_arguments(item, text, out)
        else:
            item.waiting.append((TOOL, text))

    def _add_arguments(self, item: _Item, text: str, out: list[Event]) -> None:
        item.arguments.append(text)
        self.output_chars += len(text)
        scanner = item.scanner
        if scanner.valid and not scanner.complete:
            scanner.feed(text)
            self._send_arguments(item, scanner.safe, out)

    def _send_arguments(self, item: _Item, upto: int, out: list[Event]) -> None:
        if upto <= item.sent:
            return
        text = "".join(item.arguments)
        piece = text[item.sent : upto]
        item.sent = upto
        delta = {"type": "input_json_delta", "partial_json": piece}
        out.append({"type": "content_block_delta", "index": self._next_index - 1, "delta": delta})

    def _finalize_arguments(self, item: _Item, out: list[Event], *, cut: bool) -> None:
        scanner = item.scanner
        if scanner.complete or (cut and scanner.started and scanner.valid):
            self._send_arguments(item, scanner.pos, out)  # all of it, or Anthropic's cut prefix
            return
        if not scanner.started:
            return  # nothing or whitespace: the input stays {}
        text = "".join(item.arguments)
        if scanner.valid:
            logger.warning("tool call %s arguments were cut off; closing the object", item.name)
            closer = scanner.closing_suffix()
            self._send_raw(closer, out)
            return
        logger.warning("tool call %s arguments are not valid JSON; repairing them", item.name)
        closer = scanner.closing_suffix() if item.sent else ""
        sent = text[: item.sent]
        self._send_raw(complete_prefix(sent, closer, parse_arguments(text)), out)

    def _send_raw(self, piece: str, out: list[Event]) -> None:
        if piece:
            delta = {"type": "input_json_delta", "partial_json": piece}
            out.append(
                {"type": "content_block_delta", "index": self._next_index - 1, "delta": delta}
            )

    # ------------------------------------------------------------------- blocks

    def _open(self, kind: str, block: dict[str, Any], out: list[Event]) -> None:
        index = self._next_index
        self._next_index += 1
        out.append({"type": "content_block_start", "index": index, "content_block": block})

    def _close_block(self, out: list[Event], *, cut: bool) -> None:
        """Close the current item's block, if it opened one."""
        item = self._current
        if item is None:
            return
        kind = item.kind
        index = self._next_index - 1
        if kind == THINKING:
            signature = reasoning_signature(item.final, summary_texts(item.final))
            delta = {"type": "signature_delta", "signature": signature}
            out.append({"type": "content_block_delta", "index": index, "delta": delta})
        elif kind == TOOL:
            self._finalize_arguments(item, out, cut=cut)
        elif not item.block_open:
            return  # a message item that never wrote text has no block
        out.append({"type": "content_block_stop", "index": index})
        item.block_open = False

    def _close_all(self, out: list[Event], *, cut: bool) -> None:
        while self._current is not None or self._queue:
            if self._current is None:
                self._advance(out)
                continue
            self._close_block(out, cut=cut)
            self._current = None

    # ----------------------------------------------------------------- terminal

    def _terminal(self, event: dict[str, Any], out: list[Event]) -> None:
        response = event.get("response")
        response = response if isinstance(response, dict) else {}
        usage = response.get("usage")
        if isinstance(usage, dict):
            self.usage = usage
        status = response.get("status")
        self.finish_reason = status if isinstance(status, str) else str(event.get("type"))
        self._incomplete = response.get("incomplete_details")
        if event.get("type") == "response.incomplete":
            self.finish_reason = "incomplete"
        reason = self._incomplete.get("reason") if isinstance(self._incomplete, dict) else None
        if not self._saw_item:
            self._replay_output(response.get("output"), out)
        self._close_all(out, cut=reason == "max_output_tokens")

    def _replay_output(self, output: Any, out: list[Event]) -> None:
        """A server that put the output only in the terminal event: send it whole."""
        for raw in output if isinstance(output, list) else ():
            kind = _ITEM_KINDS.get(str(raw.get("type"))) if isinstance(raw, dict) else None
            if kind is None:
                continue
            if kind == TOOL and not isinstance(raw.get("arguments"), str):
                raw = dict(raw, arguments=dump_json(raw.get("arguments") or {}))
            item = _Item(kind, raw)
            item.done = True
            self._queue.append(item)
            self._advance(out)
