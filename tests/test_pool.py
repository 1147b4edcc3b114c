"""The upstream client pool: keep-alive reuse per key, LRU eviction, idle cleanup, key checks.

Unit tests drive ``ClientPool`` with fake sessions and a fake clock; integration tests run the
real proxy (dynamic mode: no ``OPENAI_API_KEY``) in front of the mock upstream, whose
``requests[i].connection`` tells which TCP connection each upstream request arrived on.
"""

from __future__ import annotations

import asyncio
import json
import socket
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

import claude_code_proxy.gateway.pool as pool_module
from claude_code_proxy.auth import upstream_key
from claude_code_proxy.config import Settings
from claude_code_proxy.gateway.pool import ClientPool, key_id
from claude_code_proxy.metrics import Metrics
from claude_code_proxy.translate.errors import ProxyError
from mock_upstream import MockUpstream, sse_response, text_chunks
from sse_validator import validate_anthropic_error, validate_anthropic_stream

if TYPE_CHECKING:
    from conftest import ProxyFactory, ProxyHandle

TIMEOUT = httpx.Timeout(30.0, connect=5.0)
DYNAMIC: dict[str, str | None] = {"OPENAI_API_KEY": None}
KEY_A = "sk-tenant-a-0000000001"
KEY_B = "sk-tenant-b-0000000002"
KEY_C = "sk-tenant-c-0000000003"


# ------------------------------------------------------------------------------------------
# helpers
# ------------------------------------------------------------------------------------------


def body(*, stream: bool = False, text: str = "Say hello", **extra: Any) -> dict[str, Any]:
    payload: dict[str, Any] = {
        "model": "claude-sonnet-4-5",
        "max_tokens": 64,
        "messages": [{"role": "user", "content": text}],
        **extra,
    }
    if stream:
        payload["stream"] = True
    return payload


def post(
    proxy: ProxyHandle,
    key: str | None,
    payload: dict[str, Any] | None = None,
    *,
    headers: dict[str, str] | None = None,
    path: str = "/v1/messages",
) -> httpx.Response:
    hdrs = {"anthropic-version": "2023-06-01"}
    if key is not None:
        hdrs["x-api-key"] = key
    hdrs.update(headers or {})
    return httpx.post(proxy.url(path), json=payload or body(), headers=hdrs, timeout=TIMEOUT)


def ok(resp: httpx.Response) -> httpx.Response:
    assert resp.status_code == 200, (resp.status_code, resp.text)
    return resp


def pool_of(proxy: ProxyHandle) -> ClientPool:
    pool: ClientPool = proxy.app.state.proxy.upstream.pool
    return pool


def scrape(proxy: ProxyHandle) -> dict[str, float]:
    """Unlabelled samples of /metrics by sample name (the pool metrics have no labels)."""
    resp = httpx.get(proxy.url("/metrics"), timeout=TIMEOUT)
    assert resp.status_code == 200, resp.text
    return {
        sample.name: sample.value
        for family in text_string_to_metric_families(resp.text)
        for sample in family.samples
        if not sample.labels
    }


