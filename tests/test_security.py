"""Security defaults: loopback bind, no open relay, keys never leak, no CORS, size cap.

A proxy in front of Claude Code holds the owner's upstream key.  These tests pin down that it
is not reachable from other machines by default, refuses to become an open relay, never
forwards the client's key upstream in static mode, never writes a key to a log line or echoes
one in an error message, allows no cross-origin browser access, and caps request bodies.
"""

from __future__ import annotations

import hmac
import inspect
import json
import logging
import os
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx
import pytest

from mock_upstream import (
    MockUpstream,
    Response,
    completion,
    error_body,
    error_response,
    json_response,
    raw_response,
    sse_response,
    text_chunks,
)
from sse_validator import validate_anthropic_error, validate_anthropic_stream

if TYPE_CHECKING:
    from conftest import ProxyFactory, ProxyHandle

SRC_DIR = Path(__file__).resolve().parent.parent / "src"
UPSTREAM_KEY = "sk-upstream-SECRET-5f2c9a7e1b3d"
CLIENT_KEY = "sk-ant-client-SECRET-8d41e0c6a2"
OTHER_CLIENT_KEY = "sk-ant-intruder-SECRET-77b1f0"
KEYS = (UPSTREAM_KEY, CLIENT_KEY, OTHER_CLIENT_KEY)
TIMEOUT = httpx.Timeout(20.0, connect=5.0)
#: Echoes the upstream key the way OpenAI masks it in its 401 message.
OPENAI_401_MASKED = (
    "Incorrect API key provided: sk-upstr****3d. You can find your API key at "
    "https://platform.openai.com/account/api-keys."
)


def body(*, stream: bool = False, **extra: Any) -> dict[str, Any]:
    return {
        "model": "claude-sonnet-4-5",
        "max_tokens": 64,
        "stream": stream,
        "messages": [{"role": "user", "content": "hi"}],
        **extra,
    }


def settings_from(**env: str) -> Any:
    from claude_code_proxy.config import Settings

    return Settings.from_env(env)


# ------------------------------------------------------------------------------------------
# Bind address and the open-relay guard
# ------------------------------------------------------------------------------------------


def test_default_bind_is_loopback() -> None:
    from claude_code_proxy.config import Settings

    assert Settings().host == "127.0.0.1"
    assert settings_from().host == "127.0.0.1"
    assert settings_from(OPENAI_API_KEY=UPSTREAM_KEY).host == "127.0.0.1"


@pytest.mark.parametrize("host", ["0.0.0.0", "::", "192.168.1.20", "10.0.0.5", "proxy.example"])
def test_non_loopback_static_mode_without_client_key_is_refused(
    host: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from claude_code_proxy.config import ConfigError

    def getaddrinfo(name: str, *args: Any, **kwargs: Any) -> list[Any]:
        # A name that resolves beyond this machine (no DNS here); a name that does not
        # resolve at all is reported as a typo instead (test_config_auth).
        assert name == "proxy.example"
        return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", ("203.0.113.7", 0))]

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)

    with pytest.raises(ConfigError) as info:
        settings_from(HOST=host, OPENAI_API_KEY=UPSTREAM_KEY)
    message = str(info.value)
    # The message says what is at stake and every way out.
    assert host in message
    assert "ANTHROPIC_API_KEY" in message
    assert "ALLOW_UNAUTHENTICATED" in message
    assert "anyone" in message.lower()
    assert "key" in message.lower() and ("spend" in message.lower() or "relay" in message.lower())
    assert UPSTREAM_KEY not in message


@pytest.mark.parametrize("host", ["0.0.0.0", "::", "192.168.1.20"])
@pytest.mark.parametrize(
    "extra",
    [
        {"ALLOW_UNAUTHENTICATED": "true"},
        {"ANTHROPIC_API_KEY": CLIENT_KEY},
        {"OPENAI_API_KEY": ""},  # dynamic mode: every client spends its own key
    ],
    ids=["allow-unauthenticated", "client-key", "dynamic-mode"],
)
def test_non_loopback_is_allowed_when_safe_or_explicit(host: str, extra: dict[str, str]) -> None:
    env = {"HOST": host, "OPENAI_API_KEY": UPSTREAM_KEY, **extra}
    assert settings_from(**env).host == host


