"""Plumbing for the Claude Code end-to-end tests: install the CLI, run the proxy, run the CLI.

Everything listens on 127.0.0.1; the CLI runs with a clean environment (``env -i`` style), a
scratch HOME and nonessential traffic disabled, so it talks only to ``ANTHROPIC_BASE_URL``. No
HTTP(S)_PROXY is set on purpose: with one, Claude Code 2.1.197 skips its ``HEAD /`` preflight,
which the proxy should be tested against.

Capture mode: with ``CCP_E2E_CAPTURE_DIR`` set, every CLI run goes through a recording reverse
proxy (:class:`~tests.e2e.recorder.Recorder`) and what the CLI sent is saved under that directory:
``raw/<label>/<name>/NN-METHOD.json`` as received, and ``<name>-<version>.json``
sanitized (the format of ``tests/fixtures/claude_code/``).
"""

from __future__ import annotations

import contextlib
import itertools
import json
import os
import re
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

import progress
from prefix_stability import prefix_share, report

from .recorder import Exchange, Recorder, leftover_machine_data, sanitize_capture
from .scripted_upstream import RecordedRequest, ScriptedUpstream

REPO_ROOT = Path(__file__).resolve().parents[2]
INSTALLER = REPO_ROOT / "scripts" / "install_claude_code.py"
FIXTURES_DIR = REPO_ROOT / "tests" / "fixtures" / "claude_code"
EXIT_NPM_UNAVAILABLE = 3  # keep in sync with scripts/install_claude_code.py
INSTALL_TIMEOUT = 2400.0
HEARTBEAT = 30.0  # seconds between progress lines while npm is silent
HEALTH_TIMEOUT = 30.0
CLI_TIMEOUT = 120.0
CAPTURE_ENV = "CCP_E2E_CAPTURE_DIR"
PROXY_MAX_RETRIES = 1  # the proxy's own retries before a 429 reaches Claude Code
CLIENT_KEY = "sk-client-test"
UPSTREAM_KEY = "sk-upstream-test"
BIG, MIDDLE, SMALL = "gpt-test-big", "gpt-test-middle", "gpt-test-small"
UVICORN_ACCESS_RE = re.compile(
    r'"(?P<method>[A-Z]+) (?P<path>\S+) HTTP/\d(?:\.\d)?"\s+(?P<status>\d{3})\b'
)
PROXY_ACCESS_RE = re.compile(r"claude_code_proxy\.access: .*?\bendpoint=(\S+).*?\bstatus=(\d{3})")
# Warnings count too: the proxy warns when it drops or rewrites part of a request.
LOG_PROBLEM_RE = re.compile(r"\b(?:WARNING|ERROR|CRITICAL)\b|Traceback \(most recent call last\)")


@dataclass(frozen=True)
class AccessLine:
    """One HTTP access-log entry of the proxy."""

    method: str
    path: str
    status: int

    def __str__(self) -> str:
        return f"{self.method} {self.path} -> {self.status}"


def parse_access_log(text: str) -> list[AccessLine]:
    """Uvicorn's ``"METHOD PATH HTTP/x" STATUS`` and the proxy's own ``status=NNN`` entries."""
    lines = [
        AccessLine(m["method"], m["path"], int(m["status"]))
        for m in UVICORN_ACCESS_RE.finditer(text)
    ]
    lines += [AccessLine("*", f"<{m[1]}>", int(m[2])) for m in PROXY_ACCESS_RE.finditer(text)]
    return lines


