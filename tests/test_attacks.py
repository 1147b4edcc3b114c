"""Regression suite of attacks (issue 13): no request may stall the proxy, memory stays
bounded, no secret leaks.

Each test replays one attack from the adversarial review against the real proxy on
127.0.0.1 (``proxy_factory``, the scripted ``mock_upstream``), scaled down where a limit can be
lowered for the test, and checks both the attack's own outcome and that a normal request
issued while the attack is still running is answered (``answered_during``). Budgets are
generous: they separate "answered" from "stalled for tens of seconds", never measure speed.
"""

from __future__ import annotations

import base64
import os
import socket
import subprocess
import sys
import threading
import time
import zlib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx
import orjson
import pytest

from mock_upstream import MockUpstream, chunk, sse_response, text_chunks
from sse_validator import parse_sse

if TYPE_CHECKING:
    from conftest import ProxyFactory, ProxyHandle

CLIENT = {"x-api-key": "sk-client-0001", "anthropic-version": "2023-06-01"}
#: How long a normal request may take while an attack runs; the attacks stall for 20-60 s.
NORMAL_BUDGET = 5.0


def request_body(messages: list[dict[str, Any]], *, stream: bool = False) -> dict[str, Any]:
    return {"model": "claude-sonnet-4-5", "max_tokens": 64, "messages": messages, "stream": stream}


class Attack:
    """Runs `action` in a thread; `running` says whether it is still in progress."""

    def __init__(self, action: Callable[[], Any]) -> None:
        self.result: Any = None
        self.error: BaseException | None = None

        def run() -> None:
            try:
                self.result = action()
            except BaseException as exc:
                self.error = exc

        self.thread = threading.Thread(target=run, daemon=True)
        self.thread.start()

    @property
    def running(self) -> bool:
        return self.thread.is_alive()

    def wait(self, timeout: float = 60.0) -> Any:
        self.thread.join(timeout)
        assert not self.thread.is_alive(), "the attack request never ended"
        if self.error is not None:
            raise self.error
        return self.result


def health_answered(proxy: ProxyHandle) -> float:
    """Seconds `GET /health` took; fails if it was not answered within NORMAL_BUDGET."""
    started = time.monotonic()
    try:
        response = httpx.get(proxy.url("/health"), timeout=NORMAL_BUDGET)
    except httpx.TimeoutException:
        pytest.fail(f"/health was not answered within {NORMAL_BUDGET}s during the attack")
    assert response.status_code == 200
    return time.monotonic() - started


@pytest.fixture
def attack_proxy(proxy_factory: ProxyFactory) -> Callable[..., ProxyHandle]:
    def start(**env: str | None) -> ProxyHandle:
        return proxy_factory(env)

    return start


# ----------------------------------------------------------------------------- 1. PDF bomb


def pdf_bomb(pages: int = 100, operators: int = 10_000) -> bytes:
    """~16 KB: `pages` pages sharing one compressed content stream of `operators` text
    operators (pypdf re-parses it per page: tens of seconds of CPU)."""
    ops = b"BT /F1 12 Tf " + b"1 0 0 1 10 10 Tm (x) Tj " * operators + b"ET"
    stream = zlib.compress(ops, 9)
    kids = " ".join(f"{5 + i} 0 R" for i in range(pages))
    objects = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        f"<< /Type /Pages /Kids [{kids}] /Count {pages} >>".encode(),
        b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>",
        b"<< /Length %d /Filter /FlateDecode >>\nstream\n" % len(stream) + stream + b"\nendstream",
    ]
    page = (
        b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] "
        b"/Resources << /Font << /F1 3 0 R >> >> /Contents 4 0 R >>"
    )
    objects += [page] * pages
    out = bytearray(b"%PDF-1.4\n")
    offsets = []
    for number, obj in enumerate(objects, 1):
        offsets.append(len(out))
        out += b"%d 0 obj\n" % number + obj + b"\nendobj\n"
    xref = len(out)
    out += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1)
    for offset in offsets:
        out += b"%010d 00000 n \n" % offset
    out += b"trailer\n<< /Size %d /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (
        len(objects) + 1,
        xref,
    )
    return bytes(out)


