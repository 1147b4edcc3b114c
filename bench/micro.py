"""In-process timings of the pure translation functions (no I/O, no event loop)."""

from __future__ import annotations

import functools
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson

from bench.mock import responses_events, sse_event, stream_events
from claude_code_proxy.translate.chat.request import translate_request
from claude_code_proxy.translate.chat.stream import StreamTranslator
from claude_code_proxy.translate.responses.stream import ResponsesStreamTranslator
from claude_code_proxy.translate.sse import SSEDecoder, encode_events

FIXTURE = Path(__file__).resolve().parent.parent / "tests" / "fixtures" / "claude_code_request.json"


def per_call(fn: Callable[[], object], *, budget: float = 1.0, unit: int = 1) -> float:
    """CPU microseconds per call (per `unit` items): the best of 20 short rounds.

    CPU time (not wall time) and the minimum keep other processes on a shared machine
    from inflating the figure.
    """
    fn()
    clock = time.process_time
    started = clock()
    calls = 0
    while clock() - started < budget / 40:
        fn()
        calls += 1
    best = float("inf")
    for _ in range(20):
        t0 = clock()
        for _ in range(calls):
            fn()
        best = min(best, (clock() - t0) / calls)
    return best * 1e6 / unit


def _stream_pass(chunks: list[Any], think_tags: bool) -> None:
    translator = StreamTranslator(model="claude-sonnet-4-5", think_tags=think_tags)
    encode_events(translator.start())
    for chunk in chunks:
        encode_events(translator.feed(chunk))
    encode_events(translator.finish())


def _full_pass(raw: bytes, think_tags: bool) -> None:
    """Upstream bytes → SSE decode → orjson parse → translate → encode, as the proxy does."""
    translator = StreamTranslator(model="claude-sonnet-4-5", think_tags=think_tags)
    decoder = SSEDecoder()
    encode_events(translator.start())
    for payload in decoder.feed(raw):
        if payload == b"[DONE]":
            break
        encode_events(translator.feed(orjson.loads(payload)))
    encode_events(translator.finish())


def _responses_pass(raw: bytes) -> None:
    """The same for a Responses API stream (no `[DONE]`: it ends at response.completed)."""
    translator = ResponsesStreamTranslator(model="claude-sonnet-4-5")
    decoder = SSEDecoder()
    encode_events(translator.start())
    ignored = translator.IGNORED
    for payload in decoder.feed(raw):
        if not payload.startswith(ignored):
            encode_events(translator.feed(orjson.loads(payload)))
    encode_events(translator.finish())


def run(budget: float = 1.0) -> list[tuple[str, float, str]]:
    """(name, value, unit) rows."""
    raw_body = FIXTURE.read_bytes()
    body = orjson.loads(raw_body)
    payload = translate_request(body, upstream_model="gpt-4o").payload
    events = stream_events(200)
    raw_stream = b"".join(events)
    chunks = [orjson.loads(e[6:]) for e in events[:-1]]
    n = len(chunks)
    rows = [
        (
            f"translate_request, Claude Code fixture ({len(raw_body) // 1024} KB, "
            f"{len(body.get('tools', []))} tools)",
            per_call(lambda: translate_request(body, upstream_model="gpt-4o"), budget=budget),
            "µs/call",
        ),
        (
            "orjson.loads of that request body",
            per_call(lambda: orjson.loads(raw_body), budget=budget),
            "µs/call",
        ),
        (
            "orjson.dumps of the translated payload",
            per_call(lambda: orjson.dumps(payload), budget=budget),
            "µs/call",
        ),
    ]
    for tags in (False, True):
        label = "think_tags on" if tags else "think_tags off"
        stream_pass = functools.partial(_stream_pass, chunks, tags)
        full_pass = functools.partial(_full_pass, raw_stream, tags)
        rows.append(
            (
                f"StreamTranslator.feed + encode_events ({label})",
                per_call(stream_pass, budget=budget, unit=n),
                "µs/chunk",
            )
        )
        rows.append(
            (
                f"SSE decode + orjson.loads + feed + encode ({label})",
                per_call(full_pass, budget=budget, unit=n),
                "µs/chunk",
            )
        )
    responses_raw = b"".join(sse_event(e) for e in responses_events(200))
    rows.append(
        (
            "Responses API: SSE decode + orjson.loads + feed + encode (200 deltas)",
            per_call(functools.partial(_responses_pass, responses_raw), budget=budget, unit=200),
            "µs/chunk",
        )
    )
    return rows
