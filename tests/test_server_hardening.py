"""Server-layer hardening found by an audit: upstream URL validation, client probes, `/v1/v1`
aliases, bounded metric labels, request ids on every response, retry-after on 503/529,
`Allow` on 405, model retrieval and list limits, the PORT=0 banner.

Requests go through the real proxy on 127.0.0.1 (``proxy_factory``) against the scripted
``mock_upstream``, or through the ASGI app with httpx where a fault has to be injected.
References: protocol.md A.1, A.3, A.13, C.1, E.8; user-complaints.md themes 5, 8, 10.
"""

from __future__ import annotations

import logging
import os
import queue
import re
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx
import pytest
from click.testing import CliRunner
from prometheus_client.parser import text_string_to_metric_families

from claude_code_proxy.app import create_app
from claude_code_proxy.cli import banner, main
from claude_code_proxy.config import ConfigError, Settings
from claude_code_proxy.gateway.upstream import Upstream
from claude_code_proxy.metrics import MAX_MODEL_LABELS, OTHER_MODELS, Metrics
from mock_upstream import MockUpstream, error_response, json_response
from sse_validator import validate_anthropic_error, validate_anthropic_stream

if TYPE_CHECKING:
    from conftest import ProxyFactory, ProxyHandle

TIMEOUT = httpx.Timeout(20.0, connect=5.0)
CLIENT = {"x-api-key": "sk-client-0001", "anthropic-version": "2023-06-01"}
AZURE_VERSION = "2024-10-21"
AZURE_DEPLOYMENT_PATH = "/openai/deployments/gpt4o/chat/completions"


def body(model: str = "claude-sonnet-4-5", *, stream: bool = False) -> dict[str, Any]:
    return {
        "model": model,
        "max_tokens": 64,
        "messages": [{"role": "user", "content": "Say hello"}],
        "stream": stream,
    }


def post(
    proxy: ProxyHandle, payload: Any, path: str = "/v1/messages", **headers: str
) -> httpx.Response:
    return httpx.post(proxy.url(path), json=payload, headers={**CLIENT, **headers}, timeout=TIMEOUT)


def get(proxy: ProxyHandle, path: str) -> httpx.Response:
    return httpx.get(proxy.url(path), headers=CLIENT, timeout=TIMEOUT)


def error_of(resp: httpx.Response, status: int, error_type: str) -> dict[str, Any]:
    """The A.13 error body, checked: status, type, and `request_id` equal to the header."""
    assert resp.status_code == status, (resp.status_code, resp.text)
    validate_anthropic_error(resp.content, status=status, error_type=error_type)
    data: dict[str, Any] = resp.json()
    rid = resp.headers.get("request-id")
    assert rid is not None and rid.startswith("req_"), resp.headers
    assert data["request_id"] == rid
    assert list(data) == ["type", "error", "request_id"]
    return data


def upstream(**env: str) -> Upstream:
    return Upstream(Settings.from_env({"OPENAI_API_KEY": "sk-upstream", **env}))


