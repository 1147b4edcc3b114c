"""Shared fixtures: a fake upstream, the real proxy served in-process, captured requests.

The proxy runs under uvicorn on a real socket (not an ASGI test transport) so that tests
exercise exactly what Claude Code meets: HTTP framing, streaming flushes, the lifespan that
opens the upstream pool, and client disconnects.  Proxy modules are imported lazily so the
helper tests keep running while the package is still being written.
"""

from __future__ import annotations

import copy
import json
import socket
import sys
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

import progress
from mock_upstream import MockUpstream

TESTS_DIR = Path(__file__).resolve().parent
SRC_DIR = TESTS_DIR.parent / "src"
FIXTURES_DIR = TESTS_DIR / "fixtures"

# Make the package importable without an install (the venv has no editable install).
if str(SRC_DIR) not in sys.path:
    sys.path.insert(0, str(SRC_DIR))

#: Environment every proxy under test starts from; tests override per key (None removes).
DEFAULT_PROXY_ENV: dict[str, str] = {
    "OPENAI_API_KEY": "sk-upstream-test",
    "BIG_MODEL": "gpt-big",
    "MIDDLE_MODEL": "gpt-middle",
    "SMALL_MODEL": "gpt-small",
    "REQUEST_TIMEOUT": "5",
    # Background probes would add requests to the mock's record; tests of it turn it on.
    "CONTEXT_DISCOVERY": "false",
}


def pytest_configure(config: pytest.Config) -> None:
    """Long fixture builds (tests/progress.py) print their steps through this terminal."""
    progress.attach(config)


def pytest_unconfigure(config: pytest.Config) -> None:
    progress.detach()


@pytest.fixture
def mock_upstream() -> Iterator[MockUpstream]:
    """A fresh fake OpenAI upstream per test."""
    with MockUpstream() as mock:
        yield mock


@dataclass
class ProxyHandle:
    """A running proxy: where to reach it and how to stop it."""

    base_url: str
    host: str
    port: int
    env: dict[str, str]
    settings: Any
    app: Any
    upstream: MockUpstream | None
    _server: Any = field(repr=False)
    _thread: threading.Thread = field(repr=False)
    _sock: socket.socket = field(repr=False)

    def url(self, path: str) -> str:
        """Absolute URL, e.g. ``proxy.url("/v1/messages")``."""
        return self.base_url + path

    @property
    def running(self) -> bool:
        return self._thread.is_alive()

    def stop(self, timeout: float = 10.0) -> None:
        """Graceful uvicorn shutdown (lifespan shutdown runs); forced if it overruns."""
        if not self._thread.is_alive():
            self._sock.close()
            return
        self._server.should_exit = True
        self._thread.join(timeout)
        if self._thread.is_alive():
            self._server.force_exit = True
            self._thread.join(timeout)
        self._sock.close()
        if self._thread.is_alive():
            raise RuntimeError("proxy server thread did not stop")


ProxyFactory = Callable[..., ProxyHandle]


def _free_socket(host: str = "127.0.0.1") -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, 0))
    sock.listen(128)
    sock.setblocking(False)
    return sock


def start_proxy(
    env: Mapping[str, str],
    *,
    upstream: MockUpstream | None = None,
    startup_timeout: float = 10.0,
    **uvicorn_options: Any,
) -> ProxyHandle:
    """Build Settings from ``env``, create the app and serve it on a pre-bound free port."""
    import uvicorn

    from claude_code_proxy.app import create_app
    from claude_code_proxy.config import Settings
    from claude_code_proxy.limits import server_options

    settings = Settings.from_env(dict(env))
    app = create_app(settings)
    sock = _free_socket()
    host, port = sock.getsockname()[:2]
    options: dict[str, Any] = {
        "lifespan": "on",
        "log_level": "warning",
        "timeout_graceful_shutdown": 2,
        **server_options(settings),  # the HTTP limits `serve` runs with (limits.py)
        **uvicorn_options,
    }
    config = uvicorn.Config(app, host=host, port=port, **options)
    server = uvicorn.Server(config)
    failure: list[BaseException] = []

    def run() -> None:
        try:
            server.run(sockets=[sock])
        except BaseException as exc:  # SystemExit from a failed lifespan included
            failure.append(exc)

    thread = threading.Thread(target=run, name=f"proxy-{port}", daemon=True)
    thread.start()
    deadline = time.monotonic() + startup_timeout
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            server.should_exit = True
            thread.join(5)
            sock.close()
            reason = repr(failure[0]) if failure else "lifespan startup failed or timed out"
            raise RuntimeError(f"proxy did not start: {reason}")
        time.sleep(0.01)
    return ProxyHandle(
        base_url=f"http://{host}:{port}",
        host=host,
        port=port,
        env=dict(env),
        settings=settings,
        app=app,
        upstream=upstream,
        _server=server,
        _thread=thread,
        _sock=sock,
    )


@pytest.fixture
def proxy_factory(mock_upstream: MockUpstream) -> Iterator[ProxyFactory]:
    """Start proxies with env overrides; all of them are stopped at teardown.

    ``proxy_factory({"BIG_MODEL": "x", "OPENAI_API_KEY": None}, upstream=other_mock)``; keyword
    overrides work too (``proxy_factory(BIG_MODEL="x")``).  Unless ``OPENAI_BASE_URL`` is
    overridden, the proxy points at ``upstream`` or else at the ``mock_upstream`` fixture
    (requested up front so that teardown stops the proxies before their upstream).
    """
    handles: list[ProxyHandle] = []

    def factory(
        overrides: Mapping[str, str | None] | None = None,
        *,
        upstream: MockUpstream | None = None,
        uvicorn_options: Mapping[str, Any] | None = None,
        **env_overrides: str | None,
    ) -> ProxyHandle:
        merged: dict[str, str | None] = {**(overrides or {}), **env_overrides}
        env: dict[str, str] = dict(DEFAULT_PROXY_ENV)
        if "OPENAI_BASE_URL" not in merged:
            if upstream is None:
                upstream = mock_upstream
            env["OPENAI_BASE_URL"] = upstream.base_url
        for key, value in merged.items():
            if value is None:
                env.pop(key, None)
            else:
                env[key] = value
        handle = start_proxy(env, upstream=upstream, **dict(uvicorn_options or {}))
        handles.append(handle)
        return handle

    yield factory
    errors = []
    for handle in reversed(handles):
        try:
            handle.stop()
        except Exception as exc:
            errors.append(exc)
    if errors:
        raise errors[0]


@pytest.fixture
def proxy(proxy_factory: ProxyFactory, mock_upstream: MockUpstream) -> ProxyHandle:
    """The proxy with default settings, pointed at ``mock_upstream``."""
    return proxy_factory(upstream=mock_upstream)


@pytest.fixture
def claude_code_request() -> dict[str, Any]:
    """A captured Claude Code ``/v1/messages`` body (fresh copy per test)."""
    path = FIXTURES_DIR / "claude_code_request.json"
    if not path.exists():
        pytest.skip(f"{path} not available")
    data: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    return copy.deepcopy(data)


@pytest.fixture(autouse=True)
def _restore_logging_levels() -> Iterator[None]:
    """In-process CLI runs call configure_logging(); keep their levels from leaking."""
    import logging

    names = ["", "claude_code_proxy", "claude_code_proxy.access", "uvicorn", "uvicorn.error"]
    saved = {name: logging.getLogger(name).level for name in names}
    yield
    for name, level in saved.items():
        logging.getLogger(name).setLevel(level)
