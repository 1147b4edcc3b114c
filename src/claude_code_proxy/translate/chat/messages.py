"""Anthropic messages → OpenAI Chat Completions messages (protocol.md E.2).

System text that arrives mid-conversation (`role: "system"` messages, `mid_conv_system`
blocks) stays where it arrived, so every turn's upstream messages start with the previous
turn's unchanged and prefix caches keep hitting (docs/prefix-stability.md): as a `system`
message where the provider takes those mid-conversation (`system_in_place`), else as
`<system>` text in the adjacent user turn. Only system text before the first turn joins the
system prompt, which is the same place.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import orjson

from claude_code_proxy.translate.content import (
    Stats,
    SystemPiece,
    blocks,
    cache_mark,
    content_text,
    merged_turns,
    render_block_as_text,
)
from claude_code_proxy.translate.errors import RequestValidationError
from claude_code_proxy.translate.ids import (
    server_call_client_id,
    upstream_call_id,
    upstream_tool_id,
)
from claude_code_proxy.translate.options import TranslationOptions
from claude_code_proxy.translate.parts import PartBuilder, text_part
from claude_code_proxy.translate.reasoning import decode_signature
from claude_code_proxy.translate.tools import tool_name
from claude_code_proxy.translate.web_search import FUNCTION_NAME as WEB_SEARCH_FUNCTION
from claude_code_proxy.translate.web_search import result_text

logger = logging.getLogger(__name__)

GEMINI_SKIP_SIGNATURE = "skip_thought_signature_validator"


class MessageConverter(PartBuilder):
    """Walks Anthropic messages in order and emits OpenAI messages (protocol.md E.2)."""

    def __init__(
        self,
        options: TranslationOptions,
        stats: Stats,
        renamed: dict[str, str],
        documents: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(options, stats, documents)
        self.renamed = renamed
        self.out: list[dict[str, Any]] = []
        # System text before any turn: it joins the system prompt.
        self.leading_system: list[SystemPiece] = []
        # System messages that arrived between a tool call and its result (system_in_place).
        self.deferred_system: list[dict[str, Any]] = []
        # System text, as user-turn parts, waiting for the next user message (not in place).
        self.system_for_user: list[dict[str, Any]] = []
        # The last assistant turn's tool calls still awaiting results, in call order: client
        # id → upstream id. Results pair by the client's id, which is unique; upstream ids
        # may repeat across turns (`call_0` every turn) and are only what is sent.
        self.pending_calls: dict[str, str] = {}
        self.call_names: dict[str, str] = {}

    def convert(self, messages: list[Any], system_parts: list[SystemPiece]) -> list[dict[str, Any]]:
        for position, role, content in merged_turns(messages):
            if role == "user":
                self._user(content, position)
            elif role == "assistant":
                self._assistant(content, position)
            else:
                self._system(content_text(content, self.stats), cache_mark(content))
        self._close_pending_calls()
        self._flush_system_for_user()
        pieces = [(t, mark) for t, mark in (*system_parts, *self.leading_system) if t]
        merged = merge_consecutive(self.out)
        if self.options.cache_control and any(mark for _, mark in pieces):
            # Explicit-caching upstreams (Anthropic models via OpenRouter) keep the breakpoints.
            merged.insert(0, {"role": "system", "content": [text_part(*p) for p in pieces]})
        elif pieces:
            merged.insert(0, {"role": "system", "content": "\n\n".join(t for t, _ in pieces)})
        return merged

    def _tool_id(self, client_id: str) -> str:
        """The upstream's own id when the client's carries it (docs/tool-ids.md), else a mapping."""
        return upstream_call_id(client_id, self.options.tool_id_style)

    def _system(self, text: str, mark: Any = None) -> None:
        """A `role: "system"` message between turns, kept at its position."""
        if not text:
            return
        if not self.out and not self.pending_calls:
            self.leading_system.append((text, mark))
        elif self.options.system_in_place:
            message = self._system_message(text, mark)
            if self.pending_calls:
                self.deferred_system.append(message)  # tool messages must follow their call
            else:
                self.out.append(message)
        elif not self.pending_calls and self.out[-1]["role"] == "user":
            # Right after a user turn (Claude Code's environment message after the prompt):
            # part of that turn, which this request introduced along with it.
            # Appended as a user message of its own: merge_consecutive joins it to that turn
            # once per run (joining here would copy the turn for every system message).
            self.out.append({"role": "user", "content": simplify([self._system_part(text, mark)])})
        else:
            self.system_for_user.append(self._system_part(text, mark))

    def _system_message(self, text: str, mark: Any) -> dict[str, Any]:
        if mark is not None and self.options.cache_control:
            return {"role": "system", "content": [text_part(text, mark)]}
        return {"role": "system", "content": text}

    def _system_part(self, text: str, mark: Any) -> dict[str, Any]:
        """System text inside a user turn, marked so the model tells it from the user's words."""
        wrapped = f"<system>\n{text}\n</system>"
        return text_part(wrapped, mark if self.options.cache_control else None)

    def _flush_deferred_system(self) -> None:
        self.out.extend(self.deferred_system)
        self.deferred_system = []

    def _take_system_for_user(self) -> list[dict[str, Any]]:
        parts, self.system_for_user = self.system_for_user, []
        return parts

    def _flush_system_for_user(self) -> None:
        """System text no user turn followed: a user message of its own, at its position."""
        parts = self._take_system_for_user()
        if parts:
            self.out.append({"role": "user", "content": simplify(parts)})

    def _close_pending_calls(self) -> None:
        """Answer tool calls the client never answered: upstreams reject dangling calls."""
        for call_id in self.pending_calls.values():
            self.out.append(
                {
                    "role": "tool",
                    "tool_call_id": call_id,
                    "content": "(no result: the tool call was not answered)",
                }
            )
        self.pending_calls = {}
        self._flush_deferred_system()

    def _user(self, content: str | list[Any], position: int) -> None:
        if isinstance(content, str):
            self._close_pending_calls()
            self.stats.text_chars += len(content)
            waiting = self._take_system_for_user()
            if waiting:
                said = [text_part(content, None)] if content else []
                self.out.append({"role": "user", "content": simplify(waiting + said)})
            elif content:
                self.out.append({"role": "user", "content": content})
            return
        results: dict[str, dict[str, Any]] = {}
        orphan_texts: list[dict[str, Any]] = []
        parts: list[dict[str, Any]] = []  # the current run of user parts
        # The turn's user parts in order, cut where a system message stays in place.
        runs: list[list[dict[str, Any]] | dict[str, Any]] = [parts]
        result_images: list[dict[str, Any]] = []
        for index, block in blocks(content, position):
            kind = block.get("type")
            if kind == "tool_result":
                client_id = _id_text(block.get("tool_use_id", ""))
                call_id = self.pending_calls.get(client_id) or self._tool_id(client_id)
                text, images = self.tool_result_content(block)
                if client_id in self.pending_calls and client_id not in results:
                    mark = cache_mark(block) if self.options.cache_control else None
                    body: Any = [text_part(text, mark)] if mark else text
                    results[client_id] = {"role": "tool", "tool_call_id": call_id, "content": body}
                else:
                    name = self.call_names.get(call_id, "tool")
                    orphan_texts.append(
                        {"type": "text", "text": f"[Result of {name} call {call_id}]\n{text}"}
                    )
                if images:
                    name = self.call_names.get(call_id, "the tool")
                    label = "Images" if all(p["type"] == "image_url" for p in images) else "Files"
                    result_images.append({"type": "text", "text": f"{label} returned by {name}:"})
                    result_images.extend(images)
            elif kind == "mid_conv_system":
                inner = block.get("content")
                note, mark = content_text(inner, self.stats), cache_mark(inner)
                if not note:
                    continue
                if not (self.out or self.pending_calls or results or orphan_texts or parts):
                    self.leading_system.append((note, mark))  # before any turn
                elif self.options.system_in_place:
                    parts = []
                    runs += [self._system_message(note, mark), parts]
                else:
                    parts.append(self._system_part(note, mark))
            else:
                parts.extend(self.content_part(block, position, index))
        if self.pending_calls:
            # Tool messages must directly follow the assistant turn, in call order.
            for client_id, call_id in self.pending_calls.items():
                message = results.get(client_id)
                if message is None:
                    message = {
                        "role": "tool",
                        "tool_call_id": call_id,
                        "content": "(no result: the tool call was not answered)",
                    }
                self.out.append(message)
            self.pending_calls = {}
            self._flush_deferred_system()
        head = self._take_system_for_user() + result_images + orphan_texts
        for number, run in enumerate(runs):
            if isinstance(run, dict):
                self.out.append(run)  # a system message in place
                continue
            rest = head + run if number == 0 else run
            if rest:
                self.out.append({"role": "user", "content": simplify(rest)})

    def _assistant(self, content: str | list[Any], position: int) -> None:
        """One assistant turn; a web search result inside it (the proxy ran the search)
        ends the message carrying the call, and is sent as that call's tool message."""
        self._close_pending_calls()
        self._flush_system_for_user()
        if isinstance(content, str):
            self.stats.text_chars += len(content)
            if content:
                self.out.append({"role": "assistant", "content": content})
            return
        part = _AssistantPart()
        for index, block in blocks(content, position):
            kind = block.get("type")
            if kind == "web_search_tool_result":
                client_id = server_call_client_id(_id_text(block.get("tool_use_id", "")))
                if client_id in part.pending:
                    self._emit_assistant(part)
                    part = _AssistantPart()
                call_id = self.pending_calls.pop(client_id, None)
                if call_id is not None:
                    result = result_text(block)
                    self.stats.text_chars += len(result)
                    self.out.append({"role": "tool", "tool_call_id": call_id, "content": result})
                    continue
            if self.pending_calls:
                # Content after a search result: calls still unanswered cannot wait for it.
                self._close_pending_calls()
            if kind == "text":
                text = block.get("text")
                if isinstance(text, str) and text:
                    part.texts.append(text)
                    self.stats.text_chars += len(text)
            elif kind == "tool_use" or (
                kind == "server_tool_use" and block.get("name") == WEB_SEARCH_FUNCTION
            ):
                self._call(part, block, position, index)
            elif kind in ("thinking", "redacted_thinking"):
                state = decode_signature(block.get("signature"))
                if state and isinstance(state.get("g"), str):
                    part.thought_signature = state["g"]
                if self.options.reasoning_echo != "none":
                    thought = state.get("r") if state else block.get("thinking")
                    if isinstance(thought, str) and thought:
                        part.reasoning.append(thought)
                    if state and isinstance(state.get("d"), list):
                        part.details.extend(state["d"])
            elif kind == "web_search_tool_result":
                part.texts.append(result_text(block))  # its call is not in this history
            else:
                rendered = render_block_as_text(block)
                if rendered:
                    part.texts.append(rendered)
        self._emit_assistant(part)

    def _call(self, part: _AssistantPart, block: dict[str, Any], position: int, index: int) -> None:
        """A `tool_use` (or the proxy's web search) as an upstream tool call."""
        name = block.get("name")
        if not isinstance(name, str) or not name:
            raise RequestValidationError(
                f"messages.{position}.content.{index}.name: a tool_use needs a name"
            )
        pending = part.pending
        client_id = _id_text(block.get("id") or f"call_{position}_{index}")
        if block.get("type") == "server_tool_use":
            client_id = server_call_client_id(client_id)
        call_id = self._tool_id(client_id)
        if call_id in part.sent_ids or client_id in pending:
            # Two calls of one turn with one upstream id (the upstream repeated it, or
            # the client did): the later one gets an id of its own, so results pair.
            call_id = upstream_tool_id(f"{client_id}#{index}")
            if self.options.tool_id_style == "mistral":
                call_id = upstream_call_id(call_id, "mistral")
        tool_input = block.get("input")
        try:
            arguments = orjson.dumps(tool_input if tool_input is not None else {}).decode()
        except TypeError:
            raise RequestValidationError(
                f"messages.{position}.content.{index}.input: nested too deeply"
            ) from None
        self.stats.text_chars += len(arguments) + len(name)
        call: dict[str, Any] = {
            "id": call_id,
            "type": "function",
            "function": {"name": tool_name(name, self.renamed), "arguments": arguments},
        }
        if self.options.thought_signatures:
            # Only the first call of a turn carries Gemini's signature; a history from
            # elsewhere gets the validator-skip value Google documents for that case.
            if part.thought_signature is None and not part.calls:
                part.thought_signature = GEMINI_SKIP_SIGNATURE
            if part.thought_signature is not None:
                call["extra_content"] = {"google": {"thought_signature": part.thought_signature}}
            part.thought_signature = None
        part.calls.append(call)
        # A repeated client id pairs with its first call; the later one stays unanswered.
        pending[client_id if client_id not in pending else f"{client_id}#{index}"] = call_id
        part.sent_ids.add(call_id)
        self.call_names[call_id] = name

    def _emit_assistant(self, part: _AssistantPart) -> None:
        if not part.texts and not part.calls:
            return
        message: dict[str, Any] = {"role": "assistant", "content": "\n\n".join(part.texts) or None}
        echo = self.options.reasoning_echo
        if echo == "reasoning_details" and part.details:
            message["reasoning_details"] = part.details
        elif echo in ("reasoning_content", "reasoning") and (part.reasoning or part.calls):
            # DeepSeek requires the field on tool-call turns; empty is its documented fallback.
            message[echo] = "\n\n".join(part.reasoning)
        if part.calls:
            message["tool_calls"] = part.calls
            self.pending_calls = part.pending
        self.out.append(message)


