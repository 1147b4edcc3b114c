"""Building blocks of `run` and `doctor`: the background proxy, keys, settings files, exits."""

from __future__ import annotations

import json
import signal
import socket
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from claude_code_proxy.config import Settings
from claude_code_proxy.launcher import (
    PLACEHOLDER_KEY,
    BackgroundProxy,
    SettingsOverride,
    child_environment,
    client_key,
    connect_host,
    exit_code,
    find_settings_overrides,
    http_origin,
    mask_key,
    probe_health,
    redact,
    run_command,
)
from mock_upstream import MockUpstream

if TYPE_CHECKING:
    from conftest import ProxyHandle


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_mask_key_never_shows_a_usable_key() -> None:
    assert mask_key(None) == "(not set)"
    assert mask_key("short") == "***"
    assert mask_key("sk-proj-abcdefghijklmnop") == "sk-…op"


def test_redact_replaces_every_secret() -> None:
    text = "Incorrect API key provided: sk-secret-123456 (sk-secret-123456)"
    assert redact(text, [None, "sk-secret-123456"]) == (
        "Incorrect API key provided: sk-…56 (sk-…56)"
    )


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        ({"OPENAI_API_KEY": "sk-up", "ANTHROPIC_API_KEY": "client-secret"}, "client-secret"),
        ({"OPENAI_API_KEY": "sk-up"}, PLACEHOLDER_KEY),
        ({"ANTHROPIC_API_KEY": "sk-my-upstream-key"}, "sk-my-upstream-key"),
        ({}, PLACEHOLDER_KEY),
    ],
)
def test_client_key_matches_the_mode(env: dict[str, str], expected: str) -> None:
    assert client_key(Settings.from_env(env)) == expected


def test_addresses() -> None:
    assert connect_host("0.0.0.0") == "127.0.0.1"
    assert connect_host("::") == "::1"
    assert http_origin("127.0.0.1", 8082) == "http://127.0.0.1:8082"
    assert http_origin("::1", 8082) == "http://[::1]:8082"


def test_child_environment_sets_one_key_and_drops_cloud_switches() -> None:
    base = {
        "PATH": "/bin",
        "ANTHROPIC_AUTH_TOKEN": "stale",
        "ANTHROPIC_BASE_URL": "https://api.anthropic.com",
        "CLAUDE_CODE_USE_BEDROCK": "1",
    }
    env, notes = child_environment(base, base_url="http://127.0.0.1:1234", key="k-1")
    assert env["ANTHROPIC_BASE_URL"] == "http://127.0.0.1:1234"
    assert env["ANTHROPIC_API_KEY"] == "k-1"
    assert "ANTHROPIC_AUTH_TOKEN" not in env
    assert "CLAUDE_CODE_USE_BEDROCK" not in env
    assert env["PATH"] == "/bin"
    assert notes == [
        "unset CLAUDE_CODE_USE_BEDROCK for the command (it would bypass ANTHROPIC_BASE_URL)"
    ]
    assert base["ANTHROPIC_AUTH_TOKEN"] == "stale"  # the caller's mapping is untouched

    env, _ = child_environment(
        {"ANTHROPIC_API_KEY": "old"}, base_url="http://x", key="k-2", auth_token=True
    )
    assert env["ANTHROPIC_AUTH_TOKEN"] == "k-2"
    assert "ANTHROPIC_API_KEY" not in env


def test_settings_overrides_from_user_and_project_files(tmp_path: Path) -> None:
    home = tmp_path / "claude-home"
    home.mkdir()
    (home / "settings.json").write_text(
        json.dumps(
            {
                "env": {
                    "ANTHROPIC_BASE_URL": "https://api.anthropic.com",
                    "ANTHROPIC_API_KEY": "sk-ant-api03-secret-secret",
                    "UNRELATED": "x",
                },
                "apiKeyHelper": "~/bin/key.sh",
            }
        )
    )
    project = tmp_path / "project"
    (project / ".claude").mkdir(parents=True)
    (project / ".claude" / "settings.local.json").write_text(
        json.dumps({"env": {"ANTHROPIC_MODEL": "claude-opus-4-5"}})
    )
    (project / ".claude" / "settings.json").write_text("{not json")
    found, problems = find_settings_overrides({"CLAUDE_CONFIG_DIR": str(home)}, cwd=project)
    names = [o.name for o in found]
    assert names == ["ANTHROPIC_BASE_URL", "ANTHROPIC_API_KEY", "apiKeyHelper", "ANTHROPIC_MODEL"]
    described = [o.describe() for o in found]
    assert described[0].endswith('"env" sets ANTHROPIC_BASE_URL=https://api.anthropic.com')
    assert described[1].endswith("ANTHROPIC_API_KEY=sk-ant-…et")
    assert "secret-secret" not in " ".join(described)
    assert len(problems) == 1 and "not valid JSON" in problems[0]