@pytest.fixture
def no_dotenv(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """CLI runs read the nearest .env: make sure there is none."""
    monkeypatch.chdir(tmp_path)
    return tmp_path


# ------------------------------------------------------------------------------------------
# 1. OPENAI_BASE_URL with a query string
# ------------------------------------------------------------------------------------------


def test_query_goes_after_the_endpoint_path() -> None:
    up = upstream(OPENAI_BASE_URL="http://h/v1?tenant=abc")
    assert up.settings.openai_base_url == "http://h/v1"
    assert up.chat_url("m") == "http://h/v1/chat/completions?tenant=abc"
    assert up.models_url() == "http://h/v1/models?tenant=abc"
    assert up.settings.azure_api_version is None


def test_full_azure_endpoint_url_supplies_the_api_version() -> None:
    url = f"https://x.openai.azure.com{AZURE_DEPLOYMENT_PATH}?api-version={AZURE_VERSION}"
    up = upstream(OPENAI_BASE_URL=url)
    assert up.settings.azure_api_version == AZURE_VERSION
    assert up.chat_url("ignored") == url
    assert up.headers("k")["api-key"] == "k"
    assert (
        up.models_url() == f"https://x.openai.azure.com/openai/models?api-version={AZURE_VERSION}"
    )


def test_api_version_in_url_and_setting_is_sent_once() -> None:
    url = "https://x.openai.azure.com/openai?api-version=2023-05-15&tenant=t1"
    up = upstream(OPENAI_BASE_URL=url, AZURE_API_VERSION=AZURE_VERSION)
    chat = up.chat_url("dep")
    assert chat == (
        "https://x.openai.azure.com/openai/deployments/dep/chat/completions"
        f"?api-version={AZURE_VERSION}&tenant=t1"
    )
    assert chat.count("api-version") == 1
    assert up.models_url().count("api-version") == 1


def test_azure_v1_base_keeps_other_query_parameters() -> None:
    up = upstream(
        OPENAI_BASE_URL="https://x.openai.azure.com/openai/v1/?tenant=t1",
        AZURE_API_VERSION=AZURE_VERSION,
    )
    assert up.chat_url("dep") == "https://x.openai.azure.com/openai/v1/chat/completions?tenant=t1"
    assert up.models_url() == "https://x.openai.azure.com/openai/v1/models?tenant=t1"


def test_query_reaches_the_upstream(
    proxy_factory: ProxyFactory, mock_upstream: MockUpstream
) -> None:
    proxy = proxy_factory(OPENAI_BASE_URL=mock_upstream.base_url + "?tenant=abc&x=%2F")
    for stream in (False, True):
        resp = post(proxy, body(stream=stream))
        assert resp.status_code == 200, resp.text
        sent = mock_upstream.last_request
        assert sent.path == "/v1/chat/completions"
        assert sent.query == {"tenant": "abc", "x": "/"}


def test_azure_endpoint_url_reaches_the_deployment(
    proxy_factory: ProxyFactory, mock_upstream: MockUpstream
) -> None:
    base = f"{mock_upstream.origin}{AZURE_DEPLOYMENT_PATH}?api-version={AZURE_VERSION}"
    proxy = proxy_factory(OPENAI_BASE_URL=base, BIG_MODEL="gpt4o", MIDDLE_MODEL="gpt4o")
    mock_upstream.enqueue(
        json_response(
            {
                "id": "chatcmpl-1",
                "object": "chat.completion",
                "model": "gpt4o",
                "choices": [
                    {
                        "index": 0,
                        "message": {"role": "assistant", "content": "hi"},
                        "finish_reason": "stop",
                    }
                ],
                "usage": {"prompt_tokens": 3, "completion_tokens": 1, "total_tokens": 4},
            }
        ),
        path=AZURE_DEPLOYMENT_PATH,
    )
    resp = post(proxy, body())
    assert resp.status_code == 200, resp.text
    sent = mock_upstream.last_request
    assert sent.path == AZURE_DEPLOYMENT_PATH
    assert sent.query == {"api-version": AZURE_VERSION}
    assert sent.headers["api-key"] == "sk-upstream-test"


def test_banner_shows_the_query_with_secret_values_masked() -> None:
    url = "http://h/v1?tenant=abc&api_key=supersecret123"
    shown = banner(Settings.from_env({"OPENAI_API_KEY": "sk-a", "OPENAI_BASE_URL": url}))
    assert "upstream       http://h/v1?tenant=abc&api_key=sup…23" in shown
    assert "supersecret123" not in shown


# ------------------------------------------------------------------------------------------
# 2, 3. credentials and ports in OPENAI_BASE_URL are refused at start-up
# ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "url",
    ["http://user:hunter2secret@127.0.0.1:9/v1", "https://hunter2secret@api.example.com/v1"],
)
def test_credentials_in_the_base_url_are_refused_without_echoing_them(
    url: str, no_dotenv: Path
) -> None:
    with pytest.raises(ConfigError, match="user name or password") as info:
        Settings.from_env({"OPENAI_BASE_URL": url})
    assert "hunter2secret" not in str(info.value)
    result = CliRunner().invoke(main, [], env={"OPENAI_BASE_URL": url, "PORT": "9"})
    assert result.exit_code == 2
    assert "configuration error" in result.stderr
    assert "hunter2secret" not in result.output


