"""`claude-code-proxy doctor` against the mock upstream: passing and failing set-ups.

Each test runs the real command (CliRunner) with a clean environment; the doctor starts its
own in-process proxy on 127.0.0.1 and talks to the mock upstream over real sockets.
"""

from __future__ import annotations

import json
import os
import socket
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result

from claude_code_proxy.cli import main
from claude_code_proxy.doctor import (
    Check,
    Reply,
    contains_model,
    format_check,
    model_ids,
    sse_events,
    summary,
)
from mock_upstream import (
    MODELS_PATH,
    MockUpstream,
    Response,
    error_response,
    json_response,
    reasoning_chunks,
    sse_response,
    text_chunks,
    tool_call_chunks,
)

UPSTREAM_KEY = "sk-upstream-secret-0123456789"
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
)


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
    yield claude_home
    os.environ.clear()
    os.environ.update(saved)


def healthy(*, reasoning: bool = True) -> Any:
    """An upstream that streams text, calls tools when offered them, and reasons."""

    def respond(body: Any) -> Response:
        model = body["model"]
        last = body["messages"][-1]
        if body.get("tools") and last["role"] != "tool":
            name = body["tools"][0]["function"]["name"]
            calls = [{"name": name, "arguments": {"city": "Paris"}}]
            return sse_response(tool_call_chunks(calls, model=model, usage=(20, 5)))
        if last["role"] == "tool":
            return sse_response(text_chunks(["It is sunny", " in Paris."], model=model))
        if reasoning and "17 * 23" in json.dumps(last):
            thinking = reasoning_chunks(["17 * 23 = 391"], model=model)
            return sse_response(thinking + text_chunks(["391"], model=model, role=False))
        return sse_response(text_chunks(["pong"], model=model))

    return respond


def doctor(env: Mapping[str, str], *args: str) -> Result:
    runner = CliRunner()
    return runner.invoke(main, ["doctor", "--timeout", "20", *args], env=dict(env))


def base_env(upstream: MockUpstream, **extra: str) -> dict[str, str]:
    return {
        "OPENAI_BASE_URL": upstream.base_url,
        "OPENAI_API_KEY": UPSTREAM_KEY,
        "BIG_MODEL": "gpt-big",
        "MIDDLE_MODEL": "gpt-middle",
        "SMALL_MODEL": "gpt-small",
        **extra,
    }


def row(output: str, status: str, name: str) -> str:
    """The first table line with this status and check name (fails the test if absent)."""
    for line in output.splitlines():
        if line.strip().startswith(f"{status}  {name}"):
            return line
    raise AssertionError(f"no {status} row for {name!r} in:\n{output}")


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


# ------------------------------------------------------------------ passing set-ups


def test_healthy_upstream_passes_every_check(mock_upstream: MockUpstream) -> None:
    mock_upstream.responder = healthy()
    result = doctor(base_env(mock_upstream))
    out = result.output
    assert result.exit_code == 0, out
    for name in ("configuration", "reachability", "authentication", "model BIG_MODEL"):
        row(out, "PASS", name)
    assert "BIG_MODEL 'gpt-big' is available" in out
    assert "listed 3 models" in out
    texts = [line for line in out.splitlines() if "PASS  streamed text" in line]
    for client, model in (("opus", "gpt-big"), ("sonnet", "gpt-middle"), ("haiku", "gpt-small")):
        assert any(f"claude-{client}-4-5 → {model} answered 'pong'" in t for t in texts), out
    tools = row(out, "PASS", "tool round trip")
    assert 'get_weather({"city": "Paris"})' in tools and "It is sunny in Paris." in tools
    assert "yes" in row(out, "INFO", "reasoning")
    assert "all required checks passed" in out
    # The key is shown masked, never in full.
    assert UPSTREAM_KEY not in out
    assert "sk-…89" in out
    # The upstream saw the key on /models, and a full tool round trip through the proxy.
    models_requests = [r for r in mock_upstream.requests if r.path == MODELS_PATH]
    assert models_requests[0].headers["authorization"] == f"Bearer {UPSTREAM_KEY}"
    chats = mock_upstream.chat_requests
    assert any(r.json.get("tools") for r in chats)
    assert any(m["role"] == "tool" for r in chats for m in r.json["messages"])
    assert {r.json["model"] for r in chats} == {"gpt-big", "gpt-middle", "gpt-small"}


