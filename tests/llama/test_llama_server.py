"""The proxy in front of a real llama.cpp `llama-server` (run with `pytest -m llama`).

Mocks only show what we believe servers send; here every byte the proxy translates comes
from llama.cpp itself: a chat reply from SmolLM2-135M, tool calls from Qwen2.5-Coder-0.5B
(parsed by llama-server from bare JSON), a tool round trip, the server's context-overflow
error, and a reply its own tool-call parser rejects in the middle of the stream.
All generation is greedy (`temperature: 0`) so the small models answer reproducibly.
"""

from __future__ import annotations

import random
import re
from typing import TYPE_CHECKING, Any

import httpx
import pytest

from sse_validator import (
    TOOL_ID_RE,
    ValidatedStream,
    validate_anthropic_error,
    validate_anthropic_message,
    validate_anthropic_stream,
)

if TYPE_CHECKING:
    from conftest import ProxyFactory, ProxyHandle

    from .conftest import LlamaServer

pytestmark = pytest.mark.llama

TIMEOUT = httpx.Timeout(300.0, connect=10.0)
HEADERS = {"x-api-key": "sk-ant-llama-test", "anthropic-version": "2023-06-01"}
WEATHER_TOOL = {
    "name": "get_weather",
    "description": "Get the current weather for a city",
    "input_schema": {
        "type": "object",
        "properties": {"city": {"type": "string", "description": "City name"}},
        "required": ["city"],
    },
}
# The 0.5B model tends to repeat its JSON call after a tool result unless told not to.
SYSTEM = (
    "You are a helpful assistant. Call a tool when you need data. When a tool response is "
    "present, do not call tools again: answer the user in plain English."
)
OVERFLOW_RE = re.compile(r"^prompt is too long: (\d+) tokens > (\d+) maximum$")


def proxy_for(proxy_factory: ProxyFactory, server: LlamaServer, model: str) -> ProxyHandle:
    return proxy_factory(
        OPENAI_BASE_URL=server.base_url,
        BIG_MODEL=model,
        MIDDLE_MODEL=model,
        SMALL_MODEL=model,
        REQUEST_TIMEOUT="300",
        MAX_RETRIES="0",
    )


def post(proxy: ProxyHandle, body: dict[str, Any]) -> httpx.Response:
    return httpx.post(proxy.url("/v1/messages"), json=body, headers=HEADERS, timeout=TIMEOUT)


def request(
    text: str, *, stream: bool = True, max_tokens: int = 64, **extra: Any
) -> dict[str, Any]:
    body: dict[str, Any] = {
        "model": "claude-sonnet-4-5",
        "max_tokens": max_tokens,
        "temperature": 0,
        "messages": [{"role": "user", "content": text}],
        **extra,
    }
    if stream:
        body["stream"] = True
    return body


def expect_stream(
    resp: httpx.Response, server: LlamaServer, *, error: bool | None = False
) -> ValidatedStream:
    assert resp.status_code == 200, f"{resp.status_code} {resp.text}\n{server.log_tail()}"
    assert resp.headers["content-type"].startswith("text/event-stream")
    return validate_anthropic_stream(resp.content, expect_error=error)


def weather_call(proxy: ProxyHandle, server: LlamaServer) -> tuple[dict[str, Any], ValidatedStream]:
    first = request(
        "What is the weather in Paris right now? Use the tool.",
        max_tokens=96,
        tools=[WEATHER_TOOL],
        system=[{"type": "text", "text": SYSTEM}],
    )
    stream = expect_stream(post(proxy, first), server)
    return first, stream


# ------------------------------------------------------------------------------------------
# text
# ------------------------------------------------------------------------------------------


def test_text_reply_streamed(proxy_factory: ProxyFactory, smollm_server: LlamaServer) -> None:
    proxy = proxy_for(proxy_factory, smollm_server, "smollm2-135m-instruct")
    stream = expect_stream(post(proxy, request("Say hello in one short sentence.")), smollm_server)
    assert stream.completed
    assert [b["type"] for b in stream.content] == ["text"]
    assert stream.text.strip()
    assert stream.stop_reason in ("end_turn", "max_tokens")
    assert stream.message is not None and stream.message["model"] == "claude-sonnet-4-5"
    # llama-server reports usage when asked through stream_options.
    assert stream.usage["input_tokens"] > 5
    assert 0 < stream.usage["output_tokens"] <= 64


def test_text_reply_not_streamed(proxy_factory: ProxyFactory, smollm_server: LlamaServer) -> None:
    proxy = proxy_for(proxy_factory, smollm_server, "smollm2-135m-instruct")
    resp = post(proxy, request("Name one colour.", stream=False, max_tokens=24))
    assert resp.status_code == 200, f"{resp.text}\n{smollm_server.log_tail()}"
    message = validate_anthropic_message(resp.content)
    assert message["content"] and message["content"][0]["type"] == "text"
    assert message["stop_reason"] in ("end_turn", "max_tokens")
    assert message["usage"]["input_tokens"] > 0 and message["usage"]["output_tokens"] > 0


def test_max_tokens_cut_is_reported(
    proxy_factory: ProxyFactory, smollm_server: LlamaServer
) -> None:
    proxy = proxy_for(proxy_factory, smollm_server, "smollm2-135m-instruct")
    body = request("Write a long story about a dragon and a castle.", max_tokens=8)
    stream = expect_stream(post(proxy, body), smollm_server)
    assert stream.stop_reason == "max_tokens"
    assert stream.usage["output_tokens"] == 8


