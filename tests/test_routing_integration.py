"""Several providers through the real proxy: three mock upstreams on 127.0.0.1.

Each rule routes where it says; a failing target hands over to the next before any byte
reached the client (dead port, 429, 503, context overflow), never after; key pools rotate;
100 concurrent requests over two providers all come back, each with its own answer.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from claude_code_proxy.config_file import CONFIG_ENV
from conftest import ProxyHandle, start_proxy
from mock_upstream import (
    MockUpstream,
    Response,
    completion,
    error_response,
    json_response,
    sse_response,
    text_chunks,
)
from sse_validator import validate_anthropic_error, validate_anthropic_stream

CLIENT = {"x-api-key": "sk-client-0001", "anthropic-version": "2023-06-01"}


def named(name: str) -> Any:
    """A responder that says which upstream answered and which model it was asked for."""

    def respond(body: Any) -> Response:
        model = body.get("model", "?")
        text = f"{name}:{model}:{_last_text(body)}"
        if body.get("stream"):
            return sse_response(text_chunks([text], model=model, usage=(5, 2)))
        return json_response(completion(text, model=model))

    return respond


def _last_text(body: dict[str, Any]) -> str:
    content = body["messages"][-1]["content"]
    if isinstance(content, list):
        content = " ".join(p.get("text", "") for p in content if isinstance(p, dict))
    return str(content)


def dead_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def upstreams() -> Iterator[dict[str, MockUpstream]]:
    mocks = {name: MockUpstream(named(name)) for name in ("a", "b", "c")}
    for mock in mocks.values():
        mock.start()
    try:
        yield mocks
    finally:
        for mock in mocks.values():
            mock.stop()


@pytest.fixture
def gateway(tmp_path: Path, upstreams: dict[str, MockUpstream]) -> Iterator[Any]:
    """`gateway(routes_toml, extra_env)` starts a proxy on a file with providers a, b, c."""
    handles: list[ProxyHandle] = []

    def start(routes: str, env: dict[str, str] | None = None, providers: str = "") -> ProxyHandle:
        text = providers
        for name, mock in upstreams.items():
            text += f'[providers.{name}]\nbase_url = "{mock.base_url}"\napi_key = "sk-{name}"\n'
        path = tmp_path / "claude-code-proxy.toml"
        path.write_text(text + textwrap.dedent(routes))
        handle = start_proxy(
            {CONFIG_ENV: str(path), "REQUEST_TIMEOUT": "5", "MAX_RETRIES": "0", **(env or {})}
        )
        handles.append(handle)
        return handle

    yield start
    for handle in handles:
        handle.stop()


ROUTES = """
[routes]
opus = "a/gpt-a"
sonnet = "b/gpt-b"
haiku = "c/small-c"
default = "a/gpt-default"
long_context = { above_tokens = 2000, target = "c/long-c" }
image = "b/vision-b"
web_search = "a/search-a"

