"""End to end: the real Claude Code CLI (npm) -> our proxy -> a scripted OpenAI upstream.

The CLI is installed (and cached) by ``scripts/install_claude_code.py``. Everything listens on
127.0.0.1; the CLI runs with a clean environment and nonessential traffic disabled, so it talks
only to ``ANTHROPIC_BASE_URL``. No HTTP(S)_PROXY is set on purpose: with one, Claude Code 2.1.197
skips its ``HEAD /`` preflight, which the proxy should be tested against.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from .scripted_upstream import ScriptedUpstream

pytestmark = pytest.mark.e2e

REPO_ROOT = Path(__file__).resolve().parents[2]
INSTALLER = REPO_ROOT / "scripts" / "install_claude_code.py"
EXIT_NPM_UNAVAILABLE = 3  # keep in sync with scripts/install_claude_code.py
INSTALL_TIMEOUT = 2400.0
HEALTH_TIMEOUT = 30.0
CLI_TIMEOUT = 180.0
CLIENT_KEY = "sk-client-test"
UPSTREAM_KEY = "sk-upstream-test"
UPSTREAM_MODELS = ("gpt-test-big", "gpt-test-small")
PROMPT = "create a file hello.txt containing hi"
ACCESS_LOG_RE = re.compile(
    r'"(?P<method>[A-Z]+) (?P<path>\S+) HTTP/\d(?:\.\d)?"\s+(?P<status>\d{3})\b'
)


@dataclass(frozen=True)
class AccessLine:
    """One HTTP access-log entry of the proxy."""

    method: str
    path: str
    status: int

    def __str__(self) -> str:
        return f"{self.method} {self.path} -> {self.status}"


def parse_access_log(text: str) -> list[AccessLine]:
    """All ``"METHOD PATH HTTP/x" STATUS`` entries in the proxy's output."""
    return [
        AccessLine(m["method"], m["path"], int(m["status"])) for m in ACCESS_LOG_RE.finditer(text)
    ]


