"""OpenAI usage → Anthropic usage (protocol.md E.5)."""

from __future__ import annotations

from typing import Any

# A reported prompt below 1/N of the request's own estimate is an under-count, not a count.
UNDER_COUNT_RATIO = 3


def _int(value: Any) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else 0


def cached_tokens(usage: dict[str, Any]) -> int:
    # Chat Completions' `prompt_tokens_details`, the Responses API's `input_tokens_details`.
    details = usage.get("prompt_tokens_details") or usage.get("input_tokens_details")
    cached = _int(details.get("cached_tokens")) if isinstance(details, dict) else 0
    # DeepSeek reports hits separately; Anthropic-style upstreams use their own name.
    return (
        cached
        or _int(usage.get("prompt_cache_hit_tokens"))
        or _int(usage.get("cache_read_input_tokens"))
    )


def anthropic_usage(
    usage: dict[str, Any] | None, *, fallback_input: int = 0, under_counts: bool = False
) -> dict[str, Any]:
    """Anthropic `input_tokens` excludes cache reads and writes; OpenAI's prompt includes them.

    The upstream's figures are reported as they are. `fallback_input` (the proxy's estimate of
    the prompt) stands in only when no prompt count came, or, with `under_counts` (profiles
    known to count only part of the prompt: Ollama, whose count leaves out the tokens found in
    its KV cache), when the count is below a third of the estimate.
    """
    if not isinstance(usage, dict):
        return {
            "input_tokens": fallback_input,
            "output_tokens": 0,
            "cache_creation_input_tokens": 0,
            "cache_read_input_tokens": 0,
        }
    prompt = _int(usage.get("prompt_tokens")) or _int(usage.get("input_tokens"))
    cached = cached_tokens(usage)
    details = usage.get("prompt_tokens_details") or usage.get("input_tokens_details")
    written = _int(details.get("cache_write_tokens")) if isinstance(details, dict) else 0
    output = _int(usage.get("completion_tokens")) or _int(usage.get("output_tokens"))
    if fallback_input and (
        not prompt or (under_counts and prompt < fallback_input // UNDER_COUNT_RATIO)
    ):
        # Nothing reported, or far too little from an upstream known to under-count: Claude
        # Code's context meter and compaction need the real prompt size.
        prompt = fallback_input + cached + written
    result: dict[str, Any] = {
        "input_tokens": max(prompt - cached - written, 0),
        "output_tokens": output,
        "cache_creation_input_tokens": written,
        "cache_read_input_tokens": cached,
    }
    completion = usage.get("completion_tokens_details") or usage.get("output_tokens_details")
    reasoning = _int(completion.get("reasoning_tokens")) if isinstance(completion, dict) else 0
    if reasoning:
        # Informational, as in Anthropic's usage: output_tokens already includes them.
        result["output_tokens_details"] = {"thinking_tokens": reasoning}
    return result
