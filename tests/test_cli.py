"""The `claude-code-proxy` command line: serve (default), flags, .env, and `run`.

`run` is tested with a stand-in for Claude Code: a small Python script that records its
environment, calls the proxy's `/health` and `/v1/models` with the key it was given, and exits
with a chosen code. Signal forwarding runs the whole CLI in a subprocess in its own session.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from click.testing import CliRunner, Result

from claude_code_proxy import __version__
from claude_code_proxy.cli import banner, main
from claude_code_proxy.config import Settings
from claude_code_proxy.launcher import PLACEHOLDER_KEY, probe_health
from mock_upstream import MockUpstream

if TYPE_CHECKING:
    from conftest import ProxyFactory, ProxyHandle

REPO = Path(__file__).resolve().parents[1]
UPSTREAM_KEY = "sk-upstream-secret-0123456789"
CLIENT_KEY = "client-secret-key-42"
CONFIG_VARS = (
    "OPENAI_API_KEY",
    "OPENAI_BASE_URL",
    "ANTHROPIC_API_KEY",
    "ANTHROPIC_AUTH_TOKEN",
    "ANTHROPIC_BASE_URL",
    "ANTHROPIC_MODEL",
    "BIG_MODEL",
    "MIDDLE_MODEL",
    "SMALL_MODEL",
    "MODEL_MAP",
    "HOST",
    "PORT",
    "LOG_LEVEL",
    "MAX_TOKENS_LIMIT",
    "REQUEST_TIMEOUT",
    "CONNECT_TIMEOUT",
    "AZURE_API_VERSION",
    "MAX_RETRIES",
    "RETRY_AFTER_MAX",
    "PING_INTERVAL",
    "PROVIDER_PROFILES",
    "MAX_REQUEST_BYTES",
    "ALLOW_UNAUTHENTICATED",
    "CLAUDE_CONFIG_DIR",
    "CLIENT_KEY_PATTERN",
    "LOG_FORMAT",
    "CAPTURE_DIR",
    "MAX_CLIENTS",
    "CLIENT_IDLE_TIMEOUT",
    "METRICS_REQUIRE_AUTH",
    "PROMETHEUS_MULTIPROC_DIR",
    "CLAUDE_CODE_USE_BEDROCK",
    "CLAUDE_CODE_USE_VERTEX",
)

STAND_IN = r"""
import json, os, sys, urllib.error, urllib.request
from pathlib import Path

report, code = sys.argv[1], int(sys.argv[2])
base = os.environ["ANTHROPIC_BASE_URL"]
opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))

def get(path, headers):
    try:
        with opener.open(urllib.request.Request(base + path, headers=headers), timeout=10) as r:
            return r.status
    except urllib.error.HTTPError as exc:
        return exc.code

headers = {}
if "ANTHROPIC_API_KEY" in os.environ:
    headers["x-api-key"] = os.environ["ANTHROPIC_API_KEY"]
if "ANTHROPIC_AUTH_TOKEN" in os.environ:
    headers["authorization"] = "Bearer " + os.environ["ANTHROPIC_AUTH_TOKEN"]
prefixes = ("ANTHROPIC_", "CLAUDE_CODE_", "OPENAI_")
Path(report).write_text(json.dumps({
    "env": {k: v for k, v in os.environ.items() if k.startswith(prefixes)},
    "argv": sys.argv[3:],
    "health": get("/health", {}),
    "models": get("/v1/models", headers),
}))
sys.exit(code)
"""

SIGNALLED = r"""
import signal, sys, time
from pathlib import Path

ready, report = Path(sys.argv[1]), Path(sys.argv[2])

def handle(signum, frame):
    report.write_text(str(signum))
    sys.exit(100 + signum)

signal.signal(signal.SIGTERM, handle)
signal.signal(signal.SIGINT, handle)
ready.write_text("ready")
deadline = time.monotonic() + 60
while time.monotonic() < deadline:
    time.sleep(0.05)
