"""Which upstream model serves a client's model id (the router's answer, by settings).

Kept for callers that think in one upstream (the doctor, tests): the answer is the first
target of the route the router picks, the same code path as `/v1/messages`.
"""

from __future__ import annotations

from claude_code_proxy.config import Settings
from claude_code_proxy.config_file import gateway_of
from claude_code_proxy.gateway.router import RequestFacts, route

# Aliases listed by GET /v1/models, so Claude Code's model picker offers them.
ALIASES = (
    ("claude-opus-4-5", "Opus", "big_model"),
    ("claude-sonnet-4-5", "Sonnet", "middle_model"),
    ("claude-haiku-4-5", "Haiku", "small_model"),
)


def map_model(client_model: str, settings: Settings) -> str:
    """MODEL_MAP entries first (exact id, then glob patterns); then haiku → SMALL, sonnet →
    MIDDLE, opus → BIG, any other `claude…` id → BIG, and any other id (e.g. `--model
    gpt-4.1`) is passed through unchanged."""
    return route(gateway_of(settings).routing, RequestFacts(client_model)).first.model


def mapped_model(client_model: str, settings: Settings) -> str | None:
    """The upstream model a mapping rule picks for this id; None when it is passed through."""
    decision = route(gateway_of(settings).routing, RequestFacts(client_model))
    return None if decision.rule == "passthrough" else decision.first.model


def configured_models(settings: Settings) -> set[str]:
    """Every upstream model the configuration names (its routes' and models' targets)."""
    return {target.model for target in gateway_of(settings).targets()}
