"""Upstream failures, stalls and client disconnects, through the running proxy.

Rules under test (protocol.md A.9, A.13, E.6, F.8): before the SSE head an upstream failure is a
real HTTP error with an Anthropic body; after it the stream ends with ``event: error`` (blocks
closed, never a fake ``end_turn``); REQUEST_TIMEOUT is an idle timeout; a stream that is complete
ends promptly even when the upstream never closes; a client that hangs up aborts the upstream
request at once.  Every wait is bounded: the client's own timeouts end a test that would hang.
"""

from __future__ import annotations

import json
import socket
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import httpx
import pytest

from mock_upstream import (
    MockUpstream,
    chunk,
    disconnect,
    json_response,
    make_usage,
    raw_response,
    sse_response,
    text_chunks,
    tool_call_chunks,
    usage_chunk,
)
from sse_validator import ValidatedStream, validate_anthropic_error, validate_anthropic_stream

if TYPE_CHECKING:
    from conftest import ProxyFactory, ProxyHandle

HEADERS = {"x-api-key": "sk-ant-client", "anthropic-version": "2023-06-01"}
#: How long a mock response "hangs": far beyond any client timeout used below.
HANG = 60.0


def make_body(*, stream: bool = True, max_tokens: int = 512, **extra: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "model": "claude-sonnet-4-5",
        "max_tokens": max_tokens,
        "messages": [{"role": "user", "content": "Tell me something."}],
        **extra,
    }
    if stream:
        body["stream"] = True
    return body


@dataclass
class Reply:
    status: int
    headers: httpx.Headers
    content: bytes


def request(
    proxy: ProxyHandle,
    body: dict[str, Any],
    *,
    read_timeout: float = 10.0,
    total: float = 15.0,
) -> Reply:
    """POST /v1/messages and read the whole answer, bounded by the client's timeouts.

    ``read_timeout`` bounds every wait for bytes; ``total`` bounds the whole exchange even if
    the proxy kept trickling bytes (keep-alive pings) without ever ending the response.
    """
    deadline = time.monotonic() + total
    timeout = httpx.Timeout(read_timeout, connect=5.0)
    with (
        httpx.Client(timeout=timeout) as client,
        client.stream("POST", proxy.url("/v1/messages"), json=body, headers=HEADERS) as resp,
    ):
        data = bytearray()
        for piece in resp.iter_raw():
            data += piece
            if time.monotonic() > deadline:
                pytest.fail(f"response still open after the client's {total}s budget: {data!r}")
        return Reply(resp.status_code, resp.headers, bytes(data))


def expect_stream(reply: Reply, *, expect_error: bool) -> ValidatedStream:
    assert reply.status == 200, reply.content
    assert reply.headers["content-type"].startswith("text/event-stream")
    return validate_anthropic_stream(reply.content, expect_error=expect_error)


def expect_http_error(reply: Reply, status: int, error_type: str | None = None) -> dict[str, Any]:
    assert reply.status == status, (reply.status, reply.content)
    assert reply.headers["content-type"].startswith("application/json")
    assert reply.headers.get("request-id", "").startswith("req_")
    return validate_anthropic_error(reply.content, status=status, error_type=error_type)


def expect_stream_error(reply: Reply, error_types: tuple[str, ...]) -> ValidatedStream:
    """A stream that began normally and then ended with `event: error`, blocks closed first."""
    stream = expect_stream(reply, expect_error=True)
    assert stream.error is not None
    assert stream.error["type"] in error_types, stream.error
    names = stream.event_types
    assert "message_delta" not in names, "no fake stop_reason may precede the error"
    assert "message_stop" not in names
    assert names[-1] == "error"
    return stream


def closed_port() -> int:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    port: int = sock.getsockname()[1]
    sock.close()
    return port


# ------------------------------------------------------------------------------------------
# failures before the SSE head: real HTTP statuses
# ------------------------------------------------------------------------------------------


