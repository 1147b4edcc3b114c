"""`claude-code-proxy run -- claude …` with the real Claude Code CLI (issue 8).

The launcher starts its own proxy on a free loopback port, points the CLI at it with a
matching key, and returns the CLI's exit code; nothing but the upstream is configured.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from .harness import BIG, UPSTREAM_KEY, install_cli, prompt_for, proxy_env
from .scripted_upstream import ScriptedUpstream

pytestmark = pytest.mark.e2e


@pytest.mark.parametrize("label", ["latest", "default"])
def test_run_launches_claude_through_its_own_proxy(label: str, tmp_path: Path) -> None:
    binary = install_cli(label)
    workdir, home = tmp_path / "project", tmp_path / "home"
    workdir.mkdir()
    home.mkdir()
    with ScriptedUpstream() as upstream:
        env = proxy_env(upstream.base_url, ANTHROPIC_API_KEY="sk-launcher-secret")
        env.update(
            HOME=str(home),
            TERM="dumb",
            IS_SANDBOX="1",
            CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC="1",
            DISABLE_TELEMETRY="1",
            DISABLE_AUTOUPDATER="1",
            CLAUDE_CODE_DISABLE_NONSTREAMING_FALLBACK="1",
            PORT="1",  # nothing answers there: the launcher must start a fresh proxy
        )
        command = [sys.executable, "-m", "claude_code_proxy", "run", "--"]
        command += [str(binary), "-p", prompt_for("write", "create a file hello.txt containing hi")]
        command += ["--dangerously-skip-permissions", "--output-format", "json"]
        done = subprocess.run(
            command,
            cwd=workdir,
            env=env,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=180,
            check=False,
        )
        requests = list(upstream.requests)
    context = f"stdout:\n{done.stdout}\nstderr:\n{done.stderr}"
    assert done.returncode == 0, context
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result.get("subtype") == "success" and not result.get("is_error"), context
    assert (workdir / "hello.txt").read_text().startswith("hi"), context
    chats = [r for r in requests if r.path.endswith("/chat/completions")]
    assert len(chats) >= 2, context
    assert {r.headers.get("Authorization") for r in chats} == {f"Bearer {UPSTREAM_KEY}"}
    assert {r.body["model"] for r in chats} == {BIG}
