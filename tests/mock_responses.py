"""A scripted OpenAI Responses API upstream: events built from, and checked against, the
`openai` package's own types, served by the real HTTP mock in mock_upstream.py.

`ResponseScript` builds one Response as the API streams it (`response.created` …
`response.completed`, with `event:` lines and sequence numbers) or as the JSON object a
non-streaming call returns. Every event is validated with `openai.types.responses`, so a
shape the real API would not send fails the test that builds it.

`ResponsesUpstream` is a stateful responder for `POST /v1/responses`: it validates each
request body against `ResponseCreateParams` (plus the rules the real API enforces that the
TypedDicts do not: flat function tools, output_text in assistant messages, call ids that
answer a call), and it fails a request with a 400, as OpenAI does, when a reasoning item it
issued earlier does not come back in place, before the item that followed it.
"""

from __future__ import annotations

import itertools
import json
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from openai.types.responses import Response, ResponseStreamEvent
from openai.types.responses.response_create_params import (
    ResponseCreateParamsNonStreaming,
    ResponseCreateParamsStreaming,
)
from pydantic import TypeAdapter

from mock_upstream import JSONResponse, SSEResponse, error_response, json_response

RESPONSES_PATH = "/v1/responses"
CREATED = 1766000000

_EVENT = TypeAdapter(ResponseStreamEvent)
_RESPONSE = TypeAdapter(Response)
_STREAMING_REQUEST = TypeAdapter(ResponseCreateParamsStreaming)
_REQUEST = TypeAdapter(ResponseCreateParamsNonStreaming)
_ids = itertools.count(1)


def _new_id(prefix: str) -> str:
    return f"{prefix}_{next(_ids):06d}mock"


def _split(text: str, size: int) -> list[str]:
    return [text[i : i + size] for i in range(0, len(text), size)] or [""]


def responses_usage(
    input_tokens: int = 12, output_tokens: int = 7, cached: int = 0, reasoning: int = 0
) -> dict[str, Any]:
    return {
        "input_tokens": input_tokens,
        "input_tokens_details": {"cached_tokens": cached, "cache_write_tokens": 0},
        "output_tokens": output_tokens,
        "output_tokens_details": {"reasoning_tokens": reasoning},
        "total_tokens": input_tokens + output_tokens,
    }