def pdf_request(raw: bytes) -> dict[str, Any]:
    document = {
        "type": "document",
        "source": {
            "type": "base64",
            "media_type": "application/pdf",
            "data": base64.b64encode(raw).decode(),
        },
    }
    return request_body([{"role": "user", "content": [{"type": "text", "text": "Read"}, document]}])


def upstream_text(mock: MockUpstream) -> str:
    return str(mock.last_request.json["messages"])


def test_pdf_bomb_is_extracted_off_the_event_loop_and_cut_at_the_time_cap(
    attack_proxy: Callable[..., ProxyHandle], mock_upstream: MockUpstream
) -> None:
    proxy = attack_proxy(PDF_TIMEOUT="5", OPENAI_API_KEY=None)  # dynamic mode, any sk- key
    bomb = pdf_request(pdf_bomb())
    attack = Attack(
        lambda: httpx.post(proxy.url("/v1/messages"), json=bomb, headers=CLIENT, timeout=60)
    )
    time.sleep(0.5)
    health_answered(proxy)
    assert attack.running, "the bomb request was expected to still be extracting"
    response = attack.wait()
    assert response.status_code == 200, response.text
    text = upstream_text(mock_upstream)
    assert "PDF_TIMEOUT" in text  # the pages extracted in time, clearly marked as cut
    assert health_answered(proxy) < NORMAL_BUDGET


def test_pdf_pages_beyond_the_cap_are_cut_and_marked(
    attack_proxy: Callable[..., ProxyHandle], mock_upstream: MockUpstream
) -> None:
    proxy = attack_proxy(MAX_PDF_PAGES="3")
    body = pdf_request(pdf_bomb(pages=10, operators=3))
    response = httpx.post(proxy.url("/v1/messages"), json=body, headers=CLIENT, timeout=30)
    assert response.status_code == 200, response.text
    text = upstream_text(mock_upstream)
    assert "only the first 3 of 10 pages" in text and "MAX_PDF_PAGES" in text
    assert text.count("x" * 3) >= 3  # the pages before the cap are there


def test_pdf_text_beyond_the_character_cap_is_cut_and_marked(
    attack_proxy: Callable[..., ProxyHandle], mock_upstream: MockUpstream
) -> None:
    proxy = attack_proxy(MAX_PDF_TEXT_CHARS="5")
    body = pdf_request(pdf_bomb(pages=2, operators=20))
    response = httpx.post(proxy.url("/v1/messages"), json=body, headers=CLIENT, timeout=30)
    assert response.status_code == 200, response.text
    assert "MAX_PDF_TEXT_CHARS" in upstream_text(mock_upstream)


# ------------------------------------------------------------------ 2. quadratic tool pairing


def parallel_tool_turns(pairs: int) -> dict[str, Any]:
    calls = [
        {"type": "tool_use", "id": f"toolu_{i:08d}", "name": "Read", "input": {"path": f"/f{i}"}}
        for i in range(pairs)
    ]
    results = [
        {"type": "tool_result", "tool_use_id": f"toolu_{i:08d}", "content": "ok"}
        for i in range(pairs)
    ]
    return request_body(
        [
            {"role": "user", "content": "go"},
            {"role": "assistant", "content": calls},
            {"role": "user", "content": results},
        ]
    )


def test_sixty_thousand_tool_pairs_do_not_block_the_proxy(
    attack_proxy: Callable[..., ProxyHandle], mock_upstream: MockUpstream
) -> None:
    proxy = attack_proxy()
    body = parallel_tool_turns(60_000)
    attack = Attack(
        lambda: httpx.post(proxy.url("/v1/messages"), json=body, headers=CLIENT, timeout=60)
    )
    time.sleep(1.0)  # the 8 MB body is uploaded and being translated
    health_answered(proxy)
    response = attack.wait()
    # Translated and sent: the mock upstream refuses bodies over 1 MB, the proxy relays that.
    assert response.status_code == 413 and "upstream error" in response.text, response.text


def test_both_dialects_pair_sixty_thousand_tool_calls_in_linear_time() -> None:
    from claude_code_proxy.translate.chat.request import translate_request as chat
    from claude_code_proxy.translate.responses.request import translate_request as responses

    body = parallel_tool_turns(60_000)
    for translate in (chat, responses):
        started = time.monotonic()
        translate(body, upstream_model="m")
        assert time.monotonic() - started < NORMAL_BUDGET, translate.__module__