def test_same_model_everywhere_is_chatted_with_once(mock_upstream: MockUpstream) -> None:
    mock_upstream.responder = healthy(reasoning=False)
    env = base_env(mock_upstream, MIDDLE_MODEL="gpt-big", SMALL_MODEL="gpt-big")
    result = doctor(env)
    assert result.exit_code == 0, result.output
    assert sum(1 for line in result.output.splitlines() if "streamed text" in line) == 1
    assert "no thinking blocks" in row(result.output, "INFO", "reasoning")


def test_no_chat_spends_no_tokens(mock_upstream: MockUpstream) -> None:
    result = doctor(base_env(mock_upstream), "--no-chat")
    assert result.exit_code == 0, result.output
    assert mock_upstream.chat_requests == []
    assert "streamed text" not in result.output


def test_dynamic_mode_on_loopback_uses_a_placeholder_key(mock_upstream: MockUpstream) -> None:
    mock_upstream.responder = healthy()
    env = base_env(mock_upstream)
    del env["OPENAI_API_KEY"]
    result = doctor(env)
    assert result.exit_code == 0, result.output
    assert "dynamic mode" in row(result.output, "PASS", "configuration")
    auth = {r.headers.get("authorization") for r in mock_upstream.requests}
    assert auth == {"Bearer sk-claude-code-proxy"}


def test_provider_without_model_list_is_checked_by_chatting(mock_upstream: MockUpstream) -> None:
    mock_upstream.responder = healthy()
    mock_upstream.enqueue(error_response(404, "no such route", "not_found"), path=MODELS_PATH)
    result = doctor(base_env(mock_upstream))
    out = result.output
    assert result.exit_code == 0, out
    assert "HTTP 404" in row(out, "INFO", "authentication")
    assert "lists no models" in row(out, "INFO", "model BIG_MODEL")
    row(out, "PASS", "tool round trip")


def test_settings_file_override_is_a_warning(mock_upstream: MockUpstream, clean_env: Path) -> None:
    secret = "sk-ant-api03-very-secret-value"
    settings = {"env": {"ANTHROPIC_BASE_URL": "http://127.0.0.1:9999", "ANTHROPIC_API_KEY": secret}}
    (clean_env / "settings.json").write_text(json.dumps(settings))
    result = doctor(base_env(mock_upstream), "--no-chat")
    out = result.output
    assert result.exit_code == 0, out
    assert "ANTHROPIC_BASE_URL=http://127.0.0.1:9999" in row(out, "WARN", "Claude Code settings")
    assert "ANTHROPIC_API_KEY=sk-ant-…ue" in out
    assert secret not in out


def test_settings_file_sending_claude_code_to_anthropic_fails(
    mock_upstream: MockUpstream, clean_env: Path
) -> None:
    # Claude Code applies the file over the environment: it would never reach the proxy.
    settings = {"env": {"ANTHROPIC_BASE_URL": "https://api.anthropic.com"}}
    (clean_env / "settings.json").write_text(json.dumps(settings))
    result = doctor(base_env(mock_upstream), "--no-chat")
    out = result.output
    assert result.exit_code == 1, out
    assert "would call Anthropic, not this proxy" in row(out, "FAIL", "Claude Code settings")
    assert "fix: remove ANTHROPIC_BASE_URL from " in out


# ------------------------------------------------------------------ failing set-ups


def test_bad_key_fails_authentication(mock_upstream: MockUpstream) -> None:
    # Some upstreams echo the key in their error: it must still never be printed in full.
    mock_upstream.enqueue(
        error_response(401, f"Incorrect API key provided: {UPSTREAM_KEY}", "invalid_api_key"),
        path=MODELS_PATH,
    )
    result = doctor(base_env(mock_upstream))
    out = result.output
    assert result.exit_code == 1, out
    line = row(out, "FAIL", "authentication")
    assert "rejected the OPENAI_API_KEY" in line and "HTTP 401" in line
    assert "fix: set OPENAI_API_KEY to a valid 127.0.0.1 key" in out
    assert UPSTREAM_KEY not in out
    row(out, "SKIP", "chat checks")
    assert mock_upstream.chat_requests == []
    assert "problems found" in out