sys.exit(99)
"""


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[Path]:
    """No proxy settings from the developer's shell or .env; an empty Claude config dir."""
    saved = dict(os.environ)
    for name in list(os.environ):
        if name in CONFIG_VARS or name.startswith("CUSTOM_HEADER_"):
            del os.environ[name]
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    claude_home = tmp_path / "claude-home"
    claude_home.mkdir()
    os.environ["CLAUDE_CONFIG_DIR"] = str(claude_home)
    # Nothing answers at the configured address unless a test says so: `run` starts its own.
    os.environ["PORT"] = str(closed_port())
    yield claude_home
    os.environ.clear()
    os.environ.update(saved)


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def invoke(args: list[str], env: Mapping[str, str | None] | None = None) -> Result:
    return CliRunner().invoke(main, args, env=dict(env or {}))


# ------------------------------------------------------------------ serve


class FakeUvicorn:
    """Records `uvicorn.run` instead of serving."""

    def __init__(self) -> None:
        self.calls: list[tuple[Any, dict[str, Any]]] = []

    def __call__(self, app: Any, **kwargs: Any) -> None:
        self.calls.append((app, kwargs))


@pytest.fixture
def fake_uvicorn(monkeypatch: pytest.MonkeyPatch) -> FakeUvicorn:
    fake = FakeUvicorn()
    monkeypatch.setattr("uvicorn.run", fake)
    return fake


def test_help_lists_the_commands() -> None:
    result = invoke(["--help"])
    assert result.exit_code == 0
    for command in ("serve", "doctor", "run"):
        assert command in result.output


def test_version() -> None:
    for flag in ("--version", "-V"):
        result = invoke([flag])
        assert result.exit_code == 0
        assert result.output.strip() == f"claude-code-proxy, version {__version__}"


def test_no_subcommand_serves_with_a_masked_banner(fake_uvicorn: FakeUvicorn) -> None:
    env = {"OPENAI_API_KEY": UPSTREAM_KEY, "PORT": "9123", "BIG_MODEL": "gpt-big"}
    result = invoke([], env)
    assert result.exit_code == 0, result.output
    (app, kwargs), *rest = fake_uvicorn.calls
    assert not rest
    assert kwargs["host"] == "127.0.0.1" and kwargs["port"] == 9123
    assert kwargs["log_level"] == "warning" and kwargs["access_log"] is False
    assert type(app).__name__ == "Starlette"
    err = result.stderr
    assert "static (OPENAI_API_KEY is used upstream)" in err
    assert "opus→gpt-big  sonnet→gpt-big  haiku→gpt-4o-mini" in err
    assert "ANTHROPIC_BASE_URL=http://127.0.0.1:9123 ANTHROPIC_AUTH_TOKEN=any-value claude" in err
    assert "sk-…89" in err
    assert UPSTREAM_KEY not in result.output


def test_flags_override_the_environment(fake_uvicorn: FakeUvicorn) -> None:
    env = {"OPENAI_API_KEY": UPSTREAM_KEY, "BIG_MODEL": "from-env", "LOG_LEVEL": "ERROR"}
    args = [
        "serve",
        "--port",
        "9200",
        "--log-level",
        "info",
        "--base-url",
        "http://127.0.0.1:11434",
        "--big-model",
        "big-flag",
        "--middle-model",
        "mid-flag",
        "--small-model",
        "small-flag",
        "--max-tokens-limit",
        "4096",
        "--request-timeout",
        "30",
    ]
    result = invoke(args, env)
    assert result.exit_code == 0, result.output
    _, kwargs = fake_uvicorn.calls[0]
    assert kwargs["port"] == 9200
    assert kwargs["log_level"] == "info" and kwargs["access_log"] is True
    err = result.stderr
    assert "upstream       http://127.0.0.1:11434/v1" in err
    assert "opus→big-flag  sonnet→mid-flag  haiku→small-flag" in err
    assert "max tokens     4096" in err
    assert "request 30s" in err


