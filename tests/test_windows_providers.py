"""Context windows and the upstream tokenizer with a configuration file: per provider.

Two mock servers on 127.0.0.1 with different shapes: `a` answers like llama.cpp (`/props`
n_ctx 8192, `/apply-template` + `/tokenize`), `b` like vLLM (`/v1/models` max_model_len
65536, `/tokenize` with messages). Each target's window comes from its own provider; the
"prompt is too long" check, count_tokens and `run` follow the route of the request.
"""

from __future__ import annotations

import textwrap
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from claude_code_proxy.config_file import CONFIG_ENV
from claude_code_proxy.gateway.router import Target
from claude_code_proxy.tokens import count_request_tokens
from claude_code_proxy.windows import CONFIGURED, Window
from conftest import ProxyHandle, start_proxy
from mock_upstream import MODELS_PATH, MockUpstream, completion, json_response
from sse_validator import validate_anthropic_error
from test_windows import LLAMA_PROPS, OLLAMA_PS, run_report

HEADERS = {"x-api-key": "sk-client-0001", "anthropic-version": "2023-06-01"}


def vllm_listing(*models: str) -> dict[str, Any]:
    return {"data": [{"id": m, "owned_by": "vllm", "max_model_len": 65536} for m in models]}


@pytest.fixture
def servers() -> Iterator[dict[str, MockUpstream]]:
    mocks = {
        name: MockUpstream(lambda body, name=name: json_response(completion(f"{name}:ok")))
        for name in ("a", "b")
    }
    for mock in mocks.values():
        mock.start()
    try:
        yield mocks
    finally:
        for mock in mocks.values():
            mock.stop()


def write_config(tmp_path: Path, servers: dict[str, MockUpstream], routes: str) -> Path:
    text = "".join(
        f'[providers.{name}]\nbase_url = "{mock.base_url}"\napi_key = "sk-{name}"\n'
        for name, mock in servers.items()
    )
    path = tmp_path / "claude-code-proxy.toml"
    path.write_text(text + textwrap.dedent(routes))
    return path


ROUTES = """
[routes]
opus = "a/qwen.gguf"
sonnet = "b/coder"
haiku = "b/small"

[context_windows]
"b/small" = 4000
"""


@pytest.fixture
def proxy(tmp_path: Path, servers: dict[str, MockUpstream]) -> Iterator[ProxyHandle]:
    servers["a"].enqueue(json_response(LLAMA_PROPS), path="/props")
    servers["b"].enqueue(json_response(vllm_listing("coder", "small")), path=MODELS_PATH)
    path = write_config(tmp_path, servers, ROUTES)
    handle = start_proxy({CONFIG_ENV: str(path), "CONTEXT_DISCOVERY": "true", "MAX_RETRIES": "0"})
    windows = handle.app.state.proxy.windows
    deadline = time.monotonic() + 20
    while not windows.refreshed.is_set() and time.monotonic() < deadline:
        time.sleep(0.05)
    try:
        yield handle
    finally:
        handle.stop()


def test_each_target_window_comes_from_its_own_provider(
    proxy: ProxyHandle, servers: dict[str, MockUpstream]
) -> None:
    windows = proxy.app.state.proxy.windows
    assert windows.window(Target("a", "qwen.gguf")) == Window(8192, "llama.cpp /props n_ctx")
    assert windows.window(Target("b", "coder")) == Window(65536, "GET /models max_model_len")
    # [context_windows] beats what b's server reports for the same model.
    assert windows.window(Target("b", "small")) == Window(4000, "[context_windows]", CONFIGURED)
    assert windows.servers == {"a": "llama.cpp", "b": "vllm"}
    # b's list answered with running windows: no llama.cpp/Ollama/LM Studio probes there.
    assert [r.path for r in servers["b"].requests] == [MODELS_PATH]
    assert "/props" in [r.path for r in servers["a"].requests]


