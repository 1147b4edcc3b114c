"""The per-upstream translation choices, and what a translated request carries along."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from claude_code_proxy.translate.reasoning import DEFAULT_BUDGET_THRESHOLDS
from claude_code_proxy.translate.web_search import WebSearchTool

ReasoningParam = Literal[
    "none", "reasoning_effort", "openrouter", "deepseek", "chat_template_kwargs"
]
ReasoningEcho = Literal["none", "reasoning_content", "reasoning", "reasoning_details"]


@dataclass(frozen=True)
class TranslationOptions:
    """Per-upstream choices; built from the provider capability table outside this package."""

    max_tokens_limit: int | None = None
    max_tokens_field: Literal["max_tokens", "max_completion_tokens"] = "max_tokens"
    include_usage: bool = True
    pdf_as_file: bool = False
    system_in_place: bool = False
    forward_response_format: bool = True
    # Parameters this upstream rejects (e.g. temperature on reasoning models).
    drop_params: frozenset[str] = frozenset()
    # How to ask for reasoning, which efforts the model knows, and how to send it back.
    reasoning_param: ReasoningParam = "none"
    efforts: tuple[str, ...] = ("low", "medium", "high")
    budget_thresholds: tuple[int, int] = DEFAULT_BUDGET_THRESHOLDS
    reasoning_echo: ReasoningEcho = "none"
    schema_dialect: Literal["json_schema", "gemini"] = "json_schema"
    tool_id_style: Literal["default", "mistral"] = "default"
    prompt_cache_key: bool = False
    # Sampling extension some servers accept (vLLM, SGLang, llama.cpp, OpenRouter).
    forward_top_k: bool = False
    # Gemini 3 rejects a replayed tool call without the thought signature it was issued with.
    thought_signatures: bool = False
    # Keep Anthropic `cache_control` breakpoints on text parts (explicit-caching upstreams).
    cache_control: bool = False


@dataclass
class TranslatedRequest:
    payload: dict[str, Any]
    stream: bool
    client_model: str
    max_tokens: int
    stop_sequences: list[str] = field(default_factory=list)
    estimated_input_tokens: int = 0
    # Upstream tool name → the client's, for names the upstream's pattern forced us to change.
    tool_names: dict[str, str] = field(default_factory=dict)
    # The web_search server tool the proxy runs for this request, if it carries one.
    web_search: WebSearchTool | None = None
