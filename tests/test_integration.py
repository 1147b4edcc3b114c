"""End-to-end behaviour of the running proxy: real sockets on both sides.

Every test talks HTTP to a proxy served by uvicorn (``proxy`` / ``proxy_factory``) whose upstream
is the scripted ``mock_upstream``.  Streams are checked with the strict SSE validator, errors with
the Anthropic error validator, and the translated upstream request is inspected on the mock.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import httpx
import pytest

from mock_upstream import (
    MockUpstream,
    completion,
    error_response,
    json_response,
    raw_response,
    reasoning_chunks,
    sse_response,
    text_chunks,
    tool_call_chunks,
    usage_chunk,
)
from sse_validator import (
    ValidatedStream,
    validate_anthropic_error,
    validate_anthropic_message,
    validate_anthropic_stream,
)

if TYPE_CHECKING:
    from conftest import ProxyFactory, ProxyHandle

CLIENT_KEY = "sk-ant-client-key-0001"
UPSTREAM_KEY = "sk-upstream-test"  # DEFAULT_PROXY_ENV["OPENAI_API_KEY"]
TIMEOUT = httpx.Timeout(20.0, connect=5.0)
# Top-level fields an OpenAI Chat Completions request may carry after translation.
OPENAI_FIELDS = frozenset(
    {
        "model",
        "messages",
        "max_tokens",
        "max_completion_tokens",
        "stream",
        "stream_options",
        "tools",
        "tool_choice",
        "parallel_tool_calls",
        "temperature",
        "top_p",
        "stop",
        "response_format",
        "reasoning_effort",
        "user",
        "safety_identifier",
        "prompt_cache_key",
    }
)


# ------------------------------------------------------------------------------------------
# helpers
# ------------------------------------------------------------------------------------------


def make_body(
    model: str = "claude-sonnet-4-5",
    *,
    stream: bool = False,
    max_tokens: int = 1024,
    text: str = "Say hello",
    **extra: Any,
) -> dict[str, Any]:
    body: dict[str, Any] = {
        "model": model,
        "max_tokens": max_tokens,
        "messages": [{"role": "user", "content": text}],
        **extra,
    }
    if stream:
        body["stream"] = True
    return body


def client_headers(**extra: str) -> dict[str, str]:
    return {"x-api-key": CLIENT_KEY, "anthropic-version": "2023-06-01", **extra}


def post(
    proxy: ProxyHandle,
    payload: Any,
    *,
    path: str = "/v1/messages",
    headers: dict[str, str] | None = None,
) -> httpx.Response:
    hdrs = client_headers() if headers is None else headers
    if isinstance(payload, (bytes, str)):
        hdrs = {"content-type": "application/json", **hdrs}
        return httpx.post(proxy.url(path), content=payload, headers=hdrs, timeout=TIMEOUT)
    return httpx.post(proxy.url(path), json=payload, headers=hdrs, timeout=TIMEOUT)


def assert_request_id(resp: httpx.Response) -> None:
    rid = resp.headers.get("request-id")
    assert rid is not None and rid.startswith("req_") and len(rid) > 4, resp.headers


def expect_stream(resp: httpx.Response, *, expect_error: bool = False) -> ValidatedStream:
    assert resp.status_code == 200, resp.text
    assert resp.headers["content-type"].startswith("text/event-stream"), resp.headers
    assert_request_id(resp)
    return validate_anthropic_stream(resp.content, expect_error=expect_error)


def expect_message(resp: httpx.Response) -> dict[str, Any]:
    assert resp.status_code == 200, resp.text
    assert resp.headers["content-type"].startswith("application/json"), resp.headers
    assert_request_id(resp)
    return validate_anthropic_message(resp.content)


def expect_error(resp: httpx.Response, status: int, error_type: str) -> dict[str, Any]:
    assert resp.status_code == status, (resp.status_code, resp.text)
    assert resp.headers["content-type"].startswith("application/json"), resp.headers
    assert_request_id(resp)
    return validate_anthropic_error(resp.content, status=status, error_type=error_type)


def upstream_max_tokens(payload: dict[str, Any]) -> int:
    fields = [f for f in ("max_tokens", "max_completion_tokens") if f in payload]
    assert len(fields) == 1, f"exactly one max-tokens field expected: {payload.keys()}"
    return int(payload[fields[0]])


def walk_keys(value: Any) -> Iterator[str]:
    """Every dict key anywhere inside a JSON value."""
    if isinstance(value, dict):
        for key, item in value.items():
            yield key
            yield from walk_keys(item)
    elif isinstance(value, list):
        for item in value:
            yield from walk_keys(item)


# ------------------------------------------------------------------------------------------
# basic exchange, model mapping, max tokens, usage
# ------------------------------------------------------------------------------------------


def test_non_streaming_text_reply(proxy: ProxyHandle, mock_upstream: MockUpstream) -> None:
    resp = post(proxy, make_body("claude-sonnet-4-5"))
    msg = expect_message(resp)
    assert msg["model"] == "claude-sonnet-4-5"
    assert msg["content"] == [{"type": "text", "text": "Hello from mock"}]
    assert msg["stop_reason"] == "end_turn"
    assert msg["usage"]["input_tokens"] == 10
    assert msg["usage"]["output_tokens"] == 5
    sent = mock_upstream.last_request.json
    assert "stream" not in sent or sent["stream"] is False
    assert sent["messages"][-1] == {"role": "user", "content": "Say hello"}


def test_streaming_text_reply(proxy: ProxyHandle, mock_upstream: MockUpstream) -> None:
    stream = expect_stream(post(proxy, make_body(stream=True)))
    assert stream.completed
    assert stream.text == "Hello from mock"
    assert stream.stop_reason == "end_turn"
    assert stream.message is not None and stream.message["model"] == "claude-sonnet-4-5"
    assert stream.usage["output_tokens"] == 3
    assert stream.usage["input_tokens"] == 10


MODEL_MAP = [
    ("claude-3-5-haiku-20241022", "gpt-small"),
    ("claude-haiku-4-5", "gpt-small"),
    ("claude-sonnet-4-5-20250929", "gpt-middle"),
    ("claude-opus-4-1", "gpt-big"),
    ("claude-opus-5-5", "gpt-big"),
]


def test_model_mapping_and_echo(proxy: ProxyHandle, mock_upstream: MockUpstream) -> None:
    for stream in (False, True):
        for client_model, upstream_model in MODEL_MAP:
            resp = post(proxy, make_body(client_model, stream=stream))
            if stream:
                validated = expect_stream(resp)
                assert validated.message is not None
                model = validated.message["model"]
            else:
                model = expect_message(resp)["model"]
            assert model == client_model
            assert mock_upstream.last_request.json["model"] == upstream_model, client_model


def test_max_tokens_forwarded_unchanged_without_limit(
    proxy: ProxyHandle, mock_upstream: MockUpstream
) -> None:
    for stream in (False, True):
        resp = post(proxy, make_body(max_tokens=128000, stream=stream))
        assert resp.status_code == 200, resp.text
        assert upstream_max_tokens(mock_upstream.last_request.json) == 128000


def test_max_tokens_limit_clamps_only_above_the_limit(
    proxy_factory: ProxyFactory, mock_upstream: MockUpstream
) -> None:
    proxy = proxy_factory(MAX_TOKENS_LIMIT="4096")
    assert post(proxy, make_body(max_tokens=128000)).status_code == 200
    assert upstream_max_tokens(mock_upstream.last_request.json) == 4096
    assert post(proxy, make_body(max_tokens=1000, stream=True)).status_code == 200
    assert upstream_max_tokens(mock_upstream.last_request.json) == 1000


def test_stream_requests_usage_and_maps_cached_tokens(
    proxy: ProxyHandle, mock_upstream: MockUpstream
) -> None:
    mock_upstream.enqueue(
        sse_response(
            [*text_chunks(["Cached", " answer"]), usage_chunk(1000, 50, cached=800)],
        )
    )
    stream = expect_stream(post(proxy, make_body(stream=True)))
    sent = mock_upstream.last_request.json
    assert sent["stream"] is True
    assert sent["stream_options"] == {"include_usage": True}
    assert stream.text == "Cached answer"
    usage = stream.usage
    assert usage["input_tokens"] == 200
    assert usage["cache_read_input_tokens"] == 800
    assert usage["output_tokens"] == 50
    # message_delta comes after the usage chunk and carries the final totals.
    delta = next(data for name, data in stream.events if name == "message_delta")
    assert delta["usage"]["output_tokens"] == 50


def test_non_streaming_usage_maps_cached_tokens(
    proxy: ProxyHandle, mock_upstream: MockUpstream
) -> None:
    mock_upstream.enqueue(json_response(completion("ok", usage=(1000, 50, 800))))
    msg = expect_message(post(proxy, make_body()))
    assert msg["usage"]["input_tokens"] == 200
    assert msg["usage"]["cache_read_input_tokens"] == 800
    assert msg["usage"]["output_tokens"] == 50


def test_stream_without_usage_from_upstream_still_valid(
    proxy: ProxyHandle, mock_upstream: MockUpstream
) -> None:
    mock_upstream.enqueue(sse_response(text_chunks(["no", " usage"])))
    stream = expect_stream(post(proxy, make_body(stream=True)))
    assert stream.text == "no usage"
    assert isinstance(stream.usage["input_tokens"], int)
    assert isinstance(stream.usage["output_tokens"], int)


def test_upstream_answering_json_to_a_stream_request(
    proxy: ProxyHandle, mock_upstream: MockUpstream
) -> None:
    mock_upstream.enqueue(json_response(completion("Plain JSON answer", usage=(40, 7))))
    stream = expect_stream(post(proxy, make_body(stream=True)))
    assert stream.completed
    assert stream.text == "Plain JSON answer"
    assert stream.stop_reason == "end_turn"
    assert stream.usage["output_tokens"] == 7


def test_upstream_answering_json_tool_call_to_a_stream_request(
    proxy: ProxyHandle, mock_upstream: MockUpstream
) -> None:
    args = {"path": "/tmp/x.txt", "limit": 3}
    mock_upstream.enqueue(
        json_response(completion(None, tool_calls=[{"name": "Read", "arguments": args}]))
    )
    stream = expect_stream(post(proxy, make_body(stream=True, tools=[read_tool()])))
    assert stream.stop_reason == "tool_use"
    assert [(t["name"], t["input"]) for t in stream.tool_uses] == [("Read", args)]


def test_thinking_stream_through_proxy(proxy: ProxyHandle, mock_upstream: MockUpstream) -> None:
    mock_upstream.enqueue(
        sse_response(
            [
                *reasoning_chunks(["Let me ", "think."]),
                *text_chunks(["The answer."], role=False, usage=(30, 12)),
            ]
        )
    )
    stream = expect_stream(post(proxy, make_body(stream=True)))
    kinds = [b["type"] for b in stream.content]
    assert kinds == ["thinking", "text"]
    assert stream.thinking == "Let me think."
    assert stream.content[0]["signature"]
    assert stream.text == "The answer."


# ------------------------------------------------------------------------------------------
# pre-stream upstream errors
# ------------------------------------------------------------------------------------------


UPSTREAM_ERRORS = [
    (400, "invalid_request_error", 400, "invalid_request_error"),
    (401, "invalid_api_key", 401, "authentication_error"),
    (403, "permission_denied", 403, "permission_error"),
    (404, "model_not_found", 404, "not_found_error"),
    (429, "rate_limit_exceeded", 429, "rate_limit_error"),
    (500, "server_error", 500, "api_error"),
]


def test_upstream_http_errors_keep_their_status(
    proxy: ProxyHandle, mock_upstream: MockUpstream
) -> None:
    for stream in (False, True):
        for upstream_status, upstream_type, status, error_type in UPSTREAM_ERRORS:
            mock_upstream.reset()
            message = f"upstream refuses this request (HTTP {upstream_status})"
            mock_upstream.enqueue(error_response(upstream_status, message, upstream_type))
            resp = post(proxy, make_body(stream=stream))
            err = expect_error(resp, status, error_type)
            assert message in err["message"]
            assert len(mock_upstream.chat_requests) == 1, f"{upstream_status} must not be retried"


@pytest.mark.parametrize(
    ("env", "retry_after"),
    [({}, "30"), ({"MAX_RETRIES": "0"}, "7")],
    ids=["long-wait", "no-retries"],
)
def test_rate_limit_passes_retry_after(
    proxy_factory: ProxyFactory, mock_upstream: MockUpstream, env: dict[str, str], retry_after: str
) -> None:
    # A retry-after the proxy will not wait out itself (or retries disabled) reaches the client.
    proxy = proxy_factory(env)
    mock_upstream.enqueue(
        error_response(
            429,
            "Rate limit reached for requests",
            "rate_limit_exceeded",
            headers={"retry-after": retry_after},
        )
    )
    resp = post(proxy, make_body(stream=True))
    err = expect_error(resp, 429, "rate_limit_error")
    assert resp.headers.get("retry-after") == retry_after
    assert "Rate limit reached for requests" in err["message"]
    assert len(mock_upstream.chat_requests) == 1


def test_upstream_503_becomes_529_overloaded(
    proxy: ProxyHandle, mock_upstream: MockUpstream
) -> None:
    # The proxy retries 503 itself (twice): script the failure for every attempt.
    for _ in range(3):
        mock_upstream.enqueue(
            error_response(503, "The engine is currently overloaded", "server_error")
        )
    resp = post(proxy, make_body(stream=True))
    err = expect_error(resp, 529, "overloaded_error")
    assert "overloaded" in err["message"]
    assert 1 <= len(mock_upstream.chat_requests) <= 3


def test_upstream_504_becomes_504_timeout(
    proxy_factory: ProxyFactory, mock_upstream: MockUpstream
) -> None:
    proxy = proxy_factory(MAX_RETRIES="0")
    for stream in (False, True):
        mock_upstream.reset()
        mock_upstream.enqueue(error_response(504, "gateway timed out", "timeout"))
        resp = post(proxy, make_body(stream=stream))
        err = expect_error(resp, 504, "timeout_error")
        assert "gateway timed out" in err["message"]
        assert len(mock_upstream.chat_requests) == 1


def test_transient_503_is_retried_then_succeeds(
    proxy: ProxyHandle, mock_upstream: MockUpstream
) -> None:
    mock_upstream.enqueue(error_response(503, "try again", "server_error"))
    stream = expect_stream(post(proxy, make_body(stream=True)))
    assert stream.text == "Hello from mock"
    assert len(mock_upstream.chat_requests) == 2


def test_html_error_page_is_mapped(proxy: ProxyHandle, mock_upstream: MockUpstream) -> None:
    for stream in (False, True):
        page = (
            "<!DOCTYPE html><html><head><title>500 Internal Server Error</title></head>"
            "<body><h1>Internal Server Error</h1><hr><center>nginx/1.25.3</center></body></html>"
        )
        mock_upstream.enqueue(raw_response(500, page))
        err = expect_error(post(proxy, make_body(stream=stream)), 500, "api_error")
        assert "500 Internal Server Error" in err["message"]
        assert "<html" not in err["message"].lower()


def test_plain_text_error_body_is_mapped(proxy: ProxyHandle, mock_upstream: MockUpstream) -> None:
    mock_upstream.enqueue(raw_response(400, "unknown parameter: top_k", content_type="text/plain"))
    err = expect_error(post(proxy, make_body()), 400, "invalid_request_error")
    assert "unknown parameter: top_k" in err["message"]


def test_context_overflow_reads_like_anthropic(
    proxy: ProxyHandle, mock_upstream: MockUpstream
) -> None:
    mock_upstream.enqueue(
        error_response(
            400,
            "This model's maximum context length is 128000 tokens. However, your messages "
            "resulted in 140000 tokens. Please reduce the length of the messages.",
            code="context_length_exceeded",
        )
    )
    err = expect_error(post(proxy, make_body(stream=True)), 400, "invalid_request_error")
    assert "prompt is too long" in err["message"]


# ------------------------------------------------------------------------------------------
# authentication
# ------------------------------------------------------------------------------------------


def test_static_mode_sends_the_server_key_never_the_client_key(
    proxy: ProxyHandle, mock_upstream: MockUpstream
) -> None:
    for headers in (
        client_headers(),
        {"authorization": f"Bearer {CLIENT_KEY}", "anthropic-version": "2023-06-01"},
    ):
        assert post(proxy, make_body(), headers=headers).status_code == 200
        sent = mock_upstream.last_request
        assert sent.headers["authorization"] == f"Bearer {UPSTREAM_KEY}"
        assert CLIENT_KEY not in json.dumps(sent.headers)
        assert CLIENT_KEY.encode() not in sent.body


PROXY_SECRET = "proxy-secret-42"


GOOD_CREDENTIALS = [
    {"x-api-key": PROXY_SECRET},
    {"authorization": f"Bearer {PROXY_SECRET}"},
    {"x-api-key": PROXY_SECRET, "authorization": f"Bearer {PROXY_SECRET}"},
]


def test_anthropic_api_key_accepted_from_either_header(
    proxy_factory: ProxyFactory, mock_upstream: MockUpstream
) -> None:
    proxy = proxy_factory(ANTHROPIC_API_KEY=PROXY_SECRET)
    for headers in GOOD_CREDENTIALS:
        stream = expect_stream(post(proxy, make_body(stream=True), headers=headers))
        assert stream.completed, headers
        sent = mock_upstream.last_request
        assert sent.headers["authorization"] == f"Bearer {UPSTREAM_KEY}"
        assert PROXY_SECRET not in json.dumps(sent.headers)
        count = post(proxy, make_body(), path="/v1/messages/count_tokens", headers=headers)
        assert count.status_code == 200, count.text
    assert len(mock_upstream.chat_requests) == len(GOOD_CREDENTIALS)


BAD_CREDENTIALS = [
    {},
    {"x-api-key": "wrong"},
    {"authorization": "Bearer wrong"},
    {"authorization": PROXY_SECRET},  # no Bearer scheme
    {"x-api-key": PROXY_SECRET + "x"},
    {"x-api-key": PROXY_SECRET[:-1]},
]
GUARDED_ROUTES = [
    ("POST", "/v1/messages"),
    ("POST", "/v1/messages?beta=true"),
    ("POST", "/v1/messages/count_tokens"),
    ("GET", "/v1/models"),
]


def test_anthropic_api_key_rejects_other_clients(
    proxy_factory: ProxyFactory, mock_upstream: MockUpstream
) -> None:
    proxy = proxy_factory(ANTHROPIC_API_KEY=PROXY_SECRET)
    for method, path in GUARDED_ROUTES:
        for headers in BAD_CREDENTIALS:
            resp = httpx.request(
                method,
                proxy.url(path),
                json=make_body(stream=True) if method == "POST" else None,
                headers={"anthropic-version": "2023-06-01", **headers},
                timeout=TIMEOUT,
            )
            err = expect_error(resp, 401, "authentication_error")
            assert PROXY_SECRET not in err["message"]
    assert mock_upstream.requests == [], "the upstream must never be called"


def test_dynamic_mode_forwards_the_client_key(
    proxy_factory: ProxyFactory, mock_upstream: MockUpstream
) -> None:
    proxy = proxy_factory({"OPENAI_API_KEY": None})
    for stream in (False, True):
        resp = post(proxy, make_body(stream=stream), headers={"x-api-key": "sk-user-one"})
        assert resp.status_code == 200, resp.text
        assert mock_upstream.last_request.headers["authorization"] == "Bearer sk-user-one"
        resp = post(
            proxy, make_body(stream=stream), headers={"authorization": "Bearer sk-user-two"}
        )
        assert resp.status_code == 200, resp.text
        assert mock_upstream.last_request.headers["authorization"] == "Bearer sk-user-two"


def test_dynamic_mode_without_a_client_key_is_401(
    proxy_factory: ProxyFactory, mock_upstream: MockUpstream
) -> None:
    proxy = proxy_factory({"OPENAI_API_KEY": None})
    resp = post(proxy, make_body(stream=True), headers={"anthropic-version": "2023-06-01"})
    expect_error(resp, 401, "authentication_error")
    assert mock_upstream.requests == []


# ------------------------------------------------------------------------------------------
# endpoints
# ------------------------------------------------------------------------------------------


def test_beta_query_and_arbitrary_headers_accepted(
    proxy: ProxyHandle, mock_upstream: MockUpstream
) -> None:
    headers = client_headers(
        **{
            "anthropic-version": "2099-01-01",
            "anthropic-beta": "interleaved-thinking-2025-05-14,fine-grained-tool-streaming-2025-05-14,"
            "context-management-2025-06-27,some-future-beta-2030-01-01",
            "anthropic-dangerous-direct-browser-access": "true",
            "x-claude-code-session-id": "6b1e2f4a-9c3d-4e8b-a7f2-5d0c9e1b3a64",
            "x-stainless-lang": "js",
            "x-totally-unknown": "whatever",
            "user-agent": "claude-cli/2.1.331 (external, cli)",
        }
    )
    stream = expect_stream(
        post(proxy, make_body(stream=True), path="/v1/messages?beta=true", headers=headers)
    )
    assert stream.text == "Hello from mock"
    msg = expect_message(post(proxy, make_body(), path="/v1/messages?beta=true", headers=headers))
    assert msg["content"][0]["text"] == "Hello from mock"
    sent = mock_upstream.last_request
    assert "anthropic-beta" not in sent.headers
    assert "x-api-key" not in sent.headers


@pytest.mark.parametrize(
    "path", ["/v1/messages/count_tokens", "/v1/messages/count_tokens?beta=true"]
)
def test_count_tokens(proxy: ProxyHandle, mock_upstream: MockUpstream, path: str) -> None:
    small = {"model": "claude-sonnet-4-5", "messages": [{"role": "user", "content": "Hi"}]}
    big = {
        "model": "claude-sonnet-4-5",
        "system": "You are a careful assistant. " * 20,
        "messages": [{"role": "user", "content": "Explain the proxy in detail. " * 200}],
        "tools": [read_tool()],
    }
    resp_small = post(proxy, small, path=path)
    assert resp_small.status_code == 200, resp_small.text
    assert_request_id(resp_small)
    resp_big = post(proxy, big, path=path)
    assert resp_big.status_code == 200, resp_big.text
    small_n = resp_small.json()["input_tokens"]
    big_n = resp_big.json()["input_tokens"]
    assert set(resp_small.json()) == {"input_tokens"}
    assert isinstance(small_n, int) and small_n > 0
    assert big_n > small_n + 500
    assert mock_upstream.chat_requests == []


def test_count_tokens_rejects_bad_bodies(proxy: ProxyHandle) -> None:
    for payload in (
        b"{not json",
        b"",
        {"messages": [{"role": "user", "content": "x"}]},
        {"model": "claude-x"},
    ):
        resp = post(proxy, payload, path="/v1/messages/count_tokens")
        expect_error(resp, 400, "invalid_request_error")


def test_models_list(proxy: ProxyHandle) -> None:
    resp = httpx.get(proxy.url("/v1/models"), headers=client_headers(), timeout=TIMEOUT)
    assert resp.status_code == 200, resp.text
    assert_request_id(resp)
    page = resp.json()
    assert set(page) >= {"data", "has_more", "first_id", "last_id"}
    ids = [m["id"] for m in page["data"]]
    for entry in page["data"]:
        assert entry["type"] == "model"
        assert isinstance(entry["display_name"], str) and entry["display_name"]
        assert isinstance(entry["created_at"], str) and entry["created_at"][:2] == "20"
    assert any(i.startswith("claude-") and "haiku" in i for i in ids)
    assert any(i.startswith("claude-") and "sonnet" in i for i in ids)
    assert any(i.startswith("claude-") and "opus" in i for i in ids)
    assert {"gpt-big", "gpt-middle", "gpt-small"} <= set(ids)
    assert len(ids) == len(set(ids))
    assert page["has_more"] is False
    assert page["first_id"] == ids[0] and page["last_id"] == ids[-1]


def test_models_list_limit_and_pagination(proxy: ProxyHandle) -> None:
    all_ids = [
        m["id"]
        for m in httpx.get(
            proxy.url("/v1/models"), headers=client_headers(), timeout=TIMEOUT
        ).json()["data"]
    ]
    resp = httpx.get(proxy.url("/v1/models?limit=2"), headers=client_headers(), timeout=TIMEOUT)
    assert resp.status_code == 200, resp.text
    first = resp.json()
    assert [m["id"] for m in first["data"]] == all_ids[:2]
    assert first["has_more"] is True
    assert first["last_id"] == all_ids[1]
    collected = [m["id"] for m in first["data"]]
    cursor = first["last_id"]
    for _ in range(len(all_ids)):
        page = httpx.get(
            proxy.url(f"/v1/models?limit=2&after_id={cursor}"),
            headers=client_headers(),
            timeout=TIMEOUT,
        ).json()
        collected += [m["id"] for m in page["data"]]
        if not page["has_more"]:
            break
        cursor = page["last_id"]
    assert collected == all_ids


def test_model_retrieve(proxy: ProxyHandle) -> None:
    ids = [
        m["id"]
        for m in httpx.get(
            proxy.url("/v1/models"), headers=client_headers(), timeout=TIMEOUT
        ).json()["data"]
    ]
    for model_id in (ids[0], "gpt-small"):
        resp = httpx.get(proxy.url(f"/v1/models/{model_id}"), headers=client_headers())
        assert resp.status_code == 200, resp.text
        assert_request_id(resp)
        assert resp.json()["id"] == model_id
        assert resp.json()["type"] == "model"
    resp = httpx.get(proxy.url("/v1/models/no-such-model"), headers=client_headers())
    expect_error(resp, 404, "not_found_error")


def test_health(proxy: ProxyHandle) -> None:
    resp = httpx.get(proxy.url("/health"), timeout=TIMEOUT)
    assert resp.status_code == 200
    assert_request_id(resp)
    assert UPSTREAM_KEY not in resp.text


def test_root_and_head_reveal_no_secrets(
    proxy_factory: ProxyFactory, mock_upstream: MockUpstream
) -> None:
    proxy = proxy_factory(ANTHROPIC_API_KEY=PROXY_SECRET)
    get = httpx.get(proxy.url("/"), timeout=TIMEOUT)
    assert get.status_code == 200
    assert_request_id(get)
    head = httpx.head(proxy.url("/"), timeout=TIMEOUT)
    assert head.status_code == 200
    assert_request_id(head)
    assert head.content == b""
    for text in (get.text, json.dumps(dict(get.headers)), json.dumps(dict(head.headers))):
        assert UPSTREAM_KEY not in text
        assert PROXY_SECRET not in text
        assert mock_upstream.base_url not in text
        assert f":{mock_upstream.port}" not in text
    assert mock_upstream.requests == []


def test_test_connection_makes_a_tiny_call_to_the_small_model(
    proxy: ProxyHandle, mock_upstream: MockUpstream
) -> None:
    resp = httpx.get(proxy.url("/test-connection"), headers=client_headers(), timeout=TIMEOUT)
    assert resp.status_code == 200, resp.text
    assert_request_id(resp)
    assert UPSTREAM_KEY not in resp.text
    sent = mock_upstream.last_request
    assert sent.path == "/v1/chat/completions"
    assert sent.json["model"] == "gpt-small"
    assert upstream_max_tokens(sent.json) <= 64
    assert sent.headers["authorization"] == f"Bearer {UPSTREAM_KEY}"


def test_test_connection_reports_upstream_failure(
    proxy: ProxyHandle, mock_upstream: MockUpstream
) -> None:
    mock_upstream.enqueue(error_response(401, "Incorrect API key provided", "invalid_api_key"))
    resp = httpx.get(proxy.url("/test-connection"), headers=client_headers(), timeout=TIMEOUT)
    assert resp.status_code == 401, resp.text
    assert "Incorrect API key provided" in resp.text
    assert UPSTREAM_KEY not in resp.text


def test_unknown_route_is_anthropic_404(proxy: ProxyHandle) -> None:
    for method, path in [("GET", "/nope"), ("POST", "/v1/complete"), ("GET", "/v1/batches/x")]:
        resp = httpx.request(method, proxy.url(path), headers=client_headers(), timeout=TIMEOUT)
        expect_error(resp, 404, "not_found_error")


def test_wrong_method_is_anthropic_error(proxy: ProxyHandle) -> None:
    resp = httpx.get(proxy.url("/v1/messages"), headers=client_headers(), timeout=TIMEOUT)
    assert resp.status_code in (404, 405)
    assert_request_id(resp)
    validate_anthropic_error(resp.content)


INVALID_BODIES: list[Any] = [
    b"{not json",
    b"",
    b"[1, 2]",
    {"max_tokens": 10, "messages": [{"role": "user", "content": "x"}]},
    {"model": "claude-sonnet-4-5", "messages": [{"role": "user", "content": "x"}]},
    {"model": "claude-sonnet-4-5", "max_tokens": 10},
    {"model": "claude-sonnet-4-5", "max_tokens": "ten", "messages": []},
    {"model": "claude-sonnet-4-5", "max_tokens": 10, "messages": "hi"},
    {"model": "", "max_tokens": 10, "messages": []},
]


def test_invalid_requests_are_400(proxy: ProxyHandle, mock_upstream: MockUpstream) -> None:
    for stream in (False, True):
        for payload in INVALID_BODIES:
            if stream and isinstance(payload, dict):
                payload = {**payload, "stream": True}
            expect_error(post(proxy, payload), 400, "invalid_request_error")
        assert mock_upstream.requests == []


def test_request_too_large_is_413(proxy_factory: ProxyFactory, mock_upstream: MockUpstream) -> None:
    proxy = proxy_factory(MAX_REQUEST_BYTES="4096")
    payload = make_body(text="x" * 10_000)
    paths = ["/v1/messages", "/v1/messages?beta=true", "/v1/messages/count_tokens"]

    def chunks() -> Iterator[bytes]:  # no content-length: the size is checked while reading
        data = json.dumps(payload).encode()
        for i in range(0, len(data), 1000):
            yield data[i : i + 1000]

    for path in paths:
        expect_error(post(proxy, payload, path=path), 413, "request_too_large")
        resp = httpx.post(
            proxy.url(path),
            content=chunks(),
            headers={**client_headers(), "content-type": "application/json"},
            timeout=TIMEOUT,
        )
        expect_error(resp, 413, "request_too_large")
    assert mock_upstream.requests == []
    # A body under the limit still works.
    for path in paths:
        assert post(proxy, make_body(), path=path).status_code == 200


def test_max_tokens_zero_answers_without_upstream(
    proxy: ProxyHandle, mock_upstream: MockUpstream
) -> None:
    for stream in (False, True):
        resp = post(proxy, make_body("claude-haiku-4-5", max_tokens=0, stream=stream))
        if stream:
            validated = expect_stream(resp)
            assert validated.completed
            assert validated.content == []
            assert validated.stop_reason == "max_tokens"
            assert validated.message is not None
            assert validated.message["model"] == "claude-haiku-4-5"
        else:
            msg = validate_anthropic_message(resp.content) if resp.status_code == 200 else None
            assert msg is not None, resp.text
            assert_request_id(resp)
            assert msg["content"] == []
            assert msg["stop_reason"] == "max_tokens"
            assert msg["usage"]["output_tokens"] == 0
        assert mock_upstream.requests == []


# ------------------------------------------------------------------------------------------
# the translated upstream request
# ------------------------------------------------------------------------------------------


def read_tool(**extra: Any) -> dict[str, Any]:
    return {
        "name": "Read",
        "description": "Read a file from disk.",
        "input_schema": {
            "type": "object",
            "properties": {"path": {"type": "string"}, "limit": {"type": "integer"}},
            "required": ["path"],
        },
        **extra,
    }


def test_anthropic_only_fields_never_reach_the_upstream(
    proxy: ProxyHandle, mock_upstream: MockUpstream
) -> None:
    body = {
        "model": "claude-opus-4-1",
        "max_tokens": 32000,
        "stream": True,
        "system": [
            {"type": "text", "text": "x-anthropic-billing-header: cc_version=2.1.331.f2b;"},
            {"type": "text", "text": "You are terse.", "cache_control": {"type": "ephemeral"}},
        ],
        "messages": [
            {
                "role": "user",
                "content": [
                    {
                        "type": "text",
                        "text": "Read the file.",
                        "cache_control": {"type": "ephemeral", "ttl": "1h"},
                    }
                ],
            }
        ],
        "tools": [read_tool(cache_control={"type": "ephemeral"})],
        "tool_choice": {"type": "auto"},
        "thinking": {"type": "enabled", "budget_tokens": 8000},
        "metadata": {"user_id": "user_" + "a" * 64 + "_account__session_" + "b" * 36},
        "context_management": {"edits": [{"type": "clear_thinking_20251015", "keep": "all"}]},
        "top_k": 40,
        "temperature": 0.5,
        "top_p": 0.9,
        "service_tier": "auto",
        "output_config": {"effort": "high"},
        "cache_control": {"type": "ephemeral"},
        "container": "container_123",
        "mcp_servers": [],
        "inference_geo": "us",
    }
    expect_stream(post(proxy, body))
    sent = mock_upstream.last_request
    payload = sent.json
    unknown = set(payload) - OPENAI_FIELDS
    assert not unknown, f"Anthropic-only fields forwarded: {sorted(unknown)}"
    for forbidden in (
        "thinking",
        "metadata",
        "context_management",
        "top_k",
        "cache_control",
        "service_tier",
        "output_config",
        "container",
        "mcp_servers",
        "inference_geo",
    ):
        assert forbidden not in payload
    assert "cache_control" not in set(walk_keys(payload))
    assert b"x-anthropic-billing-header" not in sent.body
    for key in ("user", "safety_identifier", "prompt_cache_key"):
        if key in payload:
            assert isinstance(payload[key], str) and 0 < len(payload[key]) <= 64
    assert payload["temperature"] == 0.5
    assert payload["top_p"] == 0.9
    assert payload["tools"] == [
        {
            "type": "function",
            "function": {
                "name": "Read",
                "description": "Read a file from disk.",
                "parameters": read_tool()["input_schema"],
            },
        }
    ]
    assert payload["tool_choice"] == "auto"
    assert payload["messages"][0]["role"] == "system"
    assert "You are terse." in json.dumps(payload["messages"][0])


def test_tool_round_trip_message_order(proxy: ProxyHandle, mock_upstream: MockUpstream) -> None:
    body = {
        "model": "claude-sonnet-4-5",
        "max_tokens": 2048,
        "system": "Use tools.",
        "tools": [read_tool()],
        "messages": [
            {"role": "user", "content": "Read a and b."},
            {
                "role": "assistant",
                "content": [
                    {"type": "thinking", "thinking": "two reads", "signature": "sig"},
                    {"type": "text", "text": "Reading both."},
                    {"type": "tool_use", "id": "toolu_A", "name": "Read", "input": {"path": "a"}},
                    {"type": "tool_use", "id": "toolu_B", "name": "Read", "input": {"path": "b"}},
                ],
            },
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "Here you go."},
                    {"type": "tool_result", "tool_use_id": "toolu_B", "content": "content of b"},
                    {
                        "type": "tool_result",
                        "tool_use_id": "toolu_A",
                        "content": [{"type": "text", "text": "content of a"}],
                        "is_error": False,
                    },
                ],
            },
        ],
    }
    expect_message(post(proxy, body))
    messages = mock_upstream.last_request.json["messages"]
    roles = [m["role"] for m in messages]
    assert roles == ["system", "user", "assistant", "tool", "tool", "user"]
    assistant = messages[2]
    assert "Reading both." in (assistant["content"] or "")
    call_ids = [c["id"] for c in assistant["tool_calls"]]
    assert [c["function"]["name"] for c in assistant["tool_calls"]] == ["Read", "Read"]
    assert [json.loads(c["function"]["arguments"]) for c in assistant["tool_calls"]] == [
        {"path": "a"},
        {"path": "b"},
    ]
    assert len(set(call_ids)) == 2
    # tool messages directly after the assistant turn, in call order (not result order)
    assert [m["tool_call_id"] for m in messages[3:5]] == call_ids
    assert "content of a" in messages[3]["content"]
    assert "content of b" in messages[4]["content"]
    assert "Here you go." in json.dumps(messages[5]["content"])
    assert "two reads" not in json.dumps(messages)


def test_streamed_tool_call_round_trip(proxy: ProxyHandle, mock_upstream: MockUpstream) -> None:
    args = {"path": "/etc/hosts", "limit": 20}
    mock_upstream.enqueue(
        sse_response(
            [
                *text_chunks(["Let me read it."], finish_reason=None),
                *tool_call_chunks(
                    [{"id": "call_abc123", "name": "Read", "arguments": args}],
                    role=False,
                    fragment_size=4,
                    usage=(120, 30),
                ),
            ]
        )
    )
    first = make_body(stream=True, tools=[read_tool()], text="Read /etc/hosts")
    stream = expect_stream(post(proxy, first))
    assert [b["type"] for b in stream.content] == ["text", "tool_use"]
    assert stream.stop_reason == "tool_use"
    tool = stream.tool_uses[0]
    assert tool["name"] == "Read" and tool["input"] == args
    assert json.loads(stream.tool_input_json[1]) == args
    assert mock_upstream.last_request.json["tools"][0]["function"]["name"] == "Read"

    second = dict(first)
    second["messages"] = [
        *first["messages"],
        {"role": "assistant", "content": stream.content},
        {
            "role": "user",
            "content": [{"type": "tool_result", "tool_use_id": tool["id"], "content": "127.0.0.1"}],
        },
    ]
    final = expect_stream(post(proxy, second))
    assert final.text == "Hello from mock"
    messages = mock_upstream.last_request.json["messages"]
    assert [m["role"] for m in messages] == ["user", "assistant", "tool"]
    upstream_call_id = messages[1]["tool_calls"][0]["id"]
    assert messages[2]["tool_call_id"] == upstream_call_id
    assert json.loads(messages[1]["tool_calls"][0]["function"]["arguments"]) == args
    assert messages[2]["content"] == "127.0.0.1"


def test_claude_code_request_streams_to_a_write_tool_call(
    proxy: ProxyHandle, mock_upstream: MockUpstream, claude_code_request: dict[str, Any]
) -> None:
    write_args = {
        "file_path": "/home/dev/projects/exprparse/src/exprparse/parser.py",
        "content": 'def parse(text: str) -> "Node":\n    """Parse ünïcödé → AST."""\n'
        "    return _Parser(text).expression()\n",
    }
    mock_upstream.enqueue(
        sse_response(
            [
                *reasoning_chunks(["The failing test ", "needs a parser fix."]),
                *text_chunks(["I'll fix the parser now."], role=False, finish_reason=None),
                *tool_call_chunks(
                    [{"id": "call_write_1", "name": "Write", "arguments": write_args}],
                    role=False,
                    fragment_size=9,
                ),
                usage_chunk(48000, 420, cached=40000),
            ],
            delay=0.001,
        )
    )
    headers = client_headers(
        **{
            "anthropic-beta": "claude-code-20250219,interleaved-thinking-2025-05-14,"
            "context-management-2025-06-27",
            "x-claude-code-session-id": "6b1e2f4a-9c3d-4e8b-a7f2-5d0c9e1b3a64",
        }
    )
    resp = post(proxy, claude_code_request, path="/v1/messages?beta=true", headers=headers)
    stream = expect_stream(resp)
    assert stream.completed
    assert stream.message is not None and stream.message["model"] == claude_code_request["model"]
    assert [b["type"] for b in stream.content] == ["thinking", "text", "tool_use"]
    assert stream.thinking == "The failing test needs a parser fix."
    assert stream.text == "I'll fix the parser now."
    (tool,) = stream.tool_uses
    assert tool["name"] == "Write"
    assert tool["input"] == write_args
    assert tool["id"].startswith("toolu_")
    assert stream.stop_reason == "tool_use"
    assert stream.usage["input_tokens"] == 8000
    assert stream.usage["cache_read_input_tokens"] == 40000
    assert stream.usage["output_tokens"] == 420

    sent = mock_upstream.last_request
    payload = sent.json
    assert payload["model"] == "gpt-big"
    assert sent.headers["authorization"] == f"Bearer {UPSTREAM_KEY}"
    assert payload["stream"] is True
    assert payload["stream_options"] == {"include_usage": True}
    assert upstream_max_tokens(payload) == claude_code_request["max_tokens"]
    assert not set(payload) - OPENAI_FIELDS
    assert "cache_control" not in set(walk_keys(payload))
    assert b"x-anthropic-billing-header" not in sent.body
    tool_names = [t["function"]["name"] for t in payload["tools"]]
    assert "Write" in tool_names and "Bash" in tool_names
    assert "DeferredToolPlaceholder" not in tool_names
    roles = [m["role"] for m in payload["messages"]]
    assert roles[0] == "system"
    assert roles.count("system") == 1
    # Every assistant tool_calls turn is followed directly by its tool messages, in order.
    for i, message in enumerate(payload["messages"]):
        if message["role"] == "assistant" and message.get("tool_calls"):
            ids = [c["id"] for c in message["tool_calls"]]
            following = payload["messages"][i + 1 : i + 1 + len(ids)]
            assert [m["role"] for m in following] == ["tool"] * len(ids)
            assert [m["tool_call_id"] for m in following] == ids