def wait_until(predicate: Callable[[], bool], what: str, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for: {what}")
        time.sleep(0.01)


def auth_of(request: Any) -> str:
    return str(request.headers.get("authorization", ""))


class GateDelays:
    """Per-chunk delays for ``sse_response``: a short pause per chunk while the gate is shut,
    none once it is open. With many filler chunks the mock's stream cannot end before the test
    opens the gate (or, should the test break, before ``len * step`` seconds)."""

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


def gated_stream(first: str, last: str, fillers: int = 500) -> tuple[Any, GateDelays]:
    """A stream that sends ``first``, then SSE comments until the gate opens, then ``last``."""
    chunks: list[Any] = [
        *text_chunks([first], finish_reason=None),
        *[": still thinking\n\n"] * fillers,
        *text_chunks([last], role=False, usage=(12, 3)),
    ]
    gate = GateDelays(len(chunks) + 1)
    return sse_response(chunks, delay=gate), gate


# ------------------------------------------------------------------------------------------
# unit: ClientPool with fake sessions
# ------------------------------------------------------------------------------------------


class FakeSession:
    instances = 0

    def __init__(self) -> None:
        FakeSession.instances += 1
        self.number = FakeSession.instances
        self.closed = False

    async def close(self) -> None:
        self.closed = True

    def __repr__(self) -> str:
        return f"FakeSession#{self.number}"


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def monotonic(self) -> float:
        return self.now


def make_pool(**options: Any) -> tuple[ClientPool, list[FakeSession]]:
    created: list[FakeSession] = []

    def factory() -> Any:
        session = FakeSession()
        created.append(session)
        return session

    return ClientPool(factory, **options), created


def sample(metrics: Metrics, name: str) -> float | None:
    return metrics.registry.get_sample_value(name)


async def settle(predicate: Callable[[], bool] | None = None) -> None:
    """Let the pool's closing tasks run (bounded)."""
    for _ in range(200):
        if predicate is not None and predicate():
            return
        await asyncio.sleep(0)
    if predicate is not None:
        assert predicate(), "condition not reached after the event loop settled"


async def test_same_key_gets_the_same_session_and_counts_hits() -> None:
    metrics = Metrics()
    pool, created = make_pool(metrics=metrics)
    async with pool.lease(KEY_A) as first:
        pass
    async with pool.lease(KEY_A) as second:
        pass
    async with pool.lease(KEY_A) as third:
        pass
    assert first is second is third
    assert len(created) == 1 and len(pool) == 1 and KEY_A in pool
    assert sample(metrics, "ccp_client_pool_misses_total") == 1
    assert sample(metrics, "ccp_client_pool_hits_total") == 2
    assert sample(metrics, "ccp_client_pool_size") == 1
    await pool.close()
    assert created[0].closed


async def test_distinct_keys_get_distinct_sessions() -> None:
    pool, created = make_pool()
    async with pool.lease(KEY_A) as a, pool.lease(KEY_B) as b:
        assert a is not b
    async with pool.lease(KEY_A) as again:
        assert again is a
    assert len(created) == 2 and len(pool) == 2
    assert KEY_A in pool and KEY_B in pool and KEY_C not in pool
    await pool.close()


async def test_pool_identifies_clients_by_hash_only() -> None:
    pool, _ = make_pool()
    async with pool.lease(KEY_A):
        pass
    ident = key_id(KEY_A)
    assert ident != KEY_A and KEY_A not in ident
    assert len(ident) >= 12 and all(c in "0123456789abcdef" for c in ident)
    assert key_id(KEY_A) == ident and key_id(KEY_B) != ident
    state = repr(vars(pool))
    assert ident in state
    assert KEY_A not in state and "tenant-a" not in state
    await pool.close()


async def test_lru_evicts_the_least_recently_used_client() -> None:
    metrics = Metrics()
    pool, created = make_pool(max_clients=2, metrics=metrics)
    for key in (KEY_A, KEY_B, KEY_A, KEY_C):  # A is used again, so B is the oldest
        async with pool.lease(key):
            pass
    session_a, session_b, session_c = created
    assert len(pool) == 2
    assert KEY_A in pool and KEY_C in pool and KEY_B not in pool
    await settle(lambda: session_b.closed)
    assert not session_a.closed and not session_c.closed
    assert sample(metrics, "ccp_client_pool_evictions_total") == 1
    assert sample(metrics, "ccp_client_pool_size") == 2
    await pool.close()
    assert all(s.closed for s in created)
    assert sample(metrics, "ccp_client_pool_size") == 0


async def test_evicted_client_in_use_is_closed_only_when_its_lease_ends() -> None:
    metrics = Metrics()
    pool, created = make_pool(max_clients=1, metrics=metrics)
    async with pool.lease(KEY_A) as session_a:
        async with pool.lease(KEY_B):
            pass
        assert KEY_A not in pool and KEY_B in pool
        assert sample(metrics, "ccp_client_pool_evictions_total") == 1
        await settle()
        assert not session_a.closed, "an evicted client was closed while a request used it"
        # The same key meanwhile gets a fresh client; the old one is still in use.
        async with pool.lease(KEY_A) as fresh:
            assert fresh is not session_a
        await settle()
        assert not session_a.closed
    await settle(lambda: session_a.closed)
    await pool.close()
    assert all(s.closed for s in created)


async def test_close_idle_closes_only_idle_clients(monkeypatch: pytest.MonkeyPatch) -> None:
    clock = FakeClock()
    monkeypatch.setattr(pool_module, "time", clock)
    metrics = Metrics()
    pool, _ = make_pool(idle_timeout=10.0, metrics=metrics)
    async with pool.lease(KEY_A) as session_a:
        pass
    clock.now += 8
    async with pool.lease(KEY_B) as session_b:
        pass
    busy = pool.lease(KEY_C)
    session_c = await busy.__aenter__()
    clock.now += 5  # A idle for 13 s, B for 5 s, C busy since 5 s
    assert pool.close_idle() == 1
    assert KEY_A not in pool and KEY_B in pool and KEY_C in pool
    await settle(lambda: session_a.closed)
    assert not session_b.closed and not session_c.closed
    assert sample(metrics, "ccp_client_pool_size") == 2

    clock.now += 100  # a lease in progress is never idle, however long it lasts
    assert pool.close_idle() == 1
    assert KEY_B not in pool and KEY_C in pool
    await busy.__aexit__(None, None, None)
    assert pool.close_idle() == 0  # idle time counts from the end of the lease
    clock.now += 10
    assert pool.close_idle() == 1
    assert len(pool) == 0
    await settle(lambda: session_b.closed and session_c.closed)
    assert sample(metrics, "ccp_client_pool_size") == 0
    await pool.close()


async def test_background_task_closes_idle_clients() -> None:
    metrics = Metrics()
    pool, created = make_pool(idle_timeout=0.05, metrics=metrics)
    await pool.start()
    try:
        async with pool.lease(KEY_A):
            pass
        async with pool.lease(KEY_B):
            pass
        for _ in range(500):  # bounded: 5 s
            if len(pool) == 0 and all(s.closed for s in created):
                break
            await asyncio.sleep(0.01)
        assert len(pool) == 0
        assert all(s.closed for s in created)
        assert sample(metrics, "ccp_client_pool_size") == 0
    finally:
        await pool.close()


# ------------------------------------------------------------------------------------------
# integration: keep-alive reuse per key
# ------------------------------------------------------------------------------------------


def test_requests_of_one_key_reuse_one_tcp_connection(
    proxy_factory: ProxyFactory, mock_upstream: MockUpstream
) -> None:
    proxy = proxy_factory(DYNAMIC)
    for _ in range(5):
        ok(post(proxy, KEY_A))
    requests = mock_upstream.chat_requests
    assert len(requests) == 5
    assert [r.connection for r in requests] == [1] * 5
    assert mock_upstream.connections_opened == 1
    assert {auth_of(r) for r in requests} == {f"Bearer {KEY_A}"}
    pool = pool_of(proxy)
    assert len(pool) == 1 and KEY_A in pool
    metrics = scrape(proxy)
    assert metrics["ccp_client_pool_misses_total"] == 1
    assert metrics["ccp_client_pool_hits_total"] == 4
    assert metrics["ccp_client_pool_size"] == 1


@pytest.mark.parametrize("ending", ["done_then_late_end_of_body", "usage_then_late_done"])
def test_streams_of_one_key_reuse_one_tcp_connection(
    proxy_factory: ProxyFactory, mock_upstream: MockUpstream, ending: str
) -> None:
    """Keep-alive must survive a stream even when the chunked body's last bytes come late.

    Real upstreams (behind TLS, load balancers) often send ``data: [DONE]`` and the chunked
    terminator in separate packets; the proxy must read the body to its end before releasing
    the connection, otherwise the connection is closed and every stream opens a new one.
    """
    proxy = proxy_factory(DYNAMIC)
    for i in range(3):
        if ending == "done_then_late_end_of_body":
            chunks = text_chunks([f"reply {i}"], usage=None)
            mock_upstream.enqueue(sse_response(chunks, done=True, keep_open_after_end=0.1))
        else:
            chunks = text_chunks([f"reply {i}"], usage=(10, 2))
            delays = [0.0] * len(chunks) + [0.05]  # [DONE] after a pause
            mock_upstream.enqueue(
                sse_response(chunks, delay=delays, done=True, keep_open_after_end=0.1)
            )
        resp = ok(post(proxy, KEY_A, body(stream=True)))
        stream = validate_anthropic_stream(resp.content, expect_error=False)
        assert stream.text == f"reply {i}"
    connections = [r.connection for r in mock_upstream.chat_requests]
    assert connections == [1, 1, 1], (
        f"each stream should reuse the key's keep-alive connection, got {connections}"
    )
    assert mock_upstream.connections_opened == 1


def test_two_keys_get_two_pool_entries_and_connections(
    proxy_factory: ProxyFactory, mock_upstream: MockUpstream
) -> None:
    proxy = proxy_factory(DYNAMIC)
    for key in (KEY_A, KEY_B, KEY_A, KEY_B, KEY_A):
        ok(post(proxy, key))
    requests = mock_upstream.chat_requests
    by_key: dict[str, set[int]] = {}
    for request in requests:
        by_key.setdefault(auth_of(request), set()).add(request.connection)
    assert set(by_key) == {f"Bearer {KEY_A}", f"Bearer {KEY_B}"}
    assert all(len(conns) == 1 for conns in by_key.values()), by_key
    assert by_key[f"Bearer {KEY_A}"] != by_key[f"Bearer {KEY_B}"]
    assert mock_upstream.connections_opened == 2
    pool = pool_of(proxy)
    assert len(pool) == 2 and KEY_A in pool and KEY_B in pool
    metrics = scrape(proxy)
    assert metrics["ccp_client_pool_size"] == 2
    assert metrics["ccp_client_pool_misses_total"] == 2
    assert metrics["ccp_client_pool_hits_total"] == 3


def test_static_mode_uses_one_client_whatever_the_client_key(
    proxy_factory: ProxyFactory, mock_upstream: MockUpstream
) -> None:
    proxy = proxy_factory()  # OPENAI_API_KEY=sk-upstream-test
    for key in (KEY_A, KEY_B, None, "whatever-the-client-sends", KEY_C):
        ok(post(proxy, key))
    requests = mock_upstream.chat_requests
    assert len(requests) == 5
    assert {auth_of(r) for r in requests} == {"Bearer sk-upstream-test"}
    assert [r.connection for r in requests] == [1] * 5
    assert mock_upstream.connections_opened == 1
    pool = pool_of(proxy)
    assert len(pool) == 1
    assert KEY_A not in pool and KEY_B not in pool
    metrics = scrape(proxy)
    assert metrics["ccp_client_pool_size"] == 1
    assert metrics["ccp_client_pool_misses_total"] == 1


# ------------------------------------------------------------------------------------------
# integration: LRU eviction and idle cleanup
# ------------------------------------------------------------------------------------------


def test_lru_eviction_does_not_cut_an_in_flight_stream(
    proxy_factory: ProxyFactory, mock_upstream: MockUpstream
) -> None:
    proxy = proxy_factory(DYNAMIC, MAX_CLIENTS="2")
    slow, gate = gated_stream("A begins.", " A ends.")
    mock_upstream.enqueue(slow)
    with ThreadPoolExecutor(max_workers=1) as executor:
        future = executor.submit(post, proxy, KEY_A, body(stream=True))
        try:
            mock_upstream.wait_for_requests(1, timeout=10)
            # B and C arrive while A's stream is running: A is the least recently used.
            ok(post(proxy, KEY_B))
            ok(post(proxy, KEY_C))
            pool = pool_of(proxy)
            assert len(pool) == 2
            assert KEY_A not in pool and KEY_B in pool and KEY_C in pool
            metrics = scrape(proxy)
            assert metrics["ccp_client_pool_evictions_total"] == 1
            assert metrics["ccp_client_pool_size"] == 2
            assert metrics["ccp_active_streams"] == 1
            assert not mock_upstream.chat_requests[0].finished, "A's stream ended too early"
        finally:
            gate.open()
        resp = future.result(timeout=30)
    stream = validate_anthropic_stream(ok(resp).content, expect_error=False)
    assert stream.completed
    assert stream.text == "A begins. A ends."
    assert stream.stop_reason == "end_turn"
    first = mock_upstream.chat_requests[0]
    assert first.finished and not first.client_disconnected
    assert auth_of(first) == f"Bearer {KEY_A}"
    # Once its stream is over, the evicted client is closed: only B's and C's stay open.
    wait_until(lambda: mock_upstream.connections_active == 2, "evicted client closed")
    # A comes back: a new client (evicting B), on a new connection.
    ok(post(proxy, KEY_A))
    pool = pool_of(proxy)
    assert KEY_A in pool and KEY_C in pool and KEY_B not in pool
    assert mock_upstream.chat_requests[-1].connection not in {
        r.connection for r in mock_upstream.chat_requests[:-1]
    }
    metrics = scrape(proxy)
    assert metrics["ccp_client_pool_evictions_total"] == 2
    assert metrics["ccp_client_pool_misses_total"] == 4
    assert metrics["ccp_active_streams"] == 0


def test_idle_clients_are_closed_in_the_background(
    proxy_factory: ProxyFactory, mock_upstream: MockUpstream
) -> None:
    proxy = proxy_factory(DYNAMIC, CLIENT_IDLE_TIMEOUT="0.2")
    ok(post(proxy, KEY_A))
    ok(post(proxy, KEY_B))
    pool = pool_of(proxy)
    wait_until(lambda: len(pool) == 0, "idle clients removed from the pool")
    wait_until(lambda: mock_upstream.connections_active == 0, "idle connections closed")
    assert scrape(proxy)["ccp_client_pool_size"] == 0
    ok(post(proxy, KEY_A))  # a new client for a returning key
    assert mock_upstream.connections_opened == 3
    metrics = scrape(proxy)
    assert metrics["ccp_client_pool_misses_total"] == 3
    assert metrics["ccp_client_pool_hits_total"] == 0


# ------------------------------------------------------------------------------------------
# dynamic-mode key validation
# ------------------------------------------------------------------------------------------


def expect_401(resp: httpx.Response) -> None:
    assert resp.status_code == 401, (resp.status_code, resp.text)
    validate_anthropic_error(resp.content, status=401, error_type="authentication_error")


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"x-api-key": ""},
        {"authorization": "Bearer"},
        {"authorization": "Basic c2stYWJjZGVm"},
        {"x-api-key": "not-a-key"},
        {"authorization": "Bearer not-a-key"},
        {"x-api-key": "sk-"},
        {"x-api-key": "sk- spaced out"},
    ],
    ids=lambda h: repr(h),
)
@pytest.mark.parametrize("stream", [False, True], ids=["json", "stream"])
def test_dynamic_mode_rejects_keys_that_cannot_be_upstream_keys(
    proxy_factory: ProxyFactory,
    mock_upstream: MockUpstream,
    headers: dict[str, str],
    stream: bool,
) -> None:
    proxy = proxy_factory(DYNAMIC)
    expect_401(post(proxy, None, body(stream=stream), headers=headers))
    assert mock_upstream.requests == []
    assert len(pool_of(proxy)) == 0
    metrics = scrape(proxy)
    assert metrics.get("ccp_client_pool_misses_total", 0) == 0