def test_connection_refused_is_502(
    proxy_factory: ProxyFactory, mock_upstream: MockUpstream
) -> None:
    proxy = proxy_factory(OPENAI_BASE_URL=f"http://127.0.0.1:{closed_port()}/v1", MAX_RETRIES="1")
    for stream in (False, True):
        err = expect_http_error(request(proxy, make_body(stream=stream)), 502, "api_error")
        assert "connect" in err["message"].lower()
        assert mock_upstream.requests == []


def test_html_502_page_is_mapped_with_its_title(
    proxy_factory: ProxyFactory, mock_upstream: MockUpstream
) -> None:
    proxy = proxy_factory(MAX_RETRIES="0")
    page = (
        "<html>\r\n<head><title>502 Bad Gateway</title></head>\r\n<body>\r\n"
        "<center><h1>502 Bad Gateway</h1></center>\r\n<hr><center>cloudflare</center>\r\n"
        "</body>\r\n</html>\r\n"
    )
    mock_upstream.enqueue(raw_response(502, page))
    err = expect_http_error(request(proxy, make_body()), 502)
    assert err["type"] in ("api_error", "overloaded_error")
    assert "502 Bad Gateway" in err["message"]
    assert "<" not in err["message"]


def test_upstream_closing_before_headers_is_502_after_retries(
    proxy_factory: ProxyFactory, mock_upstream: MockUpstream
) -> None:
    proxy = proxy_factory(MAX_RETRIES="1")
    mock_upstream.enqueue(disconnect(), disconnect())
    expect_http_error(request(proxy, make_body()), 502, "api_error")
    assert len(mock_upstream.chat_requests) == 2  # first try + MAX_RETRIES=1


def test_hang_before_headers_is_504_timeout(
    proxy_factory: ProxyFactory, mock_upstream: MockUpstream
) -> None:
    proxy = proxy_factory(REQUEST_TIMEOUT="0.5", MAX_RETRIES="0")
    for stream in (False, True):
        mock_upstream.enqueue(
            sse_response(text_chunks(["late"]), hang_before_headers=HANG)
            if stream
            else json_response({"never": "sent"}, hang_before_headers=HANG)
        )
        err = expect_http_error(request(proxy, make_body(stream=stream), read_timeout=8), 504)
        assert err["type"] == "timeout_error"
        # The proxy gave up on the upstream request: its connection is gone.
        mock_upstream.wait_for(lambda m: m.chat_requests[-1].client_disconnected, timeout=5)


# ------------------------------------------------------------------------------------------
# failures after the SSE head: event: error, never a fake end_turn
# ------------------------------------------------------------------------------------------


def test_top_level_error_chunk_ends_with_error_event(
    proxy: ProxyHandle, mock_upstream: MockUpstream
) -> None:
    mock_upstream.enqueue(
        sse_response(
            [
                *text_chunks(["Partial ", "answer"], finish_reason=None),
                {
                    "error": {
                        "message": "Upstream model crashed",
                        "type": "server_error",
                        "code": 500,
                    }
                },
            ]
        )
    )
    stream = expect_stream_error(request(proxy, make_body()), ("api_error", "overloaded_error"))
    assert stream.text == "Partial answer"
    assert stream.error is not None and "Upstream model crashed" in stream.error["message"]


def test_malformed_json_chunk_ends_with_error_event(
    proxy: ProxyHandle, mock_upstream: MockUpstream
) -> None:
    mock_upstream.enqueue(
        sse_response(
            [
                *text_chunks(["Fine so far"], finish_reason=None),
                b'data: {"id":"chatcmpl-mock","choices":[{"delta":{"content":"bro\n\n',
                *text_chunks(["never shown"], role=False),
            ]
        )
    )
    stream = expect_stream_error(request(proxy, make_body()), ("api_error",))
    assert stream.text == "Fine so far"