@pytest.mark.parametrize(
    "url", ["http://127.0.0.1:notaport/v1", "http://127.0.0.1:70000/v1", "http://127.0.0.1:0/v1"]
)
def test_invalid_port_in_the_base_url_is_a_config_error(url: str, no_dotenv: Path) -> None:
    with pytest.raises(ConfigError, match="invalid port"):
        Settings.from_env({"OPENAI_BASE_URL": url})
    result = CliRunner().invoke(main, [], env={"OPENAI_BASE_URL": url, "PORT": "9"})
    assert result.exit_code == 2
    assert "invalid port" in result.stderr


def test_base_url_without_a_host_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="no host name"):
        Settings.from_env({"OPENAI_BASE_URL": "http://:8000/v1"})


# ------------------------------------------------------------------------------------------
# 4. Claude Code's probes and telemetry
# ------------------------------------------------------------------------------------------


def test_client_probes_are_answered_locally_without_a_key(
    proxy_factory: ProxyFactory, mock_upstream: MockUpstream
) -> None:
    proxy = proxy_factory(ANTHROPIC_API_KEY="proxy-secret-key")
    assert httpx.get(proxy.url("/api/hello"), timeout=TIMEOUT).json() == {}
    head = httpx.head(proxy.url("/api/hello"), timeout=TIMEOUT)
    assert head.status_code == 200 and head.headers["request-id"].startswith("req_")
    events = {"events": [{"event_type": "x", "payload": "y" * 1000}] * 200}  # ~200 KB
    with httpx.Client(timeout=TIMEOUT) as client:
        for path in ("/api/event_logging/batch", "/api/event_logging/v2/batch"):
            resp = client.post(proxy.url(path), json=events)
            assert resp.status_code == 200, resp.text
            assert resp.json() == {}
        # The unread request bodies did not break the kept-alive connection.
        assert client.get(proxy.url("/health")).status_code == 200
    assert mock_upstream.requests == []


# ------------------------------------------------------------------------------------------
# 5. ANTHROPIC_BASE_URL ending in /v1
# ------------------------------------------------------------------------------------------


def test_doubled_v1_paths_are_served_with_one_warning(
    proxy: ProxyHandle, mock_upstream: MockUpstream, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="claude_code_proxy")
    resp = post(proxy, body(), "/v1/v1/messages?beta=true")
    assert resp.status_code == 200, resp.text
    assert resp.json()["content"][0]["text"] == "Hello from mock"
    stream = post(proxy, body(stream=True), "/v1/v1/messages")
    assert validate_anthropic_stream(stream.content).completed
    count = post(proxy, body(), "/v1/v1/messages/count_tokens")
    assert count.status_code == 200 and count.json()["input_tokens"] > 0
    assert get(proxy, "/v1/v1/models").json()["data"]
    warnings = [r for r in caplog.records if "/v1/v1/" in r.getMessage()]
    assert len(warnings) == 1
    assert f"ANTHROPIC_BASE_URL={proxy.base_url} (without /v1)" in warnings[0].getMessage()
    assert len(mock_upstream.chat_requests) == 2


# ------------------------------------------------------------------------------------------
# 6. bounded model labels
# ------------------------------------------------------------------------------------------


def test_model_label_keeps_configured_models_and_caps_the_rest() -> None:
    metrics = Metrics(known_models={"gpt-big"})
    others = [f"client-model-{i}" for i in range(MAX_MODEL_LABELS + 10)]
    labels = [metrics.model_label(m) for m in others]
    assert labels[:MAX_MODEL_LABELS] == others[:MAX_MODEL_LABELS]
    assert set(labels[MAX_MODEL_LABELS:]) == {OTHER_MODELS}
    assert metrics.model_label("gpt-big") == "gpt-big"  # configured: never "other"
    assert metrics.model_label(others[0]) == others[0]  # a model seen early keeps its label
    assert Metrics().model_label("x" * 500) == OTHER_MODELS