def test_request_translation_stays_linear_in_runs_of_same_role_messages() -> None:
    """Runs of user or system messages were merged pairwise (O(N²) copies)."""
    from claude_code_proxy.translate.chat.request import TranslationOptions, translate_request

    users = [{"role": "user", "content": [{"type": "text", "text": "hi"}]}] * 60_000
    systems = [{"role": "user", "content": "x"}] + [
        {"role": "system", "content": "s" * 100}
    ] * 40_000
    for messages in (users, systems):
        for in_place in (True, False):
            started = time.monotonic()
            translate_request(
                request_body(messages),
                upstream_model="m",
                options=TranslationOptions(system_in_place=in_place),
            )
            # Quadratic took 3-45 s here; linear takes well under one.
            assert time.monotonic() - started < NORMAL_BUDGET


# --------------------------------------------------------------------- 5. long SSE lines


def test_an_oversized_upstream_sse_event_ends_the_stream_with_an_error(
    attack_proxy: Callable[..., ProxyHandle], mock_upstream: MockUpstream
) -> None:
    proxy = attack_proxy(MAX_SSE_EVENT_BYTES=str(1024 * 1024))
    line = b'data: {"choices":[{"index":0,"delta":{"content":"' + b"a" * (40 * 1024 * 1024)
    mock_upstream.enqueue(sse_response([*text_chunks(["hi"], finish_reason=None), line]))
    body = request_body([{"role": "user", "content": "hi"}], stream=True)
    attack = Attack(
        lambda: httpx.post(proxy.url("/v1/messages"), json=body, headers=CLIENT, timeout=60)
    )
    time.sleep(0.5)
    health_answered(proxy)
    response = attack.wait()
    events = parse_sse(response.content)
    errors = [data for name, data in events if name == "error"]
    assert errors, [name for name, _ in events]
    assert "MAX_SSE_EVENT_BYTES" in errors[0]["error"]["message"]


def test_sse_decoder_is_linear_in_a_long_line() -> None:
    from claude_code_proxy.translate.sse import SSEDecoder

    decoder = SSEDecoder(max_event_bytes=64 * 1024 * 1024)
    started = time.monotonic()
    decoder.feed(b"data: ")
    piece = b"x" * 16384
    for _ in range(40 * 64):  # 40 MB in 16 KB reads: 34 s when every read re-copied
        assert decoder.feed(piece) == []
    (payload,) = decoder.feed(b"\n\n")
    assert len(payload) == 40 * 1024 * 1024
    assert time.monotonic() - started < NORMAL_BUDGET


# ------------------------------------------------------------------ 6. finish grace deadline


def test_keep_alives_after_the_finish_chunk_do_not_hold_message_stop(
    attack_proxy: Callable[..., ProxyHandle], mock_upstream: MockUpstream
) -> None:
    proxy = attack_proxy()
    chunks: list[Any] = [*text_chunks(["Hello"], finish_reason=None)]
    chunks.append(chunk({}, finish_reason="stop"))
    chunks += [b": keep-alive\n\n"] * 120  # one every 0.5 s for a minute, no usage, no [DONE]
    delays = [0.0] * 3 + [0.5] * 120
    mock_upstream.enqueue(sse_response(chunks, delay=delays, done=False))
    body = request_body([{"role": "user", "content": "hi"}], stream=True)
    seen: list[str] = []

    def read() -> None:
        with httpx.stream(
            "POST", proxy.url("/v1/messages"), json=body, headers=CLIENT, timeout=60
        ) as response:
            for line in response.iter_lines():
                if line.startswith("event: "):
                    seen.append(line[7:])
                    if line == "event: message_stop":
                        return

    reader = Attack(read)
    reader.thread.join(20.0)  # the grace is 3 s from the finish chunk; the upstream talks 60 s
    assert "message_stop" in seen, seen
    reader.wait(1.0)


@pytest.fixture(autouse=True)
def _bounded(request: pytest.FixtureRequest) -> Iterator[None]:
    """Every attack here is scaled to finish in seconds; keep it that way."""
    started = time.monotonic()
    yield
    assert time.monotonic() - started < 60, f"{request.node.name} took too long"