def test_connection_dropped_mid_text_ends_with_error_event(
    proxy: ProxyHandle, mock_upstream: MockUpstream
) -> None:
    # role chunk + two content chunks, then the TCP connection is cut mid-body.
    mock_upstream.enqueue(sse_response(text_chunks(["one ", "two ", "three"]), drop_after=3))
    stream = expect_stream_error(request(proxy, make_body()), ("api_error", "overloaded_error"))
    assert stream.text == "one two "
    # The proxy is unharmed: the next request works.
    assert expect_stream(request(proxy, make_body()), expect_error=False).completed


def test_connection_dropped_mid_tool_arguments_leaves_the_call_open(
    proxy: ProxyHandle, mock_upstream: MockUpstream
) -> None:
    """The cut Write is never closed with repaired arguments: the client would run it."""
    args = {"file_path": "/tmp/notes.txt", "content": "a fairly long body of text " * 4}
    chunks = tool_call_chunks([{"name": "Write", "arguments": args}], fragment_size=12)
    # role chunk + header chunk + four argument fragments, then the connection drops.
    mock_upstream.enqueue(sse_response(chunks, drop_after=6))
    stream = expect_stream_error(request(proxy, make_body()), ("api_error", "overloaded_error"))
    assert stream.left_open is not None and stream.left_open["name"] == "Write"
    assert "content_block_stop" not in stream.event_types
    assert stream.event_types[-1] == "error"
    sent = stream.tool_input_json[0]
    assert sent and json.dumps(args).startswith(sent)  # what arrived, nothing made up


def test_connection_dropped_after_a_whole_tool_call_closes_it(
    proxy: ProxyHandle, mock_upstream: MockUpstream
) -> None:
    args = {"file_path": "/tmp/notes.txt", "content": "complete"}
    chunks = tool_call_chunks([{"name": "Write", "arguments": args}], finish_reason=None)
    mock_upstream.enqueue(sse_response(chunks, drop_after=3))  # all arguments, no finish
    stream = expect_stream_error(request(proxy, make_body()), ("api_error", "overloaded_error"))
    assert stream.left_open is None
    assert stream.tool_uses[0]["input"] == args


def test_clean_close_without_finish_or_done_is_an_error(
    proxy: ProxyHandle, mock_upstream: MockUpstream
) -> None:
    mock_upstream.enqueue(sse_response(text_chunks(["cut short"], finish_reason=None), done=False))
    stream = expect_stream_error(request(proxy, make_body()), ("api_error", "overloaded_error"))
    assert stream.text == "cut short"


def test_finish_reason_error_is_an_error_event(
    proxy: ProxyHandle, mock_upstream: MockUpstream
) -> None:
    mock_upstream.enqueue(sse_response(text_chunks(["half"], finish_reason="error")))
    expect_stream_error(request(proxy, make_body()), ("api_error", "overloaded_error"))


def test_drop_before_any_chunk_is_an_error_event(
    proxy: ProxyHandle, mock_upstream: MockUpstream
) -> None:
    mock_upstream.enqueue(sse_response(text_chunks(["x"]), drop_after=0))
    stream = expect_stream_error(request(proxy, make_body()), ("api_error", "overloaded_error"))
    assert stream.content == []


# ------------------------------------------------------------------------------------------
# ending promptly and the idle timeout
# ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("usage_in_finish_chunk", [False, True], ids=["usage-chunk", "inline"])
def test_complete_stream_ends_although_upstream_never_closes(
    proxy_factory: ProxyFactory, mock_upstream: MockUpstream, usage_in_finish_chunk: bool
) -> None:
    # finish + usage arrive, then neither [DONE] nor EOF.  REQUEST_TIMEOUT is far away, so only
    # the proxy noticing that the answer is complete can end the stream before the client's
    # 2.5 s read timeout fires (httpx.ReadTimeout would fail the test).
    proxy = proxy_factory(REQUEST_TIMEOUT="30")
    if usage_in_finish_chunk:
        chunks = [
            *text_chunks(["All", " done"], finish_reason=None),
            chunk({}, finish_reason="stop", usage=make_usage(25, 7)),
        ]
    else:
        chunks = [*text_chunks(["All", " done"]), usage_chunk(25, 7)]
    mock_upstream.enqueue(sse_response(chunks, keep_open_after_end=HANG))
    reply = request(proxy, make_body(), read_timeout=2.5, total=5)
    stream = expect_stream(reply, expect_error=False)
    assert stream.completed
    assert stream.text == "All done"
    assert stream.stop_reason == "end_turn"
    assert stream.usage["output_tokens"] == 7