def free_port() -> int:
    """A currently unused TCP port on 127.0.0.1."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def install_cli(label: str) -> Path:
    """Install (or reuse) the CLI for ``label``; skip only if npm could not install it.

    The installer's progress lines are shown on the terminal as they come, with a line every
    ``HEARTBEAT`` seconds while npm downloads silently (a first install takes minutes).
    """
    steps = progress.Steps(f"claude-code {label}")
    proc = subprocess.Popen(
        [sys.executable, str(INSTALLER), label],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    stderr_lines: list[str] = []

    def relay() -> None:
        assert proc.stderr is not None
        for line in proc.stderr:
            stderr_lines.append(line)
            steps(line.rstrip().removeprefix("[install_claude_code] "))

    reader = threading.Thread(target=relay, daemon=True)
    reader.start()
    assert proc.stdout is not None
    stdout_chunks: list[str] = []
    stdout_reader = threading.Thread(
        target=lambda: stdout_chunks.append(proc.stdout.read() if proc.stdout else ""),
        daemon=True,
    )
    stdout_reader.start()
    deadline = time.monotonic() + INSTALL_TIMEOUT
    while True:
        try:
            proc.wait(timeout=HEARTBEAT)
            break
        except subprocess.TimeoutExpired:
            if time.monotonic() > deadline:
                proc.kill()
                proc.wait()
                pytest.fail(f"install_claude_code.py {label} timed out after {INSTALL_TIMEOUT}s")
            steps("still installing (npm prints nothing until it is done) ...")
    reader.join(10)
    stdout_reader.join(10)
    stdout, stderr = "".join(stdout_chunks), "".join(stderr_lines)
    if proc.returncode == EXIT_NPM_UNAVAILABLE:
        pytest.skip(
            f"npm could not install @anthropic-ai/claude-code ({label}); registry unreachable?\n"
            + stderr[-2000:]
        )
    lines = stdout.strip().splitlines()
    if proc.returncode != 0 or not lines:
        pytest.fail(
            f"install_claude_code.py {label} failed (exit {proc.returncode}):\n"
            f"{stdout}\n{stderr[-4000:]}"
        )
    return Path(lines[-1])


# -- the proxy --------------------------------------------------------------------------------


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

    def output(self, start: int = 0) -> str:
        """What the proxy printed (stdout and stderr), from byte offset ``start``."""
        if not self.log_path.exists():
            return ""
        with open(self.log_path, "rb") as fh:
            fh.seek(start)
            return fh.read().decode(errors="replace")

    def log_size(self) -> int:
        """Current size of the log, to read only what a later run adds."""
        return self.log_path.stat().st_size if self.log_path.exists() else 0


def proxy_env(upstream_url: str, **overrides: str | None) -> dict[str, str]:
    """A minimal, reproducible proxy environment; an override of None removes the variable."""
    pythonpath = [str(REPO_ROOT / "src")]
    if os.environ.get("PYTHONPATH"):
        pythonpath.append(os.environ["PYTHONPATH"])
    env = {
        "PATH": os.environ.get("PATH", "/usr/local/bin:/usr/bin:/bin"),
        "HOME": os.environ.get("HOME", "/tmp"),
        "LANG": "C.UTF-8",
        "PYTHONPATH": os.pathsep.join(pythonpath),
        "PYTHONUNBUFFERED": "1",
        "HOST": "127.0.0.1",
        "OPENAI_BASE_URL": upstream_url,
        "OPENAI_API_KEY": UPSTREAM_KEY,
        "ANTHROPIC_API_KEY": CLIENT_KEY,
        "BIG_MODEL": BIG,
        "MIDDLE_MODEL": MIDDLE,
        "SMALL_MODEL": SMALL,
        "MAX_RETRIES": str(PROXY_MAX_RETRIES),
        "LOG_LEVEL": "INFO",
        "CONTEXT_DISCOVERY": "false",  # no background probes in the scripted exchanges
    }
    for key, value in overrides.items():
        if value is None:
            env.pop(key, None)
        else:
            env[key] = value
    return env


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
        time.sleep(0.1)
    pytest.fail(f"proxy not healthy after {timeout:.0f}s ({last_error}):\n{proxy.output()}")


@contextlib.contextmanager
def run_proxy(env: dict[str, str], workdir: Path, name: str = "proxy") -> Iterator[ProxyProcess]:
    """Start ``python -m claude_code_proxy`` and stop it (by its pid) afterwards."""
    port = free_port()
    log_path = workdir / f"{name}.log"
    workdir.mkdir(parents=True, exist_ok=True)
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "claude_code_proxy"],
            cwd=workdir,
            env={**env, "PORT": str(port)},
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


# -- the CLI ----------------------------------------------------------------------------------


def cli_env(home: Path, base_url: str) -> dict[str, str]:
    """``env -i``-like environment for the CLI."""
    return {
        "PATH": "/usr/local/bin:/usr/bin:/bin",
        "HOME": str(home),
        "TERM": "dumb",
        "LANG": "C.UTF-8",
        "ANTHROPIC_BASE_URL": base_url,
        "ANTHROPIC_API_KEY": CLIENT_KEY,
        "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC": "1",
        "DISABLE_TELEMETRY": "1",
        "DISABLE_AUTOUPDATER": "1",
        "CLAUDE_CODE_DISABLE_NONSTREAMING_FALLBACK": "1",
        "IS_SANDBOX": "1",  # allows --dangerously-skip-permissions as root
    }


def parse_events(stdout: str) -> list[dict[str, Any]]:
    """The JSON objects of ``--output-format stream-json`` (one per line)."""
    events = []
    for line in stdout.splitlines():
        line = line.strip()
        if line.startswith("{"):
            with contextlib.suppress(ValueError):
                value = json.loads(line)
                if isinstance(value, dict):
                    events.append(value)
    return events


def _text(value: str | bytes | None) -> str:
    """Decode subprocess output captured on timeout."""
    if isinstance(value, bytes):
        return value.decode(errors="replace")
    return value or ""


@dataclass
class CliRun:
    """Everything observable about one ``claude -p`` run."""

    label: str
    scenario: str
    name: str
    returncode: int | None
    stdout: str
    stderr: str
    elapsed: float
    workdir: Path
    proxy_log: str
    upstream: list[RecordedRequest]
    upstream_summary: str
    exchanges: list[Exchange] = field(default_factory=list)
    api: str = "chat"
    """The proxy's UPSTREAM_API: "chat" or "responses"."""

    @property
    def events(self) -> list[dict[str, Any]]:
        """The stream-json events the CLI printed."""
        return parse_events(self.stdout)

    @property
    def init(self) -> dict[str, Any]:
        """The ``system/init`` event ({} if missing)."""
        return next(
            (e for e in self.events if e.get("type") == "system" and e.get("subtype") == "init"),
            {},
        )

    @property
    def result(self) -> dict[str, Any]:
        """The final ``result`` event ({} if missing)."""
        return next((e for e in reversed(self.events) if e.get("type") == "result"), {})

    @property
    def version(self) -> str:
        """The CLI version the run reported."""
        return str(self.init.get("claude_code_version") or self.label)

    def blocks(self, kind: str) -> list[dict[str, Any]]:
        """Content blocks of type ``kind`` in the assistant events."""
        out = []
        for event in self.events:
            if event.get("type") == "assistant":
                content = (event.get("message") or {}).get("content") or []
                out += [b for b in content if isinstance(b, dict) and b.get("type") == kind]
        return out

    def tool_results(self) -> list[dict[str, Any]]:
        """``tool_result`` blocks of the user events."""
        out = []
        for event in self.events:
            if event.get("type") == "user":
                content = (event.get("message") or {}).get("content") or []
                if isinstance(content, list):
                    out += [b for b in content if b.get("type") == "tool_result"]
        return out

    @property
    def chat(self) -> list[dict[str, Any]]:
        """Bodies of the chat requests the upstream received during this run."""
        return [r.body for r in self.upstream if r.is_chat]

    @property
    def access(self) -> list[AccessLine]:
        """The proxy's access-log entries for this run."""
        return parse_access_log(self.proxy_log)

    def context(self) -> str:
        """Everything needed to debug a failed assertion."""
        return "\n".join(
            [
                f"--- CLI {self.label} {self.version} scenario={self.scenario} "
                f"exit={self.returncode} in {self.elapsed:.1f}s",
                f"--- CLI stdout:\n{self.stdout[-8000:]}",
                f"--- CLI stderr:\n{self.stderr[-4000:]}",
                "--- proxy access log:\n" + "\n".join(map(str, self.access)),
                f"--- proxy output:\n{self.proxy_log[-12000:]}",
                f"--- {self.upstream_summary}",
                "--- recorder: "
                + ", ".join(f"{e.method} {e.path} -> {e.status}" for e in self.exchanges),
            ]
        )

    def assert_clean(self, allowed: Iterable[int] = (), expected_log: Iterable[str] = ()) -> None:
        """No warning or error in the proxy log (except lines holding one of ``expected_log``),
        no 4xx/5xx except ``allowed``, no request the upstream had to reject as invalid, and
        every tool-call id the upstream emitted given back to it."""
        ctx = self.context()
        expected = tuple(expected_log)
        problems = [
            line
            for line in self.proxy_log.splitlines()
            if LOG_PROBLEM_RE.search(line) and not any(e in line for e in expected)
        ]
        assert not problems, f"proxy logged problems: {problems}\n{ctx}"
        allowed_set = set(allowed)
        bad = [a for a in self.access if a.status >= 400 and a.status not in allowed_set]
        assert not bad, f"unexpected error statuses: {[str(b) for b in bad]}\n{ctx}"
        rejected = [r.rejected for r in self.upstream if r.rejected]
        assert not rejected, f"upstream rejected proxy requests: {rejected}\n{ctx}"
        elsewhere = [
            r.path for r in self.upstream if r.is_chat and r.is_responses != self.responses
        ]
        assert not elsewhere, f"requests to the other dialect's endpoint: {elsewhere}\n{ctx}"
        self.assert_tool_ids_returned()

    @property
    def conversation(self) -> list[RecordedRequest]:
        """The scenario's answered chat requests (no title or search side requests)."""
        return [
            r
            for r in self.upstream
            if r.is_chat and r.status == 200 and r.scenario == self.scenario
        ]

    def assert_tool_ids_returned(self) -> None:
        """Every tool-call id the upstream emitted whole came back to it, byte for byte, in
        order: on the assistant tool calls and on the tool results of the latest request
        (which holds the whole conversation; docs/tool-ids.md)."""
        emitted = [i for r in self.conversation for i in r.tool_ids]
        if not emitted:
            return
        last = self.conversation[-1].body["messages"]
        calls = [
            c.get("id")
            for m in last
            if m.get("role") == "assistant"
            for c in m.get("tool_calls") or []
        ]
        answered = [m.get("tool_call_id") for m in last if m.get("role") == "tool"]
        ctx = self.context()
        assert calls == emitted, f"tool calls sent back {calls}, emitted {emitted}\n{ctx}"
        assert answered == emitted, f"results sent back {answered}, emitted {emitted}\n{ctx}"

    def prefix_shares(self) -> list[float]:
        """Per consecutive pair of the conversation's requests, the share of the earlier one the
        later one repeats byte for byte from the start (tests/prefix_stability.py)."""
        bodies = [r.body for r in self.conversation]
        return [prefix_share(a, b) for a, b in itertools.pairwise(bodies)]

    @property
    def responses(self) -> bool:
        return self.api == "responses"

    def assert_success(self, *, turns: int | None = None, result: str | None = None) -> None:
        """Exit 0 with a ``success`` result; optionally the number of turns and result text."""
        ctx = self.context()
        assert self.returncode == 0, f"CLI exit code {self.returncode}\n{ctx}"
        res = self.result
        assert res.get("subtype") == "success", f"result: {res}\n{ctx}"
        assert res.get("is_error") is False, f"result: {res}\n{ctx}"
        if turns is not None:
            assert res.get("num_turns") == turns, f"num_turns {res.get('num_turns')}\n{ctx}"
        if result is not None:
            assert res.get("result") == result, f"result text {res.get('result')!r}\n{ctx}"

    def assert_file(self, name: str, content: str) -> None:
        """``name`` exists in the working directory with exactly ``content``."""
        path = self.workdir / name
        assert path.is_file(), f"{path} was not created\n{self.context()}"
        text = path.read_text()
        assert text == content, f"{name} = {text!r}, expected {content!r}\n{self.context()}"


