"""Observability: /metrics in Prometheus text format, the access log line, and what logs never say.

/metrics is read with the Prometheus client's own text parser after scripted requests against
the mock upstream; log records are taken from ``caplog`` (the proxy runs on another thread of
this process, its records propagate to the root logger).  The proxy updates metrics and logs
once an exchange is over, which may be a moment after the client has its last byte, so the
tests poll (bounded) until the expected records are there.
"""

from __future__ import annotations

import json
import logging
import re
import threading
import time
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from claude_code_proxy.gateway.pool import key_id
from claude_code_proxy.metrics import MAX_CLIENT_LABELS, OTHER_CLIENTS, Metrics
from claude_code_proxy.observe import RequestRecord, finish
from mock_upstream import (
    MockUpstream,
    completion,
    error_response,
    json_response,
    sse_response,
    text_chunks,
    tool_call_chunks,
)
from sse_validator import (
    validate_anthropic_error,
    validate_anthropic_message,
    validate_anthropic_stream,
)

if TYPE_CHECKING:
    from conftest import ProxyFactory, ProxyHandle

TIMEOUT = httpx.Timeout(30.0, connect=5.0)
ACCESS_LOGGER = "claude_code_proxy.access"
COUNT = "/v1/messages/count_tokens"
DYNAMIC: dict[str, str | None] = {"OPENAI_API_KEY": None}
SONNET, HAIKU = "claude-sonnet-4-5", "claude-haiku-4-5"
MIDDLE, SMALL = "gpt-middle", "gpt-small"  # DEFAULT_PROXY_ENV's MIDDLE_MODEL / SMALL_MODEL

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


# ------------------------------------------------------------------------------------------
# helpers
# ------------------------------------------------------------------------------------------


def body(
    model: str = SONNET, *, stream: bool = False, text: str = "Say hello", **extra: Any
) -> dict[str, Any]:
    payload: dict[str, Any] = {
        "model": model,
        "max_tokens": 256,
        "messages": [{"role": "user", "content": text}],
        **extra,
    }
    if stream:
        payload["stream"] = True
    return payload


def post(
    proxy: ProxyHandle,
    payload: Any = None,
    *,
    key: str | None = "sk-client-key-1234",
    path: str = "/v1/messages",
    headers: dict[str, str] | None = None,
) -> httpx.Response:
    hdrs = {"anthropic-version": "2023-06-01", **(headers or {})}
    if key is not None:
        hdrs["x-api-key"] = key
    if isinstance(payload, bytes):
        hdrs["content-type"] = "application/json"
        return httpx.post(proxy.url(path), content=payload, headers=hdrs, timeout=TIMEOUT)
    return httpx.post(
        proxy.url(path), json=body() if payload is None else payload, headers=hdrs, timeout=TIMEOUT
    )


def request_id(resp: httpx.Response) -> str:
    rid = resp.headers.get("request-id")
    assert rid is not None and rid.startswith("req_") and len(rid) > 4, resp.headers
    return rid


