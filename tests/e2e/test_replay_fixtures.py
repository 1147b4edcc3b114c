"""Replay request bodies the real Claude Code CLI sent through the request translator (fast).

The fixtures in ``tests/fixtures/claude_code/`` were captured by the e2e suite's capture mode
(``CCP_E2E_CAPTURE_DIR=/tmp/cap pytest -m e2e -k test_write``, then copy
``/tmp/cap/write-<version>.json``): one file per CLI version with every ``POST /v1/messages``
of the basic Write scenario, machine-specific data replaced by placeholders. A new CLI version
can be captured the same way and diffed against them.
"""

from __future__ import annotations

import itertools
import json
from pathlib import Path
from typing import Any

import pytest

from claude_code_proxy.translate import translate_request
from claude_code_proxy.translate.options import TranslationOptions
from prefix_stability import first_difference, messages_extend, prefix_share

FIXTURES = sorted((Path(__file__).resolve().parents[1] / "fixtures" / "claude_code").glob("*.json"))
OPENAI_PARAMS = frozenset(
    {"model", "messages", "max_tokens", "stream", "stream_options", "tools", "tool_choice"}
)
ANTHROPIC_ONLY_KEYS = frozenset(
    {
        "cache_control",
        "defer_loading",
        "input_schema",
        "tool_use_id",
        "signature",
        "thinking",
        "context_management",
        "output_config",
        "metadata",
        "system",
        "is_error",
    }
)
BILLING_HEADER = "x-anthropic-billing-header"


def load(path: Path) -> dict[str, Any]:
    """A fixture file: ``{cli_version, scenario, requests: [{method, path, headers, body}]}``."""
    data: dict[str, Any] = json.loads(path.read_text())
    return data


CASES = [
    pytest.param(path, i, id=f"{path.stem}-request{i}")
    for path in FIXTURES
    for i in range(len(load(path)["requests"]))
]


def keys_anywhere(value: Any) -> set[str]:
    """Every dict key at any depth."""
    if isinstance(value, dict):
        return set(value) | {k for v in value.values() for k in keys_anywhere(v)}
    if isinstance(value, list):
        return {k for v in value for k in keys_anywhere(v)}
    return set()


def block_text(content: Any) -> str:
    """Text of an Anthropic string-or-blocks content."""
    if isinstance(content, str):
        return content
    return "\n".join(b.get("text", "") for b in content if isinstance(b, dict))


@pytest.mark.parametrize("path", FIXTURES, ids=[p.stem for p in FIXTURES])
@pytest.mark.parametrize("in_place", [False, True], ids=["folded", "system-messages"])
def test_each_captured_request_starts_with_the_previous_one(path: Path, in_place: bool) -> None:
    """The CLI's consecutive requests translate to upstream requests that extend each other."""
    options = TranslationOptions(system_in_place=in_place)
    sent = [
        translate_request(r["body"], upstream_model="gpt-test", options=options).payload
        for r in load(path)["requests"]
    ]
    for before, after in itertools.pairwise(sent):
        assert messages_extend(before, after), first_difference(before, after)
        assert prefix_share(before, after) == 1.0, first_difference(before, after)


def test_fixtures_cover_two_versions() -> None:
    """At least two CLI versions are kept, each with the Write round trip (two requests)."""
    versions = {load(p)["cli_version"] for p in FIXTURES}
    assert len(versions) >= 2, f"fixtures: {[p.name for p in FIXTURES]}"
    for path in FIXTURES:
        fixture = load(path)
        assert len(fixture["requests"]) >= 2, path.name
        assert "unsanitized" not in fixture, f"{path.name}: {fixture['unsanitized']}"


@pytest.mark.parametrize(("path", "index"), CASES)
def test_replay_translates_cleanly(path: Path, index: int) -> None:
    """The captured body translates into a valid, purely OpenAI-shaped request."""
    body = load(path)["requests"][index]["body"]
    translated = translate_request(body, upstream_model="gpt-test")
    payload = translated.payload
    messages = payload["messages"]

    assert payload["model"] == "gpt-test"
    assert set(payload) <= OPENAI_PARAMS, sorted(set(payload) - OPENAI_PARAMS)
    # Tool schemas may name properties anything (TaskCreate has "metadata"): not scanned.
    shells = [
        {**tool, "function": {k: v for k, v in tool["function"].items() if k != "parameters"}}
        for tool in payload["tools"]
    ]
    assert not keys_anywhere([messages, shells]) & ANTHROPIC_ONLY_KEYS
    assert payload["max_tokens"] == body["max_tokens"]
    assert payload["stream"] is True and payload["stream_options"] == {"include_usage": True}
    assert translated.client_model == body["model"]

    # One system message first: the system blocks without the billing header. The role:system
    # messages of the conversation stay in place: `<system>` text in the user turn they follow
    # (the generic profile; docs/prefix-stability.md).
    assert messages[0]["role"] == "system"
    assert [m["role"] for m in messages[1:]].count("system") == 0
    system = messages[0]["content"]
    assert isinstance(system, str)
    assert BILLING_HEADER not in json.dumps(payload)
    for block in body["system"]:
        if not block["text"].startswith(BILLING_HEADER):
            assert block["text"] in system
    role_system = [m for m in body["messages"] if m["role"] == "system"]
    for message in role_system:
        text = block_text(message["content"])
        assert text not in system
        assert f"<system>\n{text}\n</system>" in block_text(messages[1]["content"])
    assert {m["role"] for m in messages} <= {"system", "user", "assistant", "tool"}

    # Tool messages come right after the assistant's tool calls, in call order.
    uses = [
        b
        for m in body["messages"]
        if m["role"] == "assistant" and isinstance(m["content"], list)
        for b in m["content"]
        if b.get("type") == "tool_use"
    ]
    results = {
        b["tool_use_id"]: b
        for m in body["messages"]
        if m["role"] == "user" and isinstance(m["content"], list)
        for b in m["content"]
        if b.get("type") == "tool_result"
    }
    calls_seen = 0
    for i, message in enumerate(messages):
        if message["role"] == "tool":
            assert messages[i - 1]["role"] in ("assistant", "tool")
        if message["role"] != "assistant" or not message.get("tool_calls"):
            continue
        calls = message["tool_calls"]
        following = messages[i + 1 : i + 1 + len(calls)]
        assert [m["role"] for m in following] == ["tool"] * len(calls)
        assert [m["tool_call_id"] for m in following] == [c["id"] for c in calls]
        for call, answer in zip(calls, following, strict=True):
            use = uses[calls_seen]
            calls_seen += 1
            assert call["function"]["name"] == use["name"]
            assert json.loads(call["function"]["arguments"]) == use["input"]
            assert answer["content"] == block_text(results[use["id"]]["content"])
    assert calls_seen == len(uses)

    # The user's prompt survives; tools are plain functions, the deferred placeholder is gone.
    assert any("create a file hello.txt" in json.dumps(m) for m in messages if m["role"] == "user")
    inline = [t for t in body["tools"] if not t.get("defer_loading")]
    tools = payload["tools"]
    assert [t["function"]["name"] for t in tools] == [t["name"] for t in inline]
    assert "DeferredToolPlaceholder" not in {t["function"]["name"] for t in tools}
    for tool, original in zip(tools, inline, strict=True):
        assert tool["type"] == "function"
        assert tool["function"]["parameters"] == original["input_schema"]
