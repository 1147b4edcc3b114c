"""What a client saw of a streamed `/v1/messages` reply, decoded as Claude Code would."""

from __future__ import annotations

import json
from collections.abc import AsyncIterable, AsyncIterator
from dataclasses import dataclass, field
from typing import Any


@dataclass
class ToolUse:
    id: str
    name: str
    parts: list[str] = field(default_factory=list)
    start_input: Any = None

    @property
    def input(self) -> Any:
        """The tool input as the client would assemble it; None when it is not JSON."""
        if not self.parts:
            return self.start_input if isinstance(self.start_input, dict) else {}
        try:
            return json.loads("".join(self.parts))
        except ValueError:
            return None


@dataclass
class Reply:
    """What a client saw of one `POST /v1/messages` with `stream: true`."""

    status: int = 0
    error_type: str | None = None
    failure: str | None = None
    text: str = ""
    thinking: str = ""
    tool_uses: list[ToolUse] = field(default_factory=list)
    stop_reason: str | None = None
    complete: bool = False
    _tools_by_index: dict[int, ToolUse] = field(default_factory=dict)

    def feed(self, event: str, data: Any) -> None:
        if not isinstance(data, dict):
            return
        kind = data.get("type", event)
        if kind == "error":
            error = _dict(data.get("error"))
            self.error_type = str(error.get("type", "error"))
            self.failure = f"stream error {self.error_type}: {error.get('message', '')}"
        elif kind == "content_block_start":
            block = _dict(data.get("content_block"))
            if block.get("type") == "tool_use":
                tool = ToolUse(str(block.get("id")), str(block.get("name")))
                tool.start_input = block.get("input")
                self.tool_uses.append(tool)
                self._tools_by_index[int(data.get("index", -1))] = tool
        elif kind == "content_block_delta":
            delta = _dict(data.get("delta"))
            if delta.get("type") == "text_delta":
                self.text += str(delta.get("text", ""))
            elif delta.get("type") == "thinking_delta":
                self.thinking += str(delta.get("thinking", ""))
            elif delta.get("type") == "input_json_delta":
                target = self._tools_by_index.get(int(data.get("index", -1)))
                if target is not None:
                    target.parts.append(str(delta.get("partial_json", "")))
        elif kind == "message_delta":
            reason = _dict(data.get("delta")).get("stop_reason")
            self.stop_reason = str(reason) if reason is not None else None
        elif kind == "message_stop":
            self.complete = True


def _dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


async def sse_events(chunks: AsyncIterable[bytes]) -> AsyncIterator[tuple[str, Any]]:
    """Decode a `text/event-stream` (split anywhere) into (event, parsed data) pairs."""
    event = "message"
    data: list[str] = []
    buffer = b""
    async for chunk in chunks:
        buffer += chunk
        while b"\n" in buffer:
            raw, buffer = buffer.split(b"\n", 1)
            line = raw.decode("utf-8", "replace").rstrip("\r")
            if not line:
                if data:
                    text = "\n".join(data)
                    try:
                        yield event, json.loads(text)
                    except ValueError:
                        bad = {"type": "error", "error": {"message": f"bad JSON: {text[:80]}"}}
                        yield event, bad
                event, data = "message", []
                continue
            if line.startswith(":"):
                continue
            name, _, value = line.partition(":")
            value = value[1:] if value.startswith(" ") else value
            if name == "event":
                event = value
            elif name == "data":
                data.append(value)


def error_text(raw: bytes) -> tuple[str | None, str]:
    """(error type, message) from an Anthropic or OpenAI error body, or the raw text."""
    try:
        body = json.loads(raw)
    except ValueError:
        return None, raw.decode("utf-8", "replace").strip()[:200]
    if isinstance(body, dict):
        error = body.get("error")
        if isinstance(error, dict):
            kind = error.get("type")
            return (str(kind) if kind else None), str(error.get("message", ""))[:300]
        if isinstance(error, str):
            return None, error[:300]
        if "message" in body:
            return None, str(body["message"])[:300]
    return None, raw.decode("utf-8", "replace")[:200]
