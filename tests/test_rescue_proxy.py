"""Tool calls written as text, through the running proxy: on by default, off by profile,
counted in /metrics."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx
from prometheus_client.parser import text_string_to_metric_families

from claude_code_proxy.gateway.capabilities import profile_for
from mock_upstream import MockUpstream, completion, json_response, sse_response, text_chunks
from sse_validator import validate_anthropic_message, validate_anthropic_stream

if TYPE_CHECKING:
    from conftest import ProxyFactory

HEADERS = {"x-api-key": "sk-ant-client-key-0001", "anthropic-version": "2023-06-01"}
TIMEOUT = httpx.Timeout(20.0, connect=5.0)
READ_TOOL = {
    "name": "Read",
    "description": "Read a file",
    "input_schema": {
        "type": "object",
        "properties": {"file_path": {"type": "string"}},
        "required": ["file_path"],
    },
}
CALL_TEXT = '{"name": "Read", "arguments": {"file_path": "/etc/hostname"}}'


def body(stream: bool) -> dict[str, Any]:
    return {
        "model": "claude-sonnet-4-5",
        "max_tokens": 200,
        "stream": stream,
        "tools": [READ_TOOL],
        "messages": [{"role": "user", "content": "Read /etc/hostname"}],
    }


def rescued_count(url: str) -> float:
    text = httpx.get(url + "/metrics", timeout=TIMEOUT).text
    return sum(
        sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name == "ccp_rescued_tool_calls_total"
    )


def test_calls_written_as_text_become_tool_use_and_are_counted(
    proxy_factory: ProxyFactory, mock_upstream: MockUpstream
) -> None:
    proxy = proxy_factory()
    pieces = ["I'll read it.\n", CALL_TEXT[:17], CALL_TEXT[17:]]
    mock_upstream.enqueue(sse_response(text_chunks(pieces, usage=(30, 12))))
    resp = httpx.post(proxy.url("/v1/messages"), json=body(True), headers=HEADERS, timeout=TIMEOUT)
    stream = validate_anthropic_stream(resp.content)
    assert [b["type"] for b in stream.content] == ["text", "tool_use"]
    assert stream.tool_uses[0]["input"] == {"file_path": "/etc/hostname"}
    assert stream.stop_reason == "tool_use"

    mock_upstream.enqueue(json_response(completion(f"<tool_call>\n{CALL_TEXT}\n</tool_call>")))
    resp = httpx.post(proxy.url("/v1/messages"), json=body(False), headers=HEADERS, timeout=TIMEOUT)
    message = validate_anthropic_message(resp.content)
    assert [b["type"] for b in message["content"]] == ["tool_use"]
    assert message["stop_reason"] == "tool_use"
    assert rescued_count(proxy.url("")) == 2


def test_a_profile_turns_the_rescue_off(
    proxy_factory: ProxyFactory, mock_upstream: MockUpstream, tmp_path: Path
) -> None:
    profiles = tmp_path / "profiles.json"
    profiles.write_text(json.dumps({"providers": {"127.0.0.1:*": {"rescue_tool_calls": False}}}))
    proxy = proxy_factory(PROVIDER_PROFILES=str(profiles))
    mock_upstream.enqueue(json_response(completion(CALL_TEXT)))
    resp = httpx.post(proxy.url("/v1/messages"), json=body(False), headers=HEADERS, timeout=TIMEOUT)
    message = validate_anthropic_message(resp.content)
    assert message["content"] == [{"type": "text", "text": CALL_TEXT}]
    assert message["stop_reason"] == "end_turn"
    assert rescued_count(proxy.url("")) == 0


def test_on_for_local_servers_off_for_hosted_providers() -> None:
    for url in ("http://localhost:11434/v1", "http://127.0.0.1:8080/v1", "http://gpu:8000/v1"):
        assert profile_for(url, "qwen3-coder").rescue_tool_calls, url
    assert profile_for("http://my-gateway.internal/v1", "some-model").rescue_tool_calls
    for url in (
        "https://api.openai.com/v1",
        "https://openrouter.ai/api/v1",
        "https://api.groq.com/openai/v1",
        "https://x.openai.azure.com/openai",
    ):
        assert not profile_for(url, "gpt-4o").rescue_tool_calls, url