@dataclass
class ResponseScript:
    """One Response, built item by item, served streamed or whole."""

    model: str = "gpt-5-codex"
    chunk: int = 6
    #: How text is cut into deltas (default: `chunk` characters each).
    split: Callable[[str], list[str]] | None = None
    response_id: str = field(default_factory=lambda: _new_id("resp"))
    items: list[dict[str, Any]] = field(default_factory=list)
    #: Per item: the events between its `output_item.added` and `output_item.done`.
    bodies: list[list[dict[str, Any]]] = field(default_factory=list)

    # ---------------------------------------------------------------- items

    def reasoning(
        self, *summaries: str, encrypted: str | None = None, item_id: str | None = None
    ) -> ResponseScript:
        rid = item_id or _new_id("rs")
        encrypted = encrypted if encrypted is not None else f"enc::{rid}::" + "x" * 64
        index = len(self.items)
        body: list[dict[str, Any]] = []
        for s, text in enumerate(summaries):
            part = {"type": "summary_text", "text": ""}
            base = {"item_id": rid, "output_index": index, "summary_index": s}
            body.append({"type": "response.reasoning_summary_part.added", **base, "part": part})
            for piece in self._pieces(text):
                body.append(
                    {"type": "response.reasoning_summary_text.delta", **base, "delta": piece}
                )
            body.append({"type": "response.reasoning_summary_text.done", **base, "text": text})
            done_part = {"type": "summary_text", "text": text}
            body.append({"type": "response.reasoning_summary_part.done", **base, "part": done_part})
        item = {
            "id": rid,
            "type": "reasoning",
            "summary": [{"type": "summary_text", "text": t} for t in summaries],
            "encrypted_content": encrypted,
            "status": "completed",
        }
        return self._add(item, body)

    def text(self, text: str, *, refusal: bool = False) -> ResponseScript:
        mid = _new_id("msg")
        index = len(self.items)
        base = {"item_id": mid, "output_index": index, "content_index": 0}
        if refusal:
            part: dict[str, Any] = {"type": "refusal", "refusal": text}
            body = [
                {"type": "response.content_part.added", **base, "part": {**part, "refusal": ""}},
                *(
                    {"type": "response.refusal.delta", **base, "delta": piece}
                    for piece in self._pieces(text)
                ),
                {"type": "response.refusal.done", **base, "refusal": text},
                {"type": "response.content_part.done", **base, "part": part},
            ]
        else:
            part = {"type": "output_text", "text": text, "annotations": [], "logprobs": []}
            body = [
                {"type": "response.content_part.added", **base, "part": {**part, "text": ""}},
                *(
                    {"type": "response.output_text.delta", **base, "delta": piece, "logprobs": []}
                    for piece in self._pieces(text)
                ),
                {"type": "response.output_text.done", **base, "text": text, "logprobs": []},
                {"type": "response.content_part.done", **base, "part": part},
            ]
        item = {
            "id": mid,
            "type": "message",
            "role": "assistant",
            "status": "completed",
            "content": [part],
        }
        return self._add(item, body)

    def function_call(
        self, name: str, arguments: Any, *, call_id: str | None = None
    ) -> ResponseScript:
        fid = _new_id("fc")
        args = arguments if isinstance(arguments, str) else json.dumps(arguments)
        index = len(self.items)
        base = {"item_id": fid, "output_index": index}
        body = [
            {"type": "response.function_call_arguments.delta", **base, "delta": piece}
            for piece in self._pieces(args)
        ]
        body.append({"type": "response.function_call_arguments.done", **base, "arguments": args})
        item = {
            "id": fid,
            "type": "function_call",
            "status": "completed",
            "call_id": call_id or _new_id("call"),
            "name": name,
            "arguments": args,
        }
        return self._add(item, body)

    def _pieces(self, text: str) -> list[str]:
        pieces = self.split(text) if self.split is not None else _split(text, self.chunk)
        return pieces or [""]

    def _add(self, item: dict[str, Any], body: list[dict[str, Any]]) -> ResponseScript:
        self.items.append(item)
        self.bodies.append(body)
        return self

    # ------------------------------------------------------------- the Response

    def response(
        self,
        status: str = "completed",
        *,
        usage: dict[str, Any] | None = None,
        incomplete_reason: str | None = None,
        error: dict[str, Any] | None = None,
        output: Sequence[dict[str, Any]] | None = None,
    ) -> dict[str, Any]:
        body: dict[str, Any] = {
            "id": self.response_id,
            "object": "response",
            "created_at": CREATED,
            "status": status,
            "model": self.model,
            "output": list(self.items if output is None else output),
            "parallel_tool_calls": True,
            "tool_choice": "auto",
            "tools": [],
            "error": error,
            "incomplete_details": {"reason": incomplete_reason} if incomplete_reason else None,
            "usage": usage,
        }
        _RESPONSE.validate_python(body)
        return body

    def events(
        self,
        terminal: str = "completed",
        *,
        usage: dict[str, Any] | None = None,
        incomplete_reason: str | None = None,
        error: dict[str, Any] | None = None,
        cut_after_items: int | None = None,
    ) -> list[dict[str, Any]]:
        """The event sequence, each validated; `cut_after_items` ends items early (the last
        item gets its `added` and some deltas but no `done`), as max_output_tokens does."""
        usage = usage if usage is not None else responses_usage()
        start = self.response("in_progress", output=[])
        out: list[dict[str, Any]] = [
            {"type": "response.created", "response": start},
            {"type": "response.in_progress", "response": start},
        ]
        done_items: list[dict[str, Any]] = []
        for index, (item, body) in enumerate(zip(self.items, self.bodies, strict=True)):
            added = _in_progress(item)
            out.append({"type": "response.output_item.added", "output_index": index, "item": added})
            if cut_after_items is not None and index >= cut_after_items:
                out.extend(body[: max(1, len(body) // 2)])
                break
            out.extend(body)
            out.append({"type": "response.output_item.done", "output_index": index, "item": item})
            done_items.append(item)
        if terminal == "failed":
            final = self.response("failed", output=done_items, error=error)
        else:
            final = self.response(
                terminal, usage=usage, incomplete_reason=incomplete_reason, output=done_items
            )
        out.append({"type": f"response.{terminal}", "response": final})
        return number(out)

    def sse(self, *args: Any, **kwargs: Any) -> SSEResponse:
        return sse_events(self.events(*args, **kwargs))


def _in_progress(item: dict[str, Any]) -> dict[str, Any]:
    """The item as `output_item.added` carries it: empty, in progress."""
    kind = item["type"]
    if kind == "reasoning":
        return {"id": item["id"], "type": "reasoning", "summary": [], "status": "in_progress"}
    if kind == "message":
        return {**item, "content": [], "status": "in_progress"}
    return {**item, "arguments": "", "status": "in_progress"}


def number(events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Add sequence numbers and validate every event against the openai package's types."""
    out = []
    for n, event in enumerate(events):
        event = {**event, "sequence_number": n}
        _EVENT.validate_python(event)
        out.append(event)
    return out


def encode(event: dict[str, Any]) -> bytes:
    # Compact, `type` first, as OpenAI writes them.
    data = json.dumps(event, separators=(",", ":"))
    return f"event: {event['type']}\ndata: {data}\n\n".encode()


def sse_events(events: Sequence[dict[str, Any]], **kwargs: Any) -> SSEResponse:
    """The events as the API frames them (`event:` + `data:`, no `[DONE]`)."""
    return SSEResponse([encode(e) for e in events], done=False, **kwargs)


def error_event(message: str, code: str | None = "server_error") -> dict[str, Any]:
    return {"type": "error", "code": code, "message": message, "param": None}


# ------------------------------------------------------------------------------------------
# Request checks
# ------------------------------------------------------------------------------------------


def check_request(body: Any) -> str | None:
    """Why the real API would reject this body (None when it would accept it)."""
    if not isinstance(body, dict):
        return "body must be a JSON object"
    try:
        (_STREAMING_REQUEST if body.get("stream") else _REQUEST).validate_python(body)
    except Exception as exc:
        return f"invalid request: {str(exc)[:300]}"
    for tool in body.get("tools") or ():
        if tool.get("type") == "function" and ("function" in tool or "name" not in tool):
            return "tools: function tools are flat ({type, name, parameters}) in this API"
    calls: set[str] = set()
    for index, item in enumerate(body.get("input") or ()):
        kind = item.get("type", "message")
        if kind == "message" and item.get("role") == "assistant":
            content = item.get("content")
            for part in content if isinstance(content, list) else ():
                if isinstance(part, dict) and part.get("type") not in ("output_text", "refusal"):
                    return (
                        f"input[{index}].content: Invalid value: '{part.get('type')}'. "
                        "Supported values are: 'output_text' and 'refusal'."
                    )
        elif kind == "function_call":
            calls.add(item["call_id"])
        elif kind == "function_call_output" and item["call_id"] not in calls:
            return f"No tool call found for function call output with call_id {item['call_id']}."
    return None


@dataclass
class ResponsesUpstream:
    """A stateful `/v1/responses` responder: validates requests, serves scripted replies in
    order (a default text reply after them), and enforces the reasoning round trip."""

    replies: list[ResponseScript | Callable[[Any], Any]] = field(default_factory=list)
    default_text: str = "Hello from mock"
    enforce_reasoning: bool = True
    requests: list[dict[str, Any]] = field(default_factory=list)
    #: Reasoning items issued so far, with the id of the item that followed each one.
    issued: list[tuple[dict[str, Any], str | None]] = field(default_factory=list)
    issued_calls: set[str] = field(default_factory=set)
    returned_reasoning: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def __call__(self, body: Any) -> Any:
        with self._lock:
            self.requests.append(body)
            problem = check_request(body) or self._reasoning_problem(body)
            if problem:
                return error_response(400, problem, code="invalid_request_error")
            script = self.replies.pop(0) if self.replies else None
        if callable(script):
            return script(body)
        if script is None:
            script = ResponseScript(model=body.get("model", "gpt-5-codex")).text(self.default_text)
        self._remember(script, body)
        if body.get("stream"):
            return script.sse()
        return json_response(script.response(usage=responses_usage()))

    def _remember(self, script: ResponseScript, body: dict[str, Any]) -> None:
        with self._lock:
            for index, item in enumerate(script.items):
                if item["type"] == "function_call":
                    self.issued_calls.add(item["call_id"])
                if item["type"] == "reasoning":
                    following = script.items[index + 1] if index + 1 < len(script.items) else None
                    self.issued.append((item, following.get("call_id") if following else None))

    def _reasoning_problem(self, body: dict[str, Any]) -> str | None:
        """OpenAI's own rules, and the round trip this proxy promises."""
        items = [i for i in body.get("input") or () if isinstance(i, dict)]
        seen = {i.get("id"): n for n, i in enumerate(items) if i.get("type") == "reasoning"}
        self.returned_reasoning = len(seen)
        for n, item in enumerate(items):
            if item.get("type") != "reasoning":
                continue
            known = next((r for r, _ in self.issued if r["id"] == item.get("id")), None)
            if known is None:
                return f"Item with id '{item.get('id')}' not found."
            if item.get("encrypted_content") != known["encrypted_content"]:
                return f"The encrypted content for item {item['id']} could not be verified."
            following = items[n + 1] if n + 1 < len(items) else None
            if following is None or following.get("type") == "reasoning":
                return (
                    f"Item '{item['id']}' of type 'reasoning' was provided without its "
                    "required following item."
                )
        if not self.enforce_reasoning:
            return None
        calls = {i.get("call_id") for i in items if i.get("type") == "function_call"}
        foreign = calls - self.issued_calls
        if foreign:
            return f"function_call ids {sorted(foreign)} were never issued (ids must come back as sent)"
        for reasoning, call_id in self.issued:
            if call_id in calls and reasoning["id"] not in seen:
                return f"reasoning item {reasoning['id']} issued before call {call_id} is missing"
            if call_id in calls:
                position = next(n for n, i in enumerate(items) if i.get("call_id") == call_id)
                if seen[reasoning["id"]] > position:
                    return f"reasoning item {reasoning['id']} must come before call {call_id}"
        return None


def json_reply(script: ResponseScript, **kwargs: Any) -> JSONResponse:
    return json_response(script.response(**kwargs))