def test_stream_ends_at_done_although_upstream_never_closes(
    proxy_factory: ProxyFactory, mock_upstream: MockUpstream
) -> None:
    proxy = proxy_factory(REQUEST_TIMEOUT="30")
    mock_upstream.enqueue(
        sse_response(
            [*text_chunks(["Done", " marker"]), usage_chunk(25, 7)],
            done=True,
            keep_open_after_end=HANG,
        )
    )
    reply = request(proxy, make_body(), read_timeout=2.5, total=5)
    stream = expect_stream(reply, expect_error=False)
    assert stream.text == "Done marker"


def test_finish_without_usage_ends_although_upstream_never_closes(
    proxy_factory: ProxyFactory, mock_upstream: MockUpstream
) -> None:
    # The upstream ignores stream_options.include_usage: after the finish chunk the proxy may
    # wait briefly for a usage chunk, but must end the stream long before REQUEST_TIMEOUT.
    proxy = proxy_factory(REQUEST_TIMEOUT="30")
    mock_upstream.enqueue(sse_response(text_chunks(["No usage"]), keep_open_after_end=HANG))
    reply = request(proxy, make_body(), read_timeout=6, total=8)
    stream = expect_stream(reply, expect_error=False)
    assert stream.text == "No usage"
    assert stream.stop_reason == "end_turn"


def test_hang_mid_stream_is_a_timeout_error_event(
    proxy_factory: ProxyFactory, mock_upstream: MockUpstream
) -> None:
    proxy = proxy_factory(REQUEST_TIMEOUT="1")
    mock_upstream.enqueue(
        sse_response(text_chunks(["Thinking ", "hard"], finish_reason=None), hang_after=3)
    )
    reply = request(proxy, make_body(), read_timeout=8, total=10)
    stream = expect_stream_error(reply, ("timeout_error", "api_error"))
    assert stream.error is not None and stream.error["type"] == "timeout_error"
    assert stream.text == "Thinking hard"
    mock_upstream.wait_for(lambda m: m.chat_requests[0].client_disconnected, timeout=5)


def test_request_timeout_is_idle_not_total(
    proxy_factory: ProxyFactory, mock_upstream: MockUpstream
) -> None:
    # Six gaps of 0.25 s: the whole stream takes longer than REQUEST_TIMEOUT, no gap comes close.
    proxy = proxy_factory(REQUEST_TIMEOUT="1.2")
    pieces = [f"w{i} " for i in range(5)]
    mock_upstream.enqueue(sse_response(text_chunks(pieces, usage=(9, 5)), delay=[0] + [0.25] * 6))
    stream = expect_stream(request(proxy, make_body(), read_timeout=5), expect_error=False)
    assert stream.text == "".join(pieces)
    assert stream.usage["output_tokens"] == 5


def test_pings_do_not_mask_an_upstream_stall(
    proxy_factory: ProxyFactory, mock_upstream: MockUpstream
) -> None:
    # Keep-alive pings flow to the client while the upstream is silent, but the upstream idle
    # timeout still ends the stream (the client's 8 s budget ends the test otherwise).
    proxy = proxy_factory(REQUEST_TIMEOUT="1.5", PING_INTERVAL="0.2")
    mock_upstream.enqueue(sse_response(text_chunks(["Quiet"], finish_reason=None), hang_after=2))
    stream = expect_stream_error(
        request(proxy, make_body(), read_timeout=5, total=8), ("timeout_error",)
    )
    assert stream.text == "Quiet"
    assert stream.ping_count >= 2


