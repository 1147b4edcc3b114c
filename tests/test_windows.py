"""Context windows: each server shape's report, the configured override, the proxy's own
"prompt is too long" before calling upstream, and what `run` tells Claude Code.

The mock servers answer with the documented response shapes of vLLM (`/v1/models`
`max_model_len`), llama.cpp (`/props`, `/v1/models` `meta`), Ollama (`/api/ps`, `/api/show`),
LM Studio (`/api/v0/models`) and OpenRouter (`/models` `context_length`).
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx
import pytest
from click.testing import CliRunner

from claude_code_proxy.cli import main
from claude_code_proxy.config import Settings
from claude_code_proxy.windows import (
    CONFIGURED,
    MAXIMUM,
    RUNNING,
    ContextWindows,
    Window,
    client_env,
    discover,
    from_llama_props,
    from_lmstudio,
    from_model_list,
    from_ollama_ps,
    from_ollama_show,
)
from mock_upstream import MODELS_PATH, MockUpstream, json_response
from sse_validator import validate_anthropic_error

if TYPE_CHECKING:
    from conftest import ProxyFactory

HEADERS = {"x-api-key": "sk-ant-client", "anthropic-version": "2023-06-01"}

VLLM_MODELS = {
    "object": "list",
    "data": [
        {
            "id": "Qwen/Qwen3-Coder-30B-A3B-Instruct",
            "object": "model",
            "owned_by": "vllm",
            "root": "Qwen/Qwen3-Coder-30B-A3B-Instruct",
            "max_model_len": 32768,
        }
    ],
}
LLAMA_MODELS = {
    "models": [{"name": "qwen.gguf", "model": "qwen.gguf"}],
    "object": "list",
    "data": [
        {
            "id": "qwen.gguf",
            "object": "model",
            "owned_by": "llamacpp",
            "meta": {"vocab_type": 2, "n_vocab": 151936, "n_ctx_train": 32768, "n_embd": 896},
        }
    ],
}
LLAMA_PROPS = {
    "default_generation_settings": {"n_ctx": 8192, "params": {"n_predict": -1}},
    "total_slots": 1,
    "model_path": "/models/qwen.gguf",
}
OLLAMA_PS = {
    "models": [
        {
            "name": "qwen3:8b",
            "model": "qwen3:8b",
            "size": 6654289920,
            "expires_at": "2026-12-07T20:00:00Z",
            "size_vram": 6654289920,
            "context_length": 16384,
        }
    ]
}
OLLAMA_SHOW = {
    "parameters": 'num_ctx                        24576\nstop                           "<|im_end|>"',
    "model_info": {"general.architecture": "qwen3", "qwen3.context_length": 40960},
}
LMSTUDIO_MODELS = {
    "object": "list",
    "data": [
        {
            "id": "qwen2.5-coder-7b-instruct",
            "object": "model",
            "type": "llm",
            "state": "loaded",
            "max_context_length": 32768,
            "loaded_context_length": 12288,
        }
    ],
}
OPENROUTER_MODELS = {
    "data": [
        {
            "id": "qwen/qwen3-coder",
            "context_length": 262144,
            "top_provider": {"context_length": 262144, "max_completion_tokens": None},
        }
    ]
}


# ------------------------------------------------------------------------- the shapes


def test_each_server_shape_reports_its_window() -> None:
    vllm = from_model_list(VLLM_MODELS, "Qwen/Qwen3-Coder-30B-A3B-Instruct")
    assert vllm == Window(32768, "GET /models max_model_len", RUNNING)
    assert from_model_list(LLAMA_MODELS, "qwen.gguf") == Window(
        32768, "GET /models meta.n_ctx_train", MAXIMUM
    )
    with_n_ctx = json.loads(json.dumps(LLAMA_MODELS))
    with_n_ctx["data"][0]["meta"]["n_ctx"] = 4096
    assert from_model_list(with_n_ctx, "qwen.gguf") == Window(4096, "GET /models meta.n_ctx")
    assert from_llama_props(LLAMA_PROPS) == Window(8192, "llama.cpp /props n_ctx")
    assert from_ollama_ps(OLLAMA_PS, "qwen3:8b") == Window(16384, "Ollama /api/ps context_length")
    assert from_ollama_show(OLLAMA_SHOW) == Window(24576, "Ollama num_ctx", CONFIGURED)
    no_num_ctx = {**OLLAMA_SHOW, "parameters": 'stop "<|im_end|>"'}
    assert from_ollama_show(no_num_ctx) == Window(40960, "Ollama qwen3.context_length", MAXIMUM)
    assert from_lmstudio(LMSTUDIO_MODELS, "qwen2.5-coder-7b-instruct") == Window(
        12288, "LM Studio loaded_context_length"
    )
    assert from_model_list(OPENROUTER_MODELS, "qwen/qwen3-coder") == Window(
        262144, "GET /models context_length", MAXIMUM
    )


@pytest.mark.parametrize(
    "body",
    [None, [], {}, {"data": "x"}, {"data": [{"id": "m", "max_model_len": "32768"}]}, {"data": [1]}],
)
def test_unusable_bodies_give_no_window(body: Any) -> None:
    assert from_model_list(body, "m") is None
    assert from_llama_props(body) is None
    assert from_ollama_ps(body, "m") is None
    assert from_ollama_show(body) is None
    assert from_lmstudio(body, "m") is None


def test_ollama_latest_tag_is_the_same_model() -> None:
    assert from_ollama_ps(OLLAMA_PS, "qwen3:8b") is not None
    ps = {"models": [{"name": "llama3:latest", "context_length": 8192}]}
    assert from_ollama_ps(ps, "llama3") == Window(8192, "Ollama /api/ps context_length")


# ---------------------------------------------------------------------- discovery


def settings_for(upstream: MockUpstream, **extra: str) -> Settings:
    env = {
        "OPENAI_BASE_URL": upstream.base_url,
        "BIG_MODEL": "m",
        "MIDDLE_MODEL": "m",
        "SMALL_MODEL": "m",
        **extra,
    }
    return Settings.from_env(env)


def test_llama_cpp_running_window_beats_the_training_length(mock_upstream: MockUpstream) -> None:
    mock_upstream.enqueue(json_response(LLAMA_MODELS), path=MODELS_PATH)
    mock_upstream.enqueue(json_response(LLAMA_PROPS), path="/props")
    found = asyncio.run(discover(settings_for(mock_upstream), ["qwen.gguf"]))
    assert found == {"qwen.gguf": Window(8192, "llama.cpp /props n_ctx")}
    # Once every running window is known no other server shape is probed.
    paths = [r.path for r in mock_upstream.requests]
    assert paths == [MODELS_PATH, "/props"]


def test_vllm_window_from_the_model_list(mock_upstream: MockUpstream) -> None:
    mock_upstream.enqueue(json_response(VLLM_MODELS), path=MODELS_PATH)
    model = "Qwen/Qwen3-Coder-30B-A3B-Instruct"
    found = asyncio.run(discover(settings_for(mock_upstream), [model]))
    assert found[model].tokens == 32768


def test_ollama_loaded_model_and_modelfile(mock_upstream: MockUpstream) -> None:
    mock_upstream.enqueue(json_response(OLLAMA_PS), path="/api/ps")
    mock_upstream.enqueue(json_response(OLLAMA_SHOW), path="/api/show")
    found = asyncio.run(discover(settings_for(mock_upstream), ["qwen3:8b", "other:7b"]))
    assert found["qwen3:8b"] == Window(16384, "Ollama /api/ps context_length")
    assert found["other:7b"] == Window(24576, "Ollama num_ctx", CONFIGURED)
    show = [r for r in mock_upstream.requests if r.path == "/api/show"]
    assert [r.json for r in show] == [{"model": "other:7b"}]


def test_lm_studio_loaded_context(mock_upstream: MockUpstream) -> None:
    mock_upstream.enqueue(json_response(LMSTUDIO_MODELS), path="/api/v0/models")
    found = asyncio.run(discover(settings_for(mock_upstream), ["qwen2.5-coder-7b-instruct"]))
    assert found["qwen2.5-coder-7b-instruct"].tokens == 12288


def test_nothing_found_on_a_server_without_these_endpoints(mock_upstream: MockUpstream) -> None:
    assert asyncio.run(discover(settings_for(mock_upstream), ["gpt-big"])) == {}


def test_unreachable_upstream_finds_nothing_quickly() -> None:
    settings = Settings.from_env({"OPENAI_BASE_URL": "http://127.0.0.1:9/v1"})
    started = time.monotonic()
    assert asyncio.run(discover(settings, ["m"], timeout=1.0)) == {}
    assert time.monotonic() - started < 30  # bounded, not a timing claim about speed


def test_configured_windows_win(mock_upstream: MockUpstream) -> None:
    mock_upstream.enqueue(json_response(LLAMA_PROPS), path="/props")
    settings = settings_for(
        mock_upstream, BIG_MODEL="big", MIDDLE_MODEL="mid", BIG_MODEL_CONTEXT_WINDOW="65536"
    )
    windows = ContextWindows(settings)
    found = asyncio.run(windows.collect())
    assert found["big"] == Window(65536, "BIG_MODEL_CONTEXT_WINDOW", CONFIGURED)
    assert found["mid"] == Window(8192, "llama.cpp /props n_ctx")
    everything = ContextWindows(settings_for(mock_upstream, CONTEXT_WINDOW="20000"))
    assert everything.window("m") == Window(20000, "CONTEXT_WINDOW", CONFIGURED)
    assert not [r for r in mock_upstream.requests if r.path == "/props"][1:]


def test_bad_window_settings_are_refused() -> None:
    from claude_code_proxy.config import ConfigError

    for name in ("CONTEXT_WINDOW", "SMALL_MODEL_CONTEXT_WINDOW"):
        with pytest.raises(ConfigError, match=name):
            Settings.from_env({name: "32k"})
    with pytest.raises(ConfigError, match="CONTEXT_DISCOVERY"):
        Settings.from_env({"CONTEXT_DISCOVERY": "maybe"})


# ------------------------------------------------------------- the proxy itself


def test_a_request_that_cannot_fit_is_refused_before_the_upstream(
    proxy_factory: ProxyFactory, mock_upstream: MockUpstream
) -> None:
    mock_upstream.enqueue(json_response(LLAMA_PROPS), path="/props")
    proxy = proxy_factory(CONTEXT_DISCOVERY="true")
    windows = proxy.app.state.proxy.windows
    deadline = time.monotonic() + 20
    while windows.window("gpt-big") is None and time.monotonic() < deadline:
        time.sleep(0.05)
    assert windows.window("gpt-big") == Window(8192, "llama.cpp /props n_ctx")
    body = {
        "model": "claude-opus-4-5",
        "max_tokens": 100,
        "messages": [{"role": "user", "content": "word " * 40_000}],
    }
    for stream in (False, True):
        resp = httpx.post(
            proxy.url("/v1/messages"), json={**body, "stream": stream}, headers=HEADERS
        )
        error = validate_anthropic_error(resp.content, status=400)
        assert error["type"] == "invalid_request_error"
        assert error["message"].startswith("prompt is too long: ")
        assert error["message"].endswith(" tokens > 8192 maximum")
    assert mock_upstream.chat_requests == []
    # A request that fits goes through.
    small = {**body, "messages": [{"role": "user", "content": "hi"}]}
    assert httpx.post(proxy.url("/v1/messages"), json=small, headers=HEADERS).status_code == 200


# ------------------------------------------------------------------------- run


def test_client_env_respects_what_the_user_set() -> None:
    windows = {"a": Window(65536, "x"), "b": Window(16384, "llama.cpp /props n_ctx")}
    added, line = client_env({}, windows)
    assert added == {
        "CLAUDE_CODE_ENABLE_GATEWAY_MODEL_DISCOVERY": "1",
        "CLAUDE_CODE_AUTO_COMPACT_WINDOW": "16384",
        "CLAUDE_CODE_MAX_CONTEXT_TOKENS": "16384",
    }
    assert line is not None and "'b'" in line and "16384" in line
    mine = {
        "CLAUDE_CODE_AUTO_COMPACT_WINDOW": "9000",
        "CLAUDE_CODE_ENABLE_GATEWAY_MODEL_DISCOVERY": "0",
    }
    added, line = client_env(mine, windows)
    assert added == {"CLAUDE_CODE_MAX_CONTEXT_TOKENS": "16384"}
    assert line is not None and "CLAUDE_CODE_AUTO_COMPACT_WINDOW" not in line
    assert client_env({}, {}) == ({"CLAUDE_CODE_ENABLE_GATEWAY_MODEL_DISCOVERY": "1"}, None)


REPORT_ENV = r"""
import json, os, sys
names = [n for n in os.environ if n.startswith("CLAUDE_CODE_")]
open(sys.argv[1], "w").write(json.dumps({n: os.environ[n] for n in names}))
"""


def run_report(tmp_path: Path, env: dict[str, str | None]) -> tuple[str, dict[str, str]]:
    script, report = tmp_path / "report.py", tmp_path / "report.json"
    script.write_text(REPORT_ENV)
    args = ["run", "--fresh", "--", sys.executable, str(script), str(report)]
    base = {
        "CLAUDE_CODE_AUTO_COMPACT_WINDOW": None,
        "CLAUDE_CODE_MAX_CONTEXT_TOKENS": None,
        "CLAUDE_CODE_ENABLE_GATEWAY_MODEL_DISCOVERY": None,
        "CLAUDE_CONFIG_DIR": str(tmp_path),
        "PORT": "0",
    }
    result = CliRunner().invoke(main, args, env={**base, **env})
    assert result.exit_code == 0, result.output
    return result.stderr, json.loads(report.read_text())


def test_run_exports_the_smallest_window(mock_upstream: MockUpstream, tmp_path: Path) -> None:
    mock_upstream.enqueue(json_response(OLLAMA_PS), path="/api/ps")
    env: dict[str, str | None] = {
        "OPENAI_BASE_URL": mock_upstream.base_url,
        "BIG_MODEL": "qwen3:8b",
        "MIDDLE_MODEL": "qwen3:32b",
        "SMALL_MODEL": "qwen3:8b",
        "MIDDLE_MODEL_CONTEXT_WINDOW": "65536",
    }
    stderr, child = run_report(tmp_path, env)
    assert child == {
        "CLAUDE_CODE_AUTO_COMPACT_WINDOW": "16384",
        "CLAUDE_CODE_MAX_CONTEXT_TOKENS": "16384",
        "CLAUDE_CODE_ENABLE_GATEWAY_MODEL_DISCOVERY": "1",
    }
    assert "context window 16384 tokens ('qwen3:8b', Ollama /api/ps context_length)" in stderr
    # The user's own values are kept, and then nothing is said about them.
    mock_upstream.enqueue(json_response(OLLAMA_PS), path="/api/ps")
    mine = {"CLAUDE_CODE_AUTO_COMPACT_WINDOW": "12000", "CLAUDE_CODE_MAX_CONTEXT_TOKENS": "12000"}
    stderr, child = run_report(tmp_path, {**env, **mine})
    assert child["CLAUDE_CODE_AUTO_COMPACT_WINDOW"] == "12000"
    assert child["CLAUDE_CODE_MAX_CONTEXT_TOKENS"] == "12000"
    assert "context window" not in stderr