# ------------------------------------------------------------- 3. slow and oversized input


def open_socket(proxy: ProxyHandle, first: bytes = b"") -> socket.socket:
    sock = socket.create_connection((proxy.host, proxy.port), timeout=10)
    if first:
        sock.sendall(first)
    return sock


def closed_by_proxy(sock: socket.socket, within: float) -> bytes | None:
    """What the proxy sent before closing `sock`; None if it kept it open `within` seconds."""
    sock.settimeout(within)
    received = b""
    try:
        while data := sock.recv(65536):
            received += data
    except TimeoutError:
        return None
    except OSError:
        pass
    return received


def test_slowloris_sockets_are_closed_and_do_not_starve_real_clients(
    attack_proxy: Callable[..., ProxyHandle],
) -> None:
    proxy = attack_proxy(HEADER_TIMEOUT="2", MAX_CONNECTIONS="40")
    silent = [open_socket(proxy) for _ in range(30)]
    half_head = [
        open_socket(proxy, b"POST /v1/messages HTTP/1.1\r\nHost: x\r\n") for _ in range(30)
    ]
    # 60 stalled sockets against a limit of 40: a real client still gets in.
    assert health_answered(proxy) < NORMAL_BUDGET
    outcomes = [closed_by_proxy(s, within=10) for s in silent + half_head]
    for sock in silent + half_head:
        sock.close()
    assert all(o is not None for o in outcomes), "a stalled connection was kept open"
    answered = [o for o in outcomes if o]
    assert answered and all(b" 408 " in o.split(b"\r\n")[0] for o in answered)
    assert all(b'"timeout_error"' in o for o in answered)
    # Closed at the header timeout, or earlier to make room for a real client.
    assert all(b"HEADER_TIMEOUT" in o or b"MAX_CONNECTIONS" in o for o in answered)
    assert any(b"HEADER_TIMEOUT" in o for o in answered)


def test_half_a_body_gets_408_after_the_body_timeout(
    attack_proxy: Callable[..., ProxyHandle],
) -> None:
    proxy = attack_proxy(BODY_TIMEOUT="2")
    head = (
        b"POST /v1/messages HTTP/1.1\r\nHost: x\r\nx-api-key: sk-client-0001\r\n"
        b'content-type: application/json\r\ncontent-length: 1000\r\n\r\n{"model":'
    )
    sock = open_socket(proxy, head)
    assert health_answered(proxy) < NORMAL_BUDGET
    answer = closed_by_proxy(sock, within=15)
    sock.close()
    assert answer is not None, "a half-sent body kept its connection open"
    assert answer.startswith(b"HTTP/1.1 408"), answer[:200]
    assert b"BODY_TIMEOUT" in answer and b"request-id" in answer.lower()


def test_an_oversized_header_gets_431_without_being_buffered(
    attack_proxy: Callable[..., ProxyHandle],
) -> None:
    proxy = attack_proxy()
    sock = open_socket(proxy, b"GET /health HTTP/1.1\r\nHost: x\r\nx-big: ")
    try:
        for _ in range(100):  # up to 100 MB of one header value, never finished
            sock.sendall(b"a" * (1024 * 1024))
    except OSError:
        pass  # the proxy answered and closed early: what we want
    answer = closed_by_proxy(sock, within=10)
    sock.close()
    assert answer is not None and answer.startswith(b"HTTP/1.1 431"), (answer or b"")[:200]
    assert b"MAX_HEADER_BYTES" in answer
    assert health_answered(proxy) < NORMAL_BUDGET


def test_when_every_connection_is_busy_new_ones_get_an_anthropic_503(
    attack_proxy: Callable[..., ProxyHandle], mock_upstream: MockUpstream
) -> None:
    from mock_upstream import json_response

    proxy = attack_proxy(MAX_CONNECTIONS="3")
    mock_upstream.enqueue(*[json_response({}, hang_before_headers=4.0)] * 3)
    body = request_body([{"role": "user", "content": "hi"}])
    busy = [
        Attack(lambda: httpx.post(proxy.url("/v1/messages"), json=body, headers=CLIENT, timeout=30))
        for _ in range(3)
    ]
    mock_upstream.wait_for_requests(3, timeout=10)
    response = httpx.get(proxy.url("/health"), timeout=NORMAL_BUDGET)
    assert response.status_code == 503
    assert response.json()["error"]["type"] == "overloaded_error"
    assert "MAX_CONNECTIONS" in response.json()["error"]["message"]
    assert response.headers["request-id"].startswith("req_")
    for attack in busy:
        attack.wait()