def test_missing_model_names_the_available_ones(mock_upstream: MockUpstream) -> None:
    mock_upstream.responder = healthy()
    result = doctor(base_env(mock_upstream, BIG_MODEL="gpt-4o"))
    out = result.output
    assert result.exit_code == 1, out
    expected = (
        f"BIG_MODEL 'gpt-4o' not found at {mock_upstream.base_url}: "
        "available models are gpt-big, gpt-middle, gpt-small"
    )
    assert expected in out
    assert "fix: set BIG_MODEL to one of the available models" in out
    row(out, "PASS", "model SMALL_MODEL")
    # The models that exist are still chatted with; the missing one is not.
    assert {r.json["model"] for r in mock_upstream.chat_requests} == {"gpt-middle", "gpt-small"}


def test_unreachable_upstream_fails_and_skips_the_rest() -> None:
    port = closed_port()
    env = {"OPENAI_BASE_URL": f"http://127.0.0.1:{port}/v1", "OPENAI_API_KEY": UPSTREAM_KEY}
    result = doctor(env)
    out = result.output
    assert result.exit_code == 1, out
    line = row(out, "FAIL", "reachability")
    assert f"cannot connect to 127.0.0.1:{port}: Connection refused" in line
    assert "ollama serve" in out
    row(out, "SKIP", "remaining checks")


def test_invalid_configuration_exits_2() -> None:
    result = doctor({"PORT": "not-a-port"})
    assert result.exit_code == 2, result.output
    assert "PORT" in row(result.output, "FAIL", "configuration")


def test_upstream_that_answers_in_text_fails_the_tool_check(mock_upstream: MockUpstream) -> None:
    result = doctor(base_env(mock_upstream, MIDDLE_MODEL="gpt-big", SMALL_MODEL="gpt-big"))
    out = result.output
    assert result.exit_code == 1, out
    row(out, "PASS", "streamed text")
    assert "instead of calling get_weather" in row(out, "FAIL", "tool round trip")
    assert "--enable-auto-tool-choice" in out


def test_upstream_that_rejects_tools_fails_the_tool_check(mock_upstream: MockUpstream) -> None:
    def respond(body: Any) -> Response:
        if body.get("tools"):
            return error_response(400, f"registry/{body['model']} does not support tools")
        return sse_response(text_chunks(["pong"], model=body["model"]))

    mock_upstream.responder = respond
    result = doctor(base_env(mock_upstream, MIDDLE_MODEL="gpt-big", SMALL_MODEL="gpt-big"))
    out = result.output
    assert result.exit_code == 1, out
    assert "does not support tools" in row(out, "FAIL", "tool round trip")
    assert "--enable-auto-tool-choice" in out


def test_model_unknown_to_an_unlisting_provider_fails_the_chat(mock_upstream: MockUpstream) -> None:
    mock_upstream.enqueue(error_response(404, "no such route", "not_found"), path=MODELS_PATH)
    mock_upstream.responder = lambda body: error_response(
        404, f"The model `{body['model']}` does not exist", "invalid_request_error"
    )
    result = doctor(base_env(mock_upstream, MIDDLE_MODEL="gpt-big", SMALL_MODEL="gpt-big"))
    out = result.output
    assert result.exit_code == 1, out
    assert "does not exist" in row(out, "FAIL", "streamed text")
    assert "fix: check BIG_MODEL='gpt-big'" in out


def test_doubled_v1_is_named(mock_upstream: MockUpstream) -> None:
    env = base_env(mock_upstream, OPENAI_BASE_URL=mock_upstream.base_url + "/v1")
    result = doctor(env, "--no-chat")
    assert result.exit_code == 1, result.output
    assert "contains /v1 twice" in row(result.output, "FAIL", "base URL")
    assert f"fix: OPENAI_BASE_URL={mock_upstream.base_url}\n" in result.output


def test_doubled_v1_skips_the_checks_it_breaks(mock_upstream: MockUpstream) -> None:
    # Every request 404s on …/v1/v1: one FAIL naming the URL, not a page of model advice.
    env = base_env(mock_upstream, OPENAI_BASE_URL=mock_upstream.base_url + "/v1")
    result = doctor(env)
    out = result.output
    assert result.exit_code == 1, out
    assert "fix OPENAI_BASE_URL first" in row(out, "SKIP", "model BIG_MODEL")
    assert "/v1 twice" in row(out, "SKIP", "chat checks")
    assert "streamed text" not in out
    assert not [r for r in mock_upstream.requests if r.method == "POST"]