@pytest.mark.parametrize("value", ["false", "0", "no"])
def test_allow_unauthenticated_false_still_refuses(value: str) -> None:
    from claude_code_proxy.config import ConfigError

    with pytest.raises(ConfigError):
        settings_from(HOST="0.0.0.0", OPENAI_API_KEY=UPSTREAM_KEY, ALLOW_UNAUTHENTICATED=value)


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost", "::1", "127.0.0.2"])
def test_loopback_static_mode_needs_no_client_key(host: str) -> None:
    assert settings_from(HOST=host, OPENAI_API_KEY=UPSTREAM_KEY).host == host


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _proxy_env(tmp_path: Path, **env: str) -> dict[str, str]:
    """A clean environment for ``python -m claude_code_proxy`` (no inherited settings)."""
    base = {
        key: value
        for key, value in os.environ.items()
        if key in ("PATH", "HOME", "LANG", "LC_ALL", "SYSTEMROOT", "TMPDIR")
    }
    return {**base, "PYTHONPATH": str(SRC_DIR), "HOME": str(tmp_path), **env}


def _listening_addresses(port: int) -> list[str]:
    """Local addresses in LISTEN state on ``port``, from /proc/net/tcp{,6} (hex form)."""
    found = []
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            address, _, hex_port = fields[1].rpartition(":")
            if int(hex_port, 16) == port and fields[3] == "0A":
                found.append(address)
    return found