# ------------------------------------------------------- 8. shutdown before the response head


def test_shutdown_while_waiting_for_upstream_headers_answers_anthropic_503(
    proxy_factory: ProxyFactory, mock_upstream: MockUpstream
) -> None:
    from mock_upstream import json_response

    proxy = proxy_factory(uvicorn_options={"timeout_graceful_shutdown": 1})
    mock_upstream.enqueue(json_response({}, hang_before_headers=20.0))
    body = request_body([{"role": "user", "content": "hi"}])
    attack = Attack(
        lambda: httpx.post(proxy.url("/v1/messages"), json=body, headers=CLIENT, timeout=30)
    )
    mock_upstream.wait_for_requests(1, timeout=10)
    proxy.stop()
    response = attack.wait()
    assert response.status_code == 503, (response.status_code, response.text)
    data = response.json()
    assert data["error"]["type"] == "overloaded_error"
    assert data["request_id"] == response.headers["request-id"]


# ------------------------------------------------------------ 14. a client that stops reading


def test_a_client_that_stops_reading_gets_its_upstream_call_aborted(
    attack_proxy: Callable[..., ProxyHandle], mock_upstream: MockUpstream
) -> None:
    proxy = attack_proxy(WRITE_TIMEOUT="2")
    piece = chunk({"content": "z" * 8192})
    mock_upstream.enqueue(sse_response([*text_chunks([], finish_reason=None), *[piece] * 20_000]))
    payload = orjson.dumps(request_body([{"role": "user", "content": "hi"}], stream=True))
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.connect((proxy.host, proxy.port))
    sock.sendall(
        b"POST /v1/messages HTTP/1.1\r\nHost: x\r\nx-api-key: sk-client-0001\r\n"
        b"content-type: application/json\r\ncontent-length: %d\r\n\r\n" % len(payload) + payload
    )
    try:  # never read: 160 MB cannot fit in the buffers between here and the upstream
        mock_upstream.wait_for_requests(1, timeout=10)
        mock_upstream.wait_for(lambda m: m.last_request.client_disconnected, timeout=30)
        assert health_answered(proxy) < NORMAL_BUDGET
    finally:
        sock.close()


# ------------------------------------------------------------- 4. unbounded upstream bodies


def test_an_oversized_upstream_body_is_a_502_not_a_memory_spike(
    attack_proxy: Callable[..., ProxyHandle], mock_upstream: MockUpstream
) -> None:
    from mock_upstream import completion, json_response

    proxy = attack_proxy(MAX_UPSTREAM_RESPONSE_BYTES=str(1024 * 1024))
    huge = completion("x" * (5 * 1024 * 1024))
    mock_upstream.enqueue(json_response(huge), json_response(huge), json_response(huge))
    for stream in (False, True):  # the non-streaming read, and the JSON replay of a stream
        body = request_body([{"role": "user", "content": "hi"}], stream=stream)
        response = httpx.post(proxy.url("/v1/messages"), json=body, headers=CLIENT, timeout=30)
        assert response.status_code == 502, response.text[:300]
        assert "MAX_UPSTREAM_RESPONSE_BYTES" in response.json()["error"]["message"]
    response = httpx.get(proxy.url("/test-connection"), headers=CLIENT, timeout=30)
    assert response.status_code == 502, response.text[:300]
    assert "MAX_UPSTREAM_RESPONSE_BYTES" in response.text


# ------------------------------------------------------------------ 7. memory amplification