def test_rejected_key_does_not_claim_models_are_checked_by_chatting(
    mock_upstream: MockUpstream,
) -> None:
    mock_upstream.enqueue(error_response(401, "bad key", "invalid_api_key"), path=MODELS_PATH)
    result = doctor(base_env(mock_upstream))
    out = result.output
    assert result.exit_code == 1, out
    assert "the key was rejected" in row(out, "SKIP", "model BIG_MODEL")
    assert "checked by chatting" not in out


def test_missing_model_fix_names_the_middle_model_default(mock_upstream: MockUpstream) -> None:
    env = base_env(mock_upstream, BIG_MODEL="gpt-nope")
    del env["MIDDLE_MODEL"]
    result = doctor(env, "--no-chat")
    out = result.output
    assert result.exit_code == 1, out
    assert "'gpt-nope' not found" in row(out, "FAIL", "model MIDDLE_MODEL")
    assert "MIDDLE_MODEL is unset, so it follows BIG_MODEL" in out


def _models_with(windows: Mapping[str, int], field: str = "max_model_len") -> Response:
    data = [{"id": model, "object": "model", field: tokens} for model, tokens in windows.items()]
    return json_response({"object": "list", "data": data})


@pytest.mark.parametrize("field", ["max_model_len", "context_length", "context_window"])
def test_context_window_from_the_model_list_gives_claude_code_settings(
    mock_upstream: MockUpstream, field: str
) -> None:
    windows = {"gpt-big": 131072, "gpt-middle": 65536, "gpt-small": 262144}
    mock_upstream.enqueue(_models_with(windows, field), path=MODELS_PATH)
    result = doctor(base_env(mock_upstream), "--no-chat")
    out = result.output
    assert result.exit_code == 0, out
    assert "'gpt-middle' has a 65536-token" in row(out, "INFO", "context window")
    assert "CLAUDE_CODE_AUTO_COMPACT_WINDOW=65536 CLAUDE_CODE_MAX_CONTEXT_TOKENS=65536" in out


def test_too_small_context_window_is_a_warning(mock_upstream: MockUpstream) -> None:
    windows = {"gpt-big": 4096, "gpt-middle": 4096, "gpt-small": 4096}
    mock_upstream.enqueue(_models_with(windows), path=MODELS_PATH)
    result = doctor(base_env(mock_upstream), "--no-chat")
    out = result.output
    assert result.exit_code == 0, out
    assert "4096-token context window" in row(out, "WARN", "context window")
    assert "OLLAMA_CONTEXT_LENGTH=32768" in out


def test_no_context_window_row_without_the_information(mock_upstream: MockUpstream) -> None:
    result = doctor(base_env(mock_upstream), "--no-chat")
    assert result.exit_code == 0, result.output
    assert "context window" not in result.output


def test_client_base_url_with_v1_is_a_warning(mock_upstream: MockUpstream) -> None:
    env = base_env(mock_upstream, ANTHROPIC_BASE_URL="http://127.0.0.1:8082/v1")
    result = doctor(env, "--no-chat")
    assert result.exit_code == 0, result.output
    assert "/v1/v1/messages" in row(result.output, "WARN", "ANTHROPIC_BASE_URL")
    assert "ANTHROPIC_BASE_URL=http://127.0.0.1:8082 (no /v1)" in result.output


def test_anthropic_key_in_the_upstream_variable_is_a_warning(mock_upstream: MockUpstream) -> None:
    env = base_env(mock_upstream, OPENAI_API_KEY="sk-ant-api03-wrong-variable")
    result = doctor(env, "--no-chat")
    assert "looks like an Anthropic key" in row(result.output, "WARN", "key variable")
    assert "sk-ant-api03-wrong-variable" not in result.output


# ------------------------------------------------------------------ building blocks


async def _lines(chunks: list[bytes]) -> Any:
    for item in chunks:
        yield item


