"""OpenAI chat completion → Anthropic message (protocol.md E.3, E.4)."""

from __future__ import annotations

from typing import Any

import orjson

from claude_code_proxy.translate.errors import ProxyError
from claude_code_proxy.translate.ids import client_tool_id, new_message_id
from claude_code_proxy.translate.reasoning import (
    PLAIN_SIGNATURE,
    encode_signature,
    split_think_tags,
)
from claude_code_proxy.translate.rescue import RescueContext, RescuedCall, rescue_text
from claude_code_proxy.translate.tool_args import dump_json, parse_arguments, split_objects
from claude_code_proxy.translate.usage import anthropic_usage


def stop_reason(
    finish_reason: Any,
    *,
    saw_tool_call: bool,
    matched_stop: Any = None,
    stop_sequences: list[str] | tuple[str, ...] = (),
) -> tuple[str, str | None]:
    """Map `finish_reason` to (stop_reason, stop_sequence); tool calls win over "stop"."""
    if finish_reason == "length":
        return "max_tokens", None
    if saw_tool_call:
        # Also when the upstream said "stop" (Gemini, vLLM); never without a tool block.
        return "tool_use", None
    if finish_reason == "content_filter":
        return "refusal", None
    if isinstance(matched_stop, str) and matched_stop in stop_sequences:
        return "stop_sequence", matched_stop
    return "end_turn", None


def matched_stop(choice: dict[str, Any]) -> str | None:
    """The stop string the upstream says it hit: vLLM's `stop_reason`, SGLang's `matched_stop`.

    Either may be null or a token id (an int) when no stop string matched: then None, and the
    reply ends with `end_turn`: only what the upstream states is reported.
    """
    for key in ("stop_reason", "matched_stop"):
        value = choice.get(key)
        if isinstance(value, str) and value:
            return value
    return None


def reasoning_text(message: dict[str, Any]) -> str:
    """Reasoning as DeepSeek/SGLang/llama.cpp (`reasoning_content`) or vLLM/Ollama (`reasoning`)."""
    for key in ("reasoning_content", "reasoning"):
        value = message.get(key)
        if isinstance(value, str) and value:
            return value
    return ""


def first_choice(choices: list[Any]) -> dict[str, Any] | None:
    """The choice with index 0 (or none given): the proxy asks for one, others are ignored."""
    for choice in choices:
        if isinstance(choice, dict) and choice.get("index") in (0, None):
            return choice
    return None


def thought_signature(call: Any) -> str | None:
    """Gemini 3's `extra_content.google.thought_signature` on a tool call, if any."""
    extra = call.get("extra_content") if isinstance(call, dict) else None
    google = extra.get("google") if isinstance(extra, dict) else None
    signature = google.get("thought_signature") if isinstance(google, dict) else None
    return signature if isinstance(signature, str) and signature else None


def signature_block(google: str) -> dict[str, Any]:
    """An empty thinking block carrying a Gemini thought signature for the call after it."""
    return {"type": "thinking", "thinking": "", "signature": encode_signature("", google=google)}


def details_text(details: list[Any]) -> str:
    """The readable part of OpenRouter `reasoning_details` (text and summary items)."""
    parts = []
    for detail in details:
        if isinstance(detail, dict):
            text = detail.get("text") or detail.get("summary")
            if isinstance(text, str):
                parts.append(text)
    return "".join(parts)