def test_client_chosen_models_do_not_grow_metrics_without_bound(
    proxy_factory: ProxyFactory,
) -> None:
    proxy = proxy_factory(OPENAI_API_KEY=None)  # dynamic mode: any model id passes through
    sent = [f"made-up-model-{i}" for i in range(MAX_MODEL_LABELS + 15)]
    for model in [*sent, "claude-haiku-4-5"]:
        assert post(proxy, body(model)).status_code == 200
    assert post(proxy, body("another-one"), "/v1/messages/count_tokens").status_code == 200

    def labels() -> set[str]:
        text = httpx.get(proxy.url("/metrics"), timeout=TIMEOUT).text
        return {
            sample.labels["model"]
            for family in text_string_to_metric_families(text)
            for sample in family.samples
            if sample.name == "ccp_requests_total"
        }

    deadline = time.monotonic() + 10
    while OTHER_MODELS not in labels() and time.monotonic() < deadline:
        time.sleep(0.02)
    seen = labels()
    assert "gpt-small" in seen  # the configured SMALL_MODEL keeps its name
    assert OTHER_MODELS in seen
    assert len(seen - {"gpt-small", OTHER_MODELS}) == MAX_MODEL_LABELS


# ------------------------------------------------------------------------------------------
# 7. dynamic mode on a public address
# ------------------------------------------------------------------------------------------


def test_dynamic_mode_beyond_loopback_warns() -> None:
    exposed = Settings.from_env({"HOST": "0.0.0.0"})
    warning = exposed.exposure_warning()
    assert warning is not None and "HOST=0.0.0.0" in warning and "dynamic mode" in warning
    keyed = Settings.from_env({"HOST": "0.0.0.0", "ANTHROPIC_API_KEY": "k"}).exposure_warning()
    assert keyed is not None and "not checked" in keyed
    assert Settings.from_env({}).exposure_warning() is None
    assert Settings.from_env({"HOST": "::1"}).exposure_warning() is None
    allowed = Settings.from_env({"HOST": "0.0.0.0", "ALLOW_UNAUTHENTICATED": "true"})
    assert allowed.exposure_warning() is None
    static = Settings.from_env(
        {"HOST": "0.0.0.0", "OPENAI_API_KEY": "sk-a", "ANTHROPIC_API_KEY": "k"}
    )
    assert static.exposure_warning() is None


def test_serve_prints_the_exposure_warning(
    monkeypatch: pytest.MonkeyPatch, no_dotenv: Path
) -> None:
    calls: list[dict[str, Any]] = []
    monkeypatch.setattr("uvicorn.run", lambda app, **kwargs: calls.append(kwargs))
    for name in ("OPENAI_API_KEY", "ALLOW_UNAUTHENTICATED", "HOST", "PORT"):
        monkeypatch.delenv(name, raising=False)
    result = CliRunner().invoke(main, ["--host", "0.0.0.0", "--port", "9555"])
    assert result.exit_code == 0, result.output
    assert calls and calls[0]["host"] == "0.0.0.0"
    assert "warning: HOST=0.0.0.0 listens beyond this machine in dynamic mode" in result.stderr


# ------------------------------------------------------------------------------------------
# 8, 9. request ids on every response and in every error body
# ------------------------------------------------------------------------------------------