@dataclass
class _AssistantPart:
    """One assistant message being assembled from a turn's blocks."""

    texts: list[str] = field(default_factory=list)
    calls: list[dict[str, Any]] = field(default_factory=list)
    pending: dict[str, str] = field(default_factory=dict)  # client id → upstream call id
    sent_ids: set[str] = field(default_factory=set)  # pending's values: O(1) duplicate checks
    reasoning: list[str] = field(default_factory=list)
    details: list[Any] = field(default_factory=list)
    thought_signature: str | None = None  # Gemini's, for the next tool call


def _id_text(value: Any) -> str:
    return value if isinstance(value, str) else str(value)


def simplify(parts: list[dict[str, Any]]) -> str | list[dict[str, Any]]:
    """A single text part is sent as a plain string: every upstream accepts that."""
    if all(p.get("type") == "text" and "cache_control" not in p for p in parts):
        return "\n\n".join(p["text"] for p in parts)
    return parts


def merge_consecutive(messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Merge same-role user/assistant neighbours: many chat templates demand alternation.

    A run of mergeable messages is joined once at its end (`join_all`), so N neighbours
    cost O(total size), not O(N x size) as pairwise joining would.
    """
    merged: list[dict[str, Any]] = []
    run: list[Any] | None = None  # contents of the run merged[-1] stands for
    for message in messages:
        previous = merged[-1] if merged else None
        role = message["role"]
        if (previous is not None and previous["role"] == role and role in ("user", "system")) or (
            previous is not None
            and role == "assistant"
            and previous["role"] == "assistant"
            and "tool_calls" not in previous
        ):
            assert previous is not None
            if run is None:
                run = [previous.get("content")]
                merged[-1] = previous = dict(previous)
            run.append(message.get("content"))
            if "tool_calls" in message:
                previous["tool_calls"] = message["tool_calls"]
        else:
            if run is not None:
                merged[-1]["content"] = join_all(run)
                run = None
            merged.append(message)
    if run is not None:
        merged[-1]["content"] = join_all(run)
    return merged


def join_all(contents: list[Any]) -> Any:
    """Contents of merged messages as one: strings are joined by blank lines until the
    first part list; from then on every piece is a part of its own (text or list items)."""
    texts: list[str] = []
    parts: list[Any] | None = None
    for content in contents:
        if content is None:
            continue
        if parts is None:
            if isinstance(content, str):
                texts.append(content)
                continue
            parts = [{"type": "text", "text": "\n\n".join(texts)}] if texts else []
        parts.extend(content if isinstance(content, list) else [{"type": "text", "text": content}])
    if parts is None:
        return "\n\n".join(texts) if texts else None
    return parts
