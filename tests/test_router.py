"""The router is pure: request facts in, ordered targets and the deciding rule out."""

from __future__ import annotations

import pytest

from claude_code_proxy.gateway.router import (
    LongContext,
    RequestFacts,
    RoutingTable,
    Target,
    route,
    tier_of,
)


def t(text: str) -> Target:
    return Target.parse(text)


TABLE = RoutingTable(
    providers=("openai", "local", "openrouter", "gemini"),
    models=(
        ("my-alias", (t("local/qwen3-coder:30b"), t("openai/gpt-4.1-mini"))),
        ("claude-opus-4-1*", (t("openai/o3"),)),
        ("claude-opus-4-1-exact", (t("openai/gpt-5"),)),
        ("gpt-?", (t("openai/gpt-4"),)),
    ),
    opus=(t("openai/gpt-5"), t("openrouter/openai/gpt-5")),
    sonnet=(t("openai/gpt-4.1"),),
    haiku=(t("local/qwen3-coder:30b"),),
    default=(t("openai/gpt-4.1"),),
    long_context=LongContext(60000, (t("gemini/gemini-2.5-pro"),)),
    image=(t("openai/gpt-4o"),),
    web_search=(t("openai/gpt-4.1-search"),),
)


def decide(model: str, **facts: object) -> tuple[list[str], str]:
    decision = route(TABLE, RequestFacts(model, **facts))  # type: ignore[arg-type]
    return [str(x) for x in decision.targets], decision.rule


def test_target_parse_splits_at_the_first_slash() -> None:
    target = Target.parse("openrouter/openai/gpt-5")
    assert (target.provider, target.model) == ("openrouter", "openai/gpt-5")
    assert str(target) == "openrouter/openai/gpt-5"


@pytest.mark.parametrize("bad", ["gpt-4", "/gpt-4", "openai/", " openai/gpt-4", ""])
def test_target_parse_refuses_malformed(bad: str) -> None:
    with pytest.raises(ValueError):
        Target.parse(bad)


def test_models_exact_id() -> None:
    assert decide("my-alias") == (
        ["local/qwen3-coder:30b", "openai/gpt-4.1-mini"],
        "models:my-alias",
    )


def test_models_exact_beats_an_earlier_glob() -> None:
    assert decide("claude-opus-4-1-exact") == (["openai/gpt-5"], "models:claude-opus-4-1-exact")


def test_models_glob_in_file_order() -> None:
    assert decide("claude-opus-4-1-20250805") == (["openai/o3"], "models:claude-opus-4-1*")
    assert decide("gpt-5") == (["openai/gpt-4"], "models:gpt-?")


def test_models_glob_beats_task_rules_and_tiers() -> None:
    assert decide("claude-opus-4-1-x", tokens=10**6, has_image=True)[1] == "models:claude-opus-4-1*"


def test_provider_model_id_goes_to_that_provider() -> None:
    assert decide("openrouter/anthropic/claude-sonnet-4") == (
        ["openrouter/anthropic/claude-sonnet-4"],
        "provider",
    )


def test_unknown_provider_prefix_passes_through_to_the_first_provider() -> None:
    assert decide("meta/llama-3") == (["openai/meta/llama-3"], "passthrough")


def test_provider_ids_can_be_switched_off() -> None:
    table = RoutingTable(providers=("upstream",), provider_ids=False, default=(t("upstream/x"),))
    decision = route(table, RequestFacts("upstream/gpt-4"))
    assert (str(decision.first), decision.rule) == ("upstream/upstream/gpt-4", "passthrough")


def test_long_context_above_the_threshold_only() -> None:
    assert decide("claude-sonnet-4-5", tokens=60001) == (["gemini/gemini-2.5-pro"], "long_context")
    assert decide("claude-sonnet-4-5", tokens=60000) == (["openai/gpt-4.1"], "sonnet")


def test_task_rules_in_order_long_context_image_web_search() -> None:
    assert decide("claude-haiku-4-5", tokens=70000, has_image=True, has_web_search=True)[1] == (
        "long_context"
    )
    assert decide("claude-haiku-4-5", has_image=True, has_web_search=True) == (
        ["openai/gpt-4o"],
        "image",
    )
    assert decide("claude-haiku-4-5", has_web_search=True) == (
        ["openai/gpt-4.1-search"],
        "web_search",
    )


@pytest.mark.parametrize(
    ("model", "targets", "rule"),
    [
        ("claude-opus-4-5", ["openai/gpt-5", "openrouter/openai/gpt-5"], "opus"),
        ("claude-sonnet-4-5-20250929", ["openai/gpt-4.1"], "sonnet"),
        ("claude-3-5-haiku-latest", ["local/qwen3-coder:30b"], "haiku"),
        ("Claude-HAIKU-4-5", ["local/qwen3-coder:30b"], "haiku"),
        ("claude-2.1", ["openai/gpt-4.1"], "default"),
        ("anthropic.claude-v2", ["openai/gpt-4.1"], "default"),
    ],
)
def test_tiers_and_default(model: str, targets: list[str], rule: str) -> None:
    assert decide(model) == (targets, rule)


def test_unset_tier_falls_back_to_default() -> None:
    table = RoutingTable(providers=("a",), default=(t("a/big"),), haiku=(t("a/small"),))
    assert route(table, RequestFacts("claude-opus-4-5")).rule == "default"
    assert route(table, RequestFacts("claude-sonnet-4-5")).rule == "default"
    assert str(route(table, RequestFacts("claude-haiku-4-5")).first) == "a/small"
    assert table.tier("opus") == table.default


def test_task_rules_do_not_apply_to_explicit_non_claude_ids() -> None:
    assert decide("gpt-4.1", tokens=10**6, has_image=True) == (["openai/gpt-4.1"], "passthrough")


def test_no_default_and_no_tier_passes_claude_ids_through() -> None:
    table = RoutingTable(providers=("a", "b"))
    decision = route(table, RequestFacts("claude-opus-4-5"))
    assert (str(decision.first), decision.rule) == ("a/claude-opus-4-5", "passthrough")


def test_tier_of() -> None:
    assert [tier_of(m) for m in ("x-haiku", "sonnet", "OPUS", "claude-x", "gpt")] == [
        "haiku",
        "sonnet",
        "opus",
        "default",
        None,
    ]


def test_image_rule_skipped_only_when_the_tiers_target_reads_images() -> None:
    from dataclasses import replace

    # Nothing known (today's behaviour): every tier's images go to the image route.
    assert decide("claude-sonnet-4-5", has_image=True) == (["openai/gpt-4o"], "image")
    seeing = replace(TABLE, vision=frozenset({t("openai/gpt-4.1"), t("openai/gpt-5")}))

    def rule(model: str) -> str:
        return route(seeing, RequestFacts(model, has_image=True)).rule

    assert rule("claude-sonnet-4-5") == "sonnet"  # gpt-4.1 reads images: it keeps them
    assert rule("claude-opus-4-5") == "opus"  # decided by the first target of the list
    assert rule("claude-3-unknown") == "default"  # default → openai/gpt-4.1
    assert rule("claude-haiku-4-5") == "image"  # local/qwen3-coder:30b is not known to
    # A tier left unset is served by default, so default's target decides.
    no_haiku = replace(seeing, haiku=())
    assert route(no_haiku, RequestFacts("claude-haiku-4-5", has_image=True)).rule == "default"
    # Without images the vision set changes nothing; long_context still comes first.
    assert route(seeing, RequestFacts("claude-haiku-4-5")).rule == "haiku"
    assert route(seeing, RequestFacts("claude-sonnet-4-5", 70000, True)).rule == "long_context"