def test_group_flags_apply_to_serve(fake_uvicorn: FakeUvicorn) -> None:
    result = invoke(["--port", "9300", "--host", "127.0.0.2"], {"OPENAI_API_KEY": UPSTREAM_KEY})
    assert result.exit_code == 0, result.output
    _, kwargs = fake_uvicorn.calls[0]
    assert (kwargs["host"], kwargs["port"]) == ("127.0.0.2", 9300)


def test_workers_use_the_app_factory_with_the_effective_settings(
    fake_uvicorn: FakeUvicorn,
) -> None:
    result = invoke(["serve", "--workers", "3", "--big-model", "big-flag", "--port", "9400"])
    assert result.exit_code == 0, result.output
    app, kwargs = fake_uvicorn.calls[0]
    assert app == "claude_code_proxy.app:create_app_from_env"
    assert kwargs["factory"] is True and kwargs["workers"] == 3
    assert os.environ["BIG_MODEL"] == "big-flag"
    assert os.environ["PORT"] == "9400"
    assert "(3 workers)" in result.stderr


def test_dotenv_fills_in_but_never_overrides(fake_uvicorn: FakeUvicorn) -> None:
    Path(".env").write_text(
        "BIG_MODEL=from-dotenv\nSMALL_MODEL=small-dotenv\nOPENAI_API_KEY=sk-x1\n"
    )
    result = invoke([], {"SMALL_MODEL": "small-env"})
    assert result.exit_code == 0, result.output
    assert "opus→from-dotenv  sonnet→from-dotenv  haiku→small-env" in result.stderr


def test_env_file_option(fake_uvicorn: FakeUvicorn, tmp_path: Path) -> None:
    env_file = tmp_path / "custom.env"
    env_file.write_text("BIG_MODEL=from-custom\n")
    result = invoke(["serve", "--env-file", str(env_file)])
    assert result.exit_code == 0, result.output
    assert "opus→from-custom" in result.stderr
    missing = invoke(["serve", "--env-file", str(tmp_path / "nope.env")])
    assert missing.exit_code == 2
    assert "no such file" in missing.stderr


def test_invalid_configuration_exits_2(fake_uvicorn: FakeUvicorn) -> None:
    result = invoke([], {"PORT": "not-a-number"})
    assert result.exit_code == 2
    assert "configuration error: PORT='not-a-number'" in result.stderr
    assert fake_uvicorn.calls == []


@pytest.mark.parametrize(
    ("args", "env", "named"),
    [
        (["--port", "abc"], {}, "PORT='abc' must be a whole number"),
        (["--request-timeout", "inf"], {}, "REQUEST_TIMEOUT='inf' must be a finite number"),
        (["--max-tokens-limit", "0"], {}, "MAX_TOKENS_LIMIT='0' must be at least 1"),
        ([], {"REQUEST_TIMEOUT": "inf"}, "REQUEST_TIMEOUT='inf'"),
        ([], {"CUSTOM_HEADER_": "x"}, "CUSTOM_HEADER_: '' is not a header name"),
    ],
)
@pytest.mark.parametrize("command", [["serve"], ["doctor", "--no-chat"], ["run", "--", "true"]])
def test_invalid_settings_stop_every_command_naming_the_variable(
    fake_uvicorn: FakeUvicorn,
    command: list[str],
    args: list[str],
    env: dict[str, str],
    named: str,
) -> None:
    result = invoke([command[0], *args, *command[1:]], env)
    assert result.exit_code == 2, result.output
    assert named in result.output
    assert "Traceback" not in result.output and "Invalid value for" not in result.output
    assert fake_uvicorn.calls == []


@pytest.mark.parametrize("command", [["serve"], ["doctor", "--no-chat"], ["run", "--", "true"]])
def test_a_capture_dir_that_cannot_be_created_stops_every_command(
    fake_uvicorn: FakeUvicorn, tmp_path: Path, command: list[str]
) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    result = invoke(command, {"CAPTURE_DIR": str(blocker / "captures")})
    assert result.exit_code == 2, result.output
    assert f"CAPTURE_DIR='{blocker / 'captures'}' cannot be created" in result.output
    assert "Traceback" not in result.output and "see the log above" not in result.output
    assert fake_uvicorn.calls == []