async def test_sse_events_and_reply_assembly() -> None:
    stream = [
        b"event: message_start\n",
        b'data: {"type":"message_start","message":{}}\n',
        b"\n",
        b": a comment\n",
        b"event: content_block_start\r\n",
        b'data: {"type":"content_block_start","index":0,'
        b'"content_block":{"type":"tool_use","id":"toolu_1","name":"f","input":{}}}\r\n',
        b"\r\n",
        b'data: {"type":"content_block_delta","index":0,'
        b'"delta":{"type":"input_json_delta","partial_json":"{\\"a\\": "}}\n\n',
        b'data: {"type":"content_block_delta","index":0,'
        b'"delta":{"type":"input_json_delta","partial_json":"1}"}}\n\n',
        b'data: {"type":"message_delta","delta":{"stop_reason":"tool_use"}}\n\n',
        b'data: {"type":"message_stop"}\n\n',
    ]
    reply = Reply()
    events = []
    async for event, data in sse_events(_lines(stream)):
        events.append(event)
        reply.feed(event, data)
    assert events[:2] == ["message_start", "content_block_start"]
    assert reply.complete and reply.stop_reason == "tool_use"
    assert reply.tool_uses[0].input == {"a": 1}


def test_reply_records_stream_errors() -> None:
    reply = Reply()
    reply.feed("error", {"type": "error", "error": {"type": "api_error", "message": "boom"}})
    assert reply.failure == "stream error api_error: boom"


def test_model_matching_and_listing() -> None:
    assert contains_model(["llama3.1:latest"], "llama3.1")
    assert contains_model(["llama3.1"], "llama3.1:latest")
    assert contains_model(["models/gemini-2.5-pro"], "gemini-2.5-pro")
    assert not contains_model(["gpt-4o-mini"], "gpt-4o")
    assert model_ids({"data": [{"id": "a"}, {"id": "b"}]}) == ["a", "b"]
    assert model_ids({"models": [{"name": "x"}]}) == ["x"]
    assert model_ids(["not", "a", "list"]) is None


def test_table_formatting_and_summary() -> None:
    checks = [Check("reachability", "PASS", "ok"), Check("authentication", "FAIL", "no", "do x")]
    lines = format_check(checks[1])
    assert lines[0].split() == ["FAIL", "authentication", "no"]
    assert lines[1].strip() == "fix: do x"
    assert summary(checks) == "problems found: 1 passed, 1 failed, 0 warnings"


# ------------------------------------------------------------------ wording (issue 16)


def test_anthropic_key_warning_shows_why_and_whose_key(mock_upstream: MockUpstream) -> None:
    """The mask keeps the `sk-ant-` that triggered the warning; a server on 127.0.0.1 has no
    "your 127.0.0.1 key"."""
    secret = "sk-ant-api03-misplaced-key"
    result = doctor(base_env(mock_upstream, OPENAI_API_KEY=secret), "--no-chat")
    out = result.output
    warning = row(out, "WARN", "key variable")
    assert "OPENAI_API_KEY=sk-ant-…ey looks like an Anthropic key" in warning
    assert "your 127.0.0.1 key" not in out
    assert "OPENAI_API_KEY must be the key your server at 127.0.0.1 expects" in out
    assert secret not in out
    assert out.rstrip().endswith("1 warning")


def test_a_missing_model_gets_a_skip_row_for_its_chat_checks(mock_upstream: MockUpstream) -> None:
    mock_upstream.responder = healthy()
    result = doctor(base_env(mock_upstream, BIG_MODEL="gpt-unknown"))
    out = result.output
    assert result.exit_code == 1, out
    row(out, "FAIL", "model BIG_MODEL")
    skipped = row(out, "SKIP", "chat checks")
    assert "BIG_MODEL 'gpt-unknown'" in skipped and "not in the model list" in skipped
    assert "gpt-middle answered 'pong'" in out  # the other models are still checked


def test_a_mistyped_host_is_a_configuration_error_not_a_security_one(
    mock_upstream: MockUpstream,
) -> None:
    result = doctor(base_env(mock_upstream, HOST="127.0.0.l"), "--no-chat")
    assert result.exit_code == 2, result.output
    assert "HOST='127.0.0.l' is not a valid IP address" in row(
        result.output, "FAIL", "configuration"
    )
    assert "listens beyond" not in result.output
