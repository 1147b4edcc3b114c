"""What the proxy answers when a 2xx upstream reply is a failure or names renamed tools.

Real sockets on both sides (``proxy`` fixture, scripted ``mock_upstream``); replies are checked
with the strict message, stream and error validators.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import httpx
import pytest

from claude_code_proxy.translate.ids import upstream_tool_name
from mock_upstream import MockUpstream, completion, json_response, sse_response, tool_call_chunks
from sse_validator import (
    validate_anthropic_error,
    validate_anthropic_message,
    validate_anthropic_stream,
)

if TYPE_CHECKING:
    from conftest import ProxyHandle

HEADERS = {"x-api-key": "sk-ant-client-key-0001", "anthropic-version": "2023-06-01"}
MCP_TOOL = "mcp__files__read.file"  # the dot is illegal in OpenAI function names


def body(*, stream: bool = False, tools: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    payload: dict[str, Any] = {
        "model": "claude-sonnet-4-5",
        "max_tokens": 256,
        "messages": [{"role": "user", "content": "Go"}],
        "stream": stream,
    }
    if tools:
        payload["tools"] = tools
    return payload


def post(proxy: ProxyHandle, payload: dict[str, Any]) -> httpx.Response:
    return httpx.post(proxy.url("/v1/messages"), json=payload, headers=HEADERS, timeout=20.0)


def failed_choice() -> list[dict[str, Any]]:
    return [{"index": 0, "message": {"role": "assistant", "content": ""}, "finish_reason": "error"}]


@pytest.mark.parametrize("stream", [False, True])
@pytest.mark.parametrize(
    ("reply", "status", "error_type"),
    [
        (
            {"error": {"code": 429, "message": "Rate limit exceeded"}, "choices": failed_choice()},
            429,
            "rate_limit_error",
        ),
        (
            {"error": {"code": 502, "message": "Provider returned error"}, "choices": []},
            502,
            "api_error",
        ),
        ({"id": "x", "choices": failed_choice()}, 502, "api_error"),
        ({"id": "x", "choices": []}, 502, "api_error"),
        ({"id": "x", "usage": {"prompt_tokens": 3, "completion_tokens": 0}}, 502, "api_error"),
    ],
)
def test_a_2xx_reply_that_reports_a_failure_is_an_error(
    proxy: ProxyHandle,
    mock_upstream: MockUpstream,
    reply: dict[str, Any],
    status: int,
    error_type: str,
    stream: bool,
) -> None:
    # With stream=True the upstream ignored `stream` and answered JSON: still an HTTP error,
    # since no SSE byte went out yet.
    mock_upstream.enqueue(json_response(reply))
    response = post(proxy, body(stream=stream))
    assert response.status_code == status, response.text
    validate_anthropic_error(response.content, status=status, error_type=error_type)


def read_tool() -> dict[str, Any]:
    schema = {"type": "object", "properties": {"path": {"type": "string"}}}
    return {"name": MCP_TOOL, "description": "Read a file.", "input_schema": schema}


def test_renamed_tool_comes_back_with_the_client_name(
    proxy: ProxyHandle, mock_upstream: MockUpstream
) -> None:
    upstream_name = upstream_tool_name(MCP_TOOL)
    assert upstream_name != MCP_TOOL
    call = {"name": upstream_name, "arguments": {"path": "/a"}}
    mock_upstream.enqueue(json_response(completion(None, tool_calls=[call])))
    message = validate_anthropic_message(post(proxy, body(tools=[read_tool()])).content)
    sent = mock_upstream.requests[-1].json
    assert [t["function"]["name"] for t in sent["tools"]] == [upstream_name]
    assert [(b["name"], b["input"]) for b in message["content"]] == [(MCP_TOOL, {"path": "/a"})]


def test_renamed_tool_comes_back_with_the_client_name_when_streaming(
    proxy: ProxyHandle, mock_upstream: MockUpstream
) -> None:
    call = {"name": upstream_tool_name(MCP_TOOL), "arguments": {"path": "/a"}}
    mock_upstream.enqueue(sse_response(tool_call_chunks([call], fragment_size=3)))
    response = post(proxy, body(stream=True, tools=[read_tool()]))
    assert response.status_code == 200, response.text
    stream = validate_anthropic_stream(response.content, expect_error=False)
    assert [(t["name"], t["input"]) for t in stream.tool_uses] == [(MCP_TOOL, {"path": "/a"})]
