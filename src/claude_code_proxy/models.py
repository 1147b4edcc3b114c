"""Which upstream model serves a client's model id."""

from __future__ import annotations

import fnmatch

from claude_code_proxy.config import Settings

# Aliases listed by GET /v1/models, so Claude Code's model picker offers them.
ALIASES = (
    ("claude-opus-4-5", "Opus", "big_model"),
    ("claude-sonnet-4-5", "Sonnet", "middle_model"),
    ("claude-haiku-4-5", "Haiku", "small_model"),
)


def map_model(client_model: str, settings: Settings) -> str:
    """MODEL_MAP entries first (exact id, then glob patterns); then haiku → SMALL, sonnet → MIDDLE, opus → BIG, any other `claude…` id → BIG,
    and any other id (e.g. `--model gpt-4.1`) is passed through unchanged."""
    mapped = mapped_model(client_model, settings)
    return client_model if mapped is None else mapped


def mapped_model(client_model: str, settings: Settings) -> str | None:
    """The upstream model a mapping rule picks for this id; None when it is passed through."""
    mapped = settings.model_map.get(client_model)
    if mapped is not None:
        return mapped
    for pattern, target in settings.model_map.items():
        if any(ch in pattern for ch in "*?[") and fnmatch.fnmatchcase(client_model, pattern):
            return target
    lowered = client_model.lower()
    if "haiku" in lowered:
        return settings.small_model
    if "sonnet" in lowered:
        return settings.middle_model
    if "opus" in lowered or lowered.startswith(("claude", "anthropic")):
        return settings.big_model
    return None


def configured_models(settings: Settings) -> set[str]:
    """Every upstream model the configuration names (BIG/MIDDLE/SMALL and MODEL_MAP targets)."""
    return {
        settings.big_model,
        settings.middle_model,
        settings.small_model,
        *settings.model_map.values(),
    }
