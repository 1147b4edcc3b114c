"""Every provider profile through the running proxy, with recorded-shape upstream streams.

For each provider (protocol.md C.1-C.12) a test drives a realistic stream (reasoning, text,
parallel tool calls, in the shape that provider really sends) and a realistic error through
the proxy served on a real socket, validates the Anthropic side with the strict SSE
validator, and checks the OpenAI request the mock upstream recorded.

The mock listens on `127.0.0.1:<port>`, so host-based profiles (api.openai.com, openrouter.ai,
`*:11434` …) are selected with a `PROVIDER_PROFILES` overrides file that maps `127.0.0.1:*` to
the same settings as the built-in provider entry; model-based profiles (`gpt-5*`, `o3*`,
`deepseek-reasoner`, `gemini-*`, `mistral*` …) need nothing but the model name.
"""

from __future__ import annotations

import itertools
import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx
import pytest

from claude_code_proxy.gateway.capabilities import (
    MODELS,
    PINNED,
    PROVIDERS,
    CapabilityTable,
    Profile,
    ProfileError,
)
from claude_code_proxy.translate.reasoning import SIGNATURE_PREFIX
from mock_upstream import (
    MockUpstream,
    chunk,
    error_response,
    json_response,
    make_usage,
    sse_response,
)
from sse_validator import (
    TOOL_ID_RE,
    ValidatedStream,
    validate_anthropic_error,
    validate_anthropic_message,
    validate_anthropic_stream,
)

if TYPE_CHECKING:
    from conftest import ProxyFactory, ProxyHandle

TIMEOUT = httpx.Timeout(20.0, connect=5.0)
CLIENT_HEADERS = {"x-api-key": "sk-ant-client-0001", "anthropic-version": "2023-06-01"}
UPSTREAM_KEY = "sk-upstream-test"  # conftest DEFAULT_PROXY_ENV["OPENAI_API_KEY"]

WEATHER_TOOL = {
    "name": "get_weather",
    "description": "Current weather for a city",
    "input_schema": {
        "type": "object",
        "properties": {"city": {"type": "string"}},
        "required": ["city"],
    },
}
READ_TOOL = {
    "name": "read_file",
    "description": "Read a file from disk",
    "input_schema": {
        "type": "object",
        "properties": {"path": {"type": "string"}},
        "required": ["path"],
    },
}
TOOLS = [WEATHER_TOOL, READ_TOOL]
CALL_A = {"name": "get_weather", "arguments": '{"city": "Oslo"}'}
CALL_B = {"name": "read_file", "arguments": '{"path": "/etc/hosts"}'}
EXPECTED_TOOLS = [("get_weather", {"city": "Oslo"}), ("read_file", {"path": "/etc/hosts"})]


# ------------------------------------------------------------------------------------------
# helpers
# ------------------------------------------------------------------------------------------


def builtin_provider(name: str) -> dict[str, Any]:
    """The built-in host entry for a provider, as JSON for a PROVIDER_PROFILES file."""
    for _pattern, overrides in PROVIDERS:
        if overrides.get("name") == name:
            return {
                key: sorted(value)
                if isinstance(value, frozenset)
                else list(value)
                if isinstance(value, tuple)
                else value
                for key, value in overrides.items()
            }
    raise KeyError(name)


def profiles_file(
    tmp_path: Path,
    providers: dict[str, dict[str, Any]] | None = None,
    models: dict[str, dict[str, Any]] | None = None,
) -> str:
    path = tmp_path / "profiles.json"
    data: dict[str, Any] = {}
    if providers is not None:
        data["providers"] = providers
    if models is not None:
        data["models"] = models
    path.write_text(json.dumps(data), encoding="utf-8")
    return str(path)


def as_provider(
    proxy_factory: ProxyFactory,
    tmp_path: Path,
    provider: str | None,
    model: str,
    **env: str | None,
) -> ProxyHandle:
    """A proxy whose upstream (the mock, on 127.0.0.1) is treated like `provider`."""
    if provider is not None:
        env.setdefault(
            "PROVIDER_PROFILES",
            profiles_file(tmp_path, {"127.0.0.1:*": builtin_provider(provider)}),
        )
    return proxy_factory(BIG_MODEL=model, MIDDLE_MODEL=model, SMALL_MODEL=model, **env)


def body(
    *,
    stream: bool = True,
    max_tokens: int = 4096,
    text: str = "Weather in Oslo, and show /etc/hosts.",
    tools: list[dict[str, Any]] | None = TOOLS,
    messages: list[dict[str, Any]] | None = None,
    **extra: Any,
) -> dict[str, Any]:
    out: dict[str, Any] = {
        "model": "claude-sonnet-4-5",
        "max_tokens": max_tokens,
        "messages": messages or [{"role": "user", "content": text}],
        **extra,
    }
    if tools:
        out["tools"] = tools
    if stream:
        out["stream"] = True
    return out


def post(proxy: ProxyHandle, payload: dict[str, Any], **headers: str) -> httpx.Response:
    return httpx.post(
        proxy.url("/v1/messages"),
        json=payload,
        headers={**CLIENT_HEADERS, **headers},
        timeout=TIMEOUT,
    )


def expect_stream(resp: httpx.Response, *, error: bool = False) -> ValidatedStream:
    assert resp.status_code == 200, resp.text
    assert resp.headers["content-type"].startswith("text/event-stream"), resp.headers
    return validate_anthropic_stream(resp.content, expect_error=error)


def expect_error(resp: httpx.Response, status: int, error_type: str) -> dict[str, Any]:
    assert resp.status_code == status, (resp.status_code, resp.text)
    return validate_anthropic_error(resp.content, status=status, error_type=error_type)


def sent(mock: MockUpstream, n: int = -1) -> dict[str, Any]:
    """The n-th chat request the upstream received, parsed."""
    requests = mock.chat_requests
    assert requests, "the upstream received no chat request"
    payload = requests[n].json
    assert isinstance(payload, dict), requests[n].body[:200]
    return payload


def block_kinds(stream: ValidatedStream) -> list[str]:
    return [b["type"] for b in stream.content]


def assert_tools(stream: ValidatedStream, expected: list[tuple[str, dict[str, Any]]]) -> None:
    uses = stream.tool_uses
    assert [(u["name"], u["input"]) for u in uses] == expected
    ids = [u["id"] for u in uses]
    assert len(set(ids)) == len(ids), ids
    for tool_id in ids:
        assert tool_id.startswith("toolu_") and TOOL_ID_RE.match(tool_id), tool_id


def next_turn(first: dict[str, Any], stream: ValidatedStream, **extra: Any) -> dict[str, Any]:
    """The follow-up request Claude Code sends: the reply echoed verbatim plus tool results."""
    results = [
        {"type": "tool_result", "tool_use_id": u["id"], "content": f"result of {u['name']}"}
        for u in stream.tool_uses
    ]
    messages = [
        *first["messages"],
        {"role": "assistant", "content": stream.content},
        {"role": "user", "content": results},
    ]
    return {**first, "messages": messages, **extra}


def assistant_messages(payload: dict[str, Any]) -> list[dict[str, Any]]:
    return [m for m in payload["messages"] if m["role"] == "assistant"]


def assert_ids_paired(payload: dict[str, Any]) -> list[str]:
    """Every assistant tool call is answered by tool messages with the same ids, in order."""
    messages = payload["messages"]
    call_ids: list[str] = []
    for position, message in enumerate(messages):
        calls = message.get("tool_calls") or []
        if not calls:
            continue
        ids = [c["id"] for c in calls]
        following = messages[position + 1 : position + 1 + len(ids)]
        assert [m["role"] for m in following] == ["tool"] * len(ids), messages
        assert sorted(m["tool_call_id"] for m in following) == sorted(ids)
        call_ids += ids
    return call_ids


def ck(delta: dict[str, Any] | None = None, finish: str | None = None, **kw: Any) -> dict[str, Any]:
    """A chunk with the provider's id and model (`chunk_id`, `model` keywords)."""
    return chunk(delta, finish_reason=finish, **kw)


def tool_delta(
    index: int | None,
    call_id: str | None = None,
    name: str | None = None,
    arguments: str = "",
    **extra: Any,
) -> dict[str, Any]:
    out: dict[str, Any] = dict(extra)
    if index is not None:
        out["index"] = index
    if call_id is not None:
        out["id"] = call_id
        out["type"] = "function"
    function: dict[str, Any] = {"arguments": arguments}
    if name is not None:
        function = {"name": name, **function}
    out["function"] = function
    return out


