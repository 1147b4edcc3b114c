"""One assistant turn made of several model calls joined by web searches (docs/web-search.md).

The proxy answers the model's `web_search` calls itself and calls the model again, while the
client sees a single message. `TurnStitcher` joins the Anthropic events of those calls:

* one `message_start` (the first call's); pings pass through;
* block indexes run on across calls, contiguous from 0, blocks strictly one after another;
* a `tool_use` block named `web_search` goes out as `server_tool_use` with a `srvtoolu_` id
  (carrying the upstream's call id, as `toolu_` ids do: docs/tool-ids.md), and its
  `web_search_tool_result` follows once the call has ended;
* each call's `message_delta` / `message_stop` are held back; the turn ends with one
  `message_delta` whose usage sums the calls and counts the searches, then `message_stop`;
* an `error` event passes through and ends the turn.

A non-streaming call's message is fed as the events it would have streamed, so both modes
share these rules. The blocks sent so far are kept: they are the history the next call needs.
"""

from __future__ import annotations

from typing import Any

import orjson

from claude_code_proxy.translate.ids import new_message_id, server_tool_id
from claude_code_proxy.translate.web_search import FUNCTION_NAME, WebSearchTool

Event = dict[str, Any]

_USAGE_FIELDS = (
    "input_tokens",
    "output_tokens",
    "cache_creation_input_tokens",
    "cache_read_input_tokens",
)


