"""The web_search server tool end to end through the running proxy: the search loop.

A scripted OpenAI upstream plays the model (it calls `web_search`, then answers) and a mock
SearXNG (tests/mock_search.py) plays the search engine; the client sees what the Anthropic
API sends for a server-tool turn, streaming and not.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import httpx
import pytest

from mock_search import BRAVE_KEY, SEARXNG_PATH, MockSearch
from mock_upstream import (
    MockUpstream,
    completion,
    error_response,
    json_response,
    sse_response,
    text_chunks,
    tool_call_chunks,
)
from sse_validator import validate_anthropic_message, validate_anthropic_stream
from test_faults import RawClient

if TYPE_CHECKING:
    from conftest import ProxyFactory, ProxyHandle

HEADERS = {"x-api-key": "sk-ant-client", "anthropic-version": "2023-06-01"}
TOOL = {"type": "web_search_20250305", "name": "web_search", "max_uses": 8}
QUESTION = "What is new in Python 3.13? Search the web."


@pytest.fixture
def searxng() -> Iterator[MockSearch]:
    with MockSearch() as mock:
        yield mock


@pytest.fixture
def proxy(proxy_factory: ProxyFactory, searxng: MockSearch) -> ProxyHandle:
    return proxy_factory(WEB_SEARCH_BACKEND="searxng", WEB_SEARCH_URL=searxng.origin)


def body(*, stream: bool, tool: dict[str, Any] | None = None, **extra: Any) -> dict[str, Any]:
    return {
        "model": "claude-sonnet-4-5",
        "max_tokens": 1024,
        "messages": [{"role": "user", "content": QUESTION}],
        "tools": [tool or TOOL],
        "stream": stream,
        **extra,
    }


def search_call(query: str, *, stream: bool, call_id: str = "call_s1") -> Any:
    calls = [{"id": call_id, "name": "web_search", "arguments": {"query": query}}]
    if stream:
        return sse_response(tool_call_chunks(calls, usage=(100, 10)))
    return json_response(completion(None, tool_calls=calls, usage=(100, 10)))


def answer(text: str, *, stream: bool) -> Any:
    if stream:
        return sse_response(text_chunks([text[:10], text[10:]], usage=(300, 20)))
    return json_response(completion(text, usage=(300, 20)))


def send(proxy: ProxyHandle, payload: dict[str, Any]) -> dict[str, Any]:
    """The reply as a message, validated (the stream accumulated into one)."""
    response = httpx.post(proxy.url("/v1/messages"), json=payload, headers=HEADERS, timeout=20)
    assert response.status_code == 200, response.text
    if payload.get("stream"):
        stream = validate_anthropic_stream(response.content)
        assert stream.completed
        return {
            "content": stream.content,
            "stop_reason": stream.stop_reason,
            "usage": stream.usage,
            "events": stream.event_types,
        }
    return validate_anthropic_message(response.content)


def tool_messages(request_json: dict[str, Any]) -> list[dict[str, Any]]:
    return [m for m in request_json["messages"] if m["role"] == "tool"]


# ------------------------------------------------------------------------------ the loop


@pytest.mark.parametrize("stream", [True, False], ids=["sse", "json"])
def test_one_search_then_the_answer_in_one_reply(
    proxy: ProxyHandle, mock_upstream: MockUpstream, searxng: MockSearch, stream: bool
) -> None:
    mock_upstream.enqueue(
        search_call("python 3.13 new features", stream=stream),
        answer("Python 3.13 adds a free-threaded build.", stream=stream),
    )
    reply = send(proxy, body(stream=stream))

    use, result, text = reply["content"]
    assert use["type"] == "server_tool_use" and use["name"] == "web_search"
    assert use["id"].startswith("srvtoolu_")
    assert use["input"] == {"query": "python 3.13 new features"}
    assert result["type"] == "web_search_tool_result" and result["tool_use_id"] == use["id"]
    first = result["content"][0]
    assert first["type"] == "web_search_result"
    assert first["url"] == "https://docs.python.org/3/whatsnew/3.13.html"
    assert first["title"] == "What's New In Python 3.13"
    assert first["page_age"] == "October 7, 2024"
    assert first["encrypted_content"]
    assert text == {"type": "text", "text": "Python 3.13 adds a free-threaded build."} or (
        text["type"] == "text" and text["text"] == "Python 3.13 adds a free-threaded build."
    )
    assert reply["stop_reason"] == "end_turn"
    assert reply["usage"]["server_tool_use"] == {"web_search_requests": 1}
    assert reply["usage"]["output_tokens"] == 30  # both model calls

    (search,) = searxng.searches
    assert search.query == {"q": "python 3.13 new features", "format": "json"}
    first_call, second_call = mock_upstream.chat_requests
    offered = [t["function"] for t in first_call.json["tools"]]
    assert offered[0]["name"] == "web_search"
    assert offered[0]["parameters"]["required"] == ["query"]
    # The follow-up call carries the search as the call and its tool result.
    messages = second_call.json["messages"]
    assistant = messages[-2]
    assert assistant["role"] == "assistant"
    (call,) = assistant["tool_calls"]
    assert call["function"] == {
        "name": "web_search",
        "arguments": '{"query":"python 3.13 new features"}',
    }
    assert call["id"] == "call_s1"  # the upstream's own id, given back byte for byte
    (tool_message,) = tool_messages(second_call.json)
    assert tool_message["tool_call_id"] == call["id"]
    assert "What's New In Python 3.13" in tool_message["content"]
    assert "experimental free-threaded build" in tool_message["content"]  # the excerpt


@pytest.mark.parametrize("stream", [True, False], ids=["sse", "json"])
def test_two_searches_in_a_row(
    proxy: ProxyHandle, mock_upstream: MockUpstream, searxng: MockSearch, stream: bool
) -> None:
    mock_upstream.enqueue(
        search_call("first query", stream=stream),
        search_call("second query", stream=stream, call_id="call_s2"),
        answer("Done after two searches.", stream=stream),
    )
    reply = send(proxy, body(stream=stream))
    kinds = [block["type"] for block in reply["content"]]
    assert kinds == [
        "server_tool_use",
        "web_search_tool_result",
        "server_tool_use",
        "web_search_tool_result",
        "text",
    ]
    assert [s.query["q"] for s in searxng.searches] == ["first query", "second query"]
    assert reply["usage"]["server_tool_use"] == {"web_search_requests": 2}
    third = mock_upstream.chat_requests[2].json
    assert len(tool_messages(third)) == 2


@pytest.mark.parametrize("stream", [True, False], ids=["sse", "json"])
def test_max_uses_exceeded_then_the_model_must_answer(
    proxy: ProxyHandle, mock_upstream: MockUpstream, searxng: MockSearch, stream: bool
) -> None:
    tool = dict(TOOL, max_uses=1)
    mock_upstream.enqueue(
        search_call("one", stream=stream),
        search_call("two", stream=stream, call_id="call_s2"),
        answer("Answer from one search.", stream=stream),
    )
    reply = send(proxy, body(stream=stream, tool=tool))
    results = [b for b in reply["content"] if b["type"] == "web_search_tool_result"]
    assert isinstance(results[0]["content"], list)
    assert results[1]["content"] == {
        "type": "web_search_tool_result_error",
        "error_code": "max_uses_exceeded",
    }
    assert len(searxng.searches) == 1
    assert reply["usage"]["server_tool_use"] == {"web_search_requests": 1}
    third = mock_upstream.chat_requests[2].json
    assert third["tool_choice"] == "none"
    assert "max_uses_exceeded" in tool_messages(third)[-1]["content"]


@pytest.mark.parametrize("stream", [True, False], ids=["sse", "json"])
def test_backend_error_is_a_result_the_model_reads(
    proxy: ProxyHandle, mock_upstream: MockUpstream, searxng: MockSearch, stream: bool
) -> None:
    searxng.enqueue(json_response({"error": "boom"}, status=500), path=SEARXNG_PATH)
    mock_upstream.enqueue(
        search_call("anything", stream=stream), answer("Search is down.", stream=stream)
    )
    reply = send(proxy, body(stream=stream))
    result = reply["content"][1]
    assert result["content"] == {
        "type": "web_search_tool_result_error",
        "error_code": "unavailable",
    }
    assert reply["usage"]["server_tool_use"] == {"web_search_requests": 0}
    follow_up = mock_upstream.chat_requests[1].json
    assert tool_messages(follow_up)[0]["content"].startswith("Web search failed (unavailable)")


def test_rate_limited_backend_answers_too_many_requests(
    proxy: ProxyHandle, mock_upstream: MockUpstream, searxng: MockSearch
) -> None:
    searxng.enqueue(error_response(429, "slow down"), path=SEARXNG_PATH)
    mock_upstream.enqueue(search_call("q", stream=False), answer("Later.", stream=False))
    reply = send(proxy, body(stream=False))
    assert reply["content"][1]["content"]["error_code"] == "too_many_requests"


@pytest.mark.parametrize(
    ("tool_input", "code"),
    [({"q": "wrong field"}, "invalid_tool_input"), ({"query": "x" * 401}, "query_too_long")],
)
def test_bad_queries_are_refused_without_searching(
    proxy: ProxyHandle,
    mock_upstream: MockUpstream,
    searxng: MockSearch,
    tool_input: dict[str, Any],
    code: str,
) -> None:
    calls = [{"id": "c1", "name": "web_search", "arguments": tool_input}]
    mock_upstream.enqueue(
        json_response(completion(None, tool_calls=calls)), answer("ok", stream=False)
    )
    reply = send(proxy, body(stream=False))
    assert reply["content"][1]["content"]["error_code"] == code
    assert searxng.searches == []


@pytest.mark.parametrize("stream", [True, False], ids=["sse", "json"])
def test_allowed_domains_are_enforced_on_the_results(
    proxy: ProxyHandle, mock_upstream: MockUpstream, searxng: MockSearch, stream: bool
) -> None:
    tool = dict(TOOL, allowed_domains=["python.org"])
    mock_upstream.enqueue(search_call("python", stream=stream), answer("ok.", stream=stream))
    reply = send(proxy, body(stream=stream, tool=tool))
    urls = [item["url"] for item in reply["content"][1]["content"]]
    assert urls == ["https://docs.python.org/3/whatsnew/3.13.html"]  # subdomains count
    assert searxng.searches[0].query["q"] == "python site:python.org"
    description = mock_upstream.chat_requests[0].json["tools"][0]["function"]["description"]
    assert "python.org" in description


def test_blocked_domains_are_removed_from_the_results(
    proxy: ProxyHandle, mock_upstream: MockUpstream
) -> None:
    tool = dict(TOOL, blocked_domains=["wikipedia.org", "example.org"])
    mock_upstream.enqueue(search_call("python", stream=False), answer("ok.", stream=False))
    reply = send(proxy, body(stream=False, tool=tool))
    urls = [item["url"] for item in reply["content"][1]["content"]]
    assert urls == ["https://docs.python.org/3/whatsnew/3.13.html"]


def test_both_domain_lists_is_a_400(proxy: ProxyHandle, mock_upstream: MockUpstream) -> None:
    tool = dict(TOOL, allowed_domains=["a.com"], blocked_domains=["b.com"])
    response = httpx.post(
        proxy.url("/v1/messages"), json=body(stream=False, tool=tool), headers=HEADERS
    )
    assert response.status_code == 400
    assert response.json()["error"]["type"] == "invalid_request_error"
    assert mock_upstream.chat_requests == []


def test_earlier_search_blocks_in_history_reach_the_model_as_call_and_result(
    proxy: ProxyHandle, mock_upstream: MockUpstream
) -> None:
    # A first turn through the proxy, then its reply sent back as history.
    mock_upstream.enqueue(search_call("python 3.13", stream=False), answer("Noted.", stream=False))
    first = send(proxy, body(stream=False))
    mock_upstream.enqueue(answer("It was released in October 2024.", stream=False))
    history = body(stream=False)
    history["messages"] += [
        {"role": "assistant", "content": first["content"]},
        {"role": "user", "content": "When was it released?"},
    ]
    send(proxy, history)
    messages = mock_upstream.chat_requests[-1].json["messages"]
    roles = [m["role"] for m in messages]
    assert roles == ["user", "assistant", "tool", "assistant", "user"]
    assert messages[1]["tool_calls"][0]["function"]["name"] == "web_search"
    assert messages[2]["tool_call_id"] == messages[1]["tool_calls"][0]["id"]
    # encrypted_content was decoded: the model reads the excerpt again.
    assert "experimental free-threaded build" in messages[2]["content"]
    assert messages[3]["content"] == "Noted."


def test_a_client_tool_called_beside_a_search_ends_the_turn_for_the_client(
    proxy: ProxyHandle, mock_upstream: MockUpstream, searxng: MockSearch
) -> None:
    calls = [
        {"id": "c1", "name": "web_search", "arguments": {"query": "weather oslo"}},
        {"id": "c2", "name": "Bash", "arguments": {"command": "date"}},
    ]
    mock_upstream.enqueue(sse_response(tool_call_chunks(calls)))
    bash = {"name": "Bash", "input_schema": {"type": "object", "properties": {}}}
    reply = send(proxy, body(stream=True, tools=[TOOL, bash]))
    kinds = [block["type"] for block in reply["content"]]
    assert kinds == ["server_tool_use", "tool_use", "web_search_tool_result"]
    assert reply["stop_reason"] == "tool_use"
    assert len(mock_upstream.chat_requests) == 1
    assert len(searxng.searches) == 1


def test_tool_choice_naming_web_search_forces_the_function_once(
    proxy: ProxyHandle, mock_upstream: MockUpstream
) -> None:
    mock_upstream.enqueue(search_call("q", stream=False), answer("ok.", stream=False))
    send(proxy, body(stream=False, tool_choice={"type": "tool", "name": "web_search"}))
    first, second = (r.json for r in mock_upstream.chat_requests)
    assert first["tool_choice"] == {"type": "function", "function": {"name": "web_search"}}
    assert second["tool_choice"] == "auto"


def test_a_failed_follow_up_call_ends_the_stream_with_an_error_event(
    proxy: ProxyHandle, mock_upstream: MockUpstream
) -> None:
    mock_upstream.enqueue(
        search_call("q", stream=True), error_response(400, "bad request", "invalid_request_error")
    )
    response = httpx.post(
        proxy.url("/v1/messages"), json=body(stream=True), headers=HEADERS, timeout=20
    )
    stream = validate_anthropic_stream(response.content, expect_error=True)
    assert stream.error is not None and stream.error["type"] == "invalid_request_error"
    assert [b["type"] for b in stream.content] == ["server_tool_use", "web_search_tool_result"]


def test_a_refused_first_call_keeps_its_http_status(
    proxy: ProxyHandle, mock_upstream: MockUpstream
) -> None:
    mock_upstream.enqueue(error_response(401, "bad key", "invalid_api_key"))
    response = httpx.post(proxy.url("/v1/messages"), json=body(stream=True), headers=HEADERS)
    assert response.status_code == 401
    assert response.json()["type"] == "error"


# ------------------------------------------------------------------- configuration, metrics


def test_without_a_backend_every_search_is_unavailable_and_one_warning_says_why(
    proxy_factory: ProxyFactory, mock_upstream: MockUpstream, caplog: pytest.LogCaptureFixture
) -> None:
    proxy = proxy_factory()
    for _ in range(2):
        mock_upstream.enqueue(search_call("q", stream=True), answer("No search.", stream=True))
    with caplog.at_level(logging.WARNING, logger="claude_code_proxy"):
        for _ in range(2):
            reply = send(proxy, body(stream=True))
            assert reply["content"][1]["content"]["error_code"] == "unavailable"
    warnings = [r.getMessage() for r in caplog.records if "WEB_SEARCH_BACKEND" in r.getMessage()]
    assert len(warnings) == 1
    # Still offered to the model.
    assert mock_upstream.chat_requests[0].json["tools"][0]["function"]["name"] == "web_search"


def test_metrics_count_searches_by_backend_and_outcome(
    proxy: ProxyHandle, mock_upstream: MockUpstream, searxng: MockSearch
) -> None:
    searxng.enqueue(json_response({}, status=502), path=SEARXNG_PATH)
    mock_upstream.enqueue(
        search_call("a", stream=False),
        search_call("b", stream=False, call_id="c2"),
        answer("ok.", stream=False),
    )
    send(proxy, body(stream=False))
    metrics = httpx.get(proxy.url("/metrics")).text
    assert 'ccp_web_searches_total{backend="searxng",outcome="unavailable"} 1.0' in metrics
    assert 'ccp_web_searches_total{backend="searxng",outcome="ok"} 1.0' in metrics


def test_search_keys_never_reach_the_logs(
    proxy_factory: ProxyFactory,
    mock_upstream: MockUpstream,
    searxng: MockSearch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    proxy = proxy_factory(
        WEB_SEARCH_BACKEND="brave",
        WEB_SEARCH_URL=searxng.origin,
        WEB_SEARCH_API_KEY=BRAVE_KEY,
        LOG_LEVEL="DEBUG",
    )
    searxng.enqueue(error_response(429, f"quota for {BRAVE_KEY}"), path="/res/v1/web/search")
    mock_upstream.enqueue(
        search_call("a", stream=False),
        search_call("b", stream=False, call_id="c2"),
        answer("ok.", stream=False),
    )
    with caplog.at_level(logging.DEBUG):
        reply = send(proxy, body(stream=False))
    codes = [
        b["content"]["error_code"] if isinstance(b["content"], dict) else "ok"
        for b in reply["content"]
        if b["type"] == "web_search_tool_result"
    ]
    assert codes == ["too_many_requests", "ok"]
    assert searxng.searches[-1].headers["x-subscription-token"] == BRAVE_KEY
    assert BRAVE_KEY not in caplog.text
    assert BRAVE_KEY not in repr(proxy.settings)


# ------------------------------------------------------------------------------ cancellation


@pytest.mark.parametrize("stream", [True, False], ids=["sse", "json"])
def test_client_gone_mid_search_aborts_the_search_and_calls_no_model(
    proxy_factory: ProxyFactory, mock_upstream: MockUpstream, searxng: MockSearch, stream: bool
) -> None:
    proxy = proxy_factory(
        WEB_SEARCH_BACKEND="searxng", WEB_SEARCH_URL=searxng.origin, WEB_SEARCH_TIMEOUT="60"
    )
    searxng.enqueue(json_response({"results": []}, hang_before_headers=60), path=SEARXNG_PATH)
    mock_upstream.enqueue(search_call("slow", stream=stream), answer("never", stream=stream))
    client = RawClient(proxy, body(stream=stream))
    try:
        searxng.wait_for_requests(1, timeout=5)
    finally:
        client.close()
    searxng.wait_for(lambda m: m.searches[0].client_disconnected, timeout=5)
    assert len(mock_upstream.chat_requests) == 1
    assert mock_upstream.pending() == 1  # the answer was never asked for
    # Nothing leaked: the next turn works.
    mock_upstream.reset()
    mock_upstream.enqueue(search_call("fast", stream=True), answer("Fine.", stream=True))
    assert send(proxy, body(stream=True))["content"][-1]["text"] == "Fine."


def test_search_events_are_json_lines_claude_code_can_read(
    proxy: ProxyHandle, mock_upstream: MockUpstream
) -> None:
    """The exact SSE records of a search turn: one message, contiguous indexes."""
    mock_upstream.enqueue(search_call("q", stream=True), answer("Answer here.", stream=True))
    response = httpx.post(proxy.url("/v1/messages"), json=body(stream=True), headers=HEADERS)
    records = [
        json.loads(line[6:]) for line in response.text.splitlines() if line.startswith("data: ")
    ]
    starts = [r for r in records if r["type"] == "content_block_start"]
    assert [s["index"] for s in starts] == [0, 1, 2]
    assert [r["type"] for r in records].count("message_start") == 1
    assert [r["type"] for r in records].count("message_delta") == 1
    assert starts[1]["content_block"]["type"] == "web_search_tool_result"


# ----------------------------------------------------------------- the Responses API dialect


@pytest.mark.parametrize("stream", [True, False], ids=["sse", "json"])
def test_search_turn_on_the_responses_api(
    proxy_factory: ProxyFactory, mock_upstream: MockUpstream, searxng: MockSearch, stream: bool
) -> None:
    """The loop is dialect-neutral: function_call → search → function_call_output, with the
    reasoning item and the upstream's own call_id given back as issued."""
    from mock_responses import RESPONSES_PATH, ResponseScript, ResponsesUpstream

    first = (
        ResponseScript()
        .reasoning("I should search.")
        .function_call("web_search", {"query": "python 3.13"}, call_id="call_ws1")
    )
    upstream = ResponsesUpstream(replies=[first, ResponseScript().text("Free-threaded.")])
    mock_upstream.route(RESPONSES_PATH, upstream)
    proxy = proxy_factory(
        UPSTREAM_API="responses",
        BIG_MODEL="gpt-5-codex",
        MIDDLE_MODEL="gpt-5-codex",
        WEB_SEARCH_BACKEND="searxng",
        WEB_SEARCH_URL=searxng.origin,
    )
    reply = send(proxy, body(stream=stream))
    kinds = [block["type"] for block in reply["content"]]
    assert kinds == ["thinking", "server_tool_use", "web_search_tool_result", "text"]
    assert reply["usage"]["server_tool_use"] == {"web_search_requests": 1}
    assert len(upstream.requests) == 2  # the mock rejects (400) a wrong round trip
    offered = upstream.requests[0]["tools"]
    assert [t["name"] for t in offered] == ["web_search"]
    items = upstream.requests[1]["input"]
    call = next(i for i in items if i.get("type") == "function_call")
    output = next(i for i in items if i.get("type") == "function_call_output")
    assert call["call_id"] == output["call_id"] == "call_ws1"
    assert "What's New In Python 3.13" in output["output"]