def test_open_relay_is_refused(fake_uvicorn: FakeUvicorn) -> None:
    result = invoke(["--host", "0.0.0.0"], {"OPENAI_API_KEY": UPSTREAM_KEY})
    assert result.exit_code == 2
    assert "ANTHROPIC_API_KEY" in result.stderr


def test_banner_hints_for_each_mode() -> None:
    required = banner(Settings.from_env({"OPENAI_API_KEY": "sk-a", "ANTHROPIC_API_KEY": "c-key1"}))
    assert "ANTHROPIC_AUTH_TOKEN=<your ANTHROPIC_API_KEY> claude" in required
    assert "c-key1" not in required
    local = banner(Settings.from_env({"OPENAI_BASE_URL": "http://localhost:11434"}))
    assert f"ANTHROPIC_AUTH_TOKEN={PLACEHOLDER_KEY} claude" in local
    hosted = banner(Settings.from_env({}))
    assert "ANTHROPIC_AUTH_TOKEN=<your api.openai.com key> claude" in hosted
    wildcard = banner(
        Settings.from_env({"HOST": "0.0.0.0", "OPENAI_API_KEY": "sk-a", "ANTHROPIC_API_KEY": "k"})
    )
    assert "ANTHROPIC_BASE_URL=http://127.0.0.1:8082 " in wildcard


def _wait_for(predicate: Any, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} within {timeout}s")
        time.sleep(0.05)