async def test_unexpected_500_carries_the_request_id(monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(body: Any) -> int:
        raise RuntimeError("tokenizer exploded")

    monkeypatch.setattr("claude_code_proxy.tokens.count_request_tokens", broken)
    app = create_app(Settings.from_env({"OPENAI_API_KEY": "sk-upstream"}))
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://proxy") as client:
        resp = await client.post("/v1/messages/count_tokens", json=body())
    data = error_of(resp, 500, "api_error")
    assert "RuntimeError" in data["error"]["message"]
    assert "exploded" not in resp.text


def test_error_bodies_carry_the_request_id(
    proxy_factory: ProxyFactory, mock_upstream: MockUpstream
) -> None:
    proxy = proxy_factory(ANTHROPIC_API_KEY="proxy-secret-key", MAX_RETRIES="0")
    good = {"x-api-key": "proxy-secret-key"}
    error_of(post(proxy, body()), 401, "authentication_error")
    error_of(httpx.get(proxy.url("/nowhere"), timeout=TIMEOUT), 404, "not_found_error")
    bad = httpx.post(proxy.url("/v1/messages"), content=b"{nope", headers=good, timeout=TIMEOUT)
    error_of(bad, 400, "invalid_request_error")
    # Errors written by the exchange itself (upstream failure before the stream started).
    for stream in (False, True):
        mock_upstream.enqueue(error_response(429, "slow down", "rate_limit_exceeded"))
        error_of(post(proxy, body(stream=stream), **good), 429, "rate_limit_error")
    # A successful body is left alone.
    ok = post(proxy, body(), **good)
    assert ok.status_code == 200 and "request_id" not in ok.json()


# ------------------------------------------------------------------------------------------
# 10. retry-after on 503 / 529
# ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("status", [503, 529])
def test_long_retry_after_on_overload_goes_to_the_client(
    proxy: ProxyHandle, mock_upstream: MockUpstream, status: int
) -> None:
    for _ in range(3):
        mock_upstream.enqueue(
            error_response(status, "overloaded", "server_error", headers={"retry-after": "20"})
        )
    started = time.monotonic()
    resp = post(proxy, body(stream=True))
    error_of(resp, 529, "overloaded_error")
    assert resp.headers["retry-after"] == "20"
    assert len(mock_upstream.chat_requests) == 1, "a 20 s retry-after must not be retried here"
    assert time.monotonic() - started < 2


@pytest.mark.parametrize("status", [503, 529])
def test_short_retry_after_on_overload_is_waited_out(
    proxy: ProxyHandle, mock_upstream: MockUpstream, status: int
) -> None:
    mock_upstream.enqueue(
        error_response(status, "overloaded", "server_error", headers={"retry-after": "1"})
    )
    started = time.monotonic()
    resp = post(proxy, body())
    assert resp.status_code == 200, resp.text
    requests = mock_upstream.chat_requests
    assert len(requests) == 2
    assert requests[1].received_at - requests[0].received_at >= 0.9
    assert time.monotonic() - started < 5


def test_503_without_retry_after_still_backs_off_and_retries(
    proxy: ProxyHandle, mock_upstream: MockUpstream
) -> None:
    mock_upstream.enqueue(error_response(503, "overloaded", "server_error"))
    assert post(proxy, body()).status_code == 200
    assert len(mock_upstream.chat_requests) == 2


# ------------------------------------------------------------------------------------------
# 11. 405 keeps Allow
# ------------------------------------------------------------------------------------------


def test_method_not_allowed_keeps_the_allow_header(proxy: ProxyHandle) -> None:
    resp = get(proxy, "/v1/messages")
    error_of(resp, 405, "invalid_request_error")
    assert resp.headers["allow"] == "POST"
    resp = httpx.delete(proxy.url("/v1/models"), timeout=TIMEOUT)
    assert set(resp.headers["allow"].replace(" ", "").split(",")) == {"GET", "HEAD"}


# ------------------------------------------------------------------------------------------
# 12. model retrieval and list limits
# ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("model_id", "upstream_model"),
    [
        ("claude-opus-5-5", "gpt-big"),
        ("claude-sonnet-4-5-20250929", "gpt-middle"),
        ("claude-3-5-haiku-latest", "gpt-small"),
        ("anthropic/claude-something", "gpt-big"),
    ],
)
def test_any_id_messages_would_serve_can_be_retrieved(
    proxy: ProxyHandle, model_id: str, upstream_model: str
) -> None:
    resp = get(proxy, f"/v1/models/{model_id}")
    assert resp.status_code == 200, resp.text
    entry = resp.json()
    assert entry["type"] == "model" and entry["id"] == model_id
    assert upstream_model in entry["display_name"]
    assert entry["created_at"].startswith("20")


