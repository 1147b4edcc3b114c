"""The scripted upstream's Responses API face (`POST /v1/responses`, UPSTREAM_API=responses).

The scenarios stay written once, against Chat Completions messages: a Responses request is
viewed as the chat body it stands for (`chat_view`), and a scenario's `Reply` goes out as
Responses events built and validated by ``mock_responses`` (the `openai` package's types).
Every reply starts with a reasoning item, as OpenAI's reasoning models do; the `Ledger`
fails a later request (400, as the real API does) if a reasoning item that preceded a
function call does not come back with that call, unchanged and before it.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from mock_responses import ResponseScript, check_request, responses_usage

if TYPE_CHECKING:
    from .scripted_upstream import Reply


def _text(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "\n".join(
            str(p.get("text", ""))
            for p in content
            if isinstance(p, dict) and p.get("type") in ("input_text", "output_text")
        )
    return ""


def chat_view(body: dict[str, Any]) -> dict[str, Any]:
    """The Chat Completions body a Responses request stands for (for scenarios and tests).

    `reasoning` items are kept on the assistant message they precede, under `reasoning_items`.
    """
    messages: list[dict[str, Any]] = []
    if body.get("instructions"):
        messages.append({"role": "system", "content": body["instructions"]})
    reasoning: list[dict[str, Any]] = []
    for item in body.get("input") or ():
        kind = item.get("type", "message")
        if kind == "reasoning":
            reasoning.append(item)
        elif kind == "message":
            message = {"role": item["role"], "content": _text(item.get("content"))}
            if item["role"] == "assistant" and reasoning:
                message["reasoning_items"], reasoning = reasoning, []
            messages.append(message)
        elif kind == "function_call":
            last = messages[-1] if messages else None
            if last is None or last["role"] != "assistant" or reasoning:
                last = {"role": "assistant", "content": None}
                messages.append(last)
            if reasoning:
                last.setdefault("reasoning_items", []).extend(reasoning)
                reasoning = []
            last.setdefault("tool_calls", []).append(
                {
                    "id": item["call_id"],
                    "type": "function",
                    "function": {"name": item["name"], "arguments": item["arguments"]},
                }
            )
        elif kind == "function_call_output":
            messages.append(
                {"role": "tool", "tool_call_id": item["call_id"], "content": item["output"]}
            )
    tools = [
        {
            "type": "function",
            "function": {
                k: v for k, v in tool.items() if k in ("name", "description", "parameters")
            },
        }
        for tool in body.get("tools") or ()
        if tool.get("type") == "function"
    ]
    view: dict[str, Any] = {"model": body.get("model"), "messages": messages, "tools": tools}
    view["stream"] = bool(body.get("stream"))
    fmt = (body.get("text") or {}).get("format")
    if isinstance(fmt, dict) and fmt.get("type") == "json_schema":
        view["response_format"] = {"type": "json_schema", "json_schema": fmt}
    return view


@dataclass
class Ledger:
    """Reasoning items issued before function calls, to be given back with those calls."""

    before_call: dict[str, dict[str, Any]] = field(default_factory=dict)
    returned: int = 0

    def problem(self, body: dict[str, Any]) -> str | None:
        problem = check_request(body)
        if problem:
            return problem
        items = [i for i in body.get("input") or () if isinstance(i, dict)]
        position = {
            i.get("call_id"): n for n, i in enumerate(items) if i.get("type") == "function_call"
        }
        reasoning = {
            i.get("id"): (n, i) for n, i in enumerate(items) if i.get("type") == "reasoning"
        }
        for call_id, issued in self.before_call.items():
            if call_id not in position:
                continue
            found = reasoning.get(issued["id"])
            if found is None:
                return f"reasoning item {issued['id']} issued before call {call_id} is missing"
            n, item = found
            if (
                item.get("encrypted_content") != issued["encrypted_content"]
                or n > position[call_id]
            ):
                return f"reasoning item {issued['id']} came back changed or after its call"
            self.returned += 1
        return None

    def script(self, model: str, reply: Reply) -> ResponseScript:
        """The reply as a Response: a reasoning item first, then text and calls."""
        script = ResponseScript(model=model, split=lambda text: reply.fragments(text, 3))
        summaries = [reply.reasoning] if reply.reasoning else []
        script.reasoning(*summaries, encrypted=f"gAAAA{uuid.uuid4().hex * 4}")
        if reply.text:
            script.text(reply.text)
        for call in reply.calls:
            script.function_call(call.name, call.arguments, call_id=call.id)
            self.before_call[call.id] = script.items[0]
        return script


def responses_body(script: ResponseScript) -> dict[str, Any]:
    return script.response(usage=responses_usage(1200, 30))