def test_no_settings_files_means_no_overrides(tmp_path: Path) -> None:
    found, problems = find_settings_overrides({"CLAUDE_CONFIG_DIR": str(tmp_path)}, cwd=tmp_path)
    assert (found, problems) == ([], [])


def test_exit_code_follows_the_shell_convention() -> None:
    assert exit_code(0) == 0
    assert exit_code(3) == 3
    assert exit_code(-signal.SIGTERM) == 128 + signal.SIGTERM


def test_run_command_returns_the_exit_status() -> None:
    code = run_command([sys.executable, "-c", "raise SystemExit(5)"], {"PATH": ""})
    assert code == 5


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")
def test_run_command_reports_death_by_signal() -> None:
    script = "import os, signal; os.kill(os.getpid(), signal.SIGKILL)"
    assert run_command([sys.executable, "-c", script], {}) == 128 + signal.SIGKILL


def test_run_command_restores_signal_handlers() -> None:
    before = signal.getsignal(signal.SIGTERM)
    run_command([sys.executable, "-c", "pass"], {})
    assert signal.getsignal(signal.SIGTERM) is before


def test_run_command_raises_when_the_command_cannot_start(tmp_path: Path) -> None:
    with pytest.raises(OSError):
        run_command([str(tmp_path / "missing")], {})


def test_background_proxy_serves_and_stops(mock_upstream: MockUpstream) -> None:
    settings = Settings.from_env(
        {"OPENAI_BASE_URL": mock_upstream.base_url, "OPENAI_API_KEY": "sk-upstream-test"}
    )
    proxy = BackgroundProxy(settings).start(timeout=20)
    try:
        assert proxy.base_url == f"http://127.0.0.1:{proxy.port}"
        assert proxy.port != 0
        assert probe_health("127.0.0.1", proxy.port)
    finally:
        proxy.stop()
    assert not probe_health("127.0.0.1", proxy.port, timeout=1)


def test_background_proxy_reports_a_bad_profile_file(tmp_path: Path) -> None:
    bad = tmp_path / "profiles.json"
    bad.write_text('{"providers": {"*": {"no_such_setting": 1}}}')
    settings = Settings.from_env({"OPENAI_API_KEY": "sk-x", "PROVIDER_PROFILES": str(bad)})
    with pytest.raises(ValueError, match="no_such_setting"):
        BackgroundProxy(settings).start(timeout=20)


def test_probe_health_recognises_only_a_proxy(
    proxy: ProxyHandle, mock_upstream: MockUpstream
) -> None:
    assert probe_health(proxy.host, proxy.port)
    assert not probe_health("127.0.0.1", mock_upstream.port, timeout=1)  # 404 there
    assert not probe_health("127.0.0.1", closed_port(), timeout=1)


@pytest.mark.parametrize(
    ("value", "bypasses"),
    [
        ("https://api.anthropic.com", True),
        ("https://API.Anthropic.com/", True),
        ("http://127.0.0.1:8082", False),
        ("https://anthropic.com.example.org", False),
    ],
)
def test_settings_override_that_bypasses_the_proxy(value: str, bypasses: bool) -> None:
    override = SettingsOverride(Path("/x/settings.json"), "ANTHROPIC_BASE_URL", value)
    assert override.bypasses_proxy() is bypasses
    assert not SettingsOverride(Path("/x"), "ANTHROPIC_MODEL", value).bypasses_proxy()