def raw_http(proxy: ProxyHandle, head: str, payload: bytes) -> tuple[int, bytes]:
    """Send one request byte for byte (for header values an HTTP client refuses to send)."""
    request = head.encode() + f"Content-Length: {len(payload)}\r\n\r\n".encode() + payload
    with socket.create_connection((proxy.host, proxy.port), timeout=10) as sock:
        sock.sendall(request)
        received = b""
        while chunk := sock.recv(65536):
            received += chunk
    status_line, _, rest = received.partition(b"\r\n")
    _, _, content = rest.partition(b"\r\n\r\n")
    return int(status_line.split()[1]), content


@pytest.mark.parametrize("value", [" \t ", "\t", "   "], ids=["mixed", "tab", "spaces"])
@pytest.mark.parametrize("header", ["x-api-key", "authorization"])
def test_dynamic_mode_rejects_whitespace_keys_on_the_wire(
    proxy_factory: ProxyFactory, mock_upstream: MockUpstream, header: str, value: str
) -> None:
    proxy = proxy_factory(DYNAMIC)
    if header == "authorization":
        value = "Bearer" + value
    head = (
        "POST /v1/messages HTTP/1.1\r\n"
        f"Host: {proxy.host}:{proxy.port}\r\n"
        "Connection: close\r\n"
        "Content-Type: application/json\r\n"
        "anthropic-version: 2023-06-01\r\n"
        f"{header}: {value}\r\n"
    )
    status, content = raw_http(proxy, head, json.dumps(body()).encode())
    assert status == 401, content
    validate_anthropic_error(content, status=401, error_type="authentication_error")
    assert mock_upstream.requests == []