def test_unknown_non_claude_model_is_still_404(proxy: ProxyHandle) -> None:
    error_of(get(proxy, "/v1/models/gpt-not-configured"), 404, "not_found_error")
    assert get(proxy, "/v1/models/gpt-small").status_code == 200  # a configured upstream model


def test_model_map_globs_are_retrievable(proxy_factory: ProxyFactory) -> None:
    proxy = proxy_factory(MODEL_MAP='{"kimi-*": "moonshot-k2"}')
    resp = get(proxy, "/v1/models/kimi-latest")
    assert resp.status_code == 200 and "moonshot-k2" in resp.json()["display_name"]


@pytest.mark.parametrize("limit", ["0", "1001", "2000", "-1", "abc", "1.5", ""])
def test_models_limit_out_of_range_is_400(proxy: ProxyHandle, limit: str) -> None:
    data = error_of(get(proxy, f"/v1/models?limit={limit}"), 400, "invalid_request_error")
    assert "1 to 1000" in data["error"]["message"]


def test_models_limit_default_is_20_and_1000_is_accepted(proxy_factory: ProxyFactory) -> None:
    mapping = ",".join(f"claude-custom-{i:02}=gpt-{i}" for i in range(30))
    proxy = proxy_factory(MODEL_MAP=mapping)
    default = get(proxy, "/v1/models").json()
    assert len(default["data"]) == 20 and default["has_more"] is True
    everything = get(proxy, "/v1/models?limit=1000").json()
    assert everything["has_more"] is False
    assert len(everything["data"]) == 3 + 30 + 3  # aliases, MODEL_MAP ids, BIG/MIDDLE/SMALL
    assert [m["id"] for m in everything["data"][:20]] == [m["id"] for m in default["data"]]


# ------------------------------------------------------------------------------------------
# 13. PORT=0 names the real port
# ------------------------------------------------------------------------------------------


class StderrLines:
    """The lines a subprocess writes to stderr, read on a thread so waits can time out."""

    def __init__(self, proc: subprocess.Popen[bytes]) -> None:
        assert proc.stderr is not None
        self.lines: queue.Queue[str] = queue.Queue()
        stream = proc.stderr
        threading.Thread(
            target=lambda: [self.lines.put(raw.decode()) for raw in iter(stream.readline, b"")],
            daemon=True,
        ).start()
        self.seen = ""

    def wait_for(self, pattern: str, timeout: float) -> re.Match[str]:
        deadline = time.monotonic() + timeout
        while (left := deadline - time.monotonic()) > 0:
            try:
                line = self.lines.get(timeout=left)
            except queue.Empty:
                break
            self.seen += line
            if match := re.search(pattern, line):
                return match
        raise AssertionError(f"{pattern!r} not printed; stderr so far:\n{self.seen}")


@pytest.fixture
def port_zero_proxy(
    mock_upstream: MockUpstream, tmp_path: Path
) -> Iterator[subprocess.Popen[bytes]]:
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("OPENAI_", "ANTHROPIC_", "CUSTOM_HEADER_", "PROMETHEUS_"))
        and k not in ("HOST", "PORT", "MODEL_MAP", "AZURE_API_VERSION")
    }
    env |= {"OPENAI_BASE_URL": mock_upstream.base_url, "OPENAI_API_KEY": "sk-x1", "PORT": "0"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "claude_code_proxy", "--log-level", "WARNING"],
        env=env,
        cwd=tmp_path,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        yield proc
    finally:
        proc.terminate()
        proc.communicate(timeout=30)


def test_port_zero_banner_names_the_bound_port(port_zero_proxy: subprocess.Popen[bytes]) -> None:
    stderr = StderrLines(port_zero_proxy)
    match = stderr.wait_for(r"listening on\s+http://127\.0\.0\.1:(\d+)", 30)
    port = int(match.group(1))
    assert port != 0
    hint = stderr.wait_for(r"ANTHROPIC_BASE_URL=(\S+)", 5)
    assert hint.group(1) == f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 20
    while True:
        try:
            resp = httpx.get(f"http://127.0.0.1:{port}/health", timeout=2)
            break
        except httpx.TransportError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)
    assert resp.status_code == 200 and resp.json()["status"] == "healthy"