@pytest.mark.parametrize(
    "command",
    [[sys.executable, "-m", "claude_code_proxy"], [sys.executable, str(REPO / "start_proxy.py")]],
    ids=["python-m", "start_proxy"],
)
def test_entry_points_serve_for_real(command: list[str], mock_upstream: MockUpstream) -> None:
    port = closed_port()
    env = {**os.environ, "OPENAI_BASE_URL": mock_upstream.base_url, "PORT": str(port)}
    proc = subprocess.Popen(
        [*command, "--log-level", "WARNING"],
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        _wait_for(
            lambda: probe_health("127.0.0.1", port, 1) or proc.poll() is not None,
            30,
            "the proxy did not answer /health",
        )
        assert proc.poll() is None, proc.communicate(timeout=10)
    finally:
        proc.terminate()
        _, err = proc.communicate(timeout=30)
    assert f"ANTHROPIC_BASE_URL=http://127.0.0.1:{port}" in err.decode()


# ------------------------------------------------------------------ run


@pytest.fixture
def stand_in(tmp_path: Path) -> Path:
    script = tmp_path / "stand_in.py"
    script.write_text(STAND_IN)
    return script


def run_stand_in(
    stand_in: Path,
    tmp_path: Path,
    *,
    code: int = 0,
    options: list[str] | None = None,
    env: Mapping[str, str | None] | None = None,
) -> tuple[Result, dict[str, Any]]:
    report = tmp_path / "report.json"
    args = ["run", *(options or []), "--", sys.executable, str(stand_in), str(report), str(code)]
    result = invoke([*args, "extra", "--flag"], env)
    data = json.loads(report.read_text()) if report.exists() else {}
    return result, data


def test_run_launches_the_command_against_a_fresh_proxy(
    stand_in: Path, tmp_path: Path, mock_upstream: MockUpstream
) -> None:
    env = {
        "OPENAI_BASE_URL": mock_upstream.base_url,
        "OPENAI_API_KEY": UPSTREAM_KEY,
        "ANTHROPIC_API_KEY": CLIENT_KEY,
        "ANTHROPIC_AUTH_TOKEN": "stale-token",
        "CLAUDE_CODE_USE_BEDROCK": "1",
    }
    result, report = run_stand_in(stand_in, tmp_path, code=7, env=env)
    assert result.exit_code == 7, result.output
    child_env = report["env"]
    base_url = child_env["ANTHROPIC_BASE_URL"]
    assert base_url.startswith("http://127.0.0.1:")
    # ANTHROPIC_AUTH_TOKEN by default: interactive Claude Code asks no question about it.
    assert child_env["ANTHROPIC_AUTH_TOKEN"] == CLIENT_KEY
    assert "ANTHROPIC_API_KEY" not in child_env
    assert "CLAUDE_CODE_USE_BEDROCK" not in child_env
    assert report["argv"] == ["extra", "--flag"]
    assert report["health"] == 200
    assert report["models"] == 200  # the key the command got is one the proxy accepts
    assert "unset CLAUDE_CODE_USE_BEDROCK" in result.stderr
    assert UPSTREAM_KEY not in result.output
    # The proxy is gone once the command has exited.
    port = int(base_url.rsplit(":", 1)[1])
    assert not probe_health("127.0.0.1", port, timeout=1)


def test_run_in_dynamic_mode_passes_a_placeholder_key(
    stand_in: Path, tmp_path: Path, mock_upstream: MockUpstream
) -> None:
    result, report = run_stand_in(
        stand_in, tmp_path, env={"OPENAI_BASE_URL": mock_upstream.base_url}
    )
    assert result.exit_code == 0, result.output
    assert report["env"]["ANTHROPIC_AUTH_TOKEN"] == PLACEHOLDER_KEY
    assert report["models"] == 200


def test_run_with_auth_token(stand_in: Path, tmp_path: Path, mock_upstream: MockUpstream) -> None:
    env = {
        "OPENAI_BASE_URL": mock_upstream.base_url,
        "OPENAI_API_KEY": UPSTREAM_KEY,
        "ANTHROPIC_API_KEY": CLIENT_KEY,
    }
    result, report = run_stand_in(stand_in, tmp_path, options=["--auth-token"], env=env)
    assert result.exit_code == 0, result.output
    assert report["env"]["ANTHROPIC_AUTH_TOKEN"] == CLIENT_KEY
    assert "ANTHROPIC_API_KEY" not in report["env"]
    assert report["models"] == 200


def test_run_with_api_key(stand_in: Path, tmp_path: Path, mock_upstream: MockUpstream) -> None:
    env = {
        "OPENAI_BASE_URL": mock_upstream.base_url,
        "OPENAI_API_KEY": UPSTREAM_KEY,
        "ANTHROPIC_API_KEY": CLIENT_KEY,
        "ANTHROPIC_AUTH_TOKEN": "stale-token",
    }
    result, report = run_stand_in(stand_in, tmp_path, options=["--api-key"], env=env)
    assert result.exit_code == 0, result.output
    assert report["env"]["ANTHROPIC_API_KEY"] == CLIENT_KEY
    assert "ANTHROPIC_AUTH_TOKEN" not in report["env"]
    assert report["models"] == 200


def test_run_refuses_a_running_proxy_that_would_reject_the_key(
    stand_in: Path, tmp_path: Path, proxy_factory: ProxyFactory
) -> None:
    """Issue 16: a proxy started elsewhere with ANTHROPIC_API_KEY; this shell lacks it."""
    running = proxy_factory(ANTHROPIC_API_KEY="sk-the-running-proxys-key")
    env = {"HOST": running.host, "PORT": str(running.port), "OPENAI_API_KEY": "sk-upstream-test"}
    result, report = run_stand_in(stand_in, tmp_path, env=env)
    assert result.exit_code == 2, result.output
    assert report == {}  # the command never ran
    assert "rejects the key" in result.stderr and "ANTHROPIC_API_KEY" in result.stderr
    assert "--fresh" in result.stderr
    assert "sk-the-running-proxys-key" not in result.output
    # With the key, the same proxy is used.
    env["ANTHROPIC_API_KEY"] = "sk-the-running-proxys-key"
    result, report = run_stand_in(stand_in, tmp_path, env=env)
    assert result.exit_code == 0, result.output
    assert report["env"]["ANTHROPIC_BASE_URL"] == running.base_url
    assert report["models"] == 200


def test_run_reuses_a_running_proxy(stand_in: Path, tmp_path: Path, proxy: ProxyHandle) -> None:
    env = {"HOST": proxy.host, "PORT": str(proxy.port), "OPENAI_API_KEY": "sk-upstream-test"}
    result, report = run_stand_in(stand_in, tmp_path, env=env)
    assert result.exit_code == 0, result.output
    assert report["env"]["ANTHROPIC_BASE_URL"] == proxy.base_url
    assert "using the proxy already running" in result.stderr

    fresh, report = run_stand_in(stand_in, tmp_path, options=["--fresh"], env=env)
    assert fresh.exit_code == 0, fresh.output
    assert report["env"]["ANTHROPIC_BASE_URL"] != proxy.base_url
    assert report["health"] == 200


def test_run_warns_about_settings_file_overrides(
    stand_in: Path, tmp_path: Path, clean_env: Path
) -> None:
    secret = "sk-ant-api03-do-not-print-me"
    settings = {
        "env": {"ANTHROPIC_BASE_URL": "https://api.anthropic.com", "ANTHROPIC_API_KEY": secret}
    }
    (clean_env / "settings.json").write_text(json.dumps(settings))
    result, report = run_stand_in(stand_in, tmp_path, env={"OPENAI_API_KEY": UPSTREAM_KEY})
    assert result.exit_code == 0, result.output
    err = result.stderr
    assert "warning:" in err
    assert '"env" sets ANTHROPIC_BASE_URL=https://api.anthropic.com' in err
    assert "ANTHROPIC_API_KEY=sk-ant-…me" in err
    assert secret not in result.output
    assert report["health"] == 200


def test_run_default_command_is_claude(tmp_path: Path, mock_upstream: MockUpstream) -> None:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    report = tmp_path / "claude-report.json"
    fake = bin_dir / "claude"
    fake.write_text(
        f"#!{sys.executable}\n"
        "import json, os, sys\n"
        f"open({str(report)!r}, 'w').write(json.dumps(os.environ['ANTHROPIC_BASE_URL']))\n"
        "sys.exit(3)\n"
    )
    fake.chmod(0o755)
    env = {"PATH": f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}"}
    result = invoke(["run"], {**env, "OPENAI_BASE_URL": mock_upstream.base_url})
    assert result.exit_code == 3, result.output
    assert json.loads(report.read_text()).startswith("http://127.0.0.1:")


def test_run_unknown_command_exits_127() -> None:
    result = invoke(["run", "--", "claude-code-proxy-no-such-command"])
    assert result.exit_code == 127
    assert "command not found: claude-code-proxy-no-such-command" in result.stderr


def test_run_missing_claude_says_how_to_install(tmp_path: Path) -> None:
    result = invoke(["run"], {"PATH": str(tmp_path)})
    assert result.exit_code == 127
    assert "npm install -g @anthropic-ai/claude-code" in result.stderr


def test_run_invalid_configuration_exits_2(stand_in: Path, tmp_path: Path) -> None:
    result, report = run_stand_in(stand_in, tmp_path, env={"REQUEST_TIMEOUT": "soon"})
    assert result.exit_code == 2
    assert "REQUEST_TIMEOUT" in result.stderr
    assert report == {}


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")
@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_run_forwards_signals_and_the_exit_code(tmp_path: Path, sig: signal.Signals) -> None:
    script = tmp_path / "signalled.py"
    script.write_text(SIGNALLED)
    ready, report = tmp_path / "ready", tmp_path / "signal"
    env = {**os.environ, "OPENAI_BASE_URL": "http://127.0.0.1:9/v1"}
    cli = [sys.executable, "-m", "claude_code_proxy", "run", "--fresh", "--"]
    proc = subprocess.Popen(
        [*cli, sys.executable, str(script), str(ready), str(report)],
        env=env,
        cwd=tmp_path,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        start_new_session=True,  # no controlling terminal: a SIGINT must be forwarded
    )
    try:
        _wait_for(lambda: ready.exists() or proc.poll() is not None, 60, "child not ready")
        assert proc.poll() is None, proc.communicate(timeout=10)
        proc.send_signal(sig)
        _, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate(timeout=10)
    assert proc.returncode == 100 + sig, err.decode()
    assert report.read_text() == str(int(sig))


# ------------------------------------------------------------------ audit: messages a new user sees


def test_help_says_where_the_keys_go() -> None:
    # Keys have no flags on purpose; --help must still name the variables.
    result = invoke(["--help"])
    assert result.exit_code == 0
    assert "OPENAI_API_KEY" in result.output and "ANTHROPIC_API_KEY" in result.output
    assert "doctor  Check the set-up and say how to fix it." in result.output


def test_serve_on_a_port_in_use_fails_before_the_banner(fake_uvicorn: FakeUvicorn) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        for extra in ([], ["--workers", "2"]):
            result = invoke(["serve", "--port", str(port), *extra], {"OPENAI_API_KEY": "sk-x1"})
            assert result.exit_code == 3, result.output
            assert f"error: cannot listen on 127.0.0.1:{port}" in result.stderr
            assert "--port 0 for a free one" in result.stderr
            assert "ANTHROPIC_BASE_URL=" not in result.stderr  # no banner for a dead proxy
    assert fake_uvicorn.calls == []


def test_workers_with_port_0_name_the_port_in_the_banner(fake_uvicorn: FakeUvicorn) -> None:
    result = invoke(["serve", "--workers", "2", "--port", "0"], {"OPENAI_API_KEY": "sk-x1"})
    assert result.exit_code == 0, result.output
    _, kwargs = fake_uvicorn.calls[0]
    port = kwargs["port"]
    assert port != 0
    assert f"ANTHROPIC_BASE_URL=http://127.0.0.1:{port} ANTHROPIC_AUTH_TOKEN" in result.stderr


def test_serve_warns_about_set_up_mistakes(fake_uvicorn: FakeUvicorn) -> None:
    env = {
        "OPENAI_API_KEY": "sk-ant-api03-wrong-variable",
        "OPENAI_BASE_URL": "http://127.0.0.1:9/v1/v1",
    }
    result = invoke(["serve"], env)
    assert result.exit_code == 0, result.output
    err = result.stderr
    assert "warning: OPENAI_BASE_URL=http://127.0.0.1:9/v1/v1 contains /v1 twice" in err
    assert "fix: OPENAI_BASE_URL=http://127.0.0.1:9/v1" in err
    assert "warning: OPENAI_API_KEY=sk-ant-…le looks like an Anthropic key" in err
    assert "sk-ant-api03-wrong-variable" not in result.output


def test_run_says_when_a_settings_file_sends_claude_code_to_anthropic(
    stand_in: Path, tmp_path: Path, clean_env: Path
) -> None:
    settings = {"env": {"ANTHROPIC_BASE_URL": "https://api.anthropic.com"}}
    (clean_env / "settings.json").write_text(json.dumps(settings))
    result, _ = run_stand_in(stand_in, tmp_path, env={"OPENAI_API_KEY": UPSTREAM_KEY})
    assert result.exit_code == 0, result.output
    assert "will call Anthropic, NOT this proxy" in result.stderr


def test_run_warns_when_dynamic_mode_has_no_key_to_send(stand_in: Path, tmp_path: Path) -> None:
    env = {"OPENAI_BASE_URL": "https://api.example.invalid/v1"}
    result, report = run_stand_in(stand_in, tmp_path, env=env)
    assert result.exit_code == 0, result.output
    assert "warning: OPENAI_API_KEY is not set (dynamic mode)" in result.stderr
    assert report["env"]["ANTHROPIC_AUTH_TOKEN"] == PLACEHOLDER_KEY


def test_run_a_file_that_is_not_executable_exits_126(tmp_path: Path) -> None:
    script = tmp_path / "script.sh"
    script.write_text("#!/bin/sh\nexit 0\n")
    script.chmod(0o644)
    result = invoke(["run", "--", str(script)])
    assert result.exit_code == 126, result.output
    assert "permission denied" in result.stderr