def wait_until(predicate: Callable[[], bool], what: str, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for: {what}")
        time.sleep(0.01)


def metrics_text(proxy: ProxyHandle, headers: dict[str, str] | None = None) -> str:
    resp = httpx.get(proxy.url("/metrics"), headers=headers or {}, timeout=TIMEOUT)
    assert resp.status_code == 200, (resp.status_code, resp.text)
    assert resp.headers["content-type"].startswith("text/plain"), resp.headers
    return resp.text


def parse(text: str) -> Samples:
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def scrape(proxy: ProxyHandle) -> Samples:
    return parse(metrics_text(proxy))


def total(samples: Samples, name: str, **labels: str) -> float:
    """Sum of the samples called ``name`` whose labels include ``labels``."""
    wanted = set(labels.items())
    return sum(v for (n, lbls), v in samples.items() if n == name and wanted <= lbls)


def label_values(samples: Samples, name: str, label: str) -> set[str]:
    return {dict(lbls)[label] for (n, lbls), _ in samples.items() if n == name}


def wait_for_requests_metric(proxy: ProxyHandle, count: int, **labels: str) -> Samples:
    """Poll /metrics until ``ccp_requests_total`` (filtered by labels) reaches ``count``."""
    result: dict[str, Samples] = {}

    def reached() -> bool:
        result["samples"] = scrape(proxy)
        return total(result["samples"], "ccp_requests_total", **labels) >= count

    wait_until(reached, f"{count} request(s) counted in /metrics")
    return result["samples"]


def access_records(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in list(caplog.records) if r.name == ACCESS_LOGGER]


def wait_for_access_lines(
    caplog: pytest.LogCaptureFixture, request_ids: Iterable[str]
) -> list[logging.LogRecord]:
    ids = list(request_ids)

    def all_logged() -> bool:
        text = "\n".join(r.getMessage() for r in access_records(caplog))
        return all(rid in text for rid in ids)

    wait_until(all_logged, f"access lines for {ids}")
    return access_records(caplog)


def text_fields(line: str) -> dict[str, str]:
    """``key=value`` pairs of a text access line."""
    return dict(part.split("=", 1) for part in line.split() if "=" in part)


def line_for(records: list[logging.LogRecord], rid: str) -> logging.LogRecord:
    matching = [r for r in records if rid in r.getMessage()]
    assert len(matching) == 1, f"expected exactly one access line for {rid}: {matching}"
    return matching[0]


class GateDelays:
    """Per-chunk delays for ``sse_response``: a short pause per chunk while shut, none once
    open, so the stream is still running for as long as the test needs (bounded)."""

    def __init__(self, length: int, step: float = 0.02) -> None:
        self.length = length
        self.step = step
        self.opened = threading.Event()

    def open(self) -> None:
        self.opened.set()

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, index: int) -> float:
        return 0.0 if self.opened.is_set() else self.step


# ------------------------------------------------------------------------------------------
# /metrics
# ------------------------------------------------------------------------------------------


def test_metrics_after_a_scripted_set_of_requests(
    proxy_factory: ProxyFactory, mock_upstream: MockUpstream
) -> None:
    proxy = proxy_factory()
    before = scrape(proxy)
    assert total(before, "ccp_requests_total") == 0
    assert total(before, "ccp_active_streams") == 0

    mock_upstream.enqueue(
        sse_response(text_chunks(["Hel", "lo"], model=MIDDLE, usage=(100, 7, 40))),
        sse_response(text_chunks(["Hi"], model=SMALL, usage=(50, 5))),
        json_response(completion("Done", model=MIDDLE, usage=(30, 4, 10))),
        error_response(429, "Rate limit reached", "requests", code="rate_limit_exceeded"),
    )
    first = validate_anthropic_stream(post(proxy, body(stream=True)).content, expect_error=False)
    assert first.usage["input_tokens"] == 60 and first.usage["cache_read_input_tokens"] == 40
    second = validate_anthropic_stream(
        post(proxy, body(HAIKU, stream=True)).content, expect_error=False
    )
    assert second.usage["output_tokens"] == 5
    message = validate_anthropic_message(post(proxy).content)
    assert message["usage"]["input_tokens"] == 20
    limited = post(proxy)
    assert limited.status_code == 429, limited.text
    validate_anthropic_error(limited.content, status=429, error_type="rate_limit_error")
    bad = post(proxy, b'{"model": "claude-sonnet-4-5", "messages": [')
    assert bad.status_code == 400, bad.text
    assert len(mock_upstream.chat_requests) == 4

    samples = wait_for_requests_metric(proxy, 5, endpoint="messages")
    requests = "ccp_requests_total"
    assert total(samples, requests, endpoint="messages", model=MIDDLE, status="200") == 2
    assert total(samples, requests, endpoint="messages", model=SMALL, status="200") == 1
    assert total(samples, requests, endpoint="messages", model=MIDDLE, status="429") == 1
    assert total(samples, requests, endpoint="messages", status="400") == 1
    assert total(samples, requests) == 5

    assert total(samples, "ccp_errors_total", type="rate_limit_error") == 1
    assert total(samples, "ccp_errors_total", type="invalid_request_error") == 1
    assert total(samples, "ccp_errors_total") == 2

    tokens = "ccp_tokens_total"
    assert total(samples, tokens, model=MIDDLE, kind="input") == (100 - 40) + (30 - 10)
    assert total(samples, tokens, model=MIDDLE, kind="output") == 7 + 4
    assert total(samples, tokens, model=MIDDLE, kind="cached") == 40 + 10
    assert total(samples, tokens, model=SMALL, kind="input") == 50
    assert total(samples, tokens, model=SMALL, kind="output") == 5
    assert total(samples, tokens, model=SMALL, kind="cached") == 0
    assert label_values(samples, tokens, "kind") <= {"input", "output", "cached"}

    for histogram in ("ccp_upstream_latency_seconds", "ccp_time_to_first_token_seconds"):
        assert total(samples, f"{histogram}_count", model=MIDDLE) == 2, histogram
        assert total(samples, f"{histogram}_count", model=SMALL) == 1, histogram
        assert total(samples, f"{histogram}_count") == 3, histogram
        assert total(samples, f"{histogram}_sum") >= 0
        assert total(samples, f"{histogram}_bucket", model=MIDDLE, le="+Inf") == 2

    assert total(samples, "ccp_active_streams") == 0
    assert total(samples, "ccp_client_pool_size") == 1
    assert total(samples, "ccp_client_pool_misses_total") == 1
    assert total(samples, "ccp_client_pool_hits_total") == 3
    assert total(samples, "ccp_client_pool_evictions_total") == 0
    assert total(samples, "ccp_upstream_retries_total") == 0