@pytest.mark.parametrize("stream", [False, True], ids=["json", "sse-request-json-reply"])
def test_json_body_stalling_after_headers_is_504_timeout(
    proxy_factory: ProxyFactory, mock_upstream: MockUpstream, stream: bool
) -> None:
    # 200 + JSON headers arrive, then half the body, then silence: an upstream timeout
    # (protocol.md E.8: upstream timeout -> 504 timeout_error), with nothing sent to the client yet.
    proxy = proxy_factory(REQUEST_TIMEOUT="0.5", MAX_RETRIES="0")
    mock_upstream.enqueue(
        sse_response(
            [b'{"id":"chatcmpl-1","object":"chat.completion","choices":[{"index":0,'],
            done=False,
            headers={"Content-Type": "application/json"},
            hang_after=1,
        )
    )
    reply = request(proxy, make_body(stream=stream), read_timeout=8)
    expect_http_error(reply, 504, "timeout_error")


# ------------------------------------------------------------------------------------------
# client disconnects abort the upstream request
# ------------------------------------------------------------------------------------------


class RawClient:
    """A bare HTTP/1.1 client on a socket, so a test can hang up at an exact moment."""

    def __init__(self, proxy: ProxyHandle, body: dict[str, Any]) -> None:
        data = json.dumps(body).encode()
        head = (
            f"POST /v1/messages HTTP/1.1\r\nHost: {proxy.host}:{proxy.port}\r\n"
            "Content-Type: application/json\r\nx-api-key: sk-ant-client\r\n"
            f"anthropic-version: 2023-06-01\r\nContent-Length: {len(data)}\r\n\r\n"
        ).encode()
        self.sock = socket.create_connection((proxy.host, proxy.port), timeout=5)
        self.sock.sendall(head + data)
        self.received = b""

    def read_until(self, marker: bytes, timeout: float = 5.0) -> bytes:
        deadline = time.monotonic() + timeout
        while marker not in self.received:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise AssertionError(f"{marker!r} not received in {timeout}s: {self.received!r}")
            self.sock.settimeout(remaining)
            piece = self.sock.recv(65536)
            if not piece:
                raise AssertionError(f"connection closed before {marker!r}: {self.received!r}")
            self.received += piece
        return self.received

    def close(self) -> None:
        self.sock.close()


def test_disconnect_mid_stream_aborts_upstream(
    proxy_factory: ProxyFactory, mock_upstream: MockUpstream
) -> None:
    proxy = proxy_factory(REQUEST_TIMEOUT="30")
    pieces = [f"token{i} " for i in range(200)]
    mock_upstream.enqueue(sse_response(text_chunks(pieces), delay=0.05))  # ~10 s in all
    client = RawClient(proxy, make_body())
    try:
        client.read_until(b"event: content_block_delta")
    finally:
        client.close()
    mock_upstream.wait_for(lambda m: m.chat_requests[0].client_disconnected, timeout=5)
    assert not mock_upstream.chat_requests[0].finished
    # Nothing leaked: the proxy serves the next request normally.
    assert expect_stream(request(proxy, make_body()), expect_error=False).completed


@pytest.mark.parametrize("stream", [False, True], ids=["json", "sse"])
def test_disconnect_while_waiting_for_upstream_headers_aborts_upstream(
    proxy_factory: ProxyFactory, mock_upstream: MockUpstream, stream: bool
) -> None:
    # REQUEST_TIMEOUT is far away: only the client's hang-up can end the upstream request.
    proxy = proxy_factory(REQUEST_TIMEOUT="30")
    mock_upstream.enqueue(
        sse_response(text_chunks(["late"]), hang_before_headers=HANG)
        if stream
        else json_response({"never": "sent"}, hang_before_headers=HANG)
    )
    client = RawClient(proxy, make_body(stream=stream))
    try:
        mock_upstream.wait_for_requests(1, timeout=5)
        assert client.received == b""
    finally:
        client.close()
    mock_upstream.wait_for(lambda m: m.chat_requests[0].client_disconnected, timeout=5)
    assert len(mock_upstream.chat_requests) == 1, "an abandoned request must not be retried"