def content_text(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(
            p.get("text", "")
            for p in content
            if isinstance(p, dict) and isinstance(p.get("text"), str)
        )
    return ""


def translate_completion(
    completion: dict[str, Any],
    *,
    client_model: str,
    message_id: str | None = None,
    stop_sequences: list[str] | tuple[str, ...] = (),
    fallback_input_tokens: int = 0,
    think_tags: bool = False,
    stash_reasoning: bool = False,
    tool_names: dict[str, str] | None = None,
    rescue: RescueContext | None = None,
    under_counts: bool = False,
) -> dict[str, Any]:
    """A non-streaming OpenAI response as an Anthropic `Message`.

    `under_counts`: the upstream's prompt count leaves out cached tokens (usage.py).

    With `rescue`, tool calls the model wrote as text become `tool_use` blocks (rescue.py).

    Raises ProxyError (502 api_error) when the upstream answered 2xx without a result: no
    choices, or a generation that ended in `error` / `abort`.
    """
    choices = completion.get("choices")
    choice = first_choice(choices) if isinstance(choices, list) else None
    if choice is None:
        raise ProxyError(502, "api_error", "upstream returned no choices")
    finish = choice.get("finish_reason")
    if finish in ("error", "abort"):
        raise ProxyError(502, "api_error", f"upstream ended the generation ({finish})")
    message = choice.get("message")
    if not isinstance(message, dict):
        message = {}
    names = tool_names or {}

    content: list[dict[str, Any]] = []
    thinking = reasoning_text(message)
    text = content_text(message.get("content"))
    if think_tags and not thinking:
        thinking, text = split_think_tags(text)
    details = message.get("reasoning_details")
    details = details if isinstance(details, list) and details else None
    if details and not thinking:
        thinking = details_text(details)
    if thinking or (details and stash_reasoning):
        signature = encode_signature(thinking, details) if stash_reasoning else PLAIN_SIGNATURE
        block = {"type": "thinking", "thinking": thinking, "signature": signature}
        content.append(block)
    refusal = message.get("refusal")
    calls = message.get("tool_calls")
    if not isinstance(calls, list):
        legacy = message.get("function_call")
        calls = [{"function": legacy}] if isinstance(legacy, dict) else []
    chars = len(thinking) + len(text)
    reply_id = message_id or new_message_id()

    def tool_id(upstream_id: Any) -> str:
        """The upstream's id carried in the client's (docs/tool-ids.md); salted per block."""
        carried = upstream_id if isinstance(upstream_id, str) else None
        return client_tool_id(carried, f"{reply_id}:{len(content)}")

    rescued: list[RescuedCall] = []
    if rescue is not None and rescue.tools and text and not calls and not refusal:
        text, rescued = rescue_text(text, rescue.tools)
        if rescued and not text.strip():
            text = ""
        rescue.rescued.extend(rescued)
    if isinstance(refusal, str) and refusal:
        text = f"{text}\n\n{refusal}" if text else refusal
    if text:
        content.append({"type": "text", "text": text})
    for found in rescued:
        client_name = names.get(found.name, found.name)
        block = {"type": "tool_use", "id": tool_id(None), "name": client_name}  # no upstream id
        content.append({**block, "input": found.arguments})
    for call in calls:
        function = call.get("function") if isinstance(call, dict) else None
        if not isinstance(function, dict):
            continue
        name = function.get("name")
        if not isinstance(name, str) or not name:
            continue
        name = names.get(name, name)
        google = thought_signature(call)
        if google:
            content.append(signature_block(google))
        arguments = function.get("arguments")
        if isinstance(arguments, str):
            chars += len(arguments)
        upstream_id = call.get("id") if isinstance(call, dict) else None
        several = split_objects(arguments) if isinstance(arguments, str) else None
        if several:
            # A weak model glued several calls into one: give each its own tool_use. Only
            # the first carries the upstream's id: the others are the proxy's own calls.
            for number, tool_input in enumerate(several):
                block_id = tool_id(upstream_id if number == 0 else None)
                content.append(
                    {"type": "tool_use", "id": block_id, "name": name, "input": tool_input}
                )
            continue
        tool_input = (
            arguments
            if isinstance(arguments, dict)
            else parse_arguments(arguments if isinstance(arguments, str) else None)
        )
        if isinstance(arguments, dict):
            chars += len(dump_json(arguments))
        content.append(
            {"type": "tool_use", "id": tool_id(upstream_id), "name": name, "input": tool_input}
        )

    saw_tool = any(block["type"] == "tool_use" for block in content)
    reason, sequence = stop_reason(
        finish,
        saw_tool_call=saw_tool,
        matched_stop=matched_stop(choice),
        stop_sequences=stop_sequences,
    )
    usage = anthropic_usage(
        completion.get("usage"), fallback_input=fallback_input_tokens, under_counts=under_counts
    )
    if not usage["output_tokens"] and chars:
        usage["output_tokens"] = max(1, chars // 4)  # not reported: estimate, as the stream does
    return {
        "id": reply_id,
        "type": "message",
        "role": "assistant",
        "model": client_model,
        "content": content,
        "stop_reason": reason,
        "stop_sequence": sequence,
        "usage": usage,
    }


def message_to_events(message: dict[str, Any]) -> list[dict[str, Any]]:
    """Replay a complete Anthropic message as stream events (upstream ignored `stream`)."""
    start = dict(message, content=[], stop_reason=None, stop_sequence=None)
    start["usage"] = dict(message["usage"], output_tokens=1)
    events: list[dict[str, Any]] = [{"type": "message_start", "message": start}]
    for index, block in enumerate(message["content"]):
        kind = block["type"]
        if kind == "text":
            skeleton: dict[str, Any] = {"type": "text", "text": ""}
            deltas = [{"type": "text_delta", "text": block["text"]}]
        elif kind == "thinking":
            skeleton = {"type": "thinking", "thinking": "", "signature": ""}
            deltas = [
                {"type": "thinking_delta", "thinking": block["thinking"]},
                {"type": "signature_delta", "signature": block["signature"]},
            ]
        elif kind in ("tool_use", "server_tool_use"):
            skeleton = {"type": kind, "id": block["id"], "name": block["name"], "input": {}}
            deltas = [
                {"type": "input_json_delta", "partial_json": orjson.dumps(block["input"]).decode()}
            ]
        else:
            skeleton, deltas = block, []  # complete blocks (web_search_tool_result)
        events.append({"type": "content_block_start", "index": index, "content_block": skeleton})
        events.extend({"type": "content_block_delta", "index": index, "delta": d} for d in deltas)
        events.append({"type": "content_block_stop", "index": index})
    events.append(
        {
            "type": "message_delta",
            "delta": {
                "stop_reason": message["stop_reason"],
                "stop_sequence": message["stop_sequence"],
            },
            "usage": message["usage"],
        }
    )
    events.append({"type": "message_stop"})
    return events