class TurnStitcher:
    """Feed it each model call's events; it returns what the client gets."""

    def __init__(self) -> None:
        self.content: list[dict[str, Any]] = []
        self.message: dict[str, Any] | None = None  # from the first message_start
        self.ended = False
        self.stop_reason: str | None = None
        self.stop_sequence: str | None = None
        self.error_type: str | None = None
        self.web_search_requests = 0
        self.usage: dict[str, int] = dict.fromkeys(_USAGE_FIELDS, 0)
        # The current model call:
        self.searches: list[dict[str, Any]] = []  # its server_tool_use blocks, complete
        self.client_tool_called = False
        self.call_ended = False
        self._offset = 0
        self._open: dict[str, Any] | None = None
        self._json: list[str] = []

    def begin_call(self) -> None:
        """A new model call: its block indexes continue after everything sent so far."""
        self._offset = len(self.content)
        self.searches = []
        self.client_tool_called = False
        self.call_ended = False

    def feed(self, events: list[Event]) -> list[Event]:
        out: list[Event] = []
        for event in events:
            if self.ended:
                break
            kind = event.get("type")
            if kind == "message_start":
                if self.message is None:
                    self.message = dict(event["message"])
                    out.append(event)
            elif kind == "content_block_start":
                out.append(self._block_start(event))
            elif kind == "content_block_delta":
                self._delta(event["delta"])
                out.append(dict(event, index=self._offset + event["index"]))
            elif kind == "content_block_stop":
                self._block_stop()
                out.append(dict(event, index=self._offset + event["index"]))
            elif kind == "message_delta":
                delta = event.get("delta") or {}
                self.stop_reason = delta.get("stop_reason")
                self.stop_sequence = delta.get("stop_sequence")
                usage = event.get("usage") or {}
                for name in _USAGE_FIELDS:
                    value = usage.get(name)
                    if isinstance(value, int):
                        self.usage[name] += value
            elif kind == "message_stop":
                self.call_ended = True
            elif kind == "error":
                error = event.get("error") or {}
                self.error_type = str(error.get("type") or "api_error")
                self.ended = True
                out.append(event)
            else:
                out.append(event)  # ping
        return out

    def _block_start(self, event: Event) -> Event:
        block = dict(event["content_block"])
        if block.get("type") == "tool_use" and block.get("name") == FUNCTION_NAME:
            block = {
                "type": "server_tool_use",
                "id": server_tool_id(str(block.get("id", ""))),
                "name": FUNCTION_NAME,
                "input": {},
            }
        elif block.get("type") == "tool_use":
            self.client_tool_called = True
        self._open = dict(block)
        self._json = []
        self.content.append(self._open)
        return {
            "type": "content_block_start",
            "index": self._offset + event["index"],
            "content_block": block,
        }

    def _delta(self, delta: dict[str, Any]) -> None:
        block = self._open
        if block is None:
            return
        kind = delta.get("type")
        if kind == "text_delta":
            block["text"] = block.get("text", "") + delta.get("text", "")
        elif kind == "thinking_delta":
            block["thinking"] = block.get("thinking", "") + delta.get("thinking", "")
        elif kind == "signature_delta":
            block["signature"] = delta.get("signature", "")
        elif kind == "input_json_delta":
            self._json.append(delta.get("partial_json", ""))

    def _block_stop(self) -> None:
        block = self._open
        if block is None:
            return
        if block.get("type") in ("tool_use", "server_tool_use"):
            text = "".join(self._json)
            try:
                value = orjson.loads(text) if text.strip() else {}
            except orjson.JSONDecodeError:
                value = {}  # a call cut by max_tokens: its input is incomplete
            block["input"] = value if isinstance(value, dict) else {}
            if block["type"] == "server_tool_use":
                self.searches.append(block)
        self._open = None

    def add_result(self, block: dict[str, Any], *, searched: bool) -> list[Event]:
        """A `web_search_tool_result` after the call; `searched`: a search actually ran."""
        if searched:
            self.web_search_requests += 1
        index = len(self.content)
        self.content.append(block)
        return [
            {"type": "content_block_start", "index": index, "content_block": block},
            {"type": "content_block_stop", "index": index},
        ]

    def final_stop_reason(self) -> str | None:
        """A call that only searched asked for tools the client never sees: its turn ended."""
        if self.stop_reason == "tool_use" and not self.client_tool_called:
            return "end_turn"
        return self.stop_reason

    def final_usage(self) -> dict[str, Any]:
        usage: dict[str, Any] = dict(self.usage)
        usage["server_tool_use"] = {"web_search_requests": self.web_search_requests}
        return usage

    def finish(self) -> list[Event]:
        if self.ended:
            return []
        self.ended = True
        self.stop_reason = self.final_stop_reason()
        return [
            {
                "type": "message_delta",
                "delta": {"stop_reason": self.stop_reason, "stop_sequence": self.stop_sequence},
                "usage": self.final_usage(),
            },
            {"type": "message_stop"},
        ]

    def fail(self, error_type: str, message: str) -> list[Event]:
        """End the turn with an `error` event (the protocol allows it at any point)."""
        if self.ended:
            return []
        self.ended = True
        self.error_type = error_type
        return [{"type": "error", "error": {"type": error_type, "message": message}}]

    def final_message(self, model: str) -> dict[str, Any]:
        """The whole turn as one non-streaming `Message`."""
        start = self.message or {}
        return {
            "id": start.get("id") or new_message_id(),
            "type": "message",
            "role": "assistant",
            "model": start.get("model") or model,
            "content": self.content,
            "stop_reason": self.final_stop_reason(),
            "stop_sequence": self.stop_sequence,
            "usage": self.final_usage(),
        }


def continuation(
    body: dict[str, Any], content: list[dict[str, Any]], tool: WebSearchTool, *, may_search: bool
) -> dict[str, Any]:
    """The request for the next model call: the turn so far as an assistant message.

    Its search results become the tool messages answering the calls (translate/chat/
    messages.py), so the model continues the same turn. A `tool_choice` that forced a
    search or any tool applied to the first call only; once the searches are used up
    the model must answer.
    """
    messages = [*body["messages"], {"role": "assistant", "content": list(content)}]
    request = dict(body, messages=messages)
    choice = body.get("tool_choice")
    if isinstance(choice, dict):
        forced = choice.get("type") == "any" or (
            choice.get("type") == "tool" and choice.get("name") in (tool.name, FUNCTION_NAME)
        )
        if forced:
            request["tool_choice"] = dict(choice, type="auto")
            request["tool_choice"].pop("name", None)
    if not may_search:
        request["tool_choice"] = {"type": "none"}
    return request
