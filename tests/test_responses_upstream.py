"""The Responses API upstream through the running proxy: dialect selection, the endpoint and
payload the upstream receives, streamed and whole replies, errors, the self-healing switch
from Chat Completions, and the reasoning round trip over three tool turns.

The upstream is a real HTTP server on 127.0.0.1 (mock_upstream.py) answering `/v1/responses`
with events built and validated by mock_responses.py, which also rejects (400) any request
the real API would reject and any that drops a reasoning item it issued.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx
import pytest

from claude_code_proxy.config import Settings
from claude_code_proxy.gateway.capabilities import CapabilityTable
from claude_code_proxy.gateway.upstream import responses_url
from mock_responses import (
    RESPONSES_PATH,
    ResponseScript,
    ResponsesUpstream,
    json_reply,
    responses_usage,
    sse_events,
)
from mock_upstream import CHAT_PATH, MockUpstream, error_response
from sse_validator import (
    ValidatedStream,
    validate_anthropic_error,
    validate_anthropic_message,
    validate_anthropic_stream,
)

if TYPE_CHECKING:
    from conftest import ProxyFactory, ProxyHandle

TIMEOUT = httpx.Timeout(20.0, connect=5.0)
HEADERS = {"x-api-key": "sk-ant-client-0001", "anthropic-version": "2023-06-01"}
CODEX = "gpt-5-codex"
TOOLS = [
    {
        "name": "Read",
        "description": "Read a file",
        "input_schema": {
            "type": "object",
            "properties": {"file_path": {"type": "string"}},
            "required": ["file_path"],
        },
    }
]


def request(
    *, stream: bool = True, messages: list[Any] | None = None, **extra: Any
) -> dict[str, Any]:
    out: dict[str, Any] = {
        "model": "claude-sonnet-4-5",
        "max_tokens": 4096,
        "messages": messages or [{"role": "user", "content": "Say hello"}],
        "system": [{"type": "text", "text": "You are a coding agent."}],
        **extra,
    }
    if stream:
        out["stream"] = True
    return out


def post(proxy: ProxyHandle, payload: dict[str, Any]) -> httpx.Response:
    return httpx.post(proxy.url("/v1/messages"), json=payload, headers=HEADERS, timeout=TIMEOUT)


def ok_stream(resp: httpx.Response) -> ValidatedStream:
    assert resp.status_code == 200, resp.text
    return validate_anthropic_stream(resp.content, expect_error=False)


def responses_proxy(
    proxy_factory: ProxyFactory,
    mock: MockUpstream,
    upstream: ResponsesUpstream,
    **env: str,
) -> ProxyHandle:
    mock.route(RESPONSES_PATH, upstream)
    env = {"UPSTREAM_API": "responses", "BIG_MODEL": CODEX, "MIDDLE_MODEL": CODEX, **env}
    return proxy_factory(env, upstream=mock)


# ------------------------------------------------------------------------------------------
# Selection and URLs (no network)
# ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("base_url", "model", "api"),
    [
        ("https://api.openai.com/v1", "gpt-5-codex", "responses"),
        ("https://api.openai.com/v1", "gpt-5.1-codex-max", "responses"),
        ("https://api.openai.com/v1", "codex-mini-latest", "responses"),
        ("https://api.openai.com/v1", "o1-pro", "responses"),
        ("https://api.openai.com/v1", "o3-pro-2025-06-10", "responses"),
        ("https://api.openai.com/v1", "gpt-5-pro", "responses"),
        ("https://api.openai.com/v1", "gpt-5.2-pro", "responses"),
        ("https://myres.openai.azure.com/openai/v1", "gpt-5-codex", "responses"),
        ("https://api.openai.com/v1", "gpt-5", "chat"),
        ("https://api.openai.com/v1", "o3", "chat"),
        ("https://api.openai.com/v1", "gpt-4o", "chat"),
        ("https://openrouter.ai/api/v1", "openai/gpt-5-codex", "chat"),
        ("http://localhost:8000/v1", "gpt-5-codex", "chat"),
    ],
)
def test_auto_picks_responses_for_responses_only_models_on_openai_and_azure(
    base_url: str, model: str, api: str
) -> None:
    profile = CapabilityTable().profile(base_url, model)
    assert profile.upstream_api("auto") == api
    assert profile.upstream_api("chat") == "chat"
    assert profile.upstream_api("responses") == "responses"


def test_codex_reasoning_profile() -> None:
    profile = CapabilityTable().profile("https://api.openai.com/v1", "gpt-5-codex")
    assert profile.reasoning_param == "reasoning_effort"
    assert profile.efforts == ("low", "medium", "high")
    assert "temperature" in profile.drop_params


@pytest.mark.parametrize(
    ("env", "url"),
    [
        ({}, "https://api.openai.com/v1/responses"),
        (
            {"OPENAI_BASE_URL": "https://res.openai.azure.com", "AZURE_API_VERSION": "2025-04-01"},
            "https://res.openai.azure.com/openai/v1/responses",
        ),
        (
            {
                "OPENAI_BASE_URL": "https://res.openai.azure.com/openai/deployments/codex",
                "AZURE_API_VERSION": "2025-04-01",
            },
            "https://res.openai.azure.com/openai/v1/responses",
        ),
        (
            {
                "OPENAI_BASE_URL": "https://res.openai.azure.com/openai/v1",
                "AZURE_API_VERSION": "v1",
            },
            "https://res.openai.azure.com/openai/v1/responses",
        ),
    ],
)
def test_responses_url(env: dict[str, str], url: str) -> None:
    settings = Settings.from_env({"OPENAI_API_KEY": "sk-test", **env})
    assert responses_url(settings) == url


def test_upstream_api_setting_is_validated() -> None:
    assert Settings.from_env({}).upstream_api == "auto"
    assert Settings.from_env({"UPSTREAM_API": "Responses"}).upstream_api == "responses"
    with pytest.raises(ValueError, match="UPSTREAM_API"):
        Settings.from_env({"UPSTREAM_API": "completions"})


# ------------------------------------------------------------------------------------------
# Through the proxy
# ------------------------------------------------------------------------------------------


def test_streamed_text_on_the_responses_endpoint(
    proxy_factory: ProxyFactory, mock_upstream: MockUpstream
) -> None:
    upstream = ResponsesUpstream()
    proxy = responses_proxy(proxy_factory, mock_upstream, upstream)
    stream = ok_stream(post(proxy, request(thinking={"type": "enabled", "budget_tokens": 4000})))
    assert stream.text == "Hello from mock"
    assert [r.path for r in mock_upstream.requests] == [RESPONSES_PATH]
    sent = upstream.requests[0]
    assert sent["model"] == CODEX and sent["stream"] is True
    assert sent["instructions"] == "You are a coding agent."
    assert sent["store"] is False and sent["include"] == ["reasoning.encrypted_content"]
    assert sent["reasoning"] == {"effort": "medium", "summary": "auto"}
    recorded = mock_upstream.requests[0]
    assert recorded.headers["authorization"] == "Bearer sk-upstream-test"


def test_non_streaming_reply(proxy_factory: ProxyFactory, mock_upstream: MockUpstream) -> None:
    script = ResponseScript().reasoning("thinking it over").text("Four.")
    upstream = ResponsesUpstream(
        replies=[lambda body: json_reply(script, usage=responses_usage(90, 12, cached=40))]
    )
    proxy = responses_proxy(proxy_factory, mock_upstream, upstream)
    resp = post(proxy, request(stream=False))
    assert resp.status_code == 200, resp.text
    message = validate_anthropic_message(resp.json())
    assert [b["type"] for b in message["content"]] == ["thinking", "text"]
    assert message["content"][1]["text"] == "Four."
    assert message["usage"]["input_tokens"] == 50
    assert message["usage"]["cache_read_input_tokens"] == 40


def test_stream_reply_as_json_is_replayed(
    proxy_factory: ProxyFactory, mock_upstream: MockUpstream
) -> None:
    script = ResponseScript().text("whole")
    upstream = ResponsesUpstream(replies=[lambda body: json_reply(script, usage=responses_usage())])
    proxy = responses_proxy(proxy_factory, mock_upstream, upstream)
    assert ok_stream(post(proxy, request())).text == "whole"


@pytest.mark.parametrize(
    ("status", "message", "code", "expected_status", "expected_type"),
    [
        (429, "Rate limit reached for gpt-5-codex", "rate_limit_exceeded", 429, "rate_limit_error"),
        (401, "Incorrect API key provided", "invalid_api_key", 401, "authentication_error"),
        (404, "The model does not exist", "model_not_found", 404, "not_found_error"),
    ],
)
def test_errors_before_the_stream_keep_their_status(
    proxy_factory: ProxyFactory,
    mock_upstream: MockUpstream,
    status: int,
    message: str,
    code: str,
    expected_status: int,
    expected_type: str,
) -> None:
    upstream = ResponsesUpstream(replies=[lambda body: error_response(status, message, code=code)])
    proxy = responses_proxy(proxy_factory, mock_upstream, upstream, MAX_RETRIES="0")
    resp = post(proxy, request())
    assert resp.status_code == expected_status
    assert validate_anthropic_error(resp.json())["type"] == expected_type


def test_context_overflow_reads_like_anthropic(
    proxy_factory: ProxyFactory, mock_upstream: MockUpstream
) -> None:
    overflow = (
        "Your input exceeds the context window of this model. Please adjust your input and "
        "try again."
    )
    upstream = ResponsesUpstream(
        replies=[lambda body: error_response(400, overflow, code="context_length_exceeded")]
    )
    proxy = responses_proxy(proxy_factory, mock_upstream, upstream)
    resp = post(proxy, request())
    assert resp.status_code == 400
    assert validate_anthropic_error(resp.json())["message"].startswith("prompt is too long")


def test_failure_mid_stream_is_an_error_event(
    proxy_factory: ProxyFactory, mock_upstream: MockUpstream
) -> None:
    events = (
        ResponseScript()
        .text("partial")
        .events(
            "failed",
            error={"code": "server_error", "message": "The model produced invalid content"},
        )
    )
    upstream = ResponsesUpstream(replies=[lambda body: sse_events(events)])
    proxy = responses_proxy(proxy_factory, mock_upstream, upstream)
    resp = post(proxy, request())
    assert resp.status_code == 200
    stream = validate_anthropic_stream(resp.content, expect_error=True)
    assert stream.error is not None and stream.error["type"] == "api_error"
    assert stream.text == "partial"


def test_stream_cut_before_its_terminal_event_ends_in_error(
    proxy_factory: ProxyFactory, mock_upstream: MockUpstream
) -> None:
    events = ResponseScript().text("partial answer").events()[:-1]
    upstream = ResponsesUpstream(replies=[lambda body: sse_events(events)])
    proxy = responses_proxy(proxy_factory, mock_upstream, upstream)
    stream = validate_anthropic_stream(post(proxy, request()).content, expect_error=True)
    assert "before the response was complete" in stream.error["message"]


def test_auto_uses_responses_where_the_host_serves_it(
    proxy_factory: ProxyFactory, mock_upstream: MockUpstream, tmp_path: Path
) -> None:
    profiles = tmp_path / "profiles.json"
    profiles.write_text(json.dumps({"providers": {"127.0.0.1*": {"responses_api": True}}}))
    upstream = ResponsesUpstream()
    proxy = responses_proxy(
        proxy_factory,
        mock_upstream,
        upstream,
        UPSTREAM_API="auto",
        PROVIDER_PROFILES=str(profiles),
        SMALL_MODEL="gpt-4o-mini",
    )
    assert ok_stream(post(proxy, request())).text == "Hello from mock"
    assert ok_stream(post(proxy, request(model="claude-haiku-4-5"))).text == "Hello from mock"
    assert [r.path for r in mock_upstream.requests] == [RESPONSES_PATH, CHAT_PATH]


ONLY_RESPONSES = "This model is only supported in v1/responses and not in v1/chat/completions."


@pytest.mark.parametrize("stream", [True, False])
def test_chat_refusal_switches_the_model_to_responses_and_remembers(
    proxy_factory: ProxyFactory, mock_upstream: MockUpstream, stream: bool
) -> None:
    mock_upstream.enqueue(error_response(404, ONLY_RESPONSES, code=None))
    upstream = ResponsesUpstream()
    proxy = responses_proxy(
        proxy_factory, mock_upstream, upstream, UPSTREAM_API="auto", MIDDLE_MODEL="gpt-x-custom"
    )
    for _ in range(2):
        resp = post(proxy, request(stream=stream))
        assert resp.status_code == 200, resp.text
    assert [r.path for r in mock_upstream.requests] == [CHAT_PATH, RESPONSES_PATH, RESPONSES_PATH]
    learned = proxy.app.state.proxy.table.learned
    assert any(v.get("api") == "responses" for (_h, m), v in learned.items() if m == "gpt-x-custom")


def test_explicit_chat_setting_does_not_switch(
    proxy_factory: ProxyFactory, mock_upstream: MockUpstream
) -> None:
    mock_upstream.enqueue(error_response(400, ONLY_RESPONSES, code=None))
    proxy = proxy_factory(UPSTREAM_API="chat", MIDDLE_MODEL="gpt-x-custom")
    resp = post(proxy, request())
    assert resp.status_code == 400
    assert "v1/responses" in validate_anthropic_error(resp.json())["message"]
    assert [r.path for r in mock_upstream.requests] == [CHAT_PATH]


# ------------------------------------------------------------------------------------------
# Reasoning round trip over three tool turns
# ------------------------------------------------------------------------------------------


def echoed(content: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """What Claude Code sends back of an assistant turn: thinking reduced to type, thinking
    and signature; everything else as received."""
    out = []
    for block in content:
        if block["type"] == "thinking":
            out.append({k: block[k] for k in ("type", "thinking", "signature")})
        else:
            out.append(block)
    return out


def tool_loop_script(turn: int) -> ResponseScript:
    script = ResponseScript(chunk=5).reasoning(f"**Step {turn}**\n\nI should read file {turn}.")
    return script.function_call("Read", {"file_path": f"/repo/f{turn}.py"})


@pytest.mark.parametrize("stream", [True, False])
def test_reasoning_round_trip_over_three_tool_turns(
    proxy_factory: ProxyFactory, mock_upstream: MockUpstream, stream: bool
) -> None:
    upstream = ResponsesUpstream(
        replies=[tool_loop_script(1), tool_loop_script(2), tool_loop_script(3)]
    )
    proxy = responses_proxy(proxy_factory, mock_upstream, upstream)
    messages: list[dict[str, Any]] = [{"role": "user", "content": "Read the three files."}]
    for turn in range(1, 5):
        resp = post(proxy, request(stream=stream, messages=messages, tools=TOOLS))
        assert resp.status_code == 200, resp.text
        if stream:
            content = validate_anthropic_stream(resp.content, expect_error=False).content
        else:
            content = validate_anthropic_message(resp.json())["content"]
        assert upstream.returned_reasoning == turn - 1  # every earlier item came back
        if turn == 4:
            assert content == [{"type": "text", "text": "Hello from mock"}]
            break
        thinking, tool_use = content
        assert thinking["thinking"] == f"**Step {turn}**\n\nI should read file {turn}."
        assert tool_use["input"] == {"file_path": f"/repo/f{turn}.py"}
        messages.append({"role": "assistant", "content": echoed(content)})
        messages.append(
            {
                "role": "user",
                "content": [
                    {"type": "tool_result", "tool_use_id": tool_use["id"], "content": f"# f{turn}"}
                ],
            }
        )
    final = upstream.requests[-1]["input"]
    kinds = [item.get("type") for item in final]
    assert kinds == ["message"] + ["reasoning", "function_call", "function_call_output"] * 3
    for (issued, call_id), item in zip(
        upstream.issued, [i for i in final if i.get("type") == "reasoning"], strict=True
    ):
        assert item["id"] == issued["id"]
        assert item["encrypted_content"] == issued["encrypted_content"]
        assert call_id in {i.get("call_id") for i in final}  # the upstream's own call ids


def test_a_dropped_reasoning_item_fails_the_mock(
    proxy_factory: ProxyFactory, mock_upstream: MockUpstream
) -> None:
    """The round-trip check can fail: a client that loses the thinking block gets the 400."""
    upstream = ResponsesUpstream(replies=[tool_loop_script(1)])
    proxy = responses_proxy(proxy_factory, mock_upstream, upstream)
    messages: list[dict[str, Any]] = [{"role": "user", "content": "Read."}]
    content = ok_stream(post(proxy, request(messages=messages, tools=TOOLS))).content
    tool_use = content[1]
    messages += [
        {"role": "assistant", "content": [tool_use]},
        {
            "role": "user",
            "content": [{"type": "tool_result", "tool_use_id": tool_use["id"], "content": "x"}],
        },
    ]
    resp = post(proxy, request(messages=messages, tools=TOOLS))
    assert resp.status_code == 400
    assert "is missing" in validate_anthropic_error(resp.json())["message"]