def free_port() -> int:
    """A currently unused TCP port on 127.0.0.1."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def install_cli(label: str) -> Path:
    """Install (or reuse) the CLI for ``label``; skip only if npm could not install it."""
    proc = subprocess.run(
        [sys.executable, str(INSTALLER), label],
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=INSTALL_TIMEOUT,
        check=False,
    )
    if proc.returncode == EXIT_NPM_UNAVAILABLE:
        pytest.skip(
            f"npm could not install @anthropic-ai/claude-code ({label}); registry unreachable?\n"
            + proc.stderr[-2000:]
        )
    lines = proc.stdout.strip().splitlines()
    if proc.returncode != 0 or not lines:
        pytest.fail(
            f"install_claude_code.py {label} failed (exit {proc.returncode}):\n"
            f"{proc.stdout}\n{proc.stderr[-4000:]}"
        )
    return Path(lines[-1])


@dataclass
class ProxyProcess:
    """The proxy running as a subprocess, its output captured in a file."""

    proc: subprocess.Popen[bytes]
    port: int
    log_path: Path

    @property
    def base_url(self) -> str:
        """Where clients reach the proxy."""
        return f"http://127.0.0.1:{self.port}"

    def output(self) -> str:
        """Everything the proxy printed so far (stdout and stderr)."""
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""


def proxy_env(port: int, upstream_url: str) -> dict[str, str]:
    """A minimal, reproducible environment for the proxy process."""
    pythonpath = [str(REPO_ROOT / "src")]
    if os.environ.get("PYTHONPATH"):
        pythonpath.append(os.environ["PYTHONPATH"])
    return {
        "PATH": os.environ.get("PATH", "/usr/local/bin:/usr/bin:/bin"),
        "HOME": os.environ.get("HOME", "/tmp"),
        "LANG": "C.UTF-8",
        "PYTHONPATH": os.pathsep.join(pythonpath),
        "PYTHONUNBUFFERED": "1",
        "HOST": "127.0.0.1",
        "PORT": str(port),
        "OPENAI_BASE_URL": upstream_url,
        "OPENAI_API_KEY": UPSTREAM_KEY,
        "ANTHROPIC_API_KEY": CLIENT_KEY,
        "BIG_MODEL": "gpt-test-big",
        "SMALL_MODEL": "gpt-test-small",
        "LOG_LEVEL": "INFO",
    }


def wait_healthy(proxy: ProxyProcess, timeout: float = HEALTH_TIMEOUT) -> None:
    """Poll ``GET /health`` until it answers 200; fail with the proxy output otherwise."""
    deadline = time.monotonic() + timeout
    last_error = "no attempt"
    while time.monotonic() < deadline:
        if proxy.proc.poll() is not None:
            pytest.fail(
                f"proxy exited with {proxy.proc.returncode} before becoming healthy:\n"
                + proxy.output()
            )
        try:
            with urllib.request.urlopen(proxy.base_url + "/health", timeout=2) as resp:
                if resp.status == 200:
                    return
                last_error = f"HTTP {resp.status}"
        except (OSError, urllib.error.URLError) as exc:
            last_error = repr(exc)
        time.sleep(0.2)
    pytest.fail(f"proxy not healthy after {timeout:.0f}s ({last_error}):\n{proxy.output()}")


@contextlib.contextmanager
def run_proxy(upstream_url: str, workdir: Path) -> Iterator[ProxyProcess]:
    """Start ``python -m claude_code_proxy`` and stop it (by its pid) afterwards."""
    port = free_port()
    log_path = workdir / "proxy.log"
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "claude_code_proxy"],
            cwd=workdir,
            env=proxy_env(port, upstream_url),
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    proxy = ProxyProcess(proc, port, log_path)
    try:
        wait_healthy(proxy)
        yield proxy
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)


def cli_env(home: Path, proxy_url: str) -> dict[str, str]:
    """``env -i``-like environment for the CLI."""
    return {
        "PATH": "/usr/local/bin:/usr/bin:/bin",
        "HOME": str(home),
        "TERM": "dumb",
        "LANG": "C.UTF-8",
        "ANTHROPIC_BASE_URL": proxy_url,
        "ANTHROPIC_API_KEY": CLIENT_KEY,
        "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC": "1",
        "DISABLE_TELEMETRY": "1",
        "DISABLE_AUTOUPDATER": "1",
        "CLAUDE_CODE_DISABLE_NONSTREAMING_FALLBACK": "1",
        "IS_SANDBOX": "1",  # allows --dangerously-skip-permissions as root
    }


def parse_result(stdout: str) -> dict[str, Any] | None:
    """The ``--output-format json`` result object, if stdout holds one."""
    candidates = [stdout.strip(), *reversed(stdout.strip().splitlines())]
    for text in candidates:
        if text.startswith("{"):
            with contextlib.suppress(ValueError):
                value = json.loads(text)
                if isinstance(value, dict):
                    return value
    return None


def has_tool_message(body: dict[str, Any]) -> bool:
    """Whether an upstream chat request carries a ``tool`` role message."""
    return any(isinstance(m, dict) and m.get("role") == "tool" for m in body.get("messages") or [])


@pytest.mark.parametrize("label", ["latest", "default"])
def test_claude_code_write_round_trip(label: str, tmp_path: Path) -> None:
    """Claude Code writes hello.txt via a Write tool call relayed by the proxy, then finishes."""
    binary = install_cli(label)
    workdir = tmp_path / "project"
    home = tmp_path / "home"
    workdir.mkdir()
    home.mkdir()
    target = workdir / "hello.txt"

    with ScriptedUpstream(workdir=workdir) as upstream:
        with run_proxy(upstream.base_url, tmp_path) as proxy:
            started = time.monotonic()
            try:
                cli = subprocess.run(
                    [
                        str(binary),
                        "-p",
                        PROMPT,
                        "--dangerously-skip-permissions",
                        "--output-format",
                        "json",
                    ],
                    cwd=workdir,
                    env=cli_env(home, proxy.base_url),
                    stdin=subprocess.DEVNULL,
                    capture_output=True,
                    text=True,
                    timeout=CLI_TIMEOUT,
                    check=False,
                )
                cli_out, cli_err, cli_rc = cli.stdout, cli.stderr, cli.returncode
            except subprocess.TimeoutExpired as exc:
                cli_out = _text(exc.stdout) + f"\n<timed out after {CLI_TIMEOUT:.0f}s>"
                cli_err, cli_rc = _text(exc.stderr), None
            elapsed = time.monotonic() - started
        proxy_output = proxy.output()

    access = parse_access_log(proxy_output)
    context = "\n".join(
        [
            f"--- CLI {label} ({binary}) exit={cli_rc} in {elapsed:.1f}s",
            f"--- CLI stdout:\n{cli_out[-6000:]}",
            f"--- CLI stderr:\n{cli_err[-6000:]}",
            "--- proxy access log:\n" + "\n".join(map(str, access)),
            f"--- proxy output:\n{proxy_output[-20000:]}",
            f"--- {upstream.describe()}",
        ]
    )

    failed = [line for line in access if line.status >= 400]
    assert not failed, f"proxy answered errors: {[str(f) for f in failed]}\n{context}"
    messages_posts = [
        line
        for line in access
        if line.method == "POST" and line.path.split("?")[0].rstrip("/") == "/v1/messages"
    ]
    assert len(messages_posts) >= 2, f"expected >= 2 POST /v1/messages in access log\n{context}"
    assert cli_rc == 0, f"CLI exit code {cli_rc}\n{context}"

    result = parse_result(cli_out)
    assert result is not None, f"no JSON result on CLI stdout\n{context}"
    assert result.get("subtype") == "success", f"result: {result}\n{context}"
    assert result.get("is_error") is not True, f"result: {result}\n{context}"

    assert target.is_file(), f"{target} was not created\n{context}"
    assert target.read_text().startswith("hi"), f"hello.txt = {target.read_text()!r}\n{context}"

    bodies = upstream.chat_bodies
    assert len(bodies) >= 2, f"upstream got {len(bodies)} chat request(s)\n{context}"
    assert any(has_tool_message(b) for b in bodies[1:]), f"no tool message upstream\n{context}"
    assert not upstream.errors, f"upstream rejected requests: {upstream.errors}\n{context}"
    models = {b.get("model") for b in bodies}
    assert models <= set(UPSTREAM_MODELS), f"unmapped upstream models {models}\n{context}"
    auths = {r.headers.get("Authorization") for r in upstream.requests}
    assert auths == {f"Bearer {UPSTREAM_KEY}"}, f"upstream Authorization: {auths}\n{context}"
    print(context)  # shown with `pytest -rP` / `-s`


def _text(value: str | bytes | None) -> str:
    """Decode subprocess output captured on timeout."""
    if isinstance(value, bytes):
        return value.decode(errors="replace")
    return value or ""