def streamed_call(
    index: int, call_id: str, call: dict[str, str], pieces: int, **kw: Any
) -> list[dict[str, Any]]:
    """OpenAI style: a header fragment, then the arguments in `pieces` fragments."""
    args = call["arguments"]
    size = max(1, -(-len(args) // pieces))
    out = [ck({"tool_calls": [tool_delta(index, call_id, call["name"], "")]}, **kw)]
    for start in range(0, len(args), size):
        piece = args[start : start + size]
        out.append(ck({"tool_calls": [tool_delta(index, arguments=piece)]}, **kw))
    return out


SUBSCHEMA_KEYS = frozenset(
    {"items", "additionalProperties", "propertyNames", "not", "contains"}
    | {"anyOf", "oneOf", "allOf", "prefixItems"}
)


def walk_schema(schema: Any, path: str = "$") -> Iterator[tuple[str, str, Any]]:
    """(path, keyword, value) for every keyword of every (sub)schema; property names skipped."""
    if isinstance(schema, list):
        for i, item in enumerate(schema):
            yield from walk_schema(item, f"{path}[{i}]")
        return
    if not isinstance(schema, dict):
        return
    for key, value in schema.items():
        yield path, key, value
        if key in ("properties", "$defs", "definitions", "patternProperties"):
            if isinstance(value, dict):
                for name, sub in value.items():
                    yield from walk_schema(sub, f"{path}.{key}.{name}")
        elif key in SUBSCHEMA_KEYS:
            yield from walk_schema(value, f"{path}.{key}")


# ------------------------------------------------------------------------------------------
# CapabilityTable: unit tests
# ------------------------------------------------------------------------------------------

LOCAL = "http://localhost:8081/v1"  # a local server on a port no provider rule knows


@pytest.mark.parametrize(
    ("model", "expected"),
    [
        (
            "gpt-5",
            {"max_tokens_field": "max_completion_tokens", "reasoning_param": "reasoning_effort"},
        ),
        ("gpt-5.1-codex", {"max_tokens_field": "max_completion_tokens"}),
        ("o3-mini", {"max_tokens_field": "max_completion_tokens"}),
        ("o1", {"max_tokens_field": "max_completion_tokens"}),
        ("o4-mini-2025-04-16", {"max_tokens_field": "max_completion_tokens"}),
        ("deepseek-reasoner", {"reasoning_echo": "reasoning_content", "stash_reasoning": True}),
        ("gemini-2.5-pro", {"schema_dialect": "gemini", "reasoning_param": "reasoning_effort"}),
        ("mistral-large-latest", {"tool_id_style": "mistral"}),
        ("devstral-small-2505", {"tool_id_style": "mistral"}),
        ("qwen3-32b", {"think_tags": True}),
        ("gpt-oss-120b", {"reasoning_echo": "reasoning", "reasoning_param": "reasoning_effort"}),
        # Router-style prefixes: the bare model name still matches.
        ("mistralai/mistral-large", {"tool_id_style": "mistral"}),
        ("openai/gpt-5-mini", {"max_tokens_field": "max_completion_tokens"}),
        ("google/gemini-2.5-flash", {"schema_dialect": "gemini"}),
    ],
)
def test_model_name_alone_picks_the_profile_on_an_unknown_host(
    model: str, expected: dict[str, Any]
) -> None:
    profile = CapabilityTable().profile(LOCAL, model)
    assert profile.name == "generic"  # no host rule matched
    for key, value in expected.items():
        assert getattr(profile, key) == value, (model, key)


def test_reasoning_models_drop_sampling_params_on_any_host() -> None:
    for model in ("gpt-5", "o3-mini", "o1-preview"):
        profile = CapabilityTable().profile(LOCAL, model)
        assert {"temperature", "top_p"} <= profile.drop_params, model


@pytest.mark.parametrize(
    ("base_url", "model", "in_place"),
    [
        ("https://api.openai.com/v1", "gpt-4.1", True),
        ("https://res.openai.azure.com", "gpt-4o", True),
        ("https://res.cognitiveservices.azure.com", "gpt-4o", True),
        ("https://res.services.ai.azure.com/models", "Llama-3.3-70B-Instruct", False),
        ("https://api.deepseek.com/v1", "deepseek-chat", False),
        ("https://generativelanguage.googleapis.com/v1beta/openai", "gemini-2.5-pro", False),
        ("https://openrouter.ai/api/v1", "anthropic/claude-sonnet-4.5", False),
        ("https://api.mistral.ai/v1", "mistral-large-latest", False),
        ("http://localhost:11434/v1", "qwen3:8b", False),
        ("http://localhost:8000/v1", "Qwen/Qwen3-32B", False),
        (LOCAL, "some-model", False),
    ],
)
def test_system_messages_stay_system_messages_only_where_the_api_keeps_them_in_place(
    base_url: str, model: str, in_place: bool
) -> None:
    profile = CapabilityTable().profile(base_url, model)
    assert profile.system_in_place is in_place
    assert profile.options(max_tokens_limit=None).system_in_place is in_place


def test_unknown_model_on_unknown_host_is_the_plain_openai_profile() -> None:
    assert CapabilityTable().profile(LOCAL, "llama-3.3-70b-versatile") == Profile()


@pytest.mark.parametrize(
    ("base_url", "name"),
    [
        ("https://api.openai.com/v1", "openai"),
        ("https://myres.openai.azure.com", "azure"),
        ("https://myres.cognitiveservices.azure.com/openai/v1", "azure"),
        ("https://openrouter.ai/api/v1", "openrouter"),
        ("https://api.deepseek.com/v1", "deepseek"),
        ("https://generativelanguage.googleapis.com/v1beta/openai", "gemini"),
        ("https://api.mistral.ai/v1", "mistral"),
        ("https://api.groq.com/openai/v1", "groq"),
        ("http://localhost:11434/v1", "ollama"),
        ("http://127.0.0.1:1234/v1", "lmstudio"),
        ("http://localhost:8080/v1", "llama.cpp"),
        ("http://localhost:30000/v1", "sglang"),
        ("http://gpu-box:8000/v1", "vllm"),
    ],
)
def test_host_picks_the_provider(base_url: str, name: str) -> None:
    assert CapabilityTable().profile(base_url, "some-model").name == name


def test_host_and_model_rules_combine() -> None:
    table = CapabilityTable()
    openai = table.profile("https://api.openai.com/v1", "gpt-5.1")
    assert openai.name == "openai" and openai.prompt_cache_key
    assert openai.max_tokens_field == "max_completion_tokens"
    assert "none" in openai.efforts and "xhigh" in openai.efforts
    router = table.profile("https://openrouter.ai/api/v1", "deepseek/deepseek-r1")
    assert router.reasoning_param == "openrouter"
    # OpenRouter speaks its own reasoning dialect whatever the model: the host's echo is pinned.
    assert router.reasoning_echo == "reasoning_details" and router.stash_reasoning
    gemini = table.profile("https://openrouter.ai/api/v1", "google/gemini-3-pro")
    assert gemini.schema_dialect == "gemini" and not gemini.thought_signatures
    assert table.profile("https://api.deepseek.com", "deepseek-chat").reasoning_param == "deepseek"


def test_user_overrides_file_is_applied(tmp_path: Path) -> None:
    path = profiles_file(
        tmp_path,
        providers={"gpu-box:*": {"name": "my-vllm", "reasoning_echo": "reasoning"}},
        models={
            "my-reasoner*": {"max_tokens_field": "max_completion_tokens", "drop_params": ["stop"]},
            "gpt-5*": {"efforts": ["low", "high"]},
        },
    )
    table = CapabilityTable.from_file(path)
    profile = table.profile("http://gpu-box:8001/v1", "my-reasoner-7b")
    assert profile.name == "my-vllm"
    assert profile.reasoning_echo == "reasoning"
    assert profile.max_tokens_field == "max_completion_tokens"
    assert profile.drop_params == frozenset({"stop"})
    # User model rules apply after the built-in ones.
    assert table.profile(LOCAL, "gpt-5").efforts == ("low", "high")
    assert table.profile(LOCAL, "gpt-5").max_tokens_field == "max_completion_tokens"
    # User host rules take precedence over the built-in host rules.
    override = profiles_file(tmp_path, providers={"api.openai.com": {"name": "mine"}})
    assert CapabilityTable.from_file(override).profile("https://api.openai.com/v1", "x").name == (
        "mine"
    )


@pytest.mark.parametrize(
    "content",
    [
        {"providers": {"127.0.0.1:*": {"max_token_field": "max_completion_tokens"}}},
        {"models": {"gpt-*": {"no_such_setting": True}}},
        {"models": {"gpt-*": {"drop_params": "temperature"}}},
        {"models": {"gpt-*": {"efforts": "high"}}},
        {"models": {"gpt-*": ["not", "an", "object"]}},
        {"provider": {}},
        ["not", "an", "object"],
    ],
)
def test_invalid_overrides_file_fails_at_load(tmp_path: Path, content: Any) -> None:
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(content), encoding="utf-8")
    with pytest.raises(ProfileError):
        CapabilityTable.from_file(str(path))


def test_unreadable_overrides_file_fails_at_load(tmp_path: Path) -> None:
    with pytest.raises(ProfileError):
        CapabilityTable.from_file(str(tmp_path / "missing.json"))
    broken = tmp_path / "broken.json"
    broken.write_text("{not json", encoding="utf-8")
    with pytest.raises(ProfileError):
        CapabilityTable.from_file(str(broken))


def test_invalid_overrides_file_stops_the_proxy_at_startup(
    proxy_factory: ProxyFactory, tmp_path: Path
) -> None:
    path = profiles_file(tmp_path, models={"gpt-*": {"bogus_key": 1}})
    with pytest.raises((ProfileError, RuntimeError), match="bogus_key"):
        proxy_factory(PROVIDER_PROFILES=path)


def test_learned_overrides_are_per_host_and_model_and_accumulate() -> None:
    table = CapabilityTable()
    base = "http://127.0.0.1:9999/v1"
    table.learn(base, "my-model", drop_params=["temperature"])
    table.learn(base, "my-model", drop_params=["top_p"], max_tokens_field="max_completion_tokens")
    table.learn(base, "my-model", include_usage=False, max_output_tokens=16384)
    profile = table.profile(base, "my-model")
    assert profile.drop_params == frozenset({"temperature", "top_p"})
    assert profile.max_tokens_field == "max_completion_tokens"
    assert profile.include_usage is False
    assert profile.max_output_tokens == 16384
    assert profile.options(max_tokens_limit=None).max_tokens_limit == 16384
    assert profile.options(max_tokens_limit=8000).max_tokens_limit == 8000
    # Another model on the same host, or the same model elsewhere, is unaffected.
    assert table.profile(base, "other-model") == Profile()
    assert table.profile("http://127.0.0.1:9998/v1", "my-model") == Profile()


def test_learned_drop_params_keep_the_built_in_ones() -> None:
    table = CapabilityTable()
    table.learn(LOCAL, "o3-mini", drop_params=["parallel_tool_calls"])
    drops = table.profile(LOCAL, "o3-mini").drop_params
    assert {"temperature", "top_p", "stop", "parallel_tool_calls"} <= drops


def test_builtin_tables_only_name_known_settings() -> None:
    for _pattern, overrides in (*PROVIDERS, *MODELS):
        for key in overrides:
            assert key in Profile.__dataclass_fields__ or key == PINNED, key
            for pinned in overrides.get(PINNED, ()):
                assert pinned in Profile.__dataclass_fields__, pinned


# ------------------------------------------------------------------------------------------
# OpenAI
# ------------------------------------------------------------------------------------------


def openai_stream(model: str) -> list[Any]:
    kw = {"model": model, "chunk_id": "chatcmpl-CAxk2v9", "system_fingerprint": None}
    out: list[Any] = [
        ck({"role": "assistant", "content": "", "refusal": None}, **kw, obfuscation="Xq3"),
        ck({"content": "I'll check"}, **kw, obfuscation="aa"),
        ck({"content": " both."}, **kw),
    ]
    out += streamed_call(0, "call_Bq9wXk2LmP0sTz7YcV4nR1aD", CALL_A, 3, **kw)
    out += streamed_call(1, "call_Vn8pQr3sTu6wXy9zAb2cDe5f", CALL_B, 4, **kw)
    out.append(ck({}, "tool_calls", **kw))
    out.append(ck(choices=[], usage=make_usage(2000, 120, cached=1536, reasoning=64), **kw))
    return out


def test_openai_reasoning_model_stream_and_request(
    proxy_factory: ProxyFactory, mock_upstream: MockUpstream, tmp_path: Path
) -> None:
    proxy = as_provider(proxy_factory, tmp_path, "openai", "gpt-5.1")
    mock_upstream.enqueue(sse_response(openai_stream("gpt-5.1-2025-11-13")))
    first = body(
        thinking={"type": "enabled", "budget_tokens": 20000},
        temperature=0.7,
        top_p=0.9,
        stop_sequences=["</done>"],
    )
    stream = expect_stream(post(proxy, first, **{"x-claude-code-session-id": "sess-0001"}))
    assert block_kinds(stream) == ["text", "tool_use", "tool_use"]
    assert stream.text == "I'll check both."
    assert_tools(stream, EXPECTED_TOOLS)
    assert stream.stop_reason == "tool_use"
    assert stream.usage["input_tokens"] == 2000 - 1536
    assert stream.usage["cache_read_input_tokens"] == 1536
    assert stream.usage["output_tokens"] == 120

    payload = sent(mock_upstream)
    assert payload["model"] == "gpt-5.1"
    assert payload["max_completion_tokens"] == 4096 and "max_tokens" not in payload
    for dropped in ("temperature", "top_p", "stop"):
        assert dropped not in payload, dropped
    assert payload["reasoning_effort"] == "high"
    assert payload["stream_options"] == {"include_usage": True}
    key = payload["prompt_cache_key"]
    assert isinstance(key, str) and 0 < len(key) <= 64

    # Same conversation → same cache key; another session → another key.
    mock_upstream.enqueue(sse_response(openai_stream("gpt-5.1")))
    expect_stream(
        post(proxy, next_turn(first, stream), **{"x-claude-code-session-id": "sess-0001"})
    )
    assert sent(mock_upstream)["prompt_cache_key"] == key
    assert_ids_paired(sent(mock_upstream))
    mock_upstream.enqueue(sse_response(openai_stream("gpt-5.1")))
    expect_stream(post(proxy, first, **{"x-claude-code-session-id": "sess-0002"}))
    assert sent(mock_upstream)["prompt_cache_key"] != key


def test_openai_classic_model_keeps_max_tokens_and_sampling(
    proxy_factory: ProxyFactory, mock_upstream: MockUpstream, tmp_path: Path
) -> None:
    proxy = as_provider(proxy_factory, tmp_path, "openai", "gpt-4.1")
    mock_upstream.enqueue(sse_response(openai_stream("gpt-4.1-2025-04-14")))
    first = body(temperature=0.7, top_p=0.9, stop_sequences=["</done>"])
    stream = expect_stream(post(proxy, first))
    assert_tools(stream, EXPECTED_TOOLS)
    payload = sent(mock_upstream)
    assert payload["max_tokens"] == 4096 and "max_completion_tokens" not in payload
    assert payload["temperature"] == 0.7 and payload["top_p"] == 0.9
    assert payload["stop"] == ["</done>"]
    assert "reasoning_effort" not in payload


def test_openai_o_series_request_shape(
    proxy_factory: ProxyFactory, mock_upstream: MockUpstream
) -> None:
    proxy = proxy_factory(BIG_MODEL="o3-mini", MIDDLE_MODEL="o3-mini")
    mock_upstream.enqueue(sse_response(openai_stream("o3-mini-2025-01-31")))
    expect_stream(post(proxy, body(temperature=0.2, top_p=0.5, stop_sequences=["STOP"])))
    payload = sent(mock_upstream)
    assert payload["max_completion_tokens"] == 4096 and "max_tokens" not in payload
    for dropped in ("temperature", "top_p", "stop"):
        assert dropped not in payload, dropped


EFFORT_CASES = [
    # (model, thinking, output_config, expected reasoning_effort or None for "absent")
    ("gpt-5", {"type": "enabled", "budget_tokens": 1024}, None, "low"),
    ("gpt-5", {"type": "enabled", "budget_tokens": 2048}, None, "low"),
    ("gpt-5", {"type": "enabled", "budget_tokens": 8000}, None, "medium"),
    ("gpt-5", {"type": "enabled", "budget_tokens": 16384}, None, "medium"),
    ("gpt-5", {"type": "enabled", "budget_tokens": 32000}, None, "high"),
    ("gpt-5", {"type": "adaptive"}, {"effort": "low"}, "low"),
    ("gpt-5", {"type": "adaptive"}, {"effort": "xhigh"}, "high"),
    ("gpt-5", {"type": "adaptive"}, {"effort": "max"}, "high"),
    ("gpt-5", {"type": "adaptive"}, None, None),
    ("gpt-5", None, None, None),
    # gpt-5 cannot switch reasoning off: leave it at its default.
    ("gpt-5", {"type": "disabled"}, None, None),
    ("gpt-5.1", {"type": "disabled"}, None, "none"),
    ("gpt-5.1", {"type": "adaptive"}, {"effort": "xhigh"}, "xhigh"),
    ("gpt-5.1", {"type": "adaptive"}, {"effort": "max"}, "xhigh"),
    ("gpt-5.1", {"type": "adaptive"}, {"effort": "medium"}, "medium"),
    # output_config.effort takes precedence over the budget.
    ("gpt-5.1", {"type": "enabled", "budget_tokens": 1024}, {"effort": "high"}, "high"),
    ("o3-mini", {"type": "adaptive"}, {"effort": "max"}, "high"),
    ("o3-mini", {"type": "disabled"}, None, None),
    ("o4-mini", {"type": "enabled", "budget_tokens": 5000}, None, "medium"),
    ("gpt-5-chat-latest", {"type": "enabled", "budget_tokens": 5000}, None, None),
    ("gpt-4.1", {"type": "enabled", "budget_tokens": 5000}, None, None),
    ("gemini-2.5-pro", {"type": "enabled", "budget_tokens": 30000}, None, "high"),
    ("gemini-2.5-pro", {"type": "disabled"}, None, None),
]


@pytest.mark.parametrize(("model", "thinking", "output_config", "expected"), EFFORT_CASES)
def test_reasoning_effort_mapping(
    proxy_factory: ProxyFactory,
    mock_upstream: MockUpstream,
    model: str,
    thinking: dict[str, Any] | None,
    output_config: dict[str, Any] | None,
    expected: str | None,
) -> None:
    proxy = proxy_factory(BIG_MODEL=model, MIDDLE_MODEL=model)
    extra: dict[str, Any] = {}
    if thinking is not None:
        extra["thinking"] = thinking
    if output_config is not None:
        extra["output_config"] = output_config
    expect_stream(post(proxy, body(tools=None, text="hi", **extra)))
    payload = sent(mock_upstream)
    if expected is None:
        assert "reasoning_effort" not in payload, payload.get("reasoning_effort")
    else:
        assert payload.get("reasoning_effort") == expected
    assert "thinking" not in payload and "reasoning" not in payload


def test_openai_rate_limit_error(
    proxy_factory: ProxyFactory, mock_upstream: MockUpstream, tmp_path: Path
) -> None:
    proxy = as_provider(proxy_factory, tmp_path, "openai", "gpt-5.1")
    mock_upstream.enqueue(
        error_response(
            429,
            "Rate limit reached for gpt-5.1 in organization org-abc on tokens per min (TPM): "
            "Limit 30000, Used 29871, Requested 1200. Please try again in 2m30s.",
            "tokens",
            code="rate_limit_exceeded",
            headers={"x-ratelimit-reset-tokens": "2m30s", "x-ratelimit-remaining-tokens": "0"},
        )
    )
    resp = post(proxy, body())
    err = expect_error(resp, 429, "rate_limit_error")
    assert "Rate limit reached" in err["message"]
    assert resp.headers.get("retry-after") == "150"
    assert len(mock_upstream.chat_requests) == 1  # too long to wait: the client retries


def test_openai_refusal_and_think_tags_stay_text(
    proxy_factory: ProxyFactory, mock_upstream: MockUpstream, tmp_path: Path
) -> None:
    """OpenAI never streams `<think>`: the profile leaves such content alone."""
    proxy = as_provider(proxy_factory, tmp_path, "openai", "gpt-4.1")
    kw = {"model": "gpt-4.1"}
    mock_upstream.enqueue(
        sse_response(
            [
                ck({"role": "assistant", "content": ""}, **kw),
                ck({"content": "<think>literal</think> tags"}, **kw),
                ck({}, "stop", **kw),
                ck(choices=[], usage=make_usage(10, 5), **kw),
            ]
        )
    )
    stream = expect_stream(post(proxy, body(tools=None)))
    assert block_kinds(stream) == ["text"]
    assert stream.text == "<think>literal</think> tags"


# ------------------------------------------------------------------------------------------
# Azure OpenAI
# ------------------------------------------------------------------------------------------

AZURE_VERSION = "2024-10-21"


def azure_stream() -> list[Any]:
    filter_ok = {
        "hate": {"filtered": False, "severity": "safe"},
        "self_harm": {"filtered": False, "severity": "safe"},
        "sexual": {"filtered": False, "severity": "safe"},
        "violence": {"filtered": False, "severity": "safe"},
    }
    prompt_filter = {
        "id": "",
        "object": "",
        "created": 0,
        "model": "",
        "choices": [],
        "prompt_filter_results": [{"prompt_index": 0, "content_filter_results": filter_ok}],
    }
    kw = {"model": "gpt-4o-2024-11-20", "chunk_id": "chatcmpl-AZ1x"}

    def with_filter(c: dict[str, Any]) -> dict[str, Any]:
        c["choices"][0]["content_filter_results"] = filter_ok
        return c

    out: list[Any] = [
        prompt_filter,
        ck({"role": "assistant", "content": ""}, **kw),
        with_filter(ck({"content": "Looking"}, **kw)),
        with_filter(ck({"content": " it up."}, **kw)),
    ]
    out += streamed_call(0, "call_az0pQ1", CALL_A, 2, **kw)
    out += streamed_call(1, "call_az1rS2", CALL_B, 2, **kw)
    out.append(ck({}, "tool_calls", **kw))
    # Azure's trailing content-filter-only chunk, then usage.
    out.append(
        {
            "id": "chatcmpl-AZ1x",
            "object": "chat.completion.chunk",
            "created": 1766000000,
            "model": "gpt-4o-2024-11-20",
            "choices": [
                {
                    "index": 0,
                    "delta": {},
                    "finish_reason": None,
                    "content_filter_offsets": {"check_offset": 0, "start_offset": 0},
                    "content_filter_results": filter_ok,
                }
            ],
        }
    )
    out.append(ck(choices=[], usage=make_usage(400, 60, cached=128), **kw))
    return out


@pytest.mark.parametrize(
    ("base_path", "expected_path", "api_version"),
    [
        ("", "/openai/deployments/my-gpt4o/chat/completions", True),
        ("/openai", "/openai/deployments/my-gpt4o/chat/completions", True),
        (
            "/openai/deployments/my-gpt4o",
            "/openai/deployments/my-gpt4o/chat/completions",
            True,
        ),
        (
            "/openai/deployments/my-gpt4o/chat/completions",
            "/openai/deployments/my-gpt4o/chat/completions",
            True,
        ),
        ("/openai/v1", "/openai/v1/chat/completions", False),
    ],
)
def test_azure_base_url_forms_and_content_filter_chunks(
    proxy_factory: ProxyFactory,
    mock_upstream: MockUpstream,
    tmp_path: Path,
    base_path: str,
    expected_path: str,
    api_version: bool,
) -> None:
    proxy = as_provider(
        proxy_factory,
        tmp_path,
        "azure",
        "my-gpt4o",
        OPENAI_BASE_URL=mock_upstream.origin + base_path,
        AZURE_API_VERSION=AZURE_VERSION,
    )
    mock_upstream.enqueue(sse_response(azure_stream()), path=expected_path)
    stream = expect_stream(post(proxy, body()))
    assert block_kinds(stream) == ["text", "tool_use", "tool_use"]
    assert stream.text == "Looking it up."
    assert_tools(stream, EXPECTED_TOOLS)
    assert stream.stop_reason == "tool_use"
    assert stream.usage["input_tokens"] == 400 - 128

    request = mock_upstream.last_request
    assert request.path == expected_path
    if api_version:
        assert request.query == {"api-version": AZURE_VERSION}
    else:
        assert "api-version" not in request.query
    assert request.headers.get("api-key") == UPSTREAM_KEY
    assert "authorization" not in request.headers
    assert request.json["model"] == "my-gpt4o"


def test_azure_content_filter_finish_is_a_refusal(
    proxy_factory: ProxyFactory, mock_upstream: MockUpstream, tmp_path: Path
) -> None:
    proxy = as_provider(
        proxy_factory,
        tmp_path,
        "azure",
        "my-gpt4o",
        OPENAI_BASE_URL=mock_upstream.origin,
        AZURE_API_VERSION=AZURE_VERSION,
    )
    kw = {"model": "gpt-4o-2024-11-20"}
    path = "/openai/deployments/my-gpt4o/chat/completions"
    mock_upstream.enqueue(
        sse_response(
            [
                azure_stream()[0],
                ck({"role": "assistant", "content": ""}, **kw),
                ck({"content": "Here is how"}, **kw),
                ck({}, "content_filter", **kw),
                ck(choices=[], usage=make_usage(50, 3), **kw),
            ]
        ),
        path=path,
    )
    stream = expect_stream(post(proxy, body(tools=None)))
    assert stream.stop_reason == "refusal"
    assert stream.text == "Here is how"


def test_azure_prompt_blocked_by_content_filter(
    proxy_factory: ProxyFactory, mock_upstream: MockUpstream, tmp_path: Path
) -> None:
    proxy = as_provider(
        proxy_factory,
        tmp_path,
        "azure",
        "my-gpt4o",
        OPENAI_BASE_URL=mock_upstream.origin,
        AZURE_API_VERSION=AZURE_VERSION,
    )
    blocked = {
        "error": {
            "message": "The response was filtered due to the prompt triggering Azure OpenAI's "
            "content management policy. Please modify your prompt and retry.",
            "type": None,
            "param": "prompt",
            "code": "content_filter",
            "status": 400,
            "innererror": {
                "code": "ResponsibleAIPolicyViolation",
                "content_filter_result": {"violence": {"filtered": True, "severity": "medium"}},
            },
        }
    }
    path = "/openai/deployments/my-gpt4o/chat/completions"
    mock_upstream.enqueue(json_response(blocked, 400), path=path)
    err = expect_error(post(proxy, body()), 400, "invalid_request_error")
    assert "content management policy" in err["message"]
    assert len(mock_upstream.requests) == 1


# ------------------------------------------------------------------------------------------
# Ollama
# ------------------------------------------------------------------------------------------


def ollama_stream(model: str = "qwen3:8b", finish: str = "stop") -> list[Any]:
    kw = {"model": model, "chunk_id": "chatcmpl-712"}
    reasoning = ["Two", " lookups", " needed", "."]
    out: list[Any] = [
        ck({"role": "assistant", "content": "", "reasoning": r}, **kw) for r in reasoning
    ]
    out += [ck({"role": "assistant", "content": piece}, **kw) for piece in ("On it", ".")]
    # Each call arrives whole in one chunk, with its index and a call_ + 8 lowercase id.
    out.append(
        ck(
            {
                "role": "assistant",
                "content": "",
                "tool_calls": [
                    {"id": "call_k3x9ab2q", "index": 0, "type": "function", "function": CALL_A}
                ],
            },
            **kw,
        )
    )
    out.append(
        ck(
            {
                "role": "assistant",
                "content": "",
                "tool_calls": [
                    {"id": "call_p0z7mn4w", "index": 1, "type": "function", "function": CALL_B}
                ],
            },
            **kw,
        )
    )
    out.append(ck({"role": "assistant", "content": ""}, finish, **kw))
    out.append(
        ck(
            choices=[],
            usage={"prompt_tokens": 310, "completion_tokens": 42, "total_tokens": 352},
            **kw,
        )
    )
    return out


@pytest.mark.parametrize("finish", ["stop", "tool_calls"])
def test_ollama_reasoning_whole_tool_calls_and_next_turn(
    proxy_factory: ProxyFactory, mock_upstream: MockUpstream, tmp_path: Path, finish: str
) -> None:
    proxy = as_provider(proxy_factory, tmp_path, "ollama", "qwen3:8b")
    mock_upstream.enqueue(sse_response(ollama_stream(finish=finish)))
    first = body(temperature=0.6)
    stream = expect_stream(post(proxy, first))
    assert block_kinds(stream) == ["thinking", "text", "tool_use", "tool_use"]
    assert stream.thinking == "Two lookups needed."
    assert stream.text == "On it."
    assert_tools(stream, EXPECTED_TOOLS)
    assert stream.stop_reason == "tool_use"  # even though old Ollama said "stop"
    assert stream.usage["input_tokens"] == 310 and stream.usage["output_tokens"] == 42
    payload = sent(mock_upstream)
    assert payload["max_tokens"] == 4096 and "max_completion_tokens" not in payload
    assert payload["temperature"] == 0.6
    assert payload["stream_options"] == {"include_usage": True}

    mock_upstream.enqueue(
        sse_response(
            [
                ck({"role": "assistant", "content": "It is 12°C in Oslo."}, model="qwen3:8b"),
                ck({}, "stop", model="qwen3:8b"),
                ck(choices=[], usage=make_usage(420, 9)),
            ]
        )
    )
    final = expect_stream(post(proxy, next_turn(first, stream)))
    assert final.text == "It is 12°C in Oslo." and final.stop_reason == "end_turn"
    second = sent(mock_upstream)
    (assistant,) = assistant_messages(second)
    assert assistant["reasoning"] == "Two lookups needed."  # Ollama takes `reasoning` back
    assert assistant["content"] == "On it."
    assert [json.loads(c["function"]["arguments"]) for c in assistant["tool_calls"]] == [
        {"city": "Oslo"},
        {"path": "/etc/hosts"},
    ]
    assert_ids_paired(second)


@pytest.mark.parametrize("streaming", [True, False])
@pytest.mark.parametrize(("provider", "corrected"), [("ollama", True), (None, False)])
def test_a_low_prompt_count_is_corrected_only_for_ollama(
    proxy_factory: ProxyFactory,
    mock_upstream: MockUpstream,
    tmp_path: Path,
    provider: str | None,
    corrected: bool,
    streaming: bool,
) -> None:
    """5 prompt tokens for a ~5000-token request: Ollama's KV-cache under-count, or the truth."""
    proxy = as_provider(proxy_factory, tmp_path, provider, "qwen3:8b")
    usage = {"prompt_tokens": 5, "completion_tokens": 3, "total_tokens": 8}
    if streaming:
        chunks = [ck({"content": "ok"}), ck({}, "stop"), ck(choices=[], usage=usage)]
        mock_upstream.enqueue(sse_response(chunks))
    else:
        message = {"role": "assistant", "content": "ok"}
        choice = {"index": 0, "message": message, "finish_reason": "stop"}
        mock_upstream.enqueue(json_response({"choices": [choice], "usage": usage}))
    request = body(stream=streaming, text="lorem ipsum dolor sit amet " * 700, tools=None)
    resp = post(proxy, request)
    if streaming:
        reported = expect_stream(resp).usage
    else:
        assert resp.status_code == 200, resp.text
        reported = validate_anthropic_message(resp.content)["usage"]
    assert reported["output_tokens"] == 3
    if corrected:
        assert reported["input_tokens"] > 1000  # the proxy's estimate of the prompt
    else:
        assert reported["input_tokens"] == 5  # the upstream's figure, unchanged


def test_ollama_model_not_found(
    proxy_factory: ProxyFactory, mock_upstream: MockUpstream, tmp_path: Path
) -> None:
    proxy = as_provider(proxy_factory, tmp_path, "ollama", "qwen3:8b")
    mock_upstream.enqueue(
        error_response(404, 'model "qwen3:8b" not found, try pulling it first', "not_found_error")
    )
    err = expect_error(post(proxy, body()), 404, "not_found_error")
    assert "try pulling it first" in err["message"]


# ------------------------------------------------------------------------------------------
# vLLM
# ------------------------------------------------------------------------------------------


def vllm_stream(ids: tuple[str, str], model: str = "Qwen/Qwen3-32B") -> list[Any]:
    kw = {"model": model, "chunk_id": "chatcmpl-5b1e0c"}
    out: list[Any] = [ck({"role": "assistant", "content": ""}, **kw)]
    out += [ck({"reasoning": piece}, **kw) for piece in ("The user", " wants", " two things.")]
    out += [ck({"content": piece}, **kw) for piece in ("\n\n", "Sure", ".")]
    out += streamed_call(0, ids[0], CALL_A, 3, **kw)
    out += streamed_call(1, ids[1], CALL_B, 2, **kw)
    finish = ck({}, "tool_calls", **kw)
    finish["choices"][0]["stop_reason"] = None
    out.append(finish)
    out.append(ck(choices=[], usage=make_usage(900, 77), **kw))
    return out


@pytest.mark.parametrize(
    "ids",
    [
        (
            "chatcmpl-tool-7d2f64b1e8c94a0b9c3e5f1a2b3c4d5e",
            "chatcmpl-tool-0a9b8c7d6e5f4a3b2c1d0e9f8a7b6c5d",
        ),
        ("functions.get_weather:0", "functions.read_file:1"),  # Kimi-K2 ids violate Anthropic's
    ],
    ids=["chatcmpl-tool", "kimi"],
)
def test_vllm_reasoning_tool_ids_and_next_turn(
    proxy_factory: ProxyFactory, mock_upstream: MockUpstream, tmp_path: Path, ids: tuple[str, str]
) -> None:
    proxy = as_provider(proxy_factory, tmp_path, "vllm", "Qwen/Qwen3-32B")
    mock_upstream.enqueue(sse_response(vllm_stream(ids)))
    first = body()
    stream = expect_stream(post(proxy, first))
    assert block_kinds(stream) == ["thinking", "text", "tool_use", "tool_use"]
    assert stream.thinking == "The user wants two things."
    assert stream.text.strip() == "Sure."
    assert_tools(stream, EXPECTED_TOOLS)  # toolu_ ids, Anthropic-legal, never the upstream's
    assert not {u["id"] for u in stream.tool_uses} & set(ids)
    assert stream.stop_reason == "tool_use"

    mock_upstream.enqueue(sse_response(vllm_stream(ids)))
    expect_stream(post(proxy, next_turn(first, stream)))
    second = sent(mock_upstream)
    (assistant,) = assistant_messages(second)
    assert assistant["reasoning"] == "The user wants two things."  # vLLM reads `reasoning`
    # The upstream gets its own ids back, byte for byte (docs/tool-ids.md).
    assert assert_ids_paired(second) == list(ids)


def test_vllm_stop_reason_names_the_stop_sequence(
    proxy_factory: ProxyFactory, mock_upstream: MockUpstream, tmp_path: Path
) -> None:
    proxy = as_provider(proxy_factory, tmp_path, "vllm", "meta-llama/Llama-3.3-70B-Instruct")
    kw = {"model": "meta-llama/Llama-3.3-70B-Instruct"}
    finish = ck({}, "stop", **kw)
    finish["choices"][0]["stop_reason"] = "</answer>"
    mock_upstream.enqueue(
        sse_response(
            [ck({"role": "assistant", "content": ""}, **kw), ck({"content": "42"}, **kw), finish]
        )
    )
    stream = expect_stream(post(proxy, body(tools=None, stop_sequences=["</answer>", "###"])))
    assert stream.stop_reason == "stop_sequence"
    assert stream.stop_sequence == "</answer>"
    assert sent(mock_upstream)["stop"] == ["</answer>", "###"]


def test_vllm_flat_error_without_tool_parser(
    proxy_factory: ProxyFactory, mock_upstream: MockUpstream, tmp_path: Path
) -> None:
    proxy = as_provider(proxy_factory, tmp_path, "vllm", "Qwen/Qwen3-32B")
    flat = {
        "object": "error",
        "message": '"auto" tool choice requires --enable-auto-tool-choice and '
        "--tool-call-parser to be set",
        "type": "BadRequestError",
        "param": None,
        "code": 400,
    }
    mock_upstream.enqueue(json_response(flat, 400))
    err = expect_error(
        post(proxy, body(tool_choice={"type": "auto"})), 400, "invalid_request_error"
    )
    assert "--enable-auto-tool-choice" in err["message"]
    assert len(mock_upstream.chat_requests) == 1  # no parameter to fix: not retried


# ------------------------------------------------------------------------------------------
# llama.cpp server
# ------------------------------------------------------------------------------------------


def llamacpp_stream() -> list[Any]:
    kw = {"model": "Qwen3-8B-Q4_K_M.gguf", "chunk_id": "chatcmpl-Xr0mQk3uN2sT9vB4yW7zL1pA6cD8eF5g"}
    out: list[Any] = [ck({"role": "assistant", "content": None}, **kw)]
    out += [ck({"reasoning_content": piece}, **kw) for piece in ("Check", " weather", " first.")]
    out += [ck({"content": piece}, **kw) for piece in ("Calling", " tools.")]
    out += streamed_call(0, "qLmW8eR3tYuI9oP2aSdF6gHjK1zXcV0b", CALL_A, 2, **kw)
    out += streamed_call(1, "nBvC5xZ7lKjH4gFdS1aQ9wErT3yUiO6p", CALL_B, 2, **kw)
    timings = {"prompt_n": 210, "prompt_ms": 812.4, "predicted_n": 64, "predicted_ms": 2051.7}
    out.append(ck({}, "tool_calls", **kw, timings=timings))
    usage = {
        "completion_tokens": 64,
        "prompt_tokens": 210,
        "total_tokens": 274,
        "prompt_tokens_details": {"cached_tokens": 200},
    }
    out.append(ck(choices=[], usage=usage, **kw, timings=timings))
    return out


def test_llamacpp_reasoning_content_and_tools(
    proxy_factory: ProxyFactory, mock_upstream: MockUpstream, tmp_path: Path
) -> None:
    proxy = as_provider(proxy_factory, tmp_path, "llama.cpp", "qwen3-8b")
    mock_upstream.enqueue(sse_response(llamacpp_stream()))
    stream = expect_stream(post(proxy, body(top_k=40)))
    assert block_kinds(stream) == ["thinking", "text", "tool_use", "tool_use"]
    assert stream.thinking == "Check weather first."
    assert stream.text == "Calling tools."
    assert_tools(stream, EXPECTED_TOOLS)
    assert stream.usage["cache_read_input_tokens"] == 200
    assert stream.usage["input_tokens"] == 10


def test_llamacpp_context_overflow_error(
    proxy_factory: ProxyFactory, mock_upstream: MockUpstream, tmp_path: Path
) -> None:
    proxy = as_provider(proxy_factory, tmp_path, "llama.cpp", "qwen3-8b")
    mock_upstream.enqueue(
        json_response(
            {
                "error": {
                    "code": 400,
                    "message": "request (5012 tokens) exceeds the available context size "
                    "(4096 tokens), try increasing it",
                    "type": "exceed_context_size_error",
                    "n_prompt_tokens": 5012,
                    "n_ctx": 4096,
                }
            },
            400,
        )
    )
    err = expect_error(post(proxy, body()), 400, "invalid_request_error")
    assert err["message"] == "prompt is too long: 5012 tokens > 4096 maximum"


def test_llamacpp_loading_model_is_overloaded(
    proxy_factory: ProxyFactory, mock_upstream: MockUpstream, tmp_path: Path
) -> None:
    proxy = as_provider(proxy_factory, tmp_path, "llama.cpp", "qwen3-8b", MAX_RETRIES="0")
    mock_upstream.enqueue(error_response(503, "Loading model", "unavailable_error"))
    expect_error(post(proxy, body()), 529, "overloaded_error")


# ------------------------------------------------------------------------------------------
# LM Studio: <think> inside content, split anywhere
# ------------------------------------------------------------------------------------------

THINK_CONTENT = "<think>\nThe user wants weather.\n</think>\n\nChecking now."


def split_at(text: str, cuts: list[int]) -> list[str]:
    points = [0, *sorted(set(cuts)), len(text)]
    return [text[a:b] for a, b in itertools.pairwise(points) if text[a:b]]


@pytest.mark.parametrize(
    "cuts",
    [
        [],
        [3],  # "<th" | "ink>"
        [7, 20, 30],  # inside the reasoning
        [37, 41],  # "</th" | "ink>"
        [7, 8, 31, 32, 40, 42],  # token by token: "<think>" "\n" … "</think>" "\n\n" …
        list(range(1, len(THINK_CONTENT))),  # one character per chunk
    ],
    ids=["whole", "open-tag-split", "body-split", "close-tag-split", "per-token", "per-char"],
)
def test_lmstudio_think_tags_split_across_chunks(
    proxy_factory: ProxyFactory, mock_upstream: MockUpstream, tmp_path: Path, cuts: list[int]
) -> None:
    """The blocks must not depend on where the chunks split: the newlines separating
    `</think>` from the answer are dropped when they arrive with the tag, so they must be
    dropped when they arrive in the next chunk too (token-by-token servers always do that)."""
    proxy = as_provider(proxy_factory, tmp_path, "lmstudio", "qwen/qwen3-8b")
    kw = {"model": "qwen/qwen3-8b", "chunk_id": "chatcmpl-lms0001"}
    chunks: list[Any] = [ck({"role": "assistant", "content": ""}, **kw)]
    chunks += [ck({"content": piece}, **kw) for piece in split_at(THINK_CONTENT, cuts)]
    chunks += streamed_call(0, "317843921", CALL_A, 1, **kw)
    chunks += streamed_call(1, "902114783", CALL_B, 1, **kw)
    chunks.append(ck({}, "tool_calls", **kw))
    chunks.append(ck(choices=[], usage=make_usage(120, 40), **kw))
    mock_upstream.enqueue(sse_response(chunks))
    stream = expect_stream(post(proxy, body()))
    assert block_kinds(stream) == ["thinking", "text", "tool_use", "tool_use"]
    assert stream.thinking.strip() == "The user wants weather."
    assert stream.text == "Checking now."
    assert "<think>" not in stream.text and "</think>" not in stream.thinking
    assert_tools(stream, EXPECTED_TOOLS)


def test_lmstudio_no_model_loaded(
    proxy_factory: ProxyFactory, mock_upstream: MockUpstream, tmp_path: Path
) -> None:
    proxy = as_provider(proxy_factory, tmp_path, "lmstudio", "qwen/qwen3-8b")
    mock_upstream.enqueue(
        json_response(
            {
                "error": "No models loaded. Please load a model in the developer page or use "
                "the `lms load` command."
            },
            400,
        )
    )
    err = expect_error(post(proxy, body()), 400, "invalid_request_error")
    assert "No models loaded" in err["message"]


# ------------------------------------------------------------------------------------------
# SGLang
# ------------------------------------------------------------------------------------------


def test_sglang_reasoning_and_parallel_tools(
    proxy_factory: ProxyFactory, mock_upstream: MockUpstream, tmp_path: Path
) -> None:
    proxy = as_provider(proxy_factory, tmp_path, "sglang", "Qwen/Qwen3-30B-A3B")
    kw = {"model": "Qwen/Qwen3-30B-A3B", "chunk_id": "9f1c2d3e4b5a"}
    chunks: list[Any] = [ck({"role": "assistant", "content": None}, **kw)]
    chunks += [ck({"reasoning_content": p}, **kw) for p in ("Need", " both", " tools.")]
    chunks += [ck({"content": "Sure."}, **kw)]
    chunks += streamed_call(0, "call_3f2a9c6e8b1d4e7f9a0b1c2d", CALL_A, 2, **kw)
    chunks += streamed_call(1, "call_7e6d5c4b3a2f1e0d9c8b7a6f", CALL_B, 3, **kw)
    finish = ck({}, "tool_calls", **kw)
    finish["choices"][0]["matched_stop"] = None
    chunks += [finish, ck(choices=[], usage=make_usage(700, 55), **kw)]
    mock_upstream.enqueue(sse_response(chunks))
    stream = expect_stream(
        post(proxy, body(tool_choice={"type": "auto", "disable_parallel_tool_use": True}))
    )
    assert block_kinds(stream) == ["thinking", "text", "tool_use", "tool_use"]
    assert stream.thinking == "Need both tools."
    # SGLang does not enforce parallel_tool_calls=false: both calls still arrive intact.
    assert_tools(stream, EXPECTED_TOOLS)
    assert sent(mock_upstream)["parallel_tool_calls"] is False


@pytest.mark.parametrize(
    ("matched", "stop_reason", "stop_sequence"),
    [
        ("</answer>", "stop_sequence", "</answer>"),
        (151645, "end_turn", None),
        (None, "end_turn", None),
    ],
)
def test_sglang_matched_stop(
    proxy_factory: ProxyFactory,
    mock_upstream: MockUpstream,
    tmp_path: Path,
    matched: Any,
    stop_reason: str,
    stop_sequence: str | None,
) -> None:
    proxy = as_provider(proxy_factory, tmp_path, "sglang", "Qwen/Qwen3-30B-A3B")
    finish = ck({}, "stop")
    finish["choices"][0]["matched_stop"] = matched
    mock_upstream.enqueue(
        sse_response([ck({"role": "assistant", "content": ""}), ck({"content": "42"}), finish])
    )
    stream = expect_stream(post(proxy, body(tools=None, stop_sequences=["</answer>"])))
    assert stream.stop_reason == stop_reason
    assert stream.stop_sequence == stop_sequence


def test_sglang_abort_mid_stream_is_an_error_event(
    proxy_factory: ProxyFactory, mock_upstream: MockUpstream, tmp_path: Path
) -> None:
    proxy = as_provider(proxy_factory, tmp_path, "sglang", "Qwen/Qwen3-30B-A3B")
    abort = ck({}, "abort")
    abort["choices"][0]["matched_stop"] = None
    mock_upstream.enqueue(
        sse_response(
            [
                ck({"role": "assistant", "content": ""}),
                ck({"reasoning_content": "Thinking"}),
                ck({"content": "Partial"}),
                abort,
            ]
        )
    )
    stream = expect_stream(post(proxy, body(tools=None)), error=True)
    assert stream.error is not None and stream.error["type"] == "api_error"
    assert "abort" in stream.error["message"]


# ------------------------------------------------------------------------------------------
# DeepSeek: reasoning_content out, and back in on the next tool turn via the signature
# ------------------------------------------------------------------------------------------


def deepseek_stream(model: str = "deepseek-reasoner") -> list[Any]:
    kw = {
        "model": model,
        "chunk_id": "8c1f3a2e-4b5d-4c6e-9f7a-0b1c2d3e4f5a",
        "system_fingerprint": "fp_ds_1",
    }
    out: list[Any] = [ck({"role": "assistant", "content": None, "reasoning_content": ""}, **kw)]
    out += [
        ck({"content": None, "reasoning_content": p}, **kw)
        for p in ("User asks", " weather and", " a file; call", " both tools.")
    ]
    out += [ck({"content": p, "reasoning_content": None}, **kw) for p in ("Let me", " check.")]
    out += streamed_call(0, "call_00_g7hK2mN4pQ6rS8tU0vW2xY4z", CALL_A, 2, **kw)
    out += streamed_call(1, "call_01_a1B3c5D7e9F1g3H5i7J9k1L3", CALL_B, 2, **kw)
    out.append(ck({}, "tool_calls", **kw))
    usage = {
        "prompt_tokens": 1500,
        "completion_tokens": 95,
        "total_tokens": 1595,
        "prompt_tokens_details": {"cached_tokens": 1280},
        "prompt_cache_hit_tokens": 1280,
        "prompt_cache_miss_tokens": 220,
        "completion_tokens_details": {"reasoning_tokens": 40},
    }
    out.append(ck(choices=[], usage=usage, **kw))
    return out


REASONING = "User asks weather and a file; call both tools."


@pytest.mark.parametrize(
    ("provider", "model"),
    [(None, "deepseek-reasoner"), ("deepseek", "deepseek-chat")],
    ids=["model-rule", "host-rule"],
)
def test_deepseek_reasoning_is_sent_back_on_the_tool_turn(
    proxy_factory: ProxyFactory,
    mock_upstream: MockUpstream,
    tmp_path: Path,
    provider: str | None,
    model: str,
) -> None:
    proxy = as_provider(proxy_factory, tmp_path, provider, model)
    mock_upstream.enqueue(sse_response(deepseek_stream(model)))
    first = body()
    stream = expect_stream(post(proxy, first))
    assert block_kinds(stream) == ["thinking", "text", "tool_use", "tool_use"]
    assert stream.thinking == REASONING
    assert stream.text == "Let me check."
    assert_tools(stream, EXPECTED_TOOLS)
    signature = stream.content[0]["signature"]
    assert signature.startswith(SIGNATURE_PREFIX)
    assert stream.usage["cache_read_input_tokens"] == 1280
    assert stream.usage["input_tokens"] == 220
    assert sent(mock_upstream)["max_tokens"] == 4096

    # Claude Code echoes the whole reply (thinking block with its signature) back.
    mock_upstream.enqueue(sse_response(deepseek_stream(model)))
    expect_stream(post(proxy, next_turn(first, stream)))
    second = sent(mock_upstream)
    (assistant,) = assistant_messages(second)
    assert assistant["reasoning_content"] == REASONING
    assert assistant["content"] == "Let me check."
    assert len(assistant["tool_calls"]) == 2
    assert_ids_paired(second)


def test_deepseek_tool_turn_without_thinking_gets_an_empty_reasoning_field(
    proxy_factory: ProxyFactory, mock_upstream: MockUpstream
) -> None:
    proxy = proxy_factory(BIG_MODEL="deepseek-reasoner", MIDDLE_MODEL="deepseek-reasoner")
    history = [
        {"role": "user", "content": "Weather?"},
        {
            "role": "assistant",
            "content": [
                {
                    "type": "tool_use",
                    "id": "toolu_01A",
                    "name": "get_weather",
                    "input": {"city": "Oslo"},
                }
            ],
        },
        {
            "role": "user",
            "content": [{"type": "tool_result", "tool_use_id": "toolu_01A", "content": "12°C"}],
        },
        {"role": "assistant", "content": "It is 12°C."},
        {"role": "user", "content": "Thanks"},
    ]
    expect_stream(post(proxy, body(messages=history)))
    assistants = assistant_messages(sent(mock_upstream))
    assert assistants[0]["reasoning_content"] == ""  # required on tool-call turns
    assert_ids_paired(sent(mock_upstream))


def test_deepseek_foreign_signature_falls_back_to_the_thinking_text(
    proxy_factory: ProxyFactory, mock_upstream: MockUpstream
) -> None:
    """A thinking block the proxy did not sign (e.g. from a real Anthropic turn) still helps."""
    proxy = proxy_factory(BIG_MODEL="deepseek-reasoner", MIDDLE_MODEL="deepseek-reasoner")
    history = [
        {"role": "user", "content": "Weather?"},
        {
            "role": "assistant",
            "content": [
                {"type": "thinking", "thinking": "Use the tool.", "signature": "EqQBCkgIARABGAIiQ"},
                {
                    "type": "tool_use",
                    "id": "toolu_01B",
                    "name": "get_weather",
                    "input": {"city": "Oslo"},
                },
            ],
        },
        {
            "role": "user",
            "content": [{"type": "tool_result", "tool_use_id": "toolu_01B", "content": "12°C"}],
        },
    ]
    expect_stream(post(proxy, body(messages=history)))
    (assistant,) = assistant_messages(sent(mock_upstream))
    assert assistant["reasoning_content"] == "Use the tool."


def test_deepseek_insufficient_balance(
    proxy_factory: ProxyFactory, mock_upstream: MockUpstream, tmp_path: Path
) -> None:
    proxy = as_provider(proxy_factory, tmp_path, "deepseek", "deepseek-chat")
    mock_upstream.enqueue(
        error_response(402, "Insufficient Balance", "unknown_error", code="invalid_request_error")
    )
    err = expect_error(post(proxy, body()), 402, "billing_error")
    assert "Insufficient Balance" in err["message"]


def test_deepseek_missing_reasoning_error_is_not_retried(
    proxy_factory: ProxyFactory, mock_upstream: MockUpstream, tmp_path: Path
) -> None:
    proxy = as_provider(proxy_factory, tmp_path, "deepseek", "deepseek-chat")
    mock_upstream.enqueue(
        error_response(
            400,
            "Missing `reasoning_content` field in the assistant message at message index 2. "
            "For more information, please refer to https://api-docs.deepseek.com/guides/thinking_mode",
            "invalid_request_error",
        )
    )
    err = expect_error(post(proxy, body()), 400, "invalid_request_error")
    assert "reasoning_content" in err["message"]
    assert len(mock_upstream.chat_requests) == 1


# ------------------------------------------------------------------------------------------
# OpenRouter
# ------------------------------------------------------------------------------------------

OR_DETAILS = [
    {"type": "reasoning.text", "text": "Two tools", "format": "anthropic-claude-v1", "index": 0},
    {"type": "reasoning.text", "text": " are needed.", "format": "anthropic-claude-v1", "index": 0},
    {
        "type": "reasoning.text",
        "signature": "EqQBCkgIBxABGAIiQL2zkz1Xq0Pw7Ry3vK9mA==",
        "format": "anthropic-claude-v1",
        "index": 0,
    },
]


def openrouter_stream(model: str = "anthropic/claude-sonnet-4.5") -> list[Any]:
    kw = {
        "model": model,
        "chunk_id": "gen-1766000000-AbCdEfGhIjKlMnOpQrSt",
        "provider": "Anthropic",
    }
    out: list[Any] = [": OPENROUTER PROCESSING\n\n", ": OPENROUTER PROCESSING\n\n"]
    out.append(ck({"role": "assistant", "content": "", "reasoning": None}, **kw))
    for detail in OR_DETAILS:
        reasoning = detail.get("text", "")
        out.append(
            ck(
                {
                    "role": "assistant",
                    "content": "",
                    "reasoning": reasoning,
                    "reasoning_details": [detail],
                },
                **kw,
            )
        )
    out.append(": OPENROUTER PROCESSING\n\n")
    out += [ck({"role": "assistant", "content": p}, **kw) for p in ("Checking", " both.")]
    out += streamed_call(0, "toolu_vrtx_01AbCdEfGhIjKlMnOpQrStUv", CALL_A, 3, **kw)
    out += streamed_call(1, "toolu_vrtx_01WxYzAbCdEfGhIjKlMnOpQr", CALL_B, 3, **kw)
    finish = ck({}, "tool_calls", **kw)
    finish["choices"][0]["native_finish_reason"] = "tool_use"
    out.append(finish)
    usage = {
        "prompt_tokens": 3000,
        "completion_tokens": 150,
        "total_tokens": 3150,
        "cost": 0.01125,
        "is_byok": False,
        "prompt_tokens_details": {"cached_tokens": 2048, "cache_write_tokens": 512},
        "completion_tokens_details": {"reasoning_tokens": 30},
    }
    out.append(ck(choices=[], usage=usage, **kw))
    return out


def test_openrouter_reasoning_details_round_trip(
    proxy_factory: ProxyFactory, mock_upstream: MockUpstream, tmp_path: Path
) -> None:
    proxy = as_provider(proxy_factory, tmp_path, "openrouter", "anthropic/claude-sonnet-4.5")
    mock_upstream.enqueue(sse_response(openrouter_stream()))
    first = body(max_tokens=32000, thinking={"type": "enabled", "budget_tokens": 12000})
    stream = expect_stream(post(proxy, first))
    assert block_kinds(stream) == ["thinking", "text", "tool_use", "tool_use"]
    assert stream.thinking == "Two tools are needed."
    assert stream.content[0]["signature"].startswith(SIGNATURE_PREFIX)
    assert stream.text == "Checking both."
    assert_tools(stream, EXPECTED_TOOLS)
    assert stream.usage["cache_read_input_tokens"] == 2048
    assert stream.usage["cache_creation_input_tokens"] == 512
    assert stream.usage["input_tokens"] == 3000 - 2048 - 512
    payload = sent(mock_upstream)
    assert payload["reasoning"] == {"max_tokens": 12000}
    assert "reasoning_effort" not in payload

    mock_upstream.enqueue(sse_response(openrouter_stream()))
    expect_stream(post(proxy, next_turn(first, stream)))
    second = sent(mock_upstream)
    (assistant,) = assistant_messages(second)
    assert assistant["reasoning_details"] == OR_DETAILS  # restored unmodified from the signature
    assert_ids_paired(second)


@pytest.mark.parametrize(
    ("extra", "expected"),
    [
        ({"thinking": {"type": "enabled", "budget_tokens": 4000}}, {"max_tokens": 4000}),
        ({"thinking": {"type": "adaptive"}, "output_config": {"effort": "low"}}, {"effort": "low"}),
        (
            {"thinking": {"type": "adaptive"}, "output_config": {"effort": "xhigh"}},
            {"effort": "xhigh"},
        ),
        (
            {"thinking": {"type": "adaptive"}, "output_config": {"effort": "max"}},
            {"effort": "xhigh"},
        ),
        ({"thinking": {"type": "disabled"}}, {"effort": "none"}),
        ({"thinking": {"type": "adaptive"}}, None),
        ({}, None),
    ],
)
def test_openrouter_reasoning_param(
    proxy_factory: ProxyFactory,
    mock_upstream: MockUpstream,
    tmp_path: Path,
    extra: dict[str, Any],
    expected: dict[str, Any] | None,
) -> None:
    proxy = as_provider(proxy_factory, tmp_path, "openrouter", "anthropic/claude-opus-4.1")
    expect_stream(post(proxy, body(tools=None, **extra)))
    payload = sent(mock_upstream)
    assert payload.get("reasoning") == expected
    assert "reasoning_effort" not in payload


def test_openrouter_openai_models_keep_their_model_rules(
    proxy_factory: ProxyFactory, mock_upstream: MockUpstream, tmp_path: Path
) -> None:
    """`openai/gpt-5.1` behind OpenRouter: the gpt-5 model rule applies to the bare name
    (max_completion_tokens, no sampling params) and its effort goes out as
    `reasoning_effort`, which OpenRouter also accepts."""
    proxy = as_provider(proxy_factory, tmp_path, "openrouter", "openai/gpt-5.1")
    extra = {"thinking": {"type": "adaptive"}, "output_config": {"effort": "max"}}
    expect_stream(post(proxy, body(tools=None, temperature=0.5, **extra)))
    payload = sent(mock_upstream)
    assert payload["max_completion_tokens"] == 4096 and "temperature" not in payload
    effort = payload.get("reasoning_effort") or (payload.get("reasoning") or {}).get("effort")
    assert effort == "xhigh"


def test_openrouter_error_inside_a_200_stream(
    proxy_factory: ProxyFactory, mock_upstream: MockUpstream, tmp_path: Path
) -> None:
    proxy = as_provider(proxy_factory, tmp_path, "openrouter", "anthropic/claude-sonnet-4.5")
    kw = {"model": "anthropic/claude-sonnet-4.5", "chunk_id": "gen-1766000001-XyZ"}
    failure = ck({"content": ""}, "error", **kw)
    failure["error"] = {
        "code": 502,
        "message": "Provider returned error",
        "metadata": {"raw": "overloaded"},
    }
    failure["choices"][0]["native_finish_reason"] = "error"
    mock_upstream.enqueue(
        sse_response(
            [
                ": OPENROUTER PROCESSING\n\n",
                ck({"role": "assistant", "content": ""}, **kw),
                ck({"content": "Partial answer"}, **kw),
                failure,
            ]
        )
    )
    stream = expect_stream(post(proxy, body(tools=None)), error=True)
    assert stream.text == "Partial answer"
    assert stream.error is not None
    assert "Provider returned error" in stream.error["message"]


def test_openrouter_insufficient_credits(
    proxy_factory: ProxyFactory, mock_upstream: MockUpstream, tmp_path: Path
) -> None:
    proxy = as_provider(proxy_factory, tmp_path, "openrouter", "anthropic/claude-sonnet-4.5")
    mock_upstream.enqueue(
        json_response(
            {
                "error": {
                    "code": 402,
                    "message": "This request requires more credits, or fewer max_tokens. You "
                    "requested up to 4096 tokens, but can only afford 1200.",
                }
            },
            402,
        )
    )
    err = expect_error(post(proxy, body()), 402, "billing_error")
    assert "more credits" in err["message"]


# ------------------------------------------------------------------------------------------
# Gemini OpenAI-compatible endpoint
# ------------------------------------------------------------------------------------------

GEMINI_REJECTED = {
    "$schema",
    "additionalProperties",
    "propertyNames",
    "const",
    "exclusiveMinimum",
    "exclusiveMaximum",
    "$ref",
    "$defs",
    "definitions",
    "default",
    "examples",
}
EXTRA_CC_TOOLS = [
    {
        "name": "WebFetch",
        "description": "Fetches content from a URL and processes it with a prompt.",
        "input_schema": {
            "$schema": "https://json-schema.org/draft/2020-12/schema",
            "type": "object",
            "properties": {
                "url": {"type": "string", "format": "uri", "description": "The URL to fetch"},
                "prompt": {"type": "string", "description": "What to extract"},
            },
            "required": ["url", "prompt"],
            "additionalProperties": False,
        },
    },
    {
        "name": "mcp__tracker__update_issue",
        "description": "Update an issue (MCP tool).",
        "input_schema": {
            "$schema": "https://json-schema.org/draft/2020-12/schema",
            "type": "object",
            "properties": {
                "kind": {"const": "issue"},
                "priority": {"type": "integer", "exclusiveMinimum": 0, "maximum": 5},
                "labels": {
                    "type": "object",
                    "propertyNames": {"type": "string", "pattern": "^[a-z]+$"},
                    "additionalProperties": {"type": "string"},
                },
                "assignee": {"$ref": "#/$defs/user"},
                "due": {"type": ["string", "null"], "format": "date-time"},
            },
            "required": ["kind", "priority"],
            "additionalProperties": False,
            "$defs": {
                "user": {
                    "type": "object",
                    "properties": {"login": {"type": "string", "default": "me"}},
                    "additionalProperties": False,
                }
            },
        },
    },
]


def test_gemini_tool_schemas_are_cleaned_recursively(
    proxy_factory: ProxyFactory,
    mock_upstream: MockUpstream,
    claude_code_request: dict[str, Any],
) -> None:
    proxy = proxy_factory(BIG_MODEL="gemini-2.5-pro", MIDDLE_MODEL="gemini-2.5-pro")
    request = dict(claude_code_request)
    request["tools"] = [*claude_code_request["tools"], *EXTRA_CC_TOOLS]
    originals = {t["name"]: t for t in request["tools"] if t.get("defer_loading") is not True}
    expect_stream(post(proxy, request))
    payload = sent(mock_upstream)
    tools = {t["function"]["name"]: t["function"] for t in payload["tools"]}
    assert set(tools) == {n for n, t in originals.items() if "input_schema" in t}
    for name, function in tools.items():
        schema = function["parameters"]
        for path, key, value in walk_schema(schema):
            assert key not in GEMINI_REJECTED, f"{name}: {path} still has {key!r}"
            if key == "format":
                assert value in ("enum", "date-time"), f"{name}: {path} format {value!r}"
            if key == "type":
                assert isinstance(value, str), f"{name}: {path} type {value!r}"
        original = originals[name]["input_schema"]
        # Nothing the model needs is lost: same properties, required only names real ones.
        assert set(schema.get("properties", {})) == set(original.get("properties", {})), name
        assert set(schema.get("required", [])) <= set(schema.get("properties", {})), name
    mcp = tools["mcp__tracker__update_issue"]["parameters"]["properties"]
    assert mcp["kind"]["enum"] == ["issue"]
    assert mcp["assignee"]["properties"]["login"]["type"] == "string"  # $ref inlined
    assert mcp["due"]["type"] == "string" and mcp["due"].get("nullable") is True
    assert tools["WebFetch"]["parameters"]["required"] == ["url", "prompt"]
    # Adaptive thinking with effort medium → reasoning_effort for Gemini 2.5.
    assert payload["reasoning_effort"] == "medium"


def test_gemini_schemas_untouched_for_other_providers(
    proxy_factory: ProxyFactory, mock_upstream: MockUpstream
) -> None:
    proxy = proxy_factory(BIG_MODEL="gpt-4.1", MIDDLE_MODEL="gpt-4.1")
    expect_stream(post(proxy, body(tools=EXTRA_CC_TOOLS)))
    tools = {t["function"]["name"]: t["function"] for t in sent(mock_upstream)["tools"]}
    assert tools["WebFetch"]["parameters"] == EXTRA_CC_TOOLS[0]["input_schema"]


def gemini_calls(style: str) -> list[Any]:
    kw = {"model": "gemini-2.5-pro", "chunk_id": "aBcDeFgHiJkLmN"}
    a = {"id": "", "type": "function", "function": CALL_A}
    b = {"id": "", "type": "function", "function": CALL_B}
    if style == "no-index-separate":
        return [ck({"tool_calls": [a]}, **kw), ck({"tool_calls": [b]}, **kw)]
    if style == "no-index-together":
        return [ck({"tool_calls": [a, b]}, **kw)]
    # both with index 0 and their own ids
    a0 = {**a, "index": 0, "id": "function-call-4410293"}
    b0 = {**b, "index": 0, "id": "function-call-4410294"}
    return [ck({"tool_calls": [a0]}, **kw), ck({"tool_calls": [b0]}, **kw)]


@pytest.mark.parametrize("style", ["no-index-separate", "no-index-together", "index-0-twice"])
def test_gemini_stream_with_missing_indexes_and_empty_ids(
    proxy_factory: ProxyFactory, mock_upstream: MockUpstream, style: str
) -> None:
    proxy = proxy_factory(BIG_MODEL="gemini-2.5-flash", MIDDLE_MODEL="gemini-2.5-flash")
    kw = {"model": "gemini-2.5-flash", "chunk_id": "aBcDeFgHiJkLmN"}
    chunks: list[Any] = [ck({"role": "assistant", "content": "Let me look."}, **kw)]
    chunks += gemini_calls(style)
    chunks.append(ck({}, "stop", **kw))  # Gemini says "stop" even after tool calls
    chunks.append(ck(choices=[], usage=make_usage(800, 30), **kw))
    mock_upstream.enqueue(sse_response(chunks))
    stream = expect_stream(post(proxy, body()))
    assert block_kinds(stream) == ["text", "tool_use", "tool_use"]
    assert_tools(stream, EXPECTED_TOOLS)
    assert stream.stop_reason == "tool_use"


def test_gemini_schema_error_is_reported_not_retried(
    proxy_factory: ProxyFactory, mock_upstream: MockUpstream
) -> None:
    proxy = proxy_factory(BIG_MODEL="gemini-2.5-pro", MIDDLE_MODEL="gemini-2.5-pro")
    mock_upstream.enqueue(
        json_response(
            [
                {
                    "error": {
                        "code": 400,
                        "message": 'Invalid JSON payload received. Unknown name "$schema" at '
                        "'tools[0].function_declarations[0].parameters': Cannot find field.",
                        "status": "INVALID_ARGUMENT",
                    }
                }
            ],
            400,
        )
    )
    err = expect_error(post(proxy, body()), 400, "invalid_request_error")
    assert "Unknown name" in err["message"]
    assert len(mock_upstream.chat_requests) == 1


def test_gemini_quota_error(proxy_factory: ProxyFactory, mock_upstream: MockUpstream) -> None:
    proxy = proxy_factory(BIG_MODEL="gemini-2.5-pro", MIDDLE_MODEL="gemini-2.5-pro")
    mock_upstream.enqueue(
        json_response(
            [
                {
                    "error": {
                        "code": 429,
                        "message": "Resource has been exhausted (e.g. check quota).",
                        "status": "RESOURCE_EXHAUSTED",
                    }
                }
            ],
            429,
        )
    )
    err = expect_error(post(proxy, body()), 429, "rate_limit_error")
    assert "exhausted" in err["message"]


# ------------------------------------------------------------------------------------------
# Mistral: 9-alphanumeric tool-call ids
# ------------------------------------------------------------------------------------------

MISTRAL_ID = re.compile(r"^[A-Za-z0-9]{9}$")


def mistral_stream() -> list[Any]:
    kw = {"model": "mistral-large-latest", "chunk_id": "9a2b3c4d5e6f7a8b9c0d1e2f3a4b5c6d"}
    return [
        ck({"role": "assistant", "content": ""}, **kw),
        ck({"content": "Checking."}, **kw),
        # Mistral sends every call whole, all in one chunk.
        ck(
            {
                "tool_calls": [
                    {"id": "D681PevKs", "function": CALL_A, "index": 0},
                    {"id": "z9Qw2Er4T", "function": CALL_B, "index": 1},
                ]
            },
            **kw,
        ),
        ck({}, "tool_calls", **kw, usage=make_usage(600, 48)),
    ]


def test_mistral_tool_ids_both_ways(
    proxy_factory: ProxyFactory, mock_upstream: MockUpstream, tmp_path: Path
) -> None:
    proxy = proxy_factory(BIG_MODEL="mistral-large-latest", MIDDLE_MODEL="mistral-large-latest")
    mock_upstream.enqueue(sse_response(mistral_stream()))
    first = body()
    stream = expect_stream(post(proxy, first))
    assert block_kinds(stream) == ["text", "tool_use", "tool_use"]
    assert_tools(stream, EXPECTED_TOOLS)  # fresh toolu_ ids on the way down
    assert stream.usage["input_tokens"] == 600

    follow_up = next_turn(first, stream)
    for _ in range(2):
        mock_upstream.enqueue(sse_response(mistral_stream()))
        expect_stream(post(proxy, follow_up))
    ids_first = assert_ids_paired(sent(mock_upstream, -2))
    ids_second = assert_ids_paired(sent(mock_upstream, -1))
    assert ids_first == ["D681PevKs", "z9Qw2Er4T"]  # Mistral's own ids, given back
    assert ids_first == ids_second  # deterministic: the whole history is resent every turn


def test_mistral_client_ids_of_any_shape_are_mapped(
    proxy_factory: ProxyFactory, mock_upstream: MockUpstream
) -> None:
    proxy = proxy_factory(BIG_MODEL="devstral-medium-latest", MIDDLE_MODEL="devstral-medium-latest")
    odd_ids = ["toolu_01XyZ", "call_0fypS1hVX", "mcp:server/tool|1"]
    history: list[dict[str, Any]] = [{"role": "user", "content": "go"}]
    history.append(
        {
            "role": "assistant",
            "content": [
                {"type": "tool_use", "id": i, "name": "read_file", "input": {"path": f"/f{n}"}}
                for n, i in enumerate(odd_ids)
            ],
        }
    )
    history.append(
        {
            "role": "user",
            "content": [
                {"type": "tool_result", "tool_use_id": i, "content": "ok"} for i in odd_ids
            ],
        }
    )
    expect_stream(post(proxy, body(messages=history)))
    ids = assert_ids_paired(sent(mock_upstream))
    assert len(set(ids)) == 3
    assert all(MISTRAL_ID.match(i) for i in ids), ids


def test_mistral_flat_error_body(proxy_factory: ProxyFactory, mock_upstream: MockUpstream) -> None:
    proxy = proxy_factory(BIG_MODEL="mistral-large-latest", MIDDLE_MODEL="mistral-large-latest")
    mock_upstream.enqueue(
        json_response(
            {
                "object": "error",
                "message": "Tool call id was call_0fypS1hVX but must be a-z, A-Z, 0-9, with a "
                "length of 9.",
                "type": "invalid_request_error",
                "param": None,
                "code": None,
            },
            400,
        )
    )
    err = expect_error(post(proxy, body()), 400, "invalid_request_error")
    assert "must be a-z, A-Z, 0-9" in err["message"]
    assert len(mock_upstream.chat_requests) == 1


# ------------------------------------------------------------------------------------------
# Groq and any other server: the generic profile (plain OpenAI spec)
# ------------------------------------------------------------------------------------------


def test_groq_generic_profile_stream(
    proxy_factory: ProxyFactory, mock_upstream: MockUpstream, tmp_path: Path
) -> None:
    proxy = as_provider(proxy_factory, tmp_path, "groq", "qwen/qwen3-32b")
    kw = {"model": "qwen/qwen3-32b", "chunk_id": "chatcmpl-3c1d9e2f-0a4b-4c5d-8e6f-7a8b9c0d1e2f"}
    first = ck({"role": "assistant", "content": ""}, **kw)
    first["x_groq"] = {"id": "req_01jv0m3x5yfz8t9a2b3c4d5e6f"}
    chunks: list[Any] = [first]
    chunks += [ck({"reasoning": p}, **kw) for p in ("Call", " both.")]
    # Groq sends each call whole with its index; ids are short call_ + alnum.
    chunks.append(
        ck(
            {
                "tool_calls": [
                    {"id": "call_8kz1", "type": "function", "index": 0, "function": CALL_A}
                ]
            },
            **kw,
        )
    )
    chunks.append(
        ck(
            {
                "tool_calls": [
                    {"id": "call_8kz2", "type": "function", "index": 1, "function": CALL_B}
                ]
            },
            **kw,
        )
    )
    last = ck({}, "tool_calls", **kw)
    last["x_groq"] = {"id": "req_01jv0m3x5yfz8t9a2b3c4d5e6f", "usage": make_usage(250, 33)}
    chunks += [last, ck(choices=[], usage=make_usage(250, 33), **kw)]
    mock_upstream.enqueue(sse_response(chunks))
    stream = expect_stream(post(proxy, body(temperature=0.3)))
    assert block_kinds(stream) == ["thinking", "tool_use", "tool_use"]
    assert stream.thinking == "Call both."
    assert_tools(stream, EXPECTED_TOOLS)
    assert stream.usage["input_tokens"] == 250
    payload = sent(mock_upstream)
    assert payload["max_tokens"] == 4096 and payload["temperature"] == 0.3
    assert payload["stream_options"] == {"include_usage": True}
    for absent in ("reasoning_effort", "reasoning", "prompt_cache_key", "max_completion_tokens"):
        assert absent not in payload, absent


def test_groq_tool_use_failed_error(
    proxy_factory: ProxyFactory, mock_upstream: MockUpstream, tmp_path: Path
) -> None:
    proxy = as_provider(proxy_factory, tmp_path, "groq", "llama-3.3-70b-versatile")
    mock_upstream.enqueue(
        json_response(
            {
                "error": {
                    "message": "Failed to call a function. Please adjust your prompt. See "
                    "'failed_generation' for more details.",
                    "type": "invalid_request_error",
                    "code": "tool_use_failed",
                    "failed_generation": '<function=get_weather{"city": "Oslo"}</function>',
                }
            },
            400,
        )
    )
    err = expect_error(post(proxy, body()), 400, "invalid_request_error")
    assert "Failed to call a function" in err["message"]


def test_unknown_server_uses_the_plain_openai_spec(
    proxy_factory: ProxyFactory, mock_upstream: MockUpstream
) -> None:
    """No profile file, an unknown model: nothing provider-specific leaks into the request."""
    proxy = proxy_factory(BIG_MODEL="my-finetune", MIDDLE_MODEL="my-finetune")
    expect_stream(
        post(proxy, body(thinking={"type": "enabled", "budget_tokens": 8000}, temperature=0.5))
    )
    payload = sent(mock_upstream)
    assert payload["max_tokens"] == 4096 and payload["temperature"] == 0.5
    for absent in (
        "reasoning_effort",
        "reasoning",
        "thinking",
        "chat_template_kwargs",
        "prompt_cache_key",
    ):
        assert absent not in payload, absent


def test_non_streaming_request_through_a_provider_profile(
    proxy_factory: ProxyFactory, mock_upstream: MockUpstream
) -> None:
    """The same translation applies when Claude Code asks without streaming."""
    proxy = proxy_factory(BIG_MODEL="deepseek-reasoner", MIDDLE_MODEL="deepseek-reasoner")
    mock_upstream.enqueue(
        json_response(
            {
                "id": "ds-1",
                "object": "chat.completion",
                "created": 1766000000,
                "model": "deepseek-reasoner",
                "choices": [
                    {
                        "index": 0,
                        "finish_reason": "tool_calls",
                        "message": {
                            "role": "assistant",
                            "content": "",
                            "reasoning_content": REASONING,
                            "tool_calls": [
                                {"id": "call_00_x", "type": "function", "function": CALL_A},
                                {"id": "call_01_y", "type": "function", "function": CALL_B},
                            ],
                        },
                    }
                ],
                "usage": make_usage(100, 20),
            }
        )
    )
    resp = post(proxy, body(stream=False))
    assert resp.status_code == 200, resp.text
    message = validate_anthropic_message(resp.content)
    kinds = [b["type"] for b in message["content"]]
    assert kinds == ["thinking", "tool_use", "tool_use"]
    assert message["content"][0]["thinking"] == REASONING
    assert message["content"][0]["signature"].startswith(SIGNATURE_PREFIX)
    assert message["stop_reason"] == "tool_use"
    assert "stream" not in sent(mock_upstream)