def test_active_streams_gauge_follows_a_running_stream(
    proxy_factory: ProxyFactory, mock_upstream: MockUpstream
) -> None:
    proxy = proxy_factory()
    chunks: list[Any] = [
        *text_chunks(["Thinking"], finish_reason=None),
        *[": keep-alive\n\n"] * 500,
        *text_chunks([" done."], role=False, usage=(9, 2)),
    ]
    gate = GateDelays(len(chunks) + 1)
    mock_upstream.enqueue(sse_response(chunks, delay=gate))
    with ThreadPoolExecutor(max_workers=1) as executor:
        future = executor.submit(post, proxy, body(stream=True))
        try:
            mock_upstream.wait_for_requests(1, timeout=10)
            assert total(scrape(proxy), "ccp_active_streams") == 1
        finally:
            gate.open()
        resp = future.result(timeout=30)
    stream = validate_anthropic_stream(resp.content, expect_error=False)
    assert stream.text == "Thinking done."
    samples = wait_for_requests_metric(proxy, 1)
    assert total(samples, "ccp_active_streams") == 0


def test_upstream_retries_are_counted(
    proxy_factory: ProxyFactory, mock_upstream: MockUpstream
) -> None:
    proxy = proxy_factory()
    mock_upstream.enqueue(
        error_response(503, "The server is overloaded", "server_error"),
        json_response(completion("Recovered", model=MIDDLE, usage=(8, 2))),
    )
    message = validate_anthropic_message(post(proxy).content)
    assert message["content"][0]["text"] == "Recovered"
    assert len(mock_upstream.chat_requests) == 2
    samples = wait_for_requests_metric(proxy, 1)
    assert total(samples, "ccp_upstream_retries_total") == 1
    assert total(samples, "ccp_requests_total", endpoint="messages", status="200") == 1
    assert total(samples, "ccp_requests_total") == 1
    assert total(samples, "ccp_errors_total") == 0
    assert total(samples, "ccp_tokens_total", model=MIDDLE, kind="input") == 8


def test_per_client_counters_use_the_key_hash(
    proxy_factory: ProxyFactory, mock_upstream: MockUpstream
) -> None:
    proxy = proxy_factory(DYNAMIC)
    key_a, key_b = "sk-tenant-alpha-SECRET-1111", "sk-tenant-beta-SECRET-2222"
    for key in (key_a, key_a, key_b):
        assert post(proxy, key=key).status_code == 200
    samples = wait_for_requests_metric(proxy, 3)
    assert total(samples, "ccp_client_requests_total", client=key_id(key_a)) == 2
    assert total(samples, "ccp_client_requests_total", client=key_id(key_b)) == 1
    assert label_values(samples, "ccp_client_requests_total", "client") == {
        key_id(key_a),
        key_id(key_b),
    }
    text = metrics_text(proxy)
    for secret in ("SECRET", "tenant-alpha", "tenant-beta", key_a, key_b):
        assert secret not in text
    for ident in (key_id(key_a), key_id(key_b)):
        assert re.fullmatch(r"[0-9a-f]{8,64}", ident), ident


