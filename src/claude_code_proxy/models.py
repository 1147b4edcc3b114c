"""Which upstream model serves a client's model id."""

from __future__ import annotations

from claude_code_proxy.config import Settings

# Aliases listed by GET /v1/models, so Claude Code's model picker offers them.
ALIASES = (
    ("claude-opus-4-5", "Opus", "big_model"),
    ("claude-sonnet-4-5", "Sonnet", "middle_model"),
    ("claude-haiku-4-5", "Haiku", "small_model"),
)


def map_model(client_model: str, settings: Settings) -> str:
    """haiku → SMALL, sonnet → MIDDLE, opus → BIG, any other `claude…` id → BIG,
    and any other id (e.g. `--model gpt-4.1`) is passed through unchanged."""
    lowered = client_model.lower()
    if "haiku" in lowered:
        return settings.small_model
    if "sonnet" in lowered:
        return settings.middle_model
    if "opus" in lowered or lowered.startswith(("claude", "anthropic")):
        return settings.big_model
    return client_model
