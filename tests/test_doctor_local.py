"""`doctor` against local servers: every server's context window, and the two ways a tool
round trip fails told apart."""

from __future__ import annotations

from typing import Any

from mock_upstream import (
    MODELS_PATH,
    MockUpstream,
    Response,
    json_response,
    sse_response,
    text_chunks,
    tool_call_chunks,
)
from test_doctor import base_env, clean_env, doctor, row  # noqa: F401 (autouse fixture)
from test_windows import LLAMA_MODELS, LLAMA_PROPS, OLLAMA_PS


def test_llama_cpp_window_from_props_and_the_line_to_use(mock_upstream: MockUpstream) -> None:
    models = {**LLAMA_MODELS, "data": [{**LLAMA_MODELS["data"][0], "id": "gpt-big"}]}
    mock_upstream.models = ["gpt-big"]
    mock_upstream.enqueue(json_response(models), path=MODELS_PATH)
    mock_upstream.enqueue(json_response(LLAMA_PROPS), path="/props")
    env = base_env(mock_upstream, MIDDLE_MODEL="gpt-big", SMALL_MODEL="gpt-big")
    result = doctor(env, "--no-chat")
    out = result.output
    detail = row(out, "WARN", "context window")
    assert "'gpt-big' has a 8192-token context window (llama.cpp /props n_ctx)" in detail
    assert "CLAUDE_CODE_AUTO_COMPACT_WINDOW=8192 CLAUDE_CODE_MAX_CONTEXT_TOKENS=8192" in out


def test_ollama_window_and_a_configured_one(mock_upstream: MockUpstream) -> None:
    mock_upstream.models = ["qwen3:8b", "gpt-small"]
    mock_upstream.enqueue(json_response(OLLAMA_PS), path="/api/ps")
    env = base_env(
        mock_upstream,
        BIG_MODEL="qwen3:8b",
        MIDDLE_MODEL="qwen3:8b",
        SMALL_MODEL_CONTEXT_WINDOW="131072",
    )
    out = doctor(env, "--no-chat").output
    detail = row(out, "WARN", "context window")
    assert "'qwen3:8b' has a 16384-token context window (Ollama /api/ps context_length)" in detail
    assert "'gpt-small' 131072 (SMALL_MODEL_CONTEXT_WINDOW)" in detail


def _tool_upstream(*, answers_in_text: bool) -> Any:
    def respond(body: Any) -> Response:
        model = body["model"]
        if not body.get("tools"):
            return sse_response(text_chunks(["pong"], model=model))
        if answers_in_text:
            return sse_response(text_chunks(["I cannot check the weather."], model=model))
        calls = [{"name": "get_weather", "arguments": {"city": "Paris"}}]
        return sse_response(tool_call_chunks(calls, model=model))  # even after the result

    return respond


def test_tool_round_trip_tells_text_answers_from_repeated_calls(
    mock_upstream: MockUpstream,
) -> None:
    mock_upstream.responder = _tool_upstream(answers_in_text=True)
    out = doctor(base_env(mock_upstream)).output
    failed = row(out, "FAIL", "tool round trip")
    assert "answered in text" in failed and "instead of calling get_weather" in failed
    assert "--jinja" in out

    mock_upstream.responder = _tool_upstream(answers_in_text=False)
    out = doctor(base_env(mock_upstream)).output
    failed = row(out, "FAIL", "tool round trip")
    assert "keeps calling (get_weather) after the tool_result" in failed
    assert "does not take in the tool result" in out
    assert "answered in text" not in out