def test_per_client_labels_are_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("PROMETHEUS_MULTIPROC_DIR", raising=False)
    metrics = Metrics()
    clients = [key_id(f"sk-client-{i:04d}") for i in range(MAX_CLIENT_LABELS + 50)]
    for client in clients + clients[:10]:  # the first clients come back
        record = RequestRecord("req_test", "messages", upstream_model="m", client=client)
        record.status = 200
        finish(record, metrics, json_logs=False)
    samples = parse(metrics.exposition()[0].decode())
    labels = label_values(samples, "ccp_client_requests_total", "client")
    assert len(labels) == MAX_CLIENT_LABELS + 1
    assert OTHER_CLIENTS in labels
    assert total(samples, "ccp_client_requests_total") == len(clients) + 10
    assert total(samples, "ccp_client_requests_total", client=OTHER_CLIENTS) == 50
    assert total(samples, "ccp_client_requests_total", client=clients[0]) == 2


def test_metrics_can_require_the_client_key(
    proxy_factory: ProxyFactory, mock_upstream: MockUpstream
) -> None:
    secret = "sk-ant-proxy-metrics-secret"
    proxy = proxy_factory(ANTHROPIC_API_KEY=secret, METRICS_REQUIRE_AUTH="true")
    for headers in ({}, {"x-api-key": "sk-ant-wrong-key"}, {"authorization": "Bearer nope"}):
        resp = httpx.get(proxy.url("/metrics"), headers=headers, timeout=TIMEOUT)
        assert resp.status_code == 401, (headers, resp.text)
        validate_anthropic_error(resp.content, status=401, error_type="authentication_error")
        assert "ccp_" not in resp.text
    parse(metrics_text(proxy, {"x-api-key": secret}))
    samples = parse(metrics_text(proxy, {"authorization": f"Bearer {secret}"}))
    assert ("ccp_active_streams", frozenset()) in samples


def test_metrics_are_open_unless_protection_is_asked_for(
    proxy_factory: ProxyFactory, mock_upstream: MockUpstream
) -> None:
    proxy = proxy_factory(ANTHROPIC_API_KEY="sk-ant-proxy-metrics-secret")
    samples = parse(metrics_text(proxy))
    assert ("ccp_active_streams", frozenset()) in samples


# ------------------------------------------------------------------------------------------
# access log
# ------------------------------------------------------------------------------------------


def run_logged_requests(proxy: ProxyHandle, mock_upstream: MockUpstream) -> dict[str, str]:
    """One request of each kind; returns their request ids by name."""
    mock_upstream.enqueue(
        sse_response(text_chunks(["Hel", "lo"], model=MIDDLE, usage=(100, 7, 40))),
        json_response(completion("Cut", model=SMALL, finish_reason="length", usage=(30, 4, 10))),
        sse_response(
            tool_call_chunks(
                [{"name": "get_weather", "arguments": {"city": "Paris"}}],
                model=MIDDLE,
                usage=(20, 6),
            )
        ),
        error_response(429, "Rate limit reached", "requests", code="rate_limit_exceeded"),
    )
    tool = {"name": "get_weather", "input_schema": {"type": "object"}}
    ids = {
        "stream": request_id(post(proxy, body(stream=True))),
        "json": request_id(post(proxy, body(HAIKU))),
        "tool": request_id(post(proxy, body(stream=True, tools=[tool]))),
        "limited": request_id(post(proxy)),
        "bad": request_id(post(proxy, b"{not json")),
        "count": request_id(post(proxy, body(), path=COUNT)),
    }
    assert len(set(ids.values())) == len(ids)
    return ids