def test_the_too_long_check_uses_the_routed_targets_window(
    proxy: ProxyHandle, servers: dict[str, MockUpstream]
) -> None:
    big = "word " * 10_000  # ~12.5k tokens by the estimate: over a's 8192, under b's 65536
    for model in ("claude-opus-4-5", "claude-haiku-4-5"):  # a (8192) and b/small (4000)
        body = {"model": model, "max_tokens": 64, "messages": [{"role": "user", "content": big}]}
        resp = httpx.post(proxy.url("/v1/messages"), json=body, headers=HEADERS, timeout=30)
        error = validate_anthropic_error(resp.content, status=400)
        assert error["message"].startswith("prompt is too long: ")
    assert error["message"].endswith(" tokens > 4000 maximum")
    assert servers["a"].chat_requests == [] and servers["b"].chat_requests == []
    body = {
        "model": "claude-sonnet-4-5",
        "max_tokens": 64,
        "messages": [{"role": "user", "content": big}],
    }
    resp = httpx.post(proxy.url("/v1/messages"), json=body, headers=HEADERS, timeout=30)
    assert resp.status_code == 200, resp.text
    assert resp.json()["content"][0]["text"] == "b:ok"


COUNT_BODY: dict[str, Any] = {
    "system": "You are terse.",
    "messages": [{"role": "user", "content": "Count these words please"}],
}


def count(proxy: ProxyHandle, model: str) -> int:
    body = {**COUNT_BODY, "model": model}
    resp = httpx.post(proxy.url("/v1/messages/count_tokens"), json=body, headers=HEADERS)
    assert resp.status_code == 200, resp.text
    return int(resp.json()["input_tokens"])


def test_count_tokens_uses_the_routed_providers_tokenizer(
    proxy: ProxyHandle, servers: dict[str, MockUpstream]
) -> None:
    a, b = servers["a"], servers["b"]
    a.enqueue(
        json_response({"prompt": "<s> You are terse. Count these words please"}),
        path="/apply-template",
    )
    a.enqueue(
        lambda body: json_response({"tokens": list(range(len(body["content"].split())))}),
        path="/tokenize",
    )
    b.enqueue(json_response({"count": 4321, "max_model_len": 65536}), path="/tokenize")
    assert count(proxy, "claude-opus-4-5") == 8  # a: llama.cpp template, then its tokenizer
    assert count(proxy, "claude-sonnet-4-5") == 4321  # b: vLLM's chat tokenize
    sent = b.requests_to("/tokenize")[0].json
    assert (
        sent["model"] == "coder" and sent["messages"][-1]["content"] == "Count these words please"
    )
    assert sent["add_generation_prompt"] is True
    assert b.requests_to("/apply-template") == [] and len(a.requests_to("/tokenize")) == 1
    assert a.requests_to("/tokenize")[0].headers["authorization"] == "Bearer sk-a"
    assert b.requests_to("/tokenize")[0].headers["authorization"] == "Bearer sk-b"
    # b's tokenizer failing does not stop a's: each provider falls back on its own.
    assert count(proxy, "claude-haiku-4-5") == count_request_tokens(
        {**COUNT_BODY, "model": "claude-haiku-4-5"}
    )
    a.enqueue(json_response({"prompt": "one two"}), path="/apply-template")
    a.enqueue(json_response({"tokens": [1, 2]}), path="/tokenize")
    assert count(proxy, "claude-opus-4-5") == 2


RUN_ROUTES = """
[routes]
opus = ["a/big", "b/tiny-fallback"]
sonnet = "a/big"
haiku = "b/qwen3:8b"
long_context = { above_tokens = 50000, target = "b/long" }

[context_windows]
"b/tiny-fallback" = 2048
"b/long" = 1024
"""


def test_run_exports_the_smallest_window_of_claude_codes_routes(
    tmp_path: Path, servers: dict[str, MockUpstream]
) -> None:
    servers["a"].enqueue(json_response(vllm_listing("big")), path=MODELS_PATH)
    servers["b"].enqueue(json_response(OLLAMA_PS), path="/api/ps")
    path = write_config(tmp_path, servers, RUN_ROUTES)
    stderr, child = run_report(tmp_path, {CONFIG_ENV: str(path)})
    # b/qwen3:8b (haiku) is the smallest of opus/sonnet/haiku/default; the fallback's and
    # long_context's smaller windows are not what Claude Code compacts for.
    assert child["CLAUDE_CODE_AUTO_COMPACT_WINDOW"] == "16384"
    assert child["CLAUDE_CODE_MAX_CONTEXT_TOKENS"] == "16384"
    assert "context window 16384 tokens ('b/qwen3:8b', Ollama /api/ps context_length)" in stderr
    assert servers["a"].requests_to(MODELS_PATH) and servers["b"].requests_to("/api/ps")