# ------------------------------------------------------------------------------------------
# tools
# ------------------------------------------------------------------------------------------


def test_tool_call(proxy_factory: ProxyFactory, qwen_server: LlamaServer) -> None:
    proxy = proxy_for(proxy_factory, qwen_server, "qwen2.5-coder-0.5b-instruct")
    _, stream = weather_call(proxy, qwen_server)
    assert stream.completed
    kinds = [b["type"] for b in stream.content]
    assert "thinking" not in kinds
    assert kinds[-1] == "tool_use", stream.content
    (call,) = stream.tool_uses
    assert call["name"] == "get_weather"
    assert TOOL_ID_RE.match(call["id"]) and call["id"].startswith("toolu_")
    assert isinstance(call["input"].get("city"), str) and "paris" in call["input"]["city"].lower()
    assert stream.stop_reason == "tool_use"


def test_tool_round_trip(proxy_factory: ProxyFactory, qwen_server: LlamaServer) -> None:
    proxy = proxy_for(proxy_factory, qwen_server, "qwen2.5-coder-0.5b-instruct")
    first, stream = weather_call(proxy, qwen_server)
    assert stream.stop_reason == "tool_use", stream.content
    (call,) = stream.tool_uses
    follow_up = dict(first)
    follow_up["messages"] = [
        *first["messages"],
        {"role": "assistant", "content": stream.content},  # echoed back as Claude Code does
        {
            "role": "user",
            "content": [
                {
                    "type": "tool_result",
                    "tool_use_id": call["id"],
                    "content": "Sunny, 24 degrees Celsius, light wind.",
                },
                {"type": "text", "text": "In plain English, without JSON: is it sunny in Paris?"},
            ],
        },
    ]
    final = expect_stream(post(proxy, follow_up), qwen_server)
    assert final.completed
    assert final.text.strip(), final.content
    assert final.stop_reason in ("end_turn", "max_tokens")
    assert not final.tool_uses
    assert re.search(r"sunny|24", final.text, re.I), final.text


# ------------------------------------------------------------------------------------------
# errors
# ------------------------------------------------------------------------------------------


def long_text(words: int) -> str:
    rng = random.Random(7)
    vocabulary = ["alpha", "river", "stone", "cloud", "orange", "window", "market", "silver"]
    return " ".join(f"{rng.choice(vocabulary)}{i}" for i in range(words))


@pytest.mark.parametrize("stream", [True, False], ids=["stream", "json"])
def test_context_too_long(
    proxy_factory: ProxyFactory, qwen_server: LlamaServer, stream: bool
) -> None:
    proxy = proxy_for(proxy_factory, qwen_server, "qwen2.5-coder-0.5b-instruct")
    resp = post(proxy, request(long_text(3000), stream=stream, max_tokens=16))
    assert resp.status_code == 400, resp.text
    err = validate_anthropic_error(resp.content, status=400, error_type="invalid_request_error")
    match = OVERFLOW_RE.match(err["message"])
    assert match, err["message"]
    used, limit = int(match.group(1)), int(match.group(2))
    assert limit == 4096 and used > limit


# Prompts that make the model answer with a tool-call-shaped JSON object that llama-server's
# template-derived parser then rejects ("does not match the expected … format") after it has
# already streamed part of the reply.
UNPARSEABLE_PROMPTS = (
    'Reply with exactly this text and nothing else: {"name": "get_weather", "arguments": '
    '{"city": "Paris"}} and then say done',
    'Reply with exactly this text and nothing else: {"name": "launch_rocket", "arguments": '
    '{"target": "moon"}}',
)


def test_reply_the_server_cannot_parse_mid_stream(
    proxy_factory: ProxyFactory, qwen_server: LlamaServer
) -> None:
    proxy = proxy_for(proxy_factory, qwen_server, "qwen2.5-coder-0.5b-instruct")
    for prompt in UNPARSEABLE_PROMPTS:
        resp = post(proxy, request(prompt, max_tokens=80, tools=[WEATHER_TOOL]))
        stream = expect_stream(resp, qwen_server, error=None)
        if stream.error is not None:
            break
    else:
        pytest.skip("the model produced parseable replies this time; no mid-stream parse error")
    # The SSE already started (200, message_start), so the failure must be an error event. The
    # validator has checked that text and thinking blocks were stopped first; a tool call the
    # failure cut stays open, never closed with made-up arguments the client would run.
    assert stream.message is not None
    if stream.left_open is not None:
        assert stream.tool_uses[-1] is stream.left_open
    assert stream.error["type"] == "api_error"
    assert "does not match" in stream.error["message"] or "pars" in stream.error["message"]


def test_reply_the_server_cannot_parse_not_streamed(
    proxy_factory: ProxyFactory, qwen_server: LlamaServer
) -> None:
    """Without streaming llama-server answers 500; the client gets a retryable api_error."""
    proxy = proxy_for(proxy_factory, qwen_server, "qwen2.5-coder-0.5b-instruct")
    for prompt in UNPARSEABLE_PROMPTS:
        resp = post(proxy, request(prompt, stream=False, max_tokens=80, tools=[WEATHER_TOOL]))
        if resp.status_code != 200:
            break
    else:
        pytest.skip("the model produced parseable replies this time; no parse error")
    err = validate_anthropic_error(resp.content, status=resp.status_code, error_type="api_error")
    assert resp.status_code == 500
    assert "does not match" in err["message"]