def test_one_access_line_per_request_at_info(
    proxy_factory: ProxyFactory, mock_upstream: MockUpstream, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger=ACCESS_LOGGER)
    proxy = proxy_factory()
    ids = run_logged_requests(proxy, mock_upstream)
    wait_for_access_lines(caplog, ids.values())
    # A last request, logged after all the others were: no late duplicates before it.
    ids["last"] = request_id(post(proxy))
    records = wait_for_access_lines(caplog, ids.values())
    assert len(records) == len(ids), [r.getMessage() for r in records]
    assert all(r.levelno == logging.INFO for r in records)

    stream = text_fields(line_for(records, ids["stream"]).getMessage())
    assert stream["request_id"] == ids["stream"]
    assert stream["model"] == SONNET and stream["upstream_model"] == MIDDLE
    assert stream["stream"].lower() == "true"
    assert stream["status"] == "200"
    assert (stream["input_tokens"], stream["output_tokens"], stream["cached_tokens"]) == (
        "60",
        "7",
        "40",
    )
    assert stream["stop_reason"] == "end_turn"
    for timing in ("latency_ms", "ttft_ms"):
        assert float(stream[timing]) >= 0, timing

    json_line = text_fields(line_for(records, ids["json"]).getMessage())
    assert json_line["model"] == HAIKU and json_line["upstream_model"] == SMALL
    assert json_line["stream"].lower() == "false"
    assert (json_line["input_tokens"], json_line["output_tokens"]) == ("20", "4")
    assert json_line["cached_tokens"] == "10"
    assert json_line["stop_reason"] == "max_tokens"

    tool_line = text_fields(line_for(records, ids["tool"]).getMessage())
    assert tool_line["stop_reason"] == "tool_use" and tool_line["status"] == "200"

    limited = text_fields(line_for(records, ids["limited"]).getMessage())
    assert limited["status"] == "429"
    assert "rate_limit_error" in line_for(records, ids["limited"]).getMessage()

    bad = text_fields(line_for(records, ids["bad"]).getMessage())
    assert bad["status"] == "400"
    assert "invalid_request_error" in line_for(records, ids["bad"]).getMessage()

    count = line_for(records, ids["count"]).getMessage()
    assert "count_tokens" in count and "status=200" in count


def test_json_access_lines(
    proxy_factory: ProxyFactory, mock_upstream: MockUpstream, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger=ACCESS_LOGGER)
    proxy = proxy_factory(LOG_FORMAT="json")
    ids = run_logged_requests(proxy, mock_upstream)
    records = wait_for_access_lines(caplog, ids.values())
    lines = [json.loads(r.getMessage()) for r in records]
    assert all(isinstance(line, dict) for line in lines)
    by_id = {line["request_id"]: line for line in lines}
    assert set(by_id) == set(ids.values())
    assert len(lines) == len(ids)

    stream = by_id[ids["stream"]]
    assert stream["model"] == SONNET and stream["upstream_model"] == MIDDLE
    assert stream["stream"] is True and stream["status"] == 200
    assert (stream["input_tokens"], stream["output_tokens"], stream["cached_tokens"]) == (60, 7, 40)
    assert stream["stop_reason"] == "end_turn"
    assert isinstance(stream["latency_ms"], (int, float)) and stream["latency_ms"] >= 0
    assert isinstance(stream["ttft_ms"], (int, float)) and stream["ttft_ms"] >= 0

    json_line = by_id[ids["json"]]
    assert json_line["stream"] is False and json_line["stop_reason"] == "max_tokens"
    assert (json_line["input_tokens"], json_line["output_tokens"]) == (20, 4)
    assert by_id[ids["tool"]]["stop_reason"] == "tool_use"
    assert by_id[ids["limited"]]["status"] == 429
    assert by_id[ids["limited"]]["error"] == "rate_limit_error"
    assert by_id[ids["bad"]]["status"] == 400
    assert by_id[ids["bad"]]["error"] == "invalid_request_error"
    assert by_id[ids["count"]]["status"] == 200


# ------------------------------------------------------------------------------------------
# what logs never contain
# ------------------------------------------------------------------------------------------

