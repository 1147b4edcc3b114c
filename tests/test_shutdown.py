"""Graceful shutdown of the real process: SIGTERM with a stream open.

The proxy runs as ``python -m claude_code_proxy`` (its real entry point and signal handling) in
front of an in-process :class:`MockUpstream` that streams slowly.  On SIGTERM it must stop
accepting connections, let the open stream finish within the grace period or end it with an
``event: error`` (a valid stream either way), exit with status 0 and print no traceback.
"""

from __future__ import annotations

import dataclasses
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest

from mock_upstream import MockUpstream, sse_response, text_chunks
from sse_validator import ValidatedStream, validate_anthropic_stream

SRC_DIR = Path(__file__).resolve().parent.parent / "src"
UPSTREAM_KEY = "sk-upstream-shutdown"
START_TIMEOUT = 30.0
EXIT_TIMEOUT = 60.0

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")


def grace_is_configurable() -> bool:
    """Whether ``SHUTDOWN_GRACE_SECONDS`` reaches the settings (the proxy may not have it yet)."""
    from claude_code_proxy.config import Settings

    settings = Settings.from_env({"SHUTDOWN_GRACE_SECONDS": "1.25"})
    return any(getattr(settings, f.name) == 1.25 for f in dataclasses.fields(settings))


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@dataclass
class ProxyProcess:
    """``python -m claude_code_proxy`` on 127.0.0.1:``port``, output in files."""

    proc: subprocess.Popen[bytes]
    port: int
    stderr_path: Path
    stdout_path: Path

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def stderr(self) -> str:
        return self.stderr_path.read_text(errors="replace")

    def output(self) -> str:
        return self.stdout_path.read_text(errors="replace") + self.stderr()

    def wait_ready(self) -> None:
        deadline = time.monotonic() + START_TIMEOUT
        while True:
            if self.proc.poll() is not None:
                raise AssertionError(f"the proxy exited at start:\n{self.output()}")
            try:
                if httpx.get(self.base_url + "/health", timeout=2).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                raise AssertionError(f"the proxy did not become healthy:\n{self.output()}")
            time.sleep(0.05)

    def wait_exit(self, timeout: float = EXIT_TIMEOUT) -> int:
        try:
            return self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            raise AssertionError(
                f"the proxy did not exit within {timeout}s of SIGTERM:\n{self.output()}"
            ) from None


StartProxy = Callable[..., ProxyProcess]


@pytest.fixture
def start_proxy(tmp_path: Path) -> Iterator[StartProxy]:
    """Start proxy processes; any still running at teardown are killed."""
    started: list[ProxyProcess] = []

    def start(upstream: MockUpstream, **env: str) -> ProxyProcess:
        port = _free_port()
        keep = ("PATH", "HOME", "LANG", "LC_ALL", "SYSTEMROOT", "TMPDIR")
        full_env = {k: v for k, v in os.environ.items() if k in keep}
        full_env.update(
            {
                "PYTHONPATH": str(SRC_DIR),
                "HOST": "127.0.0.1",
                "PORT": str(port),
                "OPENAI_BASE_URL": upstream.base_url,
                "OPENAI_API_KEY": UPSTREAM_KEY,
                "REQUEST_TIMEOUT": "30",
                **env,
            }
        )
        n = len(started)
        stdout_path, stderr_path = tmp_path / f"stdout{n}.txt", tmp_path / f"stderr{n}.txt"
        with stdout_path.open("wb") as out, stderr_path.open("wb") as err:
            proc = subprocess.Popen(
                [sys.executable, "-m", "claude_code_proxy"],
                cwd=tmp_path,  # no stray .env is picked up
                env=full_env,
                stdout=out,
                stderr=err,
            )
        handle = ProxyProcess(proc, port, stderr_path, stdout_path)
        started.append(handle)
        handle.wait_ready()
        return handle

    yield start
    for handle in started:
        if handle.proc.poll() is None:
            handle.proc.kill()
            handle.proc.wait(timeout=10)


@dataclass
class OpenStream:
    """A streaming ``/v1/messages`` request read on a thread."""

    url: str
    data: bytearray = field(default_factory=bytearray)
    status: int | None = None
    error: BaseException | None = None
    first_bytes: threading.Event = field(default_factory=threading.Event)
    done: threading.Event = field(default_factory=threading.Event)

    def start(self) -> OpenStream:
        threading.Thread(target=self._run, daemon=True).start()
        if not self.first_bytes.wait(START_TIMEOUT):
            raise AssertionError(f"no stream bytes arrived (error: {self.error!r})")
        return self

    def _run(self) -> None:
        body = {
            "model": "claude-sonnet-4-5",
            "max_tokens": 256,
            "stream": True,
            "messages": [{"role": "user", "content": "count slowly"}],
        }
        try:
            timeout = httpx.Timeout(60.0, connect=5.0)
            with (
                httpx.Client(timeout=timeout) as client,
                client.stream("POST", self.url + "/v1/messages", json=body) as response,
            ):
                self.status = response.status_code
                for piece in response.iter_raw():
                    self.data += piece
                    self.first_bytes.set()
        except BaseException as exc:  # recorded for the assertion message
            self.error = exc
        finally:
            self.first_bytes.set()
            self.done.set()

    def result(self, timeout: float) -> ValidatedStream:
        if not self.done.wait(timeout):
            raise AssertionError(f"the stream did not end within {timeout}s")
        assert self.status == 200, (self.status, bytes(self.data[:300]))
        # A cut connection (httpx.RemoteProtocolError) would be a failure: the stream must end
        # with message_stop or an error event, and the validator checks exactly that.
        assert self.error is None, f"the stream broke off: {self.error!r}: {bytes(self.data)!r}"
        return validate_anthropic_stream(bytes(self.data), expect_error=None)


