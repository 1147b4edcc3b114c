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
import threading
import time
import zlib
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

import httpx
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
    proxy = attack_proxy(PDF_TIMEOUT="2", OPENAI_API_KEY=None)  # dynamic mode, any sk- key
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


def test_request_translation_stays_linear_in_runs_of_same_role_messages() -> None:
    """Runs of user or system messages were merged pairwise (O(N²) copies)."""
    from claude_code_proxy.translate.chat.request import TranslationOptions, translate_request

    users = [{"role": "user", "content": [{"type": "text", "text": "hi"}]}] * 60_000
    systems = [{"role": "user", "content": "x"}] + [
        {"role": "system", "content": "s" * 100}
    ] * 40_000
    for messages in (users, systems):
        started = time.monotonic()
        translate_request(
            request_body(messages),
            upstream_model="m",
            options=TranslationOptions(system_in_place=True),
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