[models]
"my-alias" = "c/alias-c"
"claude-opus-4-1*" = "b/o3-b"
"""

PNG = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8BQDwAEhQGAhKmMIQAAAABJRU5ErkJggg=="


def ask(
    proxy: ProxyHandle,
    model: str,
    text: str = "hi",
    *,
    stream: bool = False,
    extra: dict[str, Any] | None = None,
    content: Any = None,
) -> httpx.Response:
    body: dict[str, Any] = {
        "model": model,
        "max_tokens": 64,
        "stream": stream,
        "messages": [{"role": "user", "content": content if content is not None else text}],
        **(extra or {}),
    }
    return httpx.post(proxy.url("/v1/messages"), json=body, headers=CLIENT, timeout=30)


def answer(response: httpx.Response) -> str:
    assert response.status_code == 200, response.text
    if response.headers["content-type"].startswith("text/event-stream"):
        stream = validate_anthropic_stream(response.text, expect_error=False)
        assert stream.message is not None
        return stream.text
    return "".join(b.get("text", "") for b in response.json()["content"])


@pytest.mark.parametrize("stream", [False, True])
def test_each_rule_routes_where_it_says(gateway: Any, stream: bool) -> None:
    proxy = gateway(ROUTES)
    long_text = "word " * 12000
    image = [
        {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": PNG}},
        {"type": "text", "text": "what is this"},
    ]
    search = {"tools": [{"type": "web_search_20250305", "name": "web_search"}]}
    cases = [
        (ask(proxy, "claude-opus-4-5", stream=stream), "a:gpt-a"),
        (ask(proxy, "claude-sonnet-4-5", stream=stream), "b:gpt-b"),
        (ask(proxy, "claude-haiku-4-5", stream=stream), "c:small-c"),
        (ask(proxy, "claude-2.1", stream=stream), "a:gpt-default"),
        (ask(proxy, "my-alias", stream=stream), "c:alias-c"),
        (ask(proxy, "claude-opus-4-1-20250805", stream=stream), "b:o3-b"),
        (ask(proxy, "b/any/model", stream=stream), "b:any/model"),
        (ask(proxy, "gpt-4.1", stream=stream), "a:gpt-4.1"),
        (ask(proxy, "claude-sonnet-4-5", long_text, stream=stream), "c:long-c"),
        (ask(proxy, "claude-haiku-4-5", content=image, stream=stream), "b:vision-b"),
        (ask(proxy, "claude-haiku-4-5", extra=search, stream=stream), "a:search-a"),
    ]
    for response, expected in cases:
        assert answer(response).startswith(expected + ":"), (expected, response.text[:300])
    # The response echoes the client's model id, whatever served it.
    reply = ask(proxy, "my-alias")
    assert reply.json()["model"] == "my-alias"


def test_v1_models_lists_aliases_models_and_targets(gateway: Any) -> None:
    proxy = gateway(ROUTES)
    listed = httpx.get(proxy.url("/v1/models?limit=100"), headers=CLIENT).json()["data"]
    ids = [entry["id"] for entry in listed]
    assert ids[:3] == ["claude-opus-4-5", "claude-sonnet-4-5", "claude-haiku-4-5"]
    assert "my-alias" in ids and "claude-opus-4-1*" not in ids
    for target in ("a/gpt-a", "b/gpt-b", "c/small-c", "c/long-c", "b/o3-b", "c/alias-c"):
        assert target in ids
    assert listed[0]["display_name"] == "Opus → a/gpt-a"


FALLBACK = """
[routes]
default = "a/gpt-a"
opus = ["a/gpt-a", "b/gpt-b", "c/gpt-c"]
"""


def metric(proxy: ProxyHandle, line_start: str) -> float:
    text = httpx.get(proxy.url("/metrics")).text
    for line in text.splitlines():
        if line.startswith(line_start):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


@pytest.mark.parametrize("stream", [False, True])
def test_fallback_past_a_dead_port(
    gateway: Any, upstreams: dict[str, MockUpstream], stream: bool
) -> None:
    port = dead_port()
    dead = f'[providers.dead]\nbase_url = "http://127.0.0.1:{port}/v1"\napi_key = "sk-dead"\n'
    proxy = gateway(
        '[routes]\ndefault = "a/gpt-a"\nopus = ["dead/gpt-x", "b/gpt-b"]\n', providers=dead
    )
    assert answer(ask(proxy, "claude-opus-4-5", stream=stream)).startswith("b:gpt-b:")
    assert (
        metric(
            proxy,
            'ccp_route_fallbacks_total{from="dead/gpt-x",reason="connect",to="b/gpt-b"}',
        )
        == 1
    )
    assert metric(proxy, 'ccp_provider_requests_total{provider="b",status="200"}') == 1


@pytest.mark.parametrize("stream", [False, True])
@pytest.mark.parametrize(
    ("failure", "reason"),
    [
        (error_response(429, "Rate limit reached", "rate_limit_error"), "rate_limit"),
        (error_response(503, "overloaded", "server_error"), "server_error"),
        (error_response(500, "boom", "server_error"), "server_error"),
        (error_response(401, "bad key", "invalid_api_key"), "auth"),
        (error_response(404, "The model does not exist", code="model_not_found"), "not_found"),
        (
            error_response(
                400,
                "This model's maximum context length is 8192 tokens. However, your messages "
                "resulted in 9000 tokens. Please reduce the length of the messages.",
                code="context_length_exceeded",
            ),
            "context_overflow",
        ),
    ],
)
def test_fallback_reasons(
    gateway: Any,
    upstreams: dict[str, MockUpstream],
    failure: Response,
    reason: str,
    stream: bool,
) -> None:
    proxy = gateway(FALLBACK)
    upstreams["a"].enqueue(failure)
    assert answer(ask(proxy, "claude-opus-4-5", stream=stream)).startswith("b:gpt-b:")
    assert len(upstreams["a"].chat_requests) == 1
    assert len(upstreams["c"].chat_requests) == 0
    series = f'ccp_route_fallbacks_total{{from="a/gpt-a",reason="{reason}",to="b/gpt-b"}}'
    assert metric(proxy, series) == 1


@pytest.mark.parametrize("stream", [False, True])
def test_other_400s_do_not_fall_back(
    gateway: Any, upstreams: dict[str, MockUpstream], stream: bool
) -> None:
    proxy = gateway(FALLBACK)
    upstreams["a"].enqueue(error_response(400, "messages: bad role"))
    response = ask(proxy, "claude-opus-4-5", stream=stream)
    assert response.status_code == 400
    validate_anthropic_error(response.json())
    assert upstreams["b"].chat_requests == []


@pytest.mark.parametrize("stream", [False, True])
def test_when_every_target_fails_the_last_error_goes_to_the_client(
    gateway: Any, upstreams: dict[str, MockUpstream], stream: bool
) -> None:
    proxy = gateway(FALLBACK)
    upstreams["a"].enqueue(error_response(503, "down"))
    upstreams["b"].enqueue(error_response(500, "broken"))
    upstreams["c"].enqueue(
        error_response(429, "slow down", "rate_limit_error", headers={"retry-after": "30"})
    )
    response = ask(proxy, "claude-opus-4-5", stream=stream)
    assert response.status_code == 429
    body = response.json()
    validate_anthropic_error(body)
    assert body["error"]["type"] == "rate_limit_error"
    assert response.headers["retry-after"] == "30"


def test_no_fallback_after_bytes_went_to_the_client(
    gateway: Any, upstreams: dict[str, MockUpstream]
) -> None:
    proxy = gateway(FALLBACK)
    upstreams["a"].enqueue(
        sse_response(text_chunks(["partial", " answer", " more"], model="gpt-a"), drop_after=2)
    )
    response = ask(proxy, "claude-opus-4-5", stream=True)
    assert response.status_code == 200
    stream = validate_anthropic_stream(response.text, expect_error=True)
    assert "partial" in stream.text
    assert upstreams["b"].chat_requests == [] and upstreams["c"].chat_requests == []


def test_access_log_names_route_provider_and_tried(
    gateway: Any, upstreams: dict[str, MockUpstream], caplog: pytest.LogCaptureFixture
) -> None:
    proxy = gateway(FALLBACK)
    upstreams["a"].enqueue(error_response(503, "down"))
    with caplog.at_level(logging.INFO, logger="claude_code_proxy.access"):
        answer(ask(proxy, "claude-opus-4-5"))
    line = next(r.getMessage() for r in caplog.records if r.name == "claude_code_proxy.access")
    assert "route=opus" in line and "provider=b" in line and "upstream_model=gpt-b" in line
    assert "tried=a/gpt-a:server_error" in line


def test_key_pool_rotates_past_a_429_and_a_bad_key(
    tmp_path: Path, upstreams: dict[str, MockUpstream], caplog: pytest.LogCaptureFixture
) -> None:
    mock = upstreams["a"]
    path = tmp_path / "pool.toml"
    path.write_text(
        f'[providers.pool]\nbase_url = "{mock.base_url}"\n'
        'api_keys_env = ["POOL_K1", "POOL_K2", "POOL_K3"]\n[routes]\ndefault = "pool/m"\n'
    )
    env = {
        CONFIG_ENV: str(path),
        "POOL_K1": "sk-pool-key-one",
        "POOL_K2": "sk-pool-key-two",
        "POOL_K3": "sk-pool-key-three",
        "MAX_RETRIES": "0",
    }
    proxy = start_proxy(env)
    try:
        mock.enqueue(
            error_response(429, "slow", "rate_limit_error", headers={"retry-after": "60"}),
            error_response(401, "revoked", "invalid_api_key"),
        )
        with caplog.at_level(logging.INFO):
            assert answer(ask(proxy, "claude-opus-4-5")).startswith("a:m:")
            assert answer(ask(proxy, "claude-opus-4-5")).startswith("a:m:")
        used = [r.headers["authorization"] for r in mock.chat_requests]
        # k1 → 429 (rests 60 s), k2 → 401 (bad), k3 serves; k1 rests, k2 is bad: k3 again.
        assert used == [
            "Bearer sk-pool-key-one",
            "Bearer sk-pool-key-two",
            "Bearer sk-pool-key-three",
            "Bearer sk-pool-key-three",
        ]
        assert "sk-pool-key" not in caplog.text
        # Every key resting or bad: a 429 with the time until the first is back.
        mock.enqueue(error_response(429, "slow", "rate_limit_error", headers={"retry-after": "9"}))
        response = ask(proxy, "claude-opus-4-5")
        assert response.status_code == 429
        validate_anthropic_error(response.json())
        assert 1 <= int(response.headers["retry-after"]) <= 60
    finally:
        proxy.stop()


def test_100_concurrent_requests_over_two_providers(
    gateway: Any, upstreams: dict[str, MockUpstream]
) -> None:
    proxy = gateway('[routes]\nopus = "a/gpt-a"\nhaiku = "b/gpt-b"\ndefault = "a/gpt-a"\n')

    async def one(client: httpx.AsyncClient, i: int) -> tuple[int, str, str]:
        model = "claude-opus-4-5" if i % 2 else "claude-haiku-4-5"
        body = {
            "model": model,
            "max_tokens": 32,
            "stream": i % 4 < 2,
            "messages": [{"role": "user", "content": f"request-{i}"}],
        }
        response = await client.post(proxy.url("/v1/messages"), json=body, headers=CLIENT)
        return i, model, answer(response)

    async def run() -> list[tuple[int, str, str]]:
        limits = httpx.Limits(max_connections=100)
        async with httpx.AsyncClient(timeout=60, limits=limits) as client:
            return await asyncio.gather(*(one(client, i) for i in range(100)))

    results = asyncio.run(run())
    assert len(results) == 100
    for i, model, text in results:
        expected = "a:gpt-a" if model == "claude-opus-4-5" else "b:gpt-b"
        assert text == f"{expected}:request-{i}", (i, text)
    assert len(upstreams["a"].chat_requests) == 50
    assert len(upstreams["b"].chat_requests) == 50
    assert upstreams["c"].chat_requests == []


def test_fallback_on_a_timeout_before_the_response_head(
    gateway: Any, upstreams: dict[str, MockUpstream]
) -> None:
    slow = ('[providers.slow]\nbase_url = "{url}"\napi_key = "sk-slow"\ntimeout = 0.5\n').format(
        url=upstreams["c"].base_url
    )
    proxy = gateway(
        '[routes]\ndefault = "a/gpt-a"\nopus = ["slow/gpt-s", "b/gpt-b"]\n', providers=slow
    )
    upstreams["c"].enqueue(json_response(completion("late"), hang_before_headers=3))
    assert answer(ask(proxy, "claude-opus-4-5")).startswith("b:gpt-b:")
    series = 'ccp_route_fallbacks_total{from="slow/gpt-s",reason="timeout",to="b/gpt-b"}'
    assert metric(proxy, series) == 1


def test_a_full_provider_hands_over_as_busy(
    gateway: Any, upstreams: dict[str, MockUpstream]
) -> None:
    narrow = (
        '[providers.narrow]\nbase_url = "{url}"\napi_key = "sk-narrow"\n'
        "max_concurrency = 1\nconnect_timeout = 0.3\n"
    ).format(url=upstreams["c"].base_url)
    proxy = gateway(
        '[routes]\ndefault = "a/gpt-a"\nopus = ["narrow/gpt-n", "b/gpt-b"]\n', providers=narrow
    )
    # The first request holds the only slot (its upstream waits); the second cannot get one.
    upstreams["c"].enqueue(json_response(completion("slow one"), hang_before_headers=4))

    async def both() -> list[httpx.Response]:
        async with httpx.AsyncClient(timeout=30) as client:

            async def post(text: str, delay: float) -> httpx.Response:
                await asyncio.sleep(delay)
                body = {
                    "model": "claude-opus-4-5",
                    "max_tokens": 16,
                    "messages": [{"role": "user", "content": text}],
                }
                return await client.post(proxy.url("/v1/messages"), json=body, headers=CLIENT)

            return list(await asyncio.gather(post("first", 0), post("second", 1.0)))

    first, second = asyncio.run(both())
    assert answer(first) == "slow one"
    assert answer(second).startswith("b:gpt-b:second")
    series = 'ccp_route_fallbacks_total{from="narrow/gpt-n",reason="busy",to="b/gpt-b"}'
    assert metric(proxy, series) == 1


VISION_ROUTES = """
[routes]
opus = "a/gpt-4.1"
sonnet = "a/qwen3-coder:30b"
haiku = "c/tiny"
image = "b/vision-b"
"""


@pytest.mark.parametrize("stream", [False, True])
def test_the_image_rule_is_for_text_only_and_unknown_models(gateway: Any, stream: bool) -> None:
    image = [
        {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": PNG}},
        {"type": "text", "text": "what is this"},
    ]
    proxy = gateway(VISION_ROUTES)
    # gpt-4.1 reads images (built-in rule): opus keeps them; qwen3-coder is text-only and
    # c/tiny unknown: both go to the image route, as before.
    assert answer(ask(proxy, "claude-opus-4-5", content=image, stream=stream)).startswith(
        "a:gpt-4.1:"
    )
    for model in ("claude-sonnet-4-5", "claude-haiku-4-5"):
        reply = answer(ask(proxy, model, content=image, stream=stream))
        assert reply.startswith("b:vision-b:"), reply
    # `[vision]` overrides the profile either way.
    proxy = gateway(VISION_ROUTES + '[vision]\n"a/gpt-4.1" = false\n"c/tiny" = true\n')
    assert answer(ask(proxy, "claude-opus-4-5", content=image, stream=stream)).startswith(
        "b:vision-b:"
    )
    assert answer(ask(proxy, "claude-haiku-4-5", content=image, stream=stream)).startswith(
        "c:tiny:"
    )
