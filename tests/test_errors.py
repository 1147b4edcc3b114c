"""Upstream (OpenAI-style) errors → Anthropic errors (protocol.md A.13, B.6, C.*, E.8, F.8–F.9)."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest

from claude_code_proxy.translate.errors import (
    ParameterFix,
    ProxyError,
    context_overflow_message,
    embedded_error,
    error_body,
    error_status,
    map_upstream_error,
    parameter_fix,
    retry_after_seconds,
    upstream_error_message,
)
from sse_validator import validate_anthropic_error

OVERFLOW_RE = re.compile(r"prompt is too long: (\d+) tokens > (\d+) maximum")


def openai_error(
    message: str, *, type_: str = "invalid_request_error", code: Any = None, param: Any = None
) -> bytes:
    return json.dumps(
        {"error": {"message": message, "type": type_, "param": param, "code": code}}
    ).encode()


def check(error: ProxyError) -> dict[str, Any]:
    """The error body must be a valid Anthropic error whose type suits its HTTP status."""
    assert isinstance(error, ProxyError)
    return validate_anthropic_error(error.body(), status=error.status, error_type=error.error_type)


def overflow_numbers(message: str) -> tuple[int, int]:
    match = OVERFLOW_RE.search(message)
    assert match, f"not in Anthropic's overflow wording: {message!r}"
    return int(match.group(1)), int(match.group(2))


# ------------------------------------------------------------------------------------------
# status map (A.13, E.8)
# ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("upstream", "status", "error_type"),
    [
        (400, 400, "invalid_request_error"),
        (401, 401, "authentication_error"),
        (402, 402, "billing_error"),
        (403, 403, "permission_error"),
        (404, 404, "not_found_error"),
        (408, 504, "timeout_error"),
        (413, 413, "request_too_large"),
        (422, 400, "invalid_request_error"),
        (429, 429, "rate_limit_error"),
        (500, 500, "api_error"),
        (503, 529, "overloaded_error"),
        (504, 504, "timeout_error"),
        (529, 529, "overloaded_error"),
    ],
)
def test_status_map(upstream: int, status: int, error_type: str) -> None:
    error = map_upstream_error(upstream, openai_error("something went wrong"), {})
    assert (error.status, error.error_type) == (status, error_type)
    check(error)
    assert "something went wrong" in error.message


def test_502_is_a_server_error_the_sdk_retries() -> None:
    error = map_upstream_error(502, b"", {})
    assert error.status in (502, 529)
    assert error.error_type in ("api_error", "overloaded_error")
    check(error)


def test_400_keeps_the_upstream_message() -> None:
    message = "Invalid 'messages[3].content': expected a string, got null."
    error = map_upstream_error(400, openai_error(message, param="messages"), {})
    assert error.status == 400
    assert error.error_type == "invalid_request_error"
    assert message in error.message


def test_401_message_is_kept() -> None:
    error = map_upstream_error(
        401, openai_error("Incorrect API key provided: sk-abc***", code="invalid_api_key"), {}
    )
    assert error.error_type == "authentication_error"
    assert "Incorrect API key provided" in error.message


def test_404_model_not_found() -> None:
    body = openai_error(
        "The model `gpt-9` does not exist or you do not have access to it.",
        code="model_not_found",
    )
    error = map_upstream_error(404, body, {})
    assert (error.status, error.error_type) == (404, "not_found_error")
    assert "gpt-9" in error.message


@pytest.mark.parametrize("upstream", [405, 410, 418, 451])
def test_unknown_4xx_is_an_invalid_request(upstream: int) -> None:
    error = map_upstream_error(upstream, b"nope", {})
    assert 400 <= error.status < 500
    assert error.error_type == "invalid_request_error"
    check(error)


@pytest.mark.parametrize("upstream", [501, 505, 507, 520, 599])
def test_unknown_5xx_is_an_api_error(upstream: int) -> None:
    error = map_upstream_error(upstream, b"boom", {})
    assert error.status >= 500
    assert error.error_type == "api_error"
    check(error)


def test_error_body_shape() -> None:
    assert error_body("api_error", "x") == {
        "type": "error",
        "error": {"type": "api_error", "message": "x"},
    }
    error = map_upstream_error(500, openai_error("server exploded", type_="server_error"), {})
    body = error.body()
    assert body["type"] == "error"
    assert body["error"]["type"] == "api_error"
    assert "server exploded" in body["error"]["message"]
    json.dumps(body)  # serialisable


# ------------------------------------------------------------------------------------------
# retry-after (A.13 SDK retry policy, E.8)
# ------------------------------------------------------------------------------------------


def test_429_passes_retry_after_on() -> None:
    error = map_upstream_error(429, openai_error("Rate limit reached"), {"retry-after": "7"})
    assert (error.status, error.error_type) == (429, "rate_limit_error")
    assert error.headers.get("retry-after") == "7"


def test_retry_after_header_name_is_case_insensitive() -> None:
    error = map_upstream_error(429, openai_error("slow down"), {"Retry-After": "12"})
    assert error.headers.get("retry-after") == "12"


def test_429_computes_retry_after_from_openai_reset_headers() -> None:
    headers = {
        "x-ratelimit-limit-requests": "500",
        "x-ratelimit-remaining-requests": "0",
        "x-ratelimit-reset-requests": "6m0s",
    }
    error = map_upstream_error(429, openai_error("Rate limit reached for requests"), headers)
    assert error.headers.get("retry-after") == "360"


def test_explicit_retry_after_wins_over_reset_headers() -> None:
    headers = {"retry-after": "3", "x-ratelimit-reset-requests": "6m0s"}
    assert retry_after_seconds(headers) == 3


def test_429_without_any_hint_sends_no_retry_after() -> None:
    error = map_upstream_error(429, openai_error("Rate limit"), {})
    assert "retry-after" not in error.headers
    assert error.error_type == "rate_limit_error"


@pytest.mark.parametrize(
    ("headers", "seconds"),
    [
        ({"x-ratelimit-reset-requests": "1s"}, 1),
        ({"x-ratelimit-reset-requests": "20s"}, 20),
        ({"x-ratelimit-reset-tokens": "1m30s"}, 90),
        ({"x-ratelimit-reset-requests": "2s", "x-ratelimit-reset-tokens": "45s"}, 45),
        ({"x-ratelimit-reset-tokens": "1h"}, 3600),
        ({"retry-after-ms": "2000"}, 2),
        ({"retry-after": "30"}, 30),
    ],
)
def test_retry_after_seconds(headers: dict[str, str], seconds: int) -> None:
    assert retry_after_seconds(headers) == seconds


def test_sub_second_reset_rounds_up_to_at_least_one_second() -> None:
    value = retry_after_seconds({"x-ratelimit-reset-requests": "250ms"})
    assert value is not None
    assert value >= 1


def test_garbage_reset_header_is_ignored() -> None:
    assert retry_after_seconds({"x-ratelimit-reset-requests": "soon"}) is None
    assert retry_after_seconds({}) is None


def test_overloaded_503_passes_retry_after_on() -> None:
    error = map_upstream_error(503, b"Service Unavailable", {"retry-after": "5"})
    assert (error.status, error.error_type) == (529, "overloaded_error")
    assert error.headers.get("retry-after") == "5"


# ------------------------------------------------------------------------------------------
# body shapes (E.8)
# ------------------------------------------------------------------------------------------


def test_openai_nested_body() -> None:
    body = openai_error("bad thing", code="some_code", param="messages")
    message, code = upstream_error_message(body, 400)
    assert message == "bad thing"
    assert code == "some_code"


def test_flat_mistral_and_old_vllm_body() -> None:
    body = json.dumps(
        {
            "object": "error",
            "message": "Tool call id was call_0fypS1hVX but must be a-z, A-Z, 0-9, "
            "with a length of 9.",
            "type": "invalid_request_error",
            "param": None,
            "code": None,
        }
    ).encode()
    message, _ = upstream_error_message(body, 400)
    assert message.startswith("Tool call id was call_0fypS1hVX")
    error = map_upstream_error(400, body, {})
    assert "Tool call id was call_0fypS1hVX" in error.message
    assert error.error_type == "invalid_request_error"


def test_flat_old_vllm_body_with_integer_code() -> None:
    body = json.dumps(
        {
            "object": "error",
            "message": "The model `foo` does not exist.",
            "type": "NotFoundError",
            "param": None,
            "code": 404,
        }
    ).encode()
    error = map_upstream_error(404, body, {})
    assert "The model `foo` does not exist." in error.message
    assert error.error_type == "not_found_error"


def test_gemini_list_body() -> None:
    body = json.dumps(
        [
            {
                "error": {
                    "code": 400,
                    "message": "API key not valid. Please pass a valid API key.",
                    "status": "INVALID_ARGUMENT",
                }
            }
        ]
    ).encode()
    message, _ = upstream_error_message(body, 400)
    assert message == "API key not valid. Please pass a valid API key."


def test_gemini_object_body() -> None:
    body = json.dumps(
        {
            "error": {
                "code": 429,
                "message": "Resource has been exhausted",
                "status": "RESOURCE_EXHAUSTED",
            }
        }
    ).encode()
    error = map_upstream_error(429, body, {})
    assert "Resource has been exhausted" in error.message


def test_openrouter_body_with_integer_code() -> None:
    body = json.dumps(
        {"error": {"code": 402, "message": "Insufficient credits", "metadata": {}}}
    ).encode()
    error = map_upstream_error(402, body, {})
    assert (error.status, error.error_type) == (402, "billing_error")
    assert "Insufficient credits" in error.message


def test_ollama_string_error_body() -> None:
    message, _ = upstream_error_message(b'{"error":"model \\"llama9\\" not found"}', 404)
    assert message == 'model "llama9" not found'


def test_html_page_gives_its_title() -> None:
    page = (
        b"<!DOCTYPE html>\n<html>\n<head><title>502 Bad Gateway</title></head>\n"
        b"<body><center><h1>502 Bad Gateway</h1></center><hr><center>nginx</center>"
        b"</body>\n</html>\n"
    )
    message, _ = upstream_error_message(page, 502)
    assert message == "502 Bad Gateway"
    error = map_upstream_error(502, page, {})
    assert "502 Bad Gateway" in error.message
    assert "<" not in error.message


def test_html_without_title_is_stripped_of_tags() -> None:
    message, _ = upstream_error_message(b"<html><body><h1>Oops</h1><p>down</p></body></html>", 500)
    assert "<" not in message
    assert "Oops" in message
    assert "down" in message


def test_plain_text_body() -> None:
    message, _ = upstream_error_message(b"upstream connect error or disconnect/reset", 503)
    assert message == "upstream connect error or disconnect/reset"


@pytest.mark.parametrize("status", [500, 502, 503])
def test_empty_body_still_gives_a_message(status: int) -> None:
    message, code = upstream_error_message(b"", status)
    assert message
    assert str(status) in message
    assert code is None
    error = map_upstream_error(status, b"", {})
    check(error)


def test_huge_plain_text_body_is_truncated() -> None:
    message, _ = upstream_error_message(b"x" * 100_000, 500)
    assert 0 < len(message) <= 2000


def test_invalid_utf8_body_does_not_crash() -> None:
    message, _ = upstream_error_message(b"\xff\xfe broken \x80", 500)
    assert "broken" in message


# ------------------------------------------------------------------------------------------
# context overflow → Anthropic wording (A.13, E.8, F.9)
# ------------------------------------------------------------------------------------------


def test_openai_context_length_exceeded() -> None:
    body = openai_error(
        "This model's maximum context length is 128000 tokens. However, your messages "
        "resulted in 130532 tokens. Please reduce the length of the messages.",
        code="context_length_exceeded",
        param="messages",
    )
    error = map_upstream_error(400, body, {})
    assert (error.status, error.error_type) == (400, "invalid_request_error")
    assert overflow_numbers(error.message) == (130532, 128000)
    check(error)


def test_vllm_maximum_context_length() -> None:
    # The input (4000) fits; only input + max_tokens does not: A.13's second form, which
    # makes Claude Code lower max_tokens rather than compact a conversation that fits.
    body = openai_error(
        "This model's maximum context length is 4096 tokens. However, you requested 5000 "
        "tokens (4000 in the messages, 1000 in the completion). Please reduce the length of "
        "the messages or completion.",
        type_="BadRequestError",
        code=400,
    )
    error = map_upstream_error(400, body, {})
    assert (error.status, error.error_type) == (400, "invalid_request_error")
    assert error.message == (
        "input length and `max_tokens` exceed context limit: 4000 + 1000 > 4096, "
        "decrease input length or `max_tokens` and try again"
    )


def test_old_vllm_flat_body_overflow() -> None:
    body = json.dumps(
        {
            "object": "error",
            "message": "This model's maximum context length is 32768 tokens. However, you "
            "requested 40000 tokens in the messages, Please reduce the length of the messages.",
            "type": "BadRequestError",
            "param": None,
            "code": 400,
        }
    ).encode()
    error = map_upstream_error(400, body, {})
    assert overflow_numbers(error.message) == (40000, 32768)


def test_llama_cpp_exceeds_available_context_size_with_counts() -> None:
    # llama-server: ERROR_TYPE_EXCEED_CONTEXT_SIZE adds n_prompt_tokens / n_ctx to the error.
    body = json.dumps(
        {
            "error": {
                "code": 400,
                "message": "the request exceeds the available context size, try increasing it",
                "type": "exceed_context_size_error",
                "n_prompt_tokens": 5000,
                "n_ctx": 4096,
            }
        }
    ).encode()
    error = map_upstream_error(400, body, {})
    assert (error.status, error.error_type) == (400, "invalid_request_error")
    used, limit = overflow_numbers(error.message)
    assert (used, limit) == (5000, 4096)


def test_llama_cpp_request_tokens_exceed_context_size() -> None:
    # The wording of llama-server builds that put the counts in the message.
    body = json.dumps(
        {
            "error": {
                "code": 400,
                "message": "request (4476 tokens) exceeds the available context size "
                "(4096 tokens), try increasing it",
                "type": "exceed_context_size_error",
            }
        }
    ).encode()
    error = map_upstream_error(400, body, {})
    assert overflow_numbers(error.message) == (4476, 4096)


def test_ollama_input_length_exceeds_context_length() -> None:
    # Ollama's runner error carries no counts (errorInputTooLong); the rewrite must still use
    # Anthropic's "prompt is too long" wording so Claude Code compacts.
    body = openai_error("the input length exceeds the context length", type_="api_error")
    error = map_upstream_error(400, body, {})
    assert (error.status, error.error_type) == (400, "invalid_request_error")
    assert "prompt is too long" in error.message
    check(error)


def test_ollama_overflow_with_a_limit_in_the_message() -> None:
    body = openai_error("the input length exceeds the context length of 4096")
    error = map_upstream_error(400, body, {})
    assert "prompt is too long" in error.message


@pytest.mark.parametrize(
    ("message", "code", "used", "limit"),
    [
        (
            "This model's maximum context length is 8192 tokens. However, you requested "
            "9100 tokens",
            None,
            9100,
            8192,
        ),
        (
            "This model's maximum context length is 200000 tokens. However, your messages "
            "resulted in 215692 tokens.",
            "context_length_exceeded",
            215692,
            200000,
        ),
    ],
)
def test_context_overflow_message_wording(
    message: str, code: str | None, used: int, limit: int
) -> None:
    rewritten = context_overflow_message(message, code)
    assert rewritten is not None
    assert rewritten == f"prompt is too long: {used} tokens > {limit} maximum"


@pytest.mark.parametrize(
    ("message", "code"),
    [
        ("Invalid 'tools[0].function.name': string does not match pattern.", None),
        ("Rate limit reached for gpt-4o", "rate_limit_exceeded"),
        ("messages: field required", None),
    ],
)
def test_non_overflow_messages_are_not_rewritten(message: str, code: str | None) -> None:
    assert context_overflow_message(message, code) is None
    error = map_upstream_error(400, openai_error(message, code=code), {})
    assert "prompt is too long" not in error.message
    assert message in error.message


def test_overflow_numbers_are_ordered_used_over_limit() -> None:
    for message in (
        "This model's maximum context length is 4096 tokens. However, you requested 5000 tokens",
        "This model's maximum context length is 4096 tokens. However, your messages "
        "resulted in 5000 tokens.",
    ):
        rewritten = context_overflow_message(message, None)
        assert rewritten is not None
        used, limit = overflow_numbers(rewritten)
        assert used > limit


def test_overflow_on_413_is_a_400_invalid_request() -> None:
    body = openai_error(
        "This model's maximum context length is 4096 tokens. However, you requested 9000 tokens"
    )
    error = map_upstream_error(413, body, {})
    assert (error.status, error.error_type) == (400, "invalid_request_error")
    assert overflow_numbers(error.message) == (9000, 4096)


def test_plain_413_stays_request_too_large() -> None:
    error = map_upstream_error(413, b"Request Entity Too Large", {})
    assert (error.status, error.error_type) == (413, "request_too_large")


# ------------------------------------------------------------------------------------------
# rejected parameters: drop or rename and retry (E.8, B.2, F.13)
# ------------------------------------------------------------------------------------------


def test_max_tokens_rejected_means_rename_to_max_completion_tokens() -> None:
    body = openai_error(
        "Unsupported parameter: 'max_tokens' is not supported with this model. "
        "Use 'max_completion_tokens' instead.",
        code="unsupported_parameter",
        param="max_tokens",
    )
    fix = parameter_fix(400, body, {"model": "o3-mini", "messages": [], "max_tokens": 100})
    assert fix is not None
    assert fix.kind == "rename_max_tokens"


def test_unsupported_temperature_value_is_dropped() -> None:
    body = openai_error(
        "Unsupported value: 'temperature' does not support 0.7 with this model. "
        "Only the default (1) value is supported.",
        code="unsupported_value",
        param="temperature",
    )
    payload = {"model": "gpt-5", "messages": [], "max_completion_tokens": 100, "temperature": 0.7}
    assert parameter_fix(400, body, payload) == ParameterFix("drop", "temperature")


def test_stop_not_supported_is_dropped() -> None:
    body = openai_error(
        "Unsupported parameter: 'stop' is not supported with this model.",
        code="unsupported_parameter",
        param="stop",
    )
    payload = {"model": "o3", "messages": [], "stop": ["x"]}
    assert parameter_fix(400, body, payload) == ParameterFix("drop", "stop")


def test_parameter_fix_never_touches_the_conversation() -> None:
    body = openai_error("Invalid value for 'messages'", param="messages")
    payload = {"model": "gpt-4o", "messages": [{"role": "user", "content": "x"}]}
    assert parameter_fix(400, body, payload) is None


def test_parameter_fix_only_for_client_errors() -> None:
    body = openai_error("'temperature' is not supported", param="temperature")
    assert parameter_fix(500, body, {"temperature": 0.5}) is None


# ------------------------------------------------------------------------------------------
# overflow wording: input + max_tokens, "about N", no numbers, false positives (A.13)
# ------------------------------------------------------------------------------------------

SPLIT_FORM = (
    "input length and `max_tokens` exceed context limit: {} + {} > {}, "
    "decrease input length or `max_tokens` and try again"
)


@pytest.mark.parametrize(
    ("message", "expected"),
    [
        (
            "This model's maximum context length is 131072 tokens. However, you requested "
            "132000 tokens (100000 in the messages, 32000 in the completion). Please reduce "
            "the length of the messages or completion.",
            SPLIT_FORM.format(100000, 32000, 131072),
        ),
        (
            "This model's maximum context length is 131072 tokens. However, you requested "
            "140000 tokens (135000 in the messages, 5000 in the completion).",
            "prompt is too long: 135000 tokens > 131072 maximum",
        ),
        (
            "This model's maximum context length is 8192 tokens. However, you requested 9000 "
            "tokens (5000 in the messages, 1000 in the functions, and 3000 in the completion).",
            SPLIT_FORM.format(6000, 3000, 8192),
        ),
        (
            "This endpoint's maximum context length is 163840 tokens. However, you requested "
            "about 170000 tokens (150000 of text input, 20000 in the output). Please reduce "
            'the length of either one, or use the "middle-out" transform.',
            SPLIT_FORM.format(150000, 20000, 163840),
        ),
        (
            "This endpoint's maximum context length is 163840 tokens. However, you requested "
            "about 170000 tokens.",
            "prompt is too long: 170000 tokens > 163840 maximum",
        ),
    ],
)
def test_overflow_that_splits_input_and_completion(message: str, expected: str) -> None:
    error = map_upstream_error(400, openai_error(message), {})
    assert (error.status, error.error_type, error.message) == (
        400,
        "invalid_request_error",
        expected,
    )
    check(error)


@pytest.mark.parametrize(
    "message",
    [
        "Your input exceeds the context window of this model. Please adjust your input and "
        "try again.",
        "input length exceeds maximum context length",
        "the request exceeds the available context size, try increasing it",
    ],
)
def test_overflow_without_numbers_keeps_the_prompt_is_too_long_prefix(message: str) -> None:
    error = map_upstream_error(400, openai_error(message), {})
    assert error.message.startswith("prompt is too long")
    assert message in error.message


@pytest.mark.parametrize(
    "message",
    [
        "Invalid value for 'max_tokens': must be less than the context length",
        "max_tokens must not exceed 8192",
        "The context window parameter is not supported",
    ],
)
def test_messages_that_only_mention_the_context_are_not_overflows(message: str) -> None:
    assert context_overflow_message(message, None) is None
    error = map_upstream_error(400, openai_error(message), {})
    assert error.message == f"upstream error (400): {message}"


# ------------------------------------------------------------------------------------------
# errors inside a 2xx body or stream chunk (OpenRouter, vLLM)
# ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("error", "status", "error_type"),
    [
        ({"code": 429, "message": "Rate limit exceeded"}, 429, "rate_limit_error"),
        ({"code": "429", "message": "Rate limit exceeded"}, 429, "rate_limit_error"),
        ({"code": "rate_limit_exceeded", "message": "slow"}, 429, "rate_limit_error"),
        ({"code": 502, "message": "Provider returned error"}, 502, "api_error"),
        ({"code": 503, "message": "No provider"}, 529, "overloaded_error"),
        ({"code": 401, "message": "User not found."}, 401, "authentication_error"),
        ({"code": 402, "message": "Insufficient credits"}, 402, "billing_error"),
        (
            {"code": 400, "status": "INVALID_ARGUMENT", "message": "bad"},
            400,
            "invalid_request_error",
        ),
        ({"status": "UNAVAILABLE", "message": "try later"}, 529, "overloaded_error"),
        ({"type": "server_error", "message": "boom"}, 500, "api_error"),
        ({"code": 529, "message": "busy"}, 529, "overloaded_error"),
        ({"code": "503", "message": "busy"}, 529, "overloaded_error"),
        ({"code": "overloaded", "message": "Model is overloaded"}, 529, "overloaded_error"),
        ({"type": "overloaded_error", "message": "Overloaded"}, 529, "overloaded_error"),
        ({"code": 500, "type": "server_overloaded", "message": "busy"}, 529, "overloaded_error"),
        ({"code": "model_overloaded", "message": "later"}, 529, "overloaded_error"),
        ({"code": -32000, "message": "odd code"}, 502, "api_error"),
        ({"message": "no code"}, 502, "api_error"),
        ("plain string", 502, "api_error"),
    ],
)
def test_embedded_errors_map_by_their_code(error: Any, status: int, error_type: str) -> None:
    mapped = embedded_error(error)
    assert (mapped.status, mapped.error_type) == (status, error_type)
    message = error["message"] if isinstance(error, dict) else error
    assert message in mapped.message
    check(mapped)


def test_embedded_context_overflow_is_reworded() -> None:
    mapped = embedded_error(
        {
            "code": 400,
            "message": "This model's maximum context length is 4096 tokens. However, your "
            "messages resulted in 5000 tokens.",
        }
    )
    assert (mapped.status, mapped.message) == (
        400,
        "prompt is too long: 5000 tokens > 4096 maximum",
    )


def test_error_status_reads_numbers_and_names() -> None:
    assert error_status({"code": 429}) == 429
    assert error_status({"code": "503"}) == 503
    assert error_status({"status": "RESOURCE_EXHAUSTED"}) == 429
    assert error_status({"code": True}) is None
    assert error_status({"code": 200}) is None
    assert error_status("429") is None