def test_counting_tokens_of_a_large_body_peaks_at_a_small_multiple_of_it() -> None:
    """tiktoken's token list cost ~36 bytes per token: 233 MB extra for a 31.5 MB body."""
    script = (
        "import resource, orjson\n"
        "from claude_code_proxy.tokens import count_request_tokens, count_text_tokens\n"
        "count_text_tokens('warm up')\n"
        "raw = orjson.dumps({'model': 'm', 'messages': [{'role': 'user', "
        "'content': 'hello world ' * 2_600_000}]})\n"
        "base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss\n"
        "count_request_tokens(orjson.loads(raw))\n"
        "peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss\n"
        "print(len(raw), (peak - base) * 1024)\n"
    )
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parent.parent / "src")}
    out = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=120
    )
    assert out.returncode == 0, out.stderr
    size, extra = map(int, out.stdout.split())
    assert extra < 3 * size, f"{extra / 1e6:.0f} MB extra for a {size / 1e6:.0f} MB body"


def test_concurrent_large_bodies_are_bounded(attack_proxy: Callable[..., ProxyHandle]) -> None:
    proxy = attack_proxy(MAX_LARGE_BODIES="1", BODY_TIMEOUT="3", PDF_TIMEOUT="8")
    # One large body in progress (5 MB, and a PDF bomb that keeps it busy) holds the slot ...
    holder_body = pdf_request(pdf_bomb())
    holder_body["messages"][0]["content"][0]["text"] = "x" * (5 * 1024 * 1024)
    holder = Attack(
        lambda: httpx.post(proxy.url("/v1/messages"), json=holder_body, headers=CLIENT, timeout=60)
    )
    time.sleep(1.0)
    # ... so a second one waits, then gets a 503 instead of another copy in memory.
    body = request_body([{"role": "user", "content": "y" * (5 * 1024 * 1024)}])
    response = httpx.post(
        proxy.url("/v1/messages/count_tokens"), json=body, headers=CLIENT, timeout=30
    )
    assert response.status_code == 503, response.text[:300]
    assert "MAX_LARGE_BODIES" in response.json()["error"]["message"]
    assert holder.running
    assert health_answered(proxy) < NORMAL_BUDGET
    assert holder.wait().status_code == 413  # translated and sent; the mock refuses > 1 MB


# ------------------------------------------------------------------------------------ leaks

QUERY_SECRET = "qsecret-0123456789abcdef"