def wait_refused(port: int, timeout: float = 15.0) -> None:
    """Poll until a new TCP connection to ``port`` is refused (bounded)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                pass
        except ConnectionRefusedError:
            return
        except OSError:
            pass
        if time.monotonic() > deadline:
            raise AssertionError(f"new connections still accepted {timeout}s after SIGTERM")
        time.sleep(0.02)


def slow_upstream(upstream: MockUpstream, pieces: int, delay: float) -> None:
    upstream.responder = lambda _: sse_response(
        text_chunks([f"{i} " for i in range(pieces)], usage=(12, pieces)), delay=delay
    )


def assert_clean_exit(proxy: ProxyProcess) -> None:
    code = proxy.wait_exit()
    stderr = proxy.stderr()
    assert "Traceback" not in stderr, stderr
    assert "CancelledError" not in stderr, stderr
    assert code == 0, (
        f"exit status {code} after SIGTERM (negative = killed by that signal)\n{stderr}"
    )


# ------------------------------------------------------------------------------------------


def test_sigterm_when_idle_exits_cleanly(
    start_proxy: StartProxy,
    mock_upstream: MockUpstream,
) -> None:
    proxy = start_proxy(mock_upstream)
    proxy.proc.send_signal(signal.SIGTERM)
    wait_refused(proxy.port)
    assert_clean_exit(proxy)


def test_sigterm_lets_an_open_stream_finish_within_the_grace_period(
    start_proxy: StartProxy,
    mock_upstream: MockUpstream,
) -> None:
    """A 2-second stream, far inside the grace period: it completes normally."""
    slow_upstream(mock_upstream, pieces=20, delay=0.1)
    proxy = start_proxy(mock_upstream, SHUTDOWN_GRACE_SECONDS="20")
    stream = OpenStream(proxy.base_url).start()
    mock_upstream.wait_for_requests(1, timeout=10)
    proxy.proc.send_signal(signal.SIGTERM)
    wait_refused(proxy.port)
    result = stream.result(timeout=EXIT_TIMEOUT)
    assert result.completed, result.events[-3:]
    assert result.error is None
    text = "".join(b["text"] for b in result.message["content"] if b["type"] == "text")
    assert text == "".join(f"{i} " for i in range(20))
    assert_clean_exit(proxy)


def test_sigterm_ends_a_stream_that_outlives_the_grace_period_with_an_error_event(
    start_proxy: StartProxy,
    mock_upstream: MockUpstream,
) -> None:
    """A 10-second stream, a 1-second grace period: the stream ends with ``event: error``."""
    if not grace_is_configurable():
        pytest.skip("SHUTDOWN_GRACE_SECONDS is not a setting yet (the grace period is fixed)")
    slow_upstream(mock_upstream, pieces=100, delay=0.1)
    proxy = start_proxy(mock_upstream, SHUTDOWN_GRACE_SECONDS="1")
    stream = OpenStream(proxy.base_url).start()
    mock_upstream.wait_for_requests(1, timeout=10)
    proxy.proc.send_signal(signal.SIGTERM)
    wait_refused(proxy.port)
    result = stream.result(timeout=EXIT_TIMEOUT)
    assert not result.completed
    assert result.error is not None, result.events[-3:]
    assert result.error["type"] in ("overloaded_error", "api_error"), result.error
    assert_clean_exit(proxy)
    mock_upstream.wait_for(lambda m: m.last_request.client_disconnected, timeout=10)


def test_sigterm_with_several_open_streams_ends_each_one_validly(
    start_proxy: StartProxy,
    mock_upstream: MockUpstream,
) -> None:
    """Three 4-second streams, a 2-second grace period: each one completes or ends with an
    error event (whichever the timing gives), none is cut, and the process exits cleanly."""
    slow_upstream(mock_upstream, pieces=40, delay=0.1)
    proxy = start_proxy(mock_upstream, SHUTDOWN_GRACE_SECONDS="2")
    streams = [OpenStream(proxy.base_url).start() for _ in range(3)]
    mock_upstream.wait_for_requests(3, timeout=10)
    proxy.proc.send_signal(signal.SIGTERM)
    wait_refused(proxy.port)
    for stream in streams:
        result = stream.result(timeout=EXIT_TIMEOUT)
        assert result.completed or result.error is not None
    assert_clean_exit(proxy)
