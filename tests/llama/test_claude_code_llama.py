"""Claude Code, through `claude-code-proxy run`, against a real llama-server (`pytest -m llama`).

The server runs Qwen2.5-Coder-0.5B with the model's **native** chat template. That template
asks for `<tool_call>` tags, but the 0.5B model writes its call as a JSON object in a fenced
block, which llama.cpp's parser does not recognise: the call reaches the proxy as text. The
proxy must turn it into a `tool_use` (translate/rescue.py), so that Claude Code writes the file.
`run` must also tell Claude Code the server's context window, which the proxy discovered.

The prompt is kept small (`--tools Write`, a short system prompt) so that a 2-core machine can
process it; sampling is made deterministic on the server (`--temp 0`) and the client's
temperature dropped by a profile, as Claude Code always sends one.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import httpx
import pytest

from e2e.harness import REPO_ROOT, install_cli

from .conftest import LlamaServer, _need, _start

if TYPE_CHECKING:
    from conftest import ProxyFactory

pytestmark = pytest.mark.llama

CONTEXT = 8192
MODEL = "qwen2.5-coder-0.5b-instruct"
CLI_TIMEOUT = 1500.0
SYSTEM = "You are a coding agent. Act with the tools you are given; do not explain."


@pytest.fixture(scope="module")
def native_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LlamaServer]:
    model = _need("qwen")
    log_path = tmp_path_factory.mktemp("llama") / "qwen-native.log"
    yield from _start(model, log_path, "--temp", "0", "-c", str(CONTEXT))


def test_claude_code_writes_a_file_from_a_call_written_as_text(
    native_server: LlamaServer, tmp_path: Path
) -> None:
    binary = install_cli("latest")
    workdir, home = tmp_path / "project", tmp_path / "home"
    workdir.mkdir()
    home.mkdir()
    target = workdir / "hello.txt"
    profiles = tmp_path / "profiles.json"
    profiles.write_text(
        json.dumps({"providers": {"127.0.0.1:*": {"drop_params": ["temperature"]}}})
    )
    proxy_log = tmp_path / "proxy.log"
    env = {
        "PATH": "/usr/local/bin:/usr/bin:/bin",
        "HOME": str(home),
        "TERM": "dumb",
        "LANG": "C.UTF-8",
        "PYTHONPATH": os.pathsep.join([str(REPO_ROOT / "src"), os.environ.get("PYTHONPATH", "")]),
        "OPENAI_BASE_URL": native_server.base_url,
        "BIG_MODEL": MODEL,
        "MIDDLE_MODEL": MODEL,
        "SMALL_MODEL": MODEL,
        "PROVIDER_PROFILES": str(profiles),
        "REQUEST_TIMEOUT": "900",
        # Claude Code asks for 32k output tokens; a 0.5B model may ramble on after the result.
        "MAX_TOKENS_LIMIT": "128",
        "LOG_LEVEL": "INFO",
        "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC": "1",
        "DISABLE_TELEMETRY": "1",
        "DISABLE_AUTOUPDATER": "1",
        "IS_SANDBOX": "1",
    }
    prompt = f"Create the file {target} containing exactly the text: hello from qwen"
    command = [sys.executable, "-m", "claude_code_proxy", "run", "--fresh"]
    command += ["--log-file", str(proxy_log), "--", str(binary), "-p", prompt]
    command += ["--tools", "Write", "--system-prompt", SYSTEM, "--max-turns", "3"]
    command += ["--dangerously-skip-permissions", "--output-format", "stream-json", "--verbose"]
    done = subprocess.run(
        command,
        cwd=workdir,
        env=env,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=CLI_TIMEOUT,
        check=False,
    )
    log = proxy_log.read_text(errors="replace") if proxy_log.exists() else ""
    context = (
        f"exit {done.returncode}\nstderr:\n{done.stderr[-3000:]}\nstdout:\n{done.stdout[-3000:]}"
        f"\nproxy log:\n{log[-4000:]}\nserver log:\n{native_server.log_tail(2000)}"
    )
    # `run` discovered the window llama.cpp serves and told Claude Code.
    assert f"context window {CONTEXT} tokens" in done.stderr, context
    # The model wrote its call as text; the proxy turned it into a tool_use, Claude Code ran it.
    assert "turned 1 tool call(s) written as text into tool_use" in log, context
    assert target.is_file(), context
    assert target.read_text().strip() == "hello from qwen", context
    events = [json.loads(line) for line in done.stdout.splitlines() if line.startswith("{")]
    uses = [
        block
        for event in events
        if event.get("type") == "assistant"
        for block in event["message"]["content"]
        if block.get("type") == "tool_use"
    ]
    assert uses and uses[0]["name"] == "Write", context


def test_window_discovery_and_tokenizer_against_llama_cpp(
    proxy_factory: ProxyFactory, qwen_server: LlamaServer
) -> None:
    """The proxy finds the window the server runs with, refuses what cannot fit before
    calling it, and counts tokens with the model's own tokenizer."""
    proxy = proxy_factory(
        OPENAI_BASE_URL=qwen_server.base_url,
        BIG_MODEL=MODEL,
        MIDDLE_MODEL=MODEL,
        SMALL_MODEL=MODEL,
        CONTEXT_DISCOVERY="true",
    )
    windows = proxy.app.state.proxy.windows
    assert windows.wait_known(30.0)[MODEL].tokens == 4096  # the fixture's -c
    assert windows.server == "llama.cpp"
    headers = {"x-api-key": "sk-ant-llama-test", "anthropic-version": "2023-06-01"}
    long_prompt = " ".join(f"word{i}" for i in range(20_000))
    body = {
        "model": "claude-sonnet-4-5",
        "max_tokens": 16,
        "messages": [{"role": "user", "content": long_prompt}],
    }
    resp = httpx.post(proxy.url("/v1/messages"), json=body, headers=headers, timeout=60)
    assert resp.status_code == 400, resp.text
    assert resp.json()["error"]["message"].endswith("tokens > 4096 maximum")

    short = {**body, "messages": [{"role": "user", "content": "Count me, please: 1 2 3"}]}
    counted = httpx.post(
        proxy.url("/v1/messages/count_tokens"), json=short, headers=headers, timeout=60
    ).json()["input_tokens"]
    root = qwen_server.base_url.removesuffix("/v1")
    rendered = httpx.post(
        root + "/apply-template", json={"messages": [short["messages"][0]]}, timeout=60
    ).json()["prompt"]
    own = httpx.post(
        root + "/tokenize", json={"content": rendered, "add_special": True}, timeout=60
    ).json()["tokens"]
    assert counted == len(own)