class GarbageServer:
    """Answers every connection with bytes that are not HTTP (aiohttp then quotes the URL)."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.port = self.sock.getsockname()[1]
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            with conn:
                conn.settimeout(5)
                try:
                    conn.recv(65536)
                    conn.sendall(b"HTTP/1.1 200 OK\r\ncontent-length: nope\r\n\r\n")
                except OSError:
                    pass


def test_a_key_in_the_base_url_query_never_reaches_clients_or_captures(
    proxy_factory: ProxyFactory, tmp_path: Path
) -> None:
    garbage = GarbageServer()
    proxy = proxy_factory(
        OPENAI_BASE_URL=f"http://127.0.0.1:{garbage.port}/v1?api_key={QUERY_SECRET}",
        CAPTURE_DIR=str(tmp_path / "captures"),
        MAX_RETRIES="0",
    )
    body = request_body([{"role": "user", "content": "hi"}])
    response = httpx.post(proxy.url("/v1/messages"), json=body, headers=CLIENT, timeout=30)
    assert response.status_code == 502, response.text
    assert "[redacted]" in response.text  # the URL is quoted, without its query
    probe = httpx.get(proxy.url("/test-connection"), headers=CLIENT, timeout=30)
    for text in (response.text, probe.text):
        assert QUERY_SECRET not in text
    captured = b"".join(p.read_bytes() for p in (tmp_path / "captures").rglob("*") if p.is_file())
    assert captured and QUERY_SECRET.encode() not in captured
    garbage.sock.close()


def test_key_labels_in_metrics_are_keyed_hashes(
    proxy: ProxyHandle, mock_upstream: MockUpstream
) -> None:
    import hashlib

    key = "sk-weak-proxy-key"
    body = request_body([{"role": "user", "content": "hi"}])
    response = httpx.post(
        proxy.url("/v1/messages"), json=body, headers={**CLIENT, "x-api-key": key}, timeout=30
    )
    assert response.status_code == 200
    metrics = httpx.get(proxy.url("/metrics"), timeout=10).text
    assert "ccp_client_requests" in metrics
    assert hashlib.sha256(key.encode()).hexdigest()[:16] not in metrics


def test_client_values_cannot_forge_log_lines_and_queries_are_not_logged(
    proxy_factory: ProxyFactory,
    mock_upstream: MockUpstream,
    caplog: pytest.LogCaptureFixture,
    capfd: pytest.CaptureFixture[str],
) -> None:
    proxy = proxy_factory(uvicorn_options={"log_level": "info", "access_log": True})
    caplog.set_level("INFO", logger="claude_code_proxy.access")
    body = request_body([{"role": "user", "content": "hi"}])
    body["model"] = "claude-x\n2026-01-01 INFO forged status=200"
    httpx.post(proxy.url("/v1/messages"), json=body, headers=CLIENT, timeout=30)
    httpx.get(proxy.url("/health?key=sk-in-query-0123456789&x=%0Aforged"), timeout=10)
    lines = [r.getMessage() for r in caplog.records if r.name == "claude_code_proxy.access"]
    assert lines and all("\n" not in line for line in lines), lines
    output = capfd.readouterr()
    access = output.out + output.err
    assert "/health" in access, access
    assert "sk-in-query-0123456789" not in access
    assert "\nforged" not in access


@pytest.mark.parametrize(
    ("name", "value", "complaint"),
    [
        ("CUSTOM_HEADER_AUTHORIZATION ", "Bearer x", "not a header name"),
        ("CUSTOM_HEADER_X_TENANT", "abc\r\nx-injected: 1", "one line"),
        ("CUSTOM_HEADER_X_TENANT", "abc\x00def", "control character"),
        ("CUSTOM_HEADER_TRANSFER_ENCODING", "chunked", "framing"),
        ("CUSTOM_HEADER_CONNECTION", "close", "framing"),
    ],
)
def test_custom_headers_are_validated_at_start_up(name: str, value: str, complaint: str) -> None:
    from claude_code_proxy.config import ConfigError, Settings

    with pytest.raises(ConfigError, match=complaint):
        Settings.from_env({"OPENAI_API_KEY": "sk-x", name: value})


def test_capture_files_are_private(
    proxy_factory: ProxyFactory, mock_upstream: MockUpstream, tmp_path: Path
) -> None:
    proxy = proxy_factory(CAPTURE_DIR=str(tmp_path / "captures"))
    body = request_body([{"role": "user", "content": "hi"}])
    assert httpx.post(proxy.url("/v1/messages"), json=body, headers=CLIENT, timeout=30)
    deadline = time.monotonic() + 10
    while not list((tmp_path / "captures").rglob("*.json")) and time.monotonic() < deadline:
        time.sleep(0.05)
    files = [p for p in (tmp_path / "captures").rglob("*") if p.is_file()]
    folders = [p for p in (tmp_path / "captures").rglob("*") if p.is_dir()]
    assert files and folders
    assert all(p.stat().st_mode & 0o777 == 0o600 for p in files)
    assert all(p.stat().st_mode & 0o777 == 0o700 for p in [tmp_path / "captures", *folders])


def test_the_h11_fallback_protocol_enforces_the_same_head_limits(
    proxy_factory: ProxyFactory,
) -> None:
    """Without httptools the limits ride on uvicorn's h11 protocol (limits.py)."""
    import functools

    from claude_code_proxy.limits import LimitedH11Protocol, ServerLimits

    limits = ServerLimits(header_timeout=2.0, max_header_bytes=64 * 1024, max_connections=100)
    http = functools.partial(LimitedH11Protocol, limits=limits)
    proxy = proxy_factory(uvicorn_options={"http": http})
    big = open_socket(proxy, b"GET /health HTTP/1.1\r\nHost: x\r\nx-big: " + b"a" * 300_000)
    slow = open_socket(proxy, b"GET /health HTTP/1.1\r\nHost: x\r\n")
    assert health_answered(proxy) < NORMAL_BUDGET
    answers = [closed_by_proxy(s, within=10) for s in (big, slow)]
    big.close()
    slow.close()
    assert answers[0] is not None and answers[0].startswith(b"HTTP/1.1 431"), answers[0]
    assert answers[1] is not None and answers[1].startswith(b"HTTP/1.1 408"), answers[1]