def prompt_for(scenario: str, task: str) -> str:
    """A prompt carrying the scripted upstream's scenario marker."""
    return f"{task} [ccp:{scenario}]"


@dataclass
class Stack:
    """One CLI version, the scripted upstream and a proxy, shared by a module's tests."""

    label: str
    binary: Path
    upstream: ScriptedUpstream
    proxy: ProxyProcess
    capture_dir: Path | None = None
    api: str = "chat"

    def run(
        self,
        scenario: str,
        task: str,
        tmp_path: Path,
        *,
        args: Sequence[str] = (),
        env: Mapping[str, str | None] | None = None,
        proxy: ProxyProcess | None = None,
        record: bool = False,
        files: Mapping[str, str] | None = None,
        name: str | None = None,
    ) -> CliRun:
        """Run ``claude -p`` once in a fresh project dir and HOME under ``tmp_path``.

        ``env`` adds (or with None removes) CLI variables; ``proxy`` replaces the shared proxy;
        ``record`` routes the CLI through a :class:`Recorder` (always on in capture mode);
        ``files`` are created in the project directory first; ``name`` labels the capture
        (default: the scenario).
        """
        proxy = proxy or self.proxy
        workdir, home = tmp_path / "project", tmp_path / "home"
        workdir.mkdir(parents=True)
        home.mkdir(parents=True)
        for file_name, content in (files or {}).items():
            (workdir / file_name).write_text(content)
        self.upstream.reset()
        upstream_start = len(self.upstream.requests)
        log_start = proxy.log_size()
        command = [str(self.binary), "-p", prompt_for(scenario, task)]
        command += ["--dangerously-skip-permissions", "--output-format", "stream-json", "--verbose"]
        command += list(args)
        with contextlib.ExitStack() as stack:
            recorder = None
            base_url = proxy.base_url
            if record or self.capture_dir is not None:
                recorder = stack.enter_context(Recorder(proxy.base_url))
                base_url = recorder.base_url
            environment = cli_env(home, base_url)
            for key, value in (env or {}).items():
                if value is None:
                    environment.pop(key, None)
                else:
                    environment[key] = value
            started = time.monotonic()
            try:
                cli = subprocess.run(
                    command,
                    cwd=workdir,
                    env=environment,
                    stdin=subprocess.DEVNULL,
                    capture_output=True,
                    text=True,
                    timeout=CLI_TIMEOUT,
                    check=False,
                )
                out, err, code = cli.stdout, cli.stderr, cli.returncode
            except subprocess.TimeoutExpired as exc:
                out = _text(exc.stdout) + f"\n<timed out after {CLI_TIMEOUT:.0f}s>"
                err, code = _text(exc.stderr), None
            elapsed = time.monotonic() - started
            time.sleep(0.2)  # let the proxy finish logging the last request
            exchanges = list(recorder.exchanges) if recorder else []
        run = CliRun(
            label=self.label,
            scenario=scenario,
            name=name or scenario,
            returncode=code,
            stdout=out,
            stderr=err,
            elapsed=elapsed,
            workdir=workdir,
            proxy_log=proxy.output(log_start),
            upstream=self.upstream.requests[upstream_start:],
            upstream_summary=self.upstream.describe(upstream_start),
            exchanges=exchanges,
            api=self.api,
        )
        if self.capture_dir is not None:
            save_capture(self.capture_dir, run, {str(workdir): "<WORKDIR>", str(home): "<HOME>"})
        shares = run.prefix_shares()
        if shares:  # the figure issue 14 asks for; CCP_PREFIX_REPORT collects them
            figures = ", ".join(f"{share:.2%}" for share in shares)
            report(f"prefix stability {run.version} {self.api} {run.name}: {figures}")
        return run


def save_capture(directory: Path, run: CliRun, paths: dict[str, str]) -> Path:
    """Save a run's raw exchanges and its sanitized fixture; return the fixture's path."""
    raw = directory / "raw" / run.label / run.name
    raw.mkdir(parents=True, exist_ok=True)
    for i, exchange in enumerate(run.exchanges):
        record = {
            "method": exchange.method,
            "path": exchange.path,
            "status": exchange.status,
            "headers": exchange.headers,
            "body": exchange.json(),
        }
        text = json.dumps(record, indent=1, ensure_ascii=False)
        (raw / f"{i:02d}-{exchange.method}.json").write_text(text + "\n")
    fixture = sanitize_capture(run.exchanges, paths, cli_version=run.version, scenario=run.name)
    scratch_roots = [str(Path(p).parent) for p in paths]
    leftovers = leftover_machine_data(fixture, [*paths, *scratch_roots])
    if leftovers:
        fixture["unsanitized"] = sorted(set(leftovers))
    target = directory / f"{run.name}-{run.version}.json"
    target.write_text(json.dumps(fixture, indent=1, ensure_ascii=False) + "\n")
    return target
