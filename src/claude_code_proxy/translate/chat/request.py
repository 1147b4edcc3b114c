"""Anthropic Messages request → OpenAI Chat Completions request (protocol.md E.1, E.2)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from claude_code_proxy.translate.chat.messages import MessageConverter
from claude_code_proxy.translate.content import (
    Stats,
    conversation_key,
    request_fields,
    stop_sequences,
    system_texts,
)
from claude_code_proxy.translate.errors import RequestValidationError
from claude_code_proxy.translate.options import (
    ReasoningEcho,
    ReasoningParam,
    TranslatedRequest,
    TranslationOptions,
)
from claude_code_proxy.translate.reasoning import requested_effort, supported_effort
from claude_code_proxy.translate.structured import response_format
from claude_code_proxy.translate.tools import function_tools, loaded_tools, tool_choice
from claude_code_proxy.translate.web_search import web_search_tool

__all__ = [
    "ReasoningEcho",
    "ReasoningParam",
    "TranslatedRequest",
    "TranslationOptions",
    "translate_request",
]

MAX_STOP_SEQUENCES = 4


def translate_request(
    body: Any,
    *,
    upstream_model: str,
    options: TranslationOptions | None = None,
    session_id: str | None = None,
    documents: Mapping[str, str] | None = None,
) -> TranslatedRequest:
    """Validate an Anthropic request body and build the OpenAI payload for it.

    `session_id` (Claude Code's `X-Claude-Code-Session-Id`) keys upstream prompt caches.
    `documents`: text of the base64 PDFs in the body, by their data, extracted beforehand
    (see `documents.pdf_sources`) for upstreams that take no PDF files.
    """
    options = options or TranslationOptions()
    model, max_tokens, messages, stream = request_fields(body)

    stats = Stats()
    renamed: dict[str, str] = {}  # client tool name → upstream-legal name
    system_parts = system_texts(body.get("system"), stats)
    converter = MessageConverter(options, stats, renamed, documents)
    converted = converter.convert(messages, system_parts)
    if not any(m["role"] != "system" for m in converted):
        raise RequestValidationError("messages: at least one non-empty message is required")

    payload: dict[str, Any] = {"model": upstream_model, "messages": converted}
    limit = options.max_tokens_limit
    payload[options.max_tokens_field] = min(max_tokens, limit) if limit else max_tokens

    stops = stop_sequences(body.get("stop_sequences"))
    if stops:
        payload["stop"] = stops[:MAX_STOP_SEQUENCES]
    for name in ("temperature", "top_p", "top_k"):
        value = body.get(name)
        if value is not None and name not in options.drop_params:
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise RequestValidationError(f"{name}: must be a number")
            if name != "top_k" or options.forward_top_k:
                payload[name] = value

    tools, requested = function_tools(
        body.get("tools"), stats, options, loaded=loaded_tools(messages), renamed=renamed
    )
    if tools:
        payload["tools"] = tools
        forwarded = {t["function"]["name"] for t in tools}
        choice = tool_choice(body.get("tool_choice"), forwarded, requested, renamed)
        if choice is not None:
            payload["tool_choice"] = choice
        tc = body.get("tool_choice")
        if isinstance(tc, dict) and tc.get("disable_parallel_tool_use") is True:
            payload["parallel_tool_calls"] = False

    if options.forward_response_format:
        output_format = response_format(body)
        if output_format is not None:
            payload["response_format"] = output_format

    _reasoning(body, payload, options)
    if options.prompt_cache_key:
        cache_key = conversation_key(body, session_id)
        if cache_key:
            payload["prompt_cache_key"] = cache_key
    for name in options.drop_params:
        payload.pop(name, None)

    if stream:
        payload["stream"] = True
        if options.include_usage:
            payload["stream_options"] = {"include_usage": True}

    return TranslatedRequest(
        payload=payload,
        stream=stream,
        client_model=model,
        max_tokens=max_tokens,
        stop_sequences=stops,
        estimated_input_tokens=stats.estimated_tokens,
        tool_names={upstream: client for client, upstream in renamed.items()},
        web_search=web_search_tool(body.get("tools")),
    )


def _reasoning(body: dict[str, Any], payload: dict[str, Any], options: TranslationOptions) -> None:
    """Map thinking budget / output_config.effort onto the upstream's reasoning control."""
    if options.reasoning_param == "none":
        return
    asked = requested_effort(body, options.budget_thresholds)
    if asked is None:
        return
    effort = supported_effort(asked, options.efforts)
    if options.reasoning_param == "reasoning_effort":
        if effort is not None:
            payload["reasoning_effort"] = effort
    elif options.reasoning_param == "openrouter":
        thinking = body.get("thinking")
        budget = thinking.get("budget_tokens") if isinstance(thinking, dict) else None
        if asked == "none":
            payload["reasoning"] = {"effort": "none"}
        elif isinstance(budget, int) and not isinstance(budget, bool) and budget > 0:
            # The budget must stay below the output limit, which the proxy may have lowered.
            ceiling = payload.get(options.max_tokens_field)
            if isinstance(ceiling, int) and ceiling > 1:
                budget = min(budget, ceiling - 1)
            payload["reasoning"] = {"max_tokens": budget}
        else:
            payload["reasoning"] = {"effort": effort or asked}
    elif options.reasoning_param in ("deepseek", "chat_template_kwargs"):
        # These switch a hybrid model between two modes; only an explicit thinking choice
        # flips it (Claude Code's adaptive thinking keeps the model's own default).
        thinking = body.get("thinking")
        kind = thinking.get("type") if isinstance(thinking, dict) else None
        if kind not in ("enabled", "disabled"):
            return
        if options.reasoning_param == "deepseek":
            payload["thinking"] = {"type": kind}
        else:
            payload["chat_template_kwargs"] = {"enable_thinking": kind == "enabled"}