def test_cli_binds_loopback_by_default(tmp_path: Path, mock_upstream: MockUpstream) -> None:
    """The real command, without HOST: it listens on 127.0.0.1 only."""
    if not Path("/proc/net/tcp").exists():
        pytest.skip("needs /proc/net/tcp to see the listening address")
    for _attempt in range(3):
        # The free port can be taken by another process before the proxy binds it (exit 3).
        port = _free_port()
        env = _proxy_env(
            tmp_path,
            PORT=str(port),
            OPENAI_BASE_URL=mock_upstream.base_url,
            OPENAI_API_KEY=UPSTREAM_KEY,
        )
        proc = subprocess.Popen(
            [sys.executable, "-m", "claude_code_proxy"],
            cwd=tmp_path,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        deadline = time.monotonic() + 30
        addresses: list[str] = []
        while not addresses and proc.poll() is None:
            assert time.monotonic() < deadline, "the proxy did not start listening within 30s"
            time.sleep(0.1)
            addresses = _listening_addresses(port)
        if addresses or proc.returncode != 3:
            break
        proc.communicate(timeout=10)
    try:
        assert addresses, proc.communicate(timeout=10)[1].decode()
        # 0100007F is 127.0.0.1 in /proc's little-endian hex; never 00000000 (all interfaces).
        assert addresses == ["0100007F"], addresses
        with httpx.Client(timeout=TIMEOUT) as client:
            assert client.get(f"http://127.0.0.1:{port}/health").status_code == 200
    finally:
        proc.terminate()
        try:
            proc.communicate(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.communicate(timeout=10)


def test_cli_refuses_to_start_as_an_open_relay(tmp_path: Path) -> None:
    """HOST=0.0.0.0 with a server key and no client key: exits with the reason, never listens."""
    port = _free_port()
    env = _proxy_env(tmp_path, HOST="0.0.0.0", PORT=str(port), OPENAI_API_KEY=UPSTREAM_KEY)
    result = subprocess.run(
        [sys.executable, "-m", "claude_code_proxy"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        timeout=60,
    )
    stderr = result.stderr.decode()
    assert result.returncode != 0
    assert "ANTHROPIC_API_KEY" in stderr and "ALLOW_UNAUTHENTICATED" in stderr
    assert "Traceback" not in stderr
    assert UPSTREAM_KEY not in stderr + result.stdout.decode()
    assert _listening_addresses(port) == []


# ------------------------------------------------------------------------------------------
# What reaches the upstream
# ------------------------------------------------------------------------------------------


def _exercise(proxy: ProxyHandle, headers: dict[str, str]) -> list[httpx.Response]:
    """Every endpoint that talks to the upstream (and some that do not), with ``headers``."""
    replies = []
    with httpx.Client(timeout=TIMEOUT) as client:
        for stream in (False, True):
            replies.append(
                client.post(proxy.url("/v1/messages"), json=body(stream=stream), headers=headers)
            )
        replies.append(
            client.post(proxy.url("/v1/messages/count_tokens"), json=body(), headers=headers)
        )
        replies.append(client.get(proxy.url("/v1/models"), headers=headers))
        replies.append(client.get(proxy.url("/test-connection"), headers=headers))
    return replies


CLIENT_HEADER_SETS = [
    {"x-api-key": CLIENT_KEY},
    {"authorization": f"Bearer {CLIENT_KEY}"},
    {"x-api-key": CLIENT_KEY, "authorization": f"Bearer {OTHER_CLIENT_KEY}"},
]


@pytest.mark.parametrize("headers", CLIENT_HEADER_SETS, ids=["x-api-key", "bearer", "both"])
@pytest.mark.parametrize("checked", [False, True], ids=["unchecked", "ANTHROPIC_API_KEY"])
def test_client_key_is_never_forwarded_in_static_mode(
    proxy_factory: ProxyFactory,
    mock_upstream: MockUpstream,
    headers: dict[str, str],
    checked: bool,
) -> None:
    env = {"OPENAI_API_KEY": UPSTREAM_KEY}
    if checked:
        env["ANTHROPIC_API_KEY"] = CLIENT_KEY
    proxy = proxy_factory(env)
    replies = _exercise(proxy, headers)
    assert [r.status_code for r in replies] == [200] * len(replies), [r.text for r in replies]
    chat = mock_upstream.chat_requests
    assert len(chat) == 3  # two messages + test-connection
    for request in mock_upstream.requests:
        assert request.headers.get("authorization") == f"Bearer {UPSTREAM_KEY}"
        assert "x-api-key" not in request.headers
        for name, value in request.headers.items():
            for key in (CLIENT_KEY, OTHER_CLIENT_KEY):
                assert key not in value, f"client key forwarded upstream in {name!r}"
                assert key not in name
        for key in (CLIENT_KEY, OTHER_CLIENT_KEY):
            assert key.encode() not in request.body
            assert key not in request.path and key not in json.dumps(request.query)


def test_dynamic_mode_forwards_only_the_clients_own_key(
    proxy_factory: ProxyFactory, mock_upstream: MockUpstream
) -> None:
    """The one mode that forwards a client key sends exactly that key, once, as the bearer."""
    proxy = proxy_factory({"OPENAI_API_KEY": None})
    with httpx.Client(timeout=TIMEOUT) as client:
        reply = client.post(
            proxy.url("/v1/messages"), json=body(), headers={"x-api-key": CLIENT_KEY}
        )
    assert reply.status_code == 200, reply.text
    request = mock_upstream.last_request
    assert request.headers["authorization"] == f"Bearer {CLIENT_KEY}"
    assert "x-api-key" not in request.headers
    assert CLIENT_KEY.encode() not in request.body


def test_custom_headers_reach_the_upstream(
    proxy_factory: ProxyFactory, mock_upstream: MockUpstream
) -> None:
    proxy = proxy_factory(
        {
            "OPENAI_API_KEY": UPSTREAM_KEY,
            "CUSTOM_HEADER_X_TEAM": "blue",
            "CUSTOM_HEADER_HTTP_REFERER": "https://example.test",
        }
    )
    with httpx.Client(timeout=TIMEOUT) as client:
        for stream in (False, True):
            reply = client.post(proxy.url("/v1/messages"), json=body(stream=stream))
            assert reply.status_code == 200, reply.text
    assert len(mock_upstream.chat_requests) == 2
    for request in mock_upstream.chat_requests:
        assert request.headers["x-team"] == "blue"
        assert request.headers["http-referer"] == "https://example.test"
        assert request.headers["authorization"] == f"Bearer {UPSTREAM_KEY}"


@pytest.mark.parametrize(
    "variable",
    [
        "CUSTOM_HEADER_AUTHORIZATION",
        "CUSTOM_HEADER_Authorization",
        "CUSTOM_HEADER_API_KEY",
    ],
)
def test_custom_headers_cannot_override_authentication(variable: str) -> None:
    from claude_code_proxy.config import ConfigError

    with pytest.raises(ConfigError) as info:
        settings_from(**{"OPENAI_API_KEY": UPSTREAM_KEY, variable: "Bearer sk-attacker"})
    assert variable in str(info.value)
    assert "sk-attacker" not in str(info.value)


# ------------------------------------------------------------------------------------------
# CORS and informational endpoints
# ------------------------------------------------------------------------------------------


def _no_cors(response: httpx.Response) -> None:
    cors = {k: v for k, v in response.headers.items() if k.lower().startswith("access-control-")}
    assert not cors, f"{response.request.method} {response.request.url.path} sent {cors}"


def test_no_cors_headers_anywhere(proxy_factory: ProxyFactory) -> None:
    """No ``access-control-allow-origin`` (wildcard or echoed) on any answer, preflight included."""
    proxy = proxy_factory({"OPENAI_API_KEY": UPSTREAM_KEY, "ANTHROPIC_API_KEY": CLIENT_KEY})
    origin = {"origin": "https://evil.example"}
    preflight = {
        **origin,
        "access-control-request-method": "POST",
        "access-control-request-headers": "x-api-key, content-type, anthropic-version",
    }
    good = {**origin, "x-api-key": CLIENT_KEY}
    with httpx.Client(timeout=TIMEOUT) as client:
        responses = [
            client.options(proxy.url(path), headers=preflight)
            for path in ("/v1/messages", "/v1/messages/count_tokens", "/", "/health", "/v1/models")
        ]
        for method in ("OPTIONS", "POST", "GET"):
            responses.append(client.request(method, proxy.url("/nowhere"), headers=origin))
        responses += [
            client.get(proxy.url("/"), headers=origin),
            client.get(proxy.url("/health"), headers=origin),
            client.get(proxy.url("/v1/models"), headers=good),
            client.post(proxy.url("/v1/messages"), json=body(), headers=good),
            client.post(proxy.url("/v1/messages"), json=body(stream=True), headers=good),
            client.post(proxy.url("/v1/messages"), json=body(), headers=origin),  # 401
            client.post(proxy.url("/v1/messages/count_tokens"), json=body(), headers=good),
            client.post(proxy.url("/v1/messages"), content=b"{", headers=good),  # 400
        ]
    for response in responses:
        assert response.status_code < 500, response.text
        _no_cors(response)
    # The preflight is not approved: a browser would block the cross-origin call.
    for response in responses[:5]:
        assert response.status_code >= 400 or "access-control-allow-origin" not in response.headers


@pytest.mark.parametrize("path", ["/", "/health"])
@pytest.mark.parametrize("method", ["GET", "HEAD"])
@pytest.mark.parametrize("dynamic", [False, True], ids=["static", "dynamic"])
def test_info_endpoints_reveal_no_key_or_base_url(
    proxy_factory: ProxyFactory,
    mock_upstream: MockUpstream,
    path: str,
    method: str,
    dynamic: bool,
) -> None:
    env = {"ANTHROPIC_API_KEY": CLIENT_KEY, "OPENAI_API_KEY": None if dynamic else UPSTREAM_KEY}
    proxy = proxy_factory(env)
    with httpx.Client(timeout=TIMEOUT) as client:
        response = client.request(method, proxy.url(path))
    assert response.status_code == 200
    text = response.text + json.dumps(dict(response.headers))
    upstream_host = mock_upstream.base_url.split("//", 1)[1].split("/", 1)[0]
    for secret in (*KEYS, mock_upstream.base_url, mock_upstream.origin, upstream_host):
        assert secret not in text, f"{path} reveals {secret!r}"
    assert str(mock_upstream.port) not in text


# ------------------------------------------------------------------------------------------
# Keys never in logs, never echoed to the client
# ------------------------------------------------------------------------------------------


def _openai_401(message: str) -> Response:
    return error_response(401, message, "invalid_request_error", code="invalid_api_key")


#: Upstream behaviours whose output may carry the key.  Each maps to (responder, what's echoed).
UPSTREAM_SCENARIOS: dict[str, Callable[[str], Response]] = {
    "healthy": lambda key: sse_response(text_chunks(["Hello"], usage=(5, 1))),
    "401 masked key": lambda key: _openai_401(OPENAI_401_MASKED),
    "401 echoing the full key": lambda key: _openai_401(f"Incorrect API key provided: {key}."),
    "403 flat body with the key": lambda key: error_response(
        403, f"key {key} is not allowed to use this model", "permission_error"
    ),
    "429 with the key": lambda key: error_response(
        429, f"Rate limit reached for key {key}", "rate_limit_error"
    ),
    "502 HTML page with the key": lambda key: raw_response(
        502, f"<html><title>Bad gateway</title><body>auth={key}</body></html>"
    ),
    "500 plain text with the key": lambda key: raw_response(
        500, f"upstream exploded; Authorization: Bearer {key}", "text/plain"
    ),
    "200 stream carrying an error with the key": lambda key: sse_response(
        [error_body(f"invalid key {key}", "authentication_error")]
    ),
}


def _mode_env(mode: str) -> dict[str, str | None]:
    common: dict[str, str | None] = {"LOG_LEVEL": "DEBUG", "MAX_RETRIES": "0"}
    if mode == "static":
        return {**common, "OPENAI_API_KEY": UPSTREAM_KEY, "ANTHROPIC_API_KEY": CLIENT_KEY}
    return {**common, "OPENAI_API_KEY": None, "ANTHROPIC_API_KEY": None}


def _responder_for(scenario: str, upstream: MockUpstream) -> Callable[[Any], Response]:
    """Answers per ``scenario``, quoting the key this very request carried (as providers do)."""
    make = UPSTREAM_SCENARIOS[scenario]

    def responder(request_json: Any) -> Response:
        authorization = upstream.last_request.headers.get("authorization", "")
        key = authorization.removeprefix("Bearer ")
        stream = isinstance(request_json, dict) and request_json.get("stream") is True
        if scenario == "healthy" and not stream:
            return _json_ok()
        if scenario.startswith("200 stream") and not stream:
            return json_response(error_body(f"invalid key {key}", "authentication_error"))
        return make(key)

    return responder


def _json_ok() -> Response:
    return json_response(completion("Hello"))


@pytest.fixture
def debug_logs(
    caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> Iterator[pytest.LogCaptureFixture]:
    """Every log record of every logger, at DEBUG.

    Other tests may have run the CLI in this process (``configure_logging`` sets the package
    logger's level), so the proxy's and uvicorn's loggers are opened up explicitly.
    """
    import claude_code_proxy.app  # noqa: F401  (creates the package's loggers)

    caplog.set_level(logging.DEBUG)
    for name in list(logging.root.manager.loggerDict):
        if name.split(".")[0] in ("claude_code_proxy", "uvicorn", "aiohttp"):
            caplog.set_level(logging.DEBUG, logger=name)
            logger = logging.getLogger(name)
            monkeypatch.setattr(logger, "disabled", False)
            monkeypatch.setattr(logger, "propagate", True)
    yield caplog


def _proxy_log_text(caplog: pytest.LogCaptureFixture) -> str:
    """All proxy-side log output: messages, arguments, extras and tracebacks.

    Left out: records from the mock upstream's thread (the fake provider legitimately sees
    the key) and from this test's own HTTP client (httpx/httpcore); neither is the proxy.
    """
    formatter = logging.Formatter()
    parts = []
    for record in caplog.records:
        if record.threadName.startswith("mock-upstream"):
            continue
        if record.name.split(".")[0] in ("httpx", "httpcore"):
            continue
        parts.append(record.getMessage())
        parts.append(repr(vars(record)))
        if record.exc_info:
            parts.append(formatter.formatException(record.exc_info))
    return "\n".join(parts)


def _run_key_scenario(
    proxy_factory: ProxyFactory, mock_upstream: MockUpstream, mode: str, scenario: str
) -> list[httpx.Response]:
    """Run every client request of a scenario (right and wrong client keys); the replies."""
    proxy = proxy_factory(
        _mode_env(mode),
        uvicorn_options={"log_config": None, "log_level": "debug", "access_log": True},
    )
    mock_upstream.responder = _responder_for(scenario, mock_upstream)
    headers = {"x-api-key": CLIENT_KEY, "anthropic-version": "2023-06-01"}
    replies = _exercise(proxy, headers)
    with httpx.Client(timeout=TIMEOUT) as client:
        wrong = {"x-api-key": OTHER_CLIENT_KEY}
        replies.append(client.post(proxy.url("/v1/messages"), json=body(), headers=wrong))
        replies.append(
            client.post(proxy.url("/v1/messages"), json=body(stream=True), headers=wrong)
        )
    return replies


SCENARIO_IDS = sorted(UPSTREAM_SCENARIOS)


@pytest.mark.parametrize("scenario", SCENARIO_IDS)
@pytest.mark.parametrize("mode", ["static", "dynamic"])
def test_keys_never_appear_in_logs(
    proxy_factory: ProxyFactory,
    mock_upstream: MockUpstream,
    debug_logs: pytest.LogCaptureFixture,
    mode: str,
    scenario: str,
) -> None:
    """LOG_LEVEL=DEBUG, all loggers captured: neither key shows up, on any path."""
    replies = _run_key_scenario(proxy_factory, mock_upstream, mode, scenario)
    assert all(r.status_code < 600 for r in replies)
    assert mock_upstream.chat_requests, "the scenario never reached the upstream"
    logs = _proxy_log_text(debug_logs)
    # The capture works: the proxy's own per-request lines are in it.
    assert "claude_code_proxy" in logs, "no proxy log records captured"
    for key in KEYS:
        assert key not in logs, f"{key[:12]}… appears in the logs ({mode}, {scenario})"


def _echoes(replies: list[httpx.Response], secret: str) -> list[str]:
    """One line per reply whose body or headers contain ``secret``."""
    return [
        f"{r.request.method} {r.request.url.path} {r.status_code}: {r.text[:240]}"
        for r in replies
        if secret in r.text + json.dumps(dict(r.headers))
    ]


@pytest.mark.parametrize("scenario", SCENARIO_IDS)
def test_upstream_errors_never_echo_the_server_key(
    proxy_factory: ProxyFactory, mock_upstream: MockUpstream, scenario: str
) -> None:
    """Static mode: an upstream error that quotes the owner's key is redacted before the client
    sees it (the client never had that key); the rest of the message survives."""
    replies = _run_key_scenario(proxy_factory, mock_upstream, "static", scenario)
    assert not _echoes(replies, UPSTREAM_KEY), "the upstream key was echoed:\n" + "\n".join(
        _echoes(replies, UPSTREAM_KEY)
    )
    for reply in replies:
        if reply.status_code >= 400:
            validate_anthropic_error(reply.content, status=reply.status_code)
        elif "text/event-stream" in reply.headers.get("content-type", ""):
            validate_anthropic_stream(reply.content, expect_error=None)


@pytest.mark.parametrize("scenario", SCENARIO_IDS)
def test_upstream_errors_never_echo_the_client_key_in_dynamic_mode(
    proxy_factory: ProxyFactory, mock_upstream: MockUpstream, scenario: str
) -> None:
    """Dynamic mode forwards the client's key; an upstream error quoting it is redacted too
    (error text ends up in terminals, screenshots and bug reports)."""
    replies = _run_key_scenario(proxy_factory, mock_upstream, "dynamic", scenario)
    echoes = _echoes(replies, CLIENT_KEY) + _echoes(replies, OTHER_CLIENT_KEY)
    assert not echoes, "a client key was echoed:\n" + "\n".join(echoes)


def test_masked_key_in_upstream_401_reaches_the_client(
    proxy_factory: ProxyFactory, mock_upstream: MockUpstream
) -> None:
    """Redaction must not swallow the useful part of the message."""
    proxy = proxy_factory({"OPENAI_API_KEY": UPSTREAM_KEY, "MAX_RETRIES": "0"})
    mock_upstream.responder = lambda _: _openai_401(OPENAI_401_MASKED)
    with httpx.Client(timeout=TIMEOUT) as client:
        reply = client.post(proxy.url("/v1/messages"), json=body())
    error = validate_anthropic_error(reply.content, status=reply.status_code)
    assert reply.status_code == 401
    assert "Incorrect API key provided" in error["message"]


# ------------------------------------------------------------------------------------------
# Request size cap
# ------------------------------------------------------------------------------------------

LIMIT = 2000


def _padded(size: int, *, stream: bool = False) -> bytes:
    """A valid body of exactly ``size`` bytes."""
    base = json.dumps(body(stream=stream, system="")).encode()
    pad = size - len(base)
    assert pad >= 0
    return json.dumps(body(stream=stream, system="x" * pad)).encode()


def _chunks(data: bytes, size: int = 512) -> Iterator[bytes]:
    for start in range(0, len(data), size):
        yield data[start : start + size]


@pytest.mark.parametrize("path", ["/v1/messages", "/v1/messages/count_tokens"])
@pytest.mark.parametrize("framing", ["content-length", "chunked"])
@pytest.mark.parametrize("stream", [False, True])
def test_body_above_max_request_bytes_is_413(
    proxy_factory: ProxyFactory,
    mock_upstream: MockUpstream,
    path: str,
    framing: str,
    stream: bool,
) -> None:
    proxy = proxy_factory({"MAX_REQUEST_BYTES": str(LIMIT)})
    data = _padded(LIMIT + 1, stream=stream)
    assert len(data) == LIMIT + 1
    content: bytes | Iterator[bytes] = data if framing == "content-length" else _chunks(data)
    with httpx.Client(timeout=TIMEOUT) as client:
        reply = client.post(
            proxy.url(path), content=content, headers={"content-type": "application/json"}
        )
    assert reply.status_code == 413, reply.text
    validate_anthropic_error(reply.content, status=413, error_type="request_too_large")
    assert not mock_upstream.chat_requests


@pytest.mark.parametrize("path", ["/v1/messages", "/v1/messages/count_tokens"])
def test_body_at_max_request_bytes_is_accepted(proxy_factory: ProxyFactory, path: str) -> None:
    proxy = proxy_factory({"MAX_REQUEST_BYTES": str(LIMIT)})
    with httpx.Client(timeout=TIMEOUT) as client:
        reply = client.post(
            proxy.url(path), content=_padded(LIMIT), headers={"content-type": "application/json"}
        )
    assert reply.status_code == 200, reply.text


def test_lying_content_length_cannot_smuggle_a_big_body(proxy_factory: ProxyFactory) -> None:
    """Chunked bodies have no content-length to check: the cap counts the bytes received."""
    proxy = proxy_factory({"MAX_REQUEST_BYTES": str(LIMIT)})
    data = _padded(LIMIT * 20)
    with httpx.Client(timeout=TIMEOUT) as client:
        reply = client.post(proxy.url("/v1/messages"), content=_chunks(data, 100))
    assert reply.status_code == 413
    validate_anthropic_error(reply.content, status=413, error_type="request_too_large")


def test_default_max_request_bytes_fits_image_heavy_requests() -> None:
    assert settings_from().max_request_bytes >= 32 * 1024 * 1024


# ------------------------------------------------------------------------------------------
# Constant-time key comparison
# ------------------------------------------------------------------------------------------


def test_auth_compares_keys_in_constant_time() -> None:
    """A simple source check: the comparison is ``hmac.compare_digest``, never ``==``."""
    from claude_code_proxy import auth

    source = inspect.getsource(auth)
    assert "compare_digest" in source
    for needle in ("== expected", "!= expected", "== settings.anthropic_api_key"):
        assert needle not in source


def test_auth_check_goes_through_compare_digest(monkeypatch: pytest.MonkeyPatch) -> None:
    """And it is actually called on the client-key check (right and wrong keys alike)."""
    from claude_code_proxy import auth
    from claude_code_proxy.translate.errors import ProxyError

    calls: list[tuple[Any, Any]] = []
    original = hmac.compare_digest

    def spy(a: Any, b: Any) -> bool:
        calls.append((a, b))
        return original(a, b)

    monkeypatch.setattr(auth.hmac, "compare_digest", spy)
    settings = settings_from(OPENAI_API_KEY=UPSTREAM_KEY, ANTHROPIC_API_KEY=CLIENT_KEY)
    assert auth.upstream_key({"x-api-key": CLIENT_KEY}, settings) == UPSTREAM_KEY
    assert calls
    calls.clear()
    with pytest.raises(ProxyError) as info:
        auth.upstream_key({"x-api-key": OTHER_CLIENT_KEY}, settings)
    assert calls
    assert info.value.status == 401
    assert OTHER_CLIENT_KEY not in info.value.message and CLIENT_KEY not in info.value.message