UPSTREAM_SECRET = "sk-upstream-SECRETVALUE-u1u1u1"
CLIENT_SECRET = "sk-ant-CLIENTSECRET-c2c2c2"
WRONG_SECRET = "sk-ant-WRONGSECRET-w3w3w3"
DYNAMIC_SECRET = "sk-proj-DYNAMICSECRET-d4d4d4"
PROMPT_MARKER = "PROMPTMARKER-zebra-quartz-7781"
COMPLETION_MARKER = "COMPLETIONMARKER-otter-basalt-9912"
FORBIDDEN = (
    UPSTREAM_SECRET,
    CLIENT_SECRET,
    WRONG_SECRET,
    DYNAMIC_SECRET,
    "SECRETVALUE",
    "CLIENTSECRET",
    "WRONGSECRET",
    "DYNAMICSECRET",
    PROMPT_MARKER,
    COMPLETION_MARKER,
    "zebra-quartz",
    "otter-basalt",
)


def marked_body(*, stream: bool) -> dict[str, Any]:
    return body(
        stream=stream,
        system=f"System prompt {PROMPT_MARKER}",
        text=f"User says {PROMPT_MARKER}",
        tools=[
            {
                "name": "lookup",
                "description": f"Tool about {PROMPT_MARKER}",
                "input_schema": {"type": "object", "properties": {"q": {"type": "string"}}},
            }
        ],
    )


def marked_answers(mock: MockUpstream) -> None:
    mock.enqueue(
        sse_response(text_chunks(["Sure: ", COMPLETION_MARKER], model=MIDDLE, usage=(40, 6))),
        json_response(completion(f"Answer {COMPLETION_MARKER}", model=MIDDLE)),
        sse_response(
            tool_call_chunks(
                [{"name": "lookup", "arguments": {"q": COMPLETION_MARKER}}],
                model=MIDDLE,
                fragment_size=7,
                usage=(40, 9),
            )
        ),
        # Broken tool arguments and a malformed chunk: the proxy warns, it must not quote.
        sse_response(
            tool_call_chunks(
                [{"name": "lookup", "arguments": f'{{"q": "{COMPLETION_MARKER}'}],
                model=MIDDLE,
            )
        ),
        sse_response(
            [
                *text_chunks(["Start "], finish_reason=None, model=MIDDLE),
                f'data: {{"oops": "{COMPLETION_MARKER}"\n\n',
            ]
        ),
        error_response(400, f"Invalid request mentioning {COMPLETION_MARKER}"),
    )


def test_logs_contain_no_key_and_no_text_at_debug(
    proxy_factory: ProxyFactory, mock_upstream: MockUpstream, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    static = proxy_factory(OPENAI_API_KEY=UPSTREAM_SECRET, ANTHROPIC_API_KEY=CLIENT_SECRET)
    dynamic = proxy_factory(DYNAMIC)
    rids = []
    for proxy, key in ((static, CLIENT_SECRET), (dynamic, DYNAMIC_SECRET)):
        marked_answers(mock_upstream)
        for stream in (True, False, True, True, True, False):
            rids.append(request_id(post(proxy, marked_body(stream=stream), key=key)))
        assert mock_upstream.pending() == 0
        # A request rejected before translation, with prompt text in an invalid place.
        invalid = marked_body(stream=False)
        invalid["messages"].append({"role": PROMPT_MARKER, "content": PROMPT_MARKER})
        rids.append(request_id(post(proxy, invalid, key=key)))
        rids.append(request_id(post(proxy, marked_body(stream=False), path=COUNT, key=key)))
    # Wrong client key on the static proxy.
    rids.append(request_id(post(static, marked_body(stream=True), key=WRONG_SECRET)))
    records = wait_for_access_lines(caplog, rids)
    assert len(records) >= len(rids)

    # Sanity: the upstream did receive the secrets and the text (so they were there to leak).
    seen = "\n".join(r.body.decode() + json.dumps(r.headers) for r in mock_upstream.requests)
    for needle in (UPSTREAM_SECRET, DYNAMIC_SECRET, PROMPT_MARKER):
        assert needle in seen, needle

    proxy_records = [
        r
        for r in list(caplog.records)
        if r.threadName != threading.main_thread().name
        and not r.threadName.startswith("mock-upstream")
    ]
    assert proxy_records, "no log record from the proxy was captured"
    formatter = logging.Formatter("%(name)s %(levelname)s %(message)s")
    text = "\n".join(formatter.format(r) + "\n" + repr(r.args) for r in proxy_records)
    leaks = [needle for needle in FORBIDDEN if needle in text]
    assert not leaks, f"logs contain {leaks}:\n{text[:4000]}"
