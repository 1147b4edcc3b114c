"""More upstream misbehaviour through the running proxy, down to the byte level.

The scripted mock cannot cut a chunked body mid-chunk, split a UTF-8 character across TCP
writes or gzip a stream, so these tests serve exact bytes from a raw asyncio server on
127.0.0.1 (``RawUpstream``).  Expectations follow protocol.md A.9, A.13, E.6 (7-8), E.8, F.8.
"""

from __future__ import annotations

import asyncio
import gzip
import json
import re
import threading
import zlib
from collections.abc import Awaitable, Callable, Iterator
from typing import TYPE_CHECKING, Any

import httpx
import pytest

from mock_upstream import MockUpstream, error_response, make_usage
from test_faults import (
    HEADERS,
    RawClient,
    closed_port,
    expect_http_error,
    expect_stream,
    expect_stream_error,
    make_body,
    request,
)

if TYPE_CHECKING:
    from conftest import ProxyFactory

Handler = Callable[["Conn"], Awaitable[None]]


class Conn:
    """One accepted upstream connection: the parsed request and the raw writer."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer
        self.body = b""

    async def read_request(self) -> None:
        head = await self.reader.readuntil(b"\r\n\r\n")
        match = re.search(rb"(?i)content-length:\s*(\d+)", head)
        self.body = await self.reader.readexactly(int(match.group(1))) if match else b""

    async def write(self, data: bytes, pause: float = 0.0) -> None:
        """Write and flush, then pause so the next write lands in a separate TCP read."""
        self.writer.write(data)
        await self.writer.drain()
        if pause:
            await asyncio.sleep(pause)

    async def head(self, headers: dict[str, str], status: str = "200 OK") -> None:
        lines = [f"HTTP/1.1 {status}", *(f"{k}: {v}" for k, v in headers.items()), "", ""]
        await self.write("\r\n".join(lines).encode())

    async def wait_closed_by_peer(self, timeout: float = 30.0) -> bool:
        """True once the proxy closed its end (EOF or reset) within ``timeout``."""
        try:
            while await asyncio.wait_for(self.reader.read(65536), timeout):
                pass
        except (ConnectionError, asyncio.IncompleteReadError):
            return True
        except asyncio.TimeoutError:
            return False
        return True


class RawUpstream:
    """A byte-exact fake upstream in its own thread; ``handler`` scripts each connection."""

    def __init__(self, handler: Handler) -> None:
        self.handler = handler
        self.connections = 0
        self.bodies: list[bytes] = []
        self.peer_closed = threading.Event()
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self.port = 0

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)

        async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            self.connections += 1
            conn = Conn(reader, writer)
            try:
                await conn.read_request()
                self.bodies.append(conn.body)
                await self.handler(conn)
            except (ConnectionError, asyncio.IncompleteReadError):
                pass
            finally:
                writer.close()

        async def main() -> asyncio.Server:
            return await asyncio.start_server(serve, "127.0.0.1", 0)

        server = self._loop.run_until_complete(main())
        self.port = server.sockets[0].getsockname()[1]
        self._ready.set()
        self._loop.run_forever()
        server.close()
        for task in asyncio.all_tasks(self._loop):
            task.cancel()
        self._loop.run_until_complete(asyncio.sleep(0))

    def __enter__(self) -> RawUpstream:
        self._thread.start()
        self._ready.wait(5)
        return self

    def __exit__(self, *exc: object) -> None:
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(5)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"


@pytest.fixture
def raw_upstream() -> Iterator[Callable[[Handler], RawUpstream]]:
    servers: list[RawUpstream] = []

    def make(handler: Handler) -> RawUpstream:
        server = RawUpstream(handler).__enter__()
        servers.append(server)
        return server

    yield make
    for server in servers:
        server.__exit__()


def sse(*chunks: dict[str, Any], done: bool = True) -> bytes:
    out = b"".join(b"data: " + json.dumps(c, ensure_ascii=False).encode() + b"\n\n" for c in chunks)
    return out + (b"data: [DONE]\n\n" if done else b"")


def delta(content: str | None = None, finish: str | None = None, **extra: Any) -> dict[str, Any]:
    d: dict[str, Any] = {"content": content} if content is not None else {}
    return {
        "id": "chatcmpl-raw",
        "object": "chat.completion.chunk",
        "model": "gpt-big",
        "choices": [{"index": 0, "delta": d, "finish_reason": finish}],
        **extra,
    }


SSE_HEAD = {"Content-Type": "text/event-stream", "Connection": "close"}
COMPLETION = {
    "id": "chatcmpl-raw",
    "object": "chat.completion",
    "model": "gpt-big",
    "choices": [
        {
            "index": 0,
            "message": {"role": "assistant", "content": "zipped héllo"},
            "finish_reason": "stop",
        }
    ],
    "usage": make_usage(11, 3),
}


def chunked(data: bytes) -> bytes:
    return f"{len(data):x}\r\n".encode() + data + b"\r\n"


def post_json(proxy: Any, body: dict[str, Any]) -> httpx.Response:
    return httpx.post(proxy.url("/v1/messages"), json=body, headers=HEADERS, timeout=15)


# ------------------------------------------------------------------------------------------
# before any byte: connect failures and statuses
# ------------------------------------------------------------------------------------------


def retries_total(proxy: Any) -> float:
    text = httpx.get(proxy.url("/metrics"), timeout=5).text
    match = re.search(r"^ccp_upstream_retries_total (\S+)$", text, re.M)
    return float(match.group(1)) if match else 0.0


def test_connection_refused_is_retried_max_retries_times(proxy_factory: ProxyFactory) -> None:
    proxy = proxy_factory(OPENAI_BASE_URL=f"http://127.0.0.1:{closed_port()}/v1", MAX_RETRIES="2")
    expect_http_error(request(proxy, make_body()), 502, "api_error")
    assert retries_total(proxy) == 2


def test_dns_failure_is_a_clean_502_and_not_retried(proxy_factory: ProxyFactory) -> None:
    # `.invalid` never resolves (RFC 6761): the resolver fails locally, no request leaves.
    # A name that does not exist will not exist on a retry either.
    proxy = proxy_factory(OPENAI_BASE_URL="http://nonexistent.invalid/v1", MAX_RETRIES="2")
    for stream in (False, True):
        err = expect_http_error(request(proxy, make_body(stream=stream)), 502, "api_error")
        assert "cannot resolve upstream host nonexistent.invalid" in err["message"]
        assert "OPENAI_BASE_URL" in err["message"]
    assert retries_total(proxy) in (0, 4)  # 4 only if this resolver answers EAI_AGAIN


def test_upstream_529_is_529_overloaded(
    proxy_factory: ProxyFactory, mock_upstream: MockUpstream
) -> None:
    proxy = proxy_factory(MAX_RETRIES="0")
    for stream in (False, True):
        mock_upstream.enqueue(error_response(529, "Overloaded", "overloaded_error"))
        expect_http_error(request(proxy, make_body(stream=stream)), 529, "overloaded_error")


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        ({"x-ratelimit-reset-requests": "20s"}, "20"),
        ({"x-ratelimit-reset-requests": "1s", "x-ratelimit-reset-tokens": "6m0s"}, "360"),
        ({"retry-after": "42"}, "42"),
    ],
    ids=["reset-requests", "reset-both", "retry-after"],
)
def test_429_retry_after_reaches_the_client(
    proxy_factory: ProxyFactory,
    mock_upstream: MockUpstream,
    headers: dict[str, str],
    expected: str,
) -> None:
    proxy = proxy_factory(MAX_RETRIES="0")
    mock_upstream.enqueue(error_response(429, "slow down", "rate_limit_exceeded", headers=headers))
    reply = request(proxy, make_body())
    expect_http_error(reply, 429, "rate_limit_error")
    assert reply.headers.get("retry-after") == expected


def test_short_x_ratelimit_reset_is_waited_out_by_the_proxy(
    proxy_factory: ProxyFactory, mock_upstream: MockUpstream
) -> None:
    proxy = proxy_factory(MAX_RETRIES="1")
    mock_upstream.enqueue(
        error_response(
            429, "slow down", "rate_limit_exceeded", headers={"x-ratelimit-reset-requests": "250ms"}
        )
    )
    stream = expect_stream(request(proxy, make_body()), expect_error=False)
    assert stream.completed
    assert len(mock_upstream.chat_requests) == 2


# ------------------------------------------------------------------------------------------
# 200 bodies that are not what they claim
# ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("body", [b"", b"<html>oops</html>", b'{"choices": ['])
def test_non_json_200_body_is_502_not_a_fake_success(
    proxy_factory: ProxyFactory, raw_upstream: Callable[[Handler], RawUpstream], body: bytes
) -> None:
    async def handler(conn: Conn) -> None:
        await conn.head({"Content-Type": "application/json", "Content-Length": str(len(body))})
        await conn.write(body)

    server = raw_upstream(handler)
    proxy = proxy_factory(OPENAI_BASE_URL=server.base_url, MAX_RETRIES="0")
    for stream in (False, True):
        expect_http_error(request(proxy, make_body(stream=stream)), 502, "api_error")


def test_empty_200_event_stream_is_an_error_event(
    proxy_factory: ProxyFactory, raw_upstream: Callable[[Handler], RawUpstream]
) -> None:
    async def handler(conn: Conn) -> None:
        await conn.head({**SSE_HEAD, "Content-Length": "0"})

    server = raw_upstream(handler)
    proxy = proxy_factory(OPENAI_BASE_URL=server.base_url, MAX_RETRIES="0")
    stream = expect_stream_error(request(proxy, make_body()), ("api_error", "overloaded_error"))
    assert stream.content == []


def test_200_stream_that_is_only_a_top_level_error(
    proxy_factory: ProxyFactory, raw_upstream: Callable[[Handler], RawUpstream]
) -> None:
    error = {"error": {"message": "Provider returned error", "code": 429}}

    async def handler(conn: Conn) -> None:
        await conn.head(SSE_HEAD)
        await conn.write(b": OPENROUTER PROCESSING\n\n" + sse(error, done=False))

    server = raw_upstream(handler)
    proxy = proxy_factory(OPENAI_BASE_URL=server.base_url, MAX_RETRIES="0")
    stream = expect_stream_error(request(proxy, make_body()), ("rate_limit_error",))
    assert stream.error is not None and "Provider returned error" in stream.error["message"]


# ------------------------------------------------------------------------------------------
# framing: chunked cuts, gzip, split characters, SSE dialects
# ------------------------------------------------------------------------------------------


def test_chunked_stream_cut_mid_chunk_is_an_error_event(
    proxy_factory: ProxyFactory, raw_upstream: Callable[[Handler], RawUpstream]
) -> None:
    async def handler(conn: Conn) -> None:
        await conn.head({"Content-Type": "text/event-stream", "Transfer-Encoding": "chunked"})
        await conn.write(chunked(sse(delta("Half "), done=False)), pause=0.05)
        piece = sse(delta("never"), done=False)
        await conn.write(f"{len(piece):x}\r\n".encode() + piece[:10])  # then the socket closes

    server = raw_upstream(handler)
    proxy = proxy_factory(OPENAI_BASE_URL=server.base_url, MAX_RETRIES="0")
    stream = expect_stream_error(request(proxy, make_body()), ("api_error", "overloaded_error"))
    assert stream.text == "Half "


def test_chunked_json_cut_mid_chunk_is_502(
    proxy_factory: ProxyFactory, raw_upstream: Callable[[Handler], RawUpstream]
) -> None:
    body = json.dumps(COMPLETION).encode()

    async def handler(conn: Conn) -> None:
        await conn.head({"Content-Type": "application/json", "Transfer-Encoding": "chunked"})
        await conn.write(f"{len(body):x}\r\n".encode() + body[:20])

    server = raw_upstream(handler)
    proxy = proxy_factory(OPENAI_BASE_URL=server.base_url, MAX_RETRIES="0")
    expect_http_error(request(proxy, make_body(stream=False)), 502, "api_error")


def test_gzip_encoded_json_and_stream(
    proxy_factory: ProxyFactory, raw_upstream: Callable[[Handler], RawUpstream]
) -> None:
    async def handler(conn: Conn) -> None:
        if b'"stream":true' in conn.body.replace(b" ", b""):
            await conn.head(
                {**SSE_HEAD, "Content-Encoding": "gzip", "Transfer-Encoding": "chunked"}
            )
            squeeze = zlib.compressobj(wbits=31)
            for piece in (
                sse(delta("zipped "), done=False),
                sse(delta("stream", "stop"), done=False),
                sse({**delta(), "choices": [], "usage": make_usage(11, 3)}),
            ):
                part = squeeze.compress(piece) + squeeze.flush(zlib.Z_SYNC_FLUSH)
                await conn.write(chunked(part), pause=0.02)
            await conn.write(chunked(squeeze.flush()) + b"0\r\n\r\n")
        else:
            data = gzip.compress(json.dumps(COMPLETION).encode())
            headers = {"Content-Type": "application/json", "Content-Encoding": "gzip"}
            await conn.head({**headers, "Content-Length": str(len(data))})
            await conn.write(data)

    server = raw_upstream(handler)
    proxy = proxy_factory(OPENAI_BASE_URL=server.base_url, MAX_RETRIES="0")
    resp = post_json(proxy, make_body(stream=False))
    assert resp.status_code == 200, resp.text
    assert resp.json()["content"][0]["text"] == "zipped héllo"
    stream = expect_stream(request(proxy, make_body()), expect_error=False)
    assert stream.text == "zipped stream"
    assert stream.usage["output_tokens"] == 3


def test_utf8_character_split_across_tcp_reads(
    proxy_factory: ProxyFactory, raw_upstream: Callable[[Handler], RawUpstream]
) -> None:
    text = "naïve 日本 🎉"
    data = sse(delta(text), delta(None, "stop"))
    cut = data.index("日".encode()) + 1  # inside the three-byte character

    async def handler(conn: Conn) -> None:
        await conn.head(SSE_HEAD)
        await conn.write(data[:cut], pause=0.1)
        await conn.write(data[cut : cut + 1], pause=0.1)
        await conn.write(data[cut + 1 :])

    server = raw_upstream(handler)
    proxy = proxy_factory(OPENAI_BASE_URL=server.base_url, MAX_RETRIES="0")
    stream = expect_stream(request(proxy, make_body()), expect_error=False)
    assert stream.text == text


@pytest.mark.parametrize("dialect", ["crlf", "cr", "no-space", "multi-line", "event-and-id"])
def test_sse_dialects_are_decoded(
    proxy_factory: ProxyFactory, raw_upstream: Callable[[Handler], RawUpstream], dialect: str
) -> None:
    first, second = json.dumps(delta("Hello ")), json.dumps(delta("there", "stop"))
    if dialect == "crlf":
        data = f"data: {first}\r\n\r\ndata: {second}\r\n\r\ndata: [DONE]\r\n\r\n"
    elif dialect == "cr":
        data = f"data: {first}\r\rdata: {second}\r\rdata: [DONE]\r\r"
    elif dialect == "no-space":
        data = f"data:{first}\n\ndata:{second}\n\ndata:[DONE]\n\n"
    elif dialect == "multi-line":
        split = first.index('"choices"')
        data = f"data: {first[:split]}\ndata: {first[split:]}\n\ndata: {second}\n\ndata: [DONE]\n\n"
    else:
        data = f"event: message\nid: 1\ndata: {first}\n\n: keep-alive\n\nid: 2\ndata: {second}\n\n"
        data += "data: [DONE]\n\n"

    async def handler(conn: Conn) -> None:
        await conn.head(SSE_HEAD)
        raw = data.encode()
        for i in range(0, len(raw), 7):  # small reads: records and line endings split anywhere
            await conn.write(raw[i : i + 7])

    server = raw_upstream(handler)
    proxy = proxy_factory(OPENAI_BASE_URL=server.base_url, MAX_RETRIES="0")
    stream = expect_stream(request(proxy, make_body()), expect_error=False)
    assert stream.text == "Hello there"
    assert stream.stop_reason == "end_turn"


# ------------------------------------------------------------------------------------------
# silence and hang-ups
# ------------------------------------------------------------------------------------------


def test_pings_during_silence_before_the_first_token(
    proxy_factory: ProxyFactory, raw_upstream: Callable[[Handler], RawUpstream]
) -> None:
    async def handler(conn: Conn) -> None:
        await conn.head(SSE_HEAD)
        await conn.write(b"", pause=1.0)
        await conn.write(sse(delta("late", "stop")))

    server = raw_upstream(handler)
    proxy = proxy_factory(OPENAI_BASE_URL=server.base_url, PING_INTERVAL="0.2")
    stream = expect_stream(request(proxy, make_body()), expect_error=False)
    assert stream.text == "late"
    assert stream.ping_count >= 2


def test_esc_during_non_stream_body_aborts_the_upstream(
    proxy_factory: ProxyFactory, raw_upstream: Callable[[Handler], RawUpstream]
) -> None:
    # Headers arrived, the JSON body is still coming: Claude Code's Esc closes the socket.
    closed: list[bool] = []
    started = threading.Event()

    async def handler(conn: Conn) -> None:
        await conn.head({"Content-Type": "application/json", "Transfer-Encoding": "chunked"})
        await conn.write(chunked(b'{"id":"chatcmpl-raw",'))
        started.set()
        closed.append(await conn.wait_closed_by_peer(timeout=10))

    server = raw_upstream(handler)
    proxy = proxy_factory(OPENAI_BASE_URL=server.base_url, REQUEST_TIMEOUT="30")
    client = RawClient(proxy, make_body(stream=False))
    try:
        assert started.wait(5)
    finally:
        client.close()
    for _ in range(100):
        if closed:
            break
        threading.Event().wait(0.1)
    assert closed == [True]
    assert server.connections == 1


def test_translation_failure_mid_stream_still_ends_with_an_error_event(
    proxy_factory: ProxyFactory,
    raw_upstream: Callable[[Handler], RawUpstream],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from claude_code_proxy.translate.chat.stream import StreamTranslator

    feed = StreamTranslator.feed

    def broken_feed(self: StreamTranslator, chunk: Any) -> list[dict[str, Any]]:
        if isinstance(chunk, dict) and "boom" in json.dumps(chunk):
            raise RuntimeError("simulated translator bug")
        return feed(self, chunk)

    monkeypatch.setattr(StreamTranslator, "feed", broken_feed)

    async def handler(conn: Conn) -> None:
        await conn.head(SSE_HEAD)
        await conn.write(sse(delta("fine "), delta("boom"), delta(None, "stop")))

    server = raw_upstream(handler)
    proxy = proxy_factory(OPENAI_BASE_URL=server.base_url, MAX_RETRIES="0")
    stream = expect_stream_error(request(proxy, make_body()), ("api_error",))
    assert stream.text == "fine "


@pytest.mark.parametrize("cut", range(1, 12))
def test_decoder_joins_crlf_and_cr_split_across_reads(cut: int) -> None:
    from claude_code_proxy.translate.sse import SSEDecoder

    for ending in (b"\r\n", b"\r"):
        data = b"data: a" + ending + ending + b"data: b" + ending + ending
        decoder = SSEDecoder()
        payloads = decoder.feed(data[:cut]) + decoder.feed(data[cut:]) + decoder.flush()
        assert payloads == [b"a", b"b"], (ending, cut)
