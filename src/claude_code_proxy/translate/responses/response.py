"""OpenAI Responses API Response object → Anthropic message.

Output items map one to one onto content blocks: `reasoning` → thinking (summary text as the
thinking, the item itself stashed in the signature so the next request can send it back),
`message` → text, `function_call` → tool_use. A `refusal` part is text with
`stop_reason: refusal`.
"""

from __future__ import annotations

from typing import Any

from claude_code_proxy.translate.errors import ProxyError, embedded_error
from claude_code_proxy.translate.ids import client_tool_id, new_message_id
from claude_code_proxy.translate.reasoning import encode_signature
from claude_code_proxy.translate.tool_args import parse_arguments
from claude_code_proxy.translate.usage import anthropic_usage

SUMMARY_SEPARATOR = "\n\n"


def summary_texts(item: dict[str, Any]) -> list[str]:
    summary = item.get("summary")
    if not isinstance(summary, list):
        return []
    return [
        part["text"]
        for part in summary
        if isinstance(part, dict) and isinstance(part.get("text"), str)
    ]


def reasoning_signature(item: dict[str, Any], summaries: list[str]) -> str:
    """What the request side needs to send this reasoning item back, as a signature."""
    stashed: dict[str, Any] = {"id": item.get("id") or "", "s": summaries}
    encrypted = item.get("encrypted_content")
    if isinstance(encrypted, str) and encrypted:
        stashed["e"] = encrypted
    return encode_signature("", item=stashed)


def thinking_block(item: dict[str, Any]) -> dict[str, Any]:
    summaries = summary_texts(item)
    return {
        "type": "thinking",
        "thinking": SUMMARY_SEPARATOR.join(summaries),
        "signature": reasoning_signature(item, summaries),
    }


def stop_reason(
    status: Any, incomplete: Any, *, saw_tool_call: bool, refused: bool
) -> tuple[str, str | None]:
    """(stop_reason, stop_sequence) from the Response's status and incomplete details."""
    reason = incomplete.get("reason") if isinstance(incomplete, dict) else None
    if status == "incomplete" and reason == "max_output_tokens":
        return "max_tokens", None
    if saw_tool_call:
        return "tool_use", None
    if refused or (status == "incomplete" and reason == "content_filter"):
        return "refusal", None
    return "end_turn", None


def failure(response: dict[str, Any], *, prompt_tokens: int | None = None) -> ProxyError:
    """A failed Response (`status: failed`, its `error`) as the Anthropic error it stands for."""
    error = response.get("error")
    if not isinstance(error, dict):
        error = {"message": "upstream reported the response as failed", "code": "server_error"}
    return embedded_error(error, prompt_tokens=prompt_tokens)


def translate_response(
    response: dict[str, Any],
    *,
    client_model: str,
    message_id: str | None = None,
    fallback_input_tokens: int = 0,
    tool_names: dict[str, str] | None = None,
) -> dict[str, Any]:
    """A non-streaming Response as one Anthropic `Message`.

    Raises ProxyError for a failed Response (mapped by its error code), or a 502 when the
    body is no Response at all.
    """
    status = response.get("status")
    if status == "failed" or (response.get("error") and status not in ("completed", "incomplete")):
        raise failure(response, prompt_tokens=fallback_input_tokens or None)
    output = response.get("output")
    if not isinstance(output, list):
        raise ProxyError(502, "api_error", "upstream returned a response without output")
    names = tool_names or {}
    reply_id = message_id or new_message_id()
    content: list[dict[str, Any]] = []
    refused = False
    chars = 0
    for item in output:
        if not isinstance(item, dict):
            continue
        kind = item.get("type")
        if kind == "reasoning":
            block = thinking_block(item)
            chars += len(block["thinking"])
            content.append(block)
        elif kind == "message":
            text, refusal = message_text(item)
            refused = refused or bool(refusal)
            text = f"{text}\n\n{refusal}" if text and refusal else text or refusal
            if text:
                chars += len(text)
                content.append({"type": "text", "text": text})
        elif kind == "function_call":
            name = item.get("name")
            if not isinstance(name, str) or not name:
                continue
            arguments = item.get("arguments")
            chars += len(arguments) if isinstance(arguments, str) else 0
            content.append(
                {
                    "type": "tool_use",
                    # The upstream's call_id rides in the client's id (docs/tool-ids.md).
                    "id": client_tool_id(
                        _text_or_none(item.get("call_id")), f"{reply_id}:{len(content)}"
                    ),
                    "name": names.get(name, name),
                    "input": parse_arguments(arguments if isinstance(arguments, str) else None),
                }
            )
    saw_tool = any(block["type"] == "tool_use" for block in content)
    reason, sequence = stop_reason(
        status, response.get("incomplete_details"), saw_tool_call=saw_tool, refused=refused
    )
    usage = anthropic_usage(response.get("usage"), fallback_input=fallback_input_tokens)
    if not usage["output_tokens"] and chars:
        usage["output_tokens"] = max(1, chars // 4)
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


def _text_or_none(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None


def message_text(item: dict[str, Any]) -> tuple[str, str]:
    """(text, refusal) of an output message's content parts."""
    texts: list[str] = []
    refusals: list[str] = []
    content = item.get("content")
    for part in content if isinstance(content, list) else ():
        if not isinstance(part, dict):
            continue
        if part.get("type") == "refusal" and isinstance(part.get("refusal"), str):
            refusals.append(part["refusal"])
        elif isinstance(part.get("text"), str):
            texts.append(part["text"])
    return "".join(texts), "".join(refusals)