@pytest.mark.parametrize(
    "headers",
    [
        {"x-api-key": "   "},
        {"x-api-key": "\t\n"},
        {"authorization": "Bearer    "},
        {"x-api-key": ""},
    ],
)
@pytest.mark.parametrize("pattern", [None, "any"])
def test_whitespace_keys_are_rejected_whatever_the_pattern(
    headers: dict[str, str], pattern: str | None
) -> None:
    env = {"OPENAI_BASE_URL": "http://127.0.0.1:9/v1"}
    if pattern is not None:
        env["CLIENT_KEY_PATTERN"] = pattern
    settings = Settings.from_env(env)
    with pytest.raises(ProxyError) as excinfo:
        upstream_key(headers, settings)
    assert excinfo.value.status == 401
    assert excinfo.value.error_type == "authentication_error"


@pytest.mark.parametrize("key", ["ollama", "gsk_groq-style", "not-a-key", "sk-ok"])
def test_client_key_pattern_any_accepts_any_non_empty_key(
    proxy_factory: ProxyFactory, mock_upstream: MockUpstream, key: str
) -> None:
    proxy = proxy_factory(DYNAMIC, CLIENT_KEY_PATTERN="any")
    ok(post(proxy, key))
    ok(post(proxy, None, headers={"authorization": f"Bearer {key}"}))
    assert [auth_of(r) for r in mock_upstream.chat_requests] == [f"Bearer {key}"] * 2
    assert len(pool_of(proxy)) == 1 and key in pool_of(proxy)
    expect_401(post(proxy, None))
    assert len(mock_upstream.chat_requests) == 2


def test_custom_client_key_pattern(
    proxy_factory: ProxyFactory, mock_upstream: MockUpstream
) -> None:
    proxy = proxy_factory(DYNAMIC, CLIENT_KEY_PATTERN=r"^gsk_[A-Za-z0-9]+$")
    ok(post(proxy, "gsk_abc123"))
    expect_401(post(proxy, "sk-openai-style-key"))
    expect_401(post(proxy, "gsk_"))
    assert [auth_of(r) for r in mock_upstream.chat_requests] == ["Bearer gsk_abc123"]


def test_default_pattern_accepts_openai_style_keys(
    proxy_factory: ProxyFactory, mock_upstream: MockUpstream
) -> None:
    proxy = proxy_factory(DYNAMIC)
    for key in ("sk-proj-AbC_123-xyz", "sk-1"):
        ok(post(proxy, key))
    expect_401(post(proxy, "ollama"))
    assert [auth_of(r) for r in mock_upstream.chat_requests] == [
        "Bearer sk-proj-AbC_123-xyz",
        "Bearer sk-1",
    ]
