"""Self-healing through the running proxy: a 400 naming one parameter is fixed, retried once and
remembered for that model; context overflows read like Anthropic's so Claude Code compacts.

Each test scripts the upstream's real error body (OpenAI, Azure, vLLM, Ollama, llama.cpp
wording), then checks what the mock recorded: the rejected request, exactly one corrected
retry, and that the NEXT request for the same model goes out corrected at once.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

import httpx
import pytest

from mock_upstream import (
    MockUpstream,
    error_response,
    json_response,
    make_usage,
    sse_response,
    text_chunks,
)
from sse_validator import (
    ValidatedStream,
    validate_anthropic_error,
    validate_anthropic_message,
    validate_anthropic_stream,
)

if TYPE_CHECKING:
    from conftest import ProxyFactory, ProxyHandle

TIMEOUT = httpx.Timeout(20.0, connect=5.0)
HEADERS = {"x-api-key": "sk-ant-client-0001", "anthropic-version": "2023-06-01"}
MODEL = "gpt-4o-custom"  # matches no built-in model rule: only learning can change it
OVERFLOW_RE = re.compile(r"^prompt is too long: (\d+) tokens > (\d+) maximum$")
# A.13's second form: the prompt fits, the prompt plus max_tokens does not.
SPLIT_OVERFLOW_RE = re.compile(
    r"^input length and `max_tokens` exceed context limit: (\d+) \+ (\d+) > (\d+), "
    r"decrease input length or `max_tokens` and try again$"
)

MAX_TOKENS_UNSUPPORTED = error_response(
    400,
    "Unsupported parameter: 'max_tokens' is not supported with this model. "
    "Use 'max_completion_tokens' instead.",
    code="unsupported_parameter",
    param="max_tokens",
)
TEMPERATURE_UNSUPPORTED = error_response(
    400,
    "Unsupported value: 'temperature' does not support 0.7 with this model. "
    "Only the default (1) value is supported.",
    code="unsupported_value",
    param="temperature",
)
TOP_P_UNSUPPORTED = error_response(
    400,
    "Unsupported parameter: 'top_p' is not supported with this model.",
    code="unsupported_parameter",
    param="top_p",
)
STREAM_OPTIONS_UNRECOGNIZED = error_response(
    400, "Unrecognized request argument supplied: stream_options", code=None, param=None
)
MAX_TOKENS_TOO_LARGE = error_response(
    400,
    "max_tokens is too large: 128000. This model supports at most 16384 completion tokens, "
    "whereas you provided 128000.",
    code="invalid_value",
    param="max_tokens",
)


def body(*, stream: bool = True, max_tokens: int = 4096, **extra: Any) -> dict[str, Any]:
    out: dict[str, Any] = {
        "model": "claude-sonnet-4-5",
        "max_tokens": max_tokens,
        "messages": [{"role": "user", "content": "Say hello"}],
        **extra,
    }
    if stream:
        out["stream"] = True
    return out


def post(proxy: ProxyHandle, payload: dict[str, Any]) -> httpx.Response:
    return httpx.post(proxy.url("/v1/messages"), json=payload, headers=HEADERS, timeout=TIMEOUT)


def ok_stream(resp: httpx.Response) -> ValidatedStream:
    assert resp.status_code == 200, resp.text
    stream = validate_anthropic_stream(resp.content, expect_error=False)
    assert stream.completed and stream.text == "Hello from mock"
    return stream


def requests_json(mock: MockUpstream) -> list[dict[str, Any]]:
    return [r.json for r in mock.chat_requests]


def proxy_for(proxy_factory: ProxyFactory, model: str = MODEL, **env: str) -> ProxyHandle:
    return proxy_factory(BIG_MODEL=model, MIDDLE_MODEL=model, SMALL_MODEL="gpt-small", **env)


def learned(proxy: ProxyHandle, model: str = MODEL) -> dict[str, Any]:
    """What the proxy's capability table learned for `model` (any host)."""
    out: dict[str, Any] = {}
    for (_host, name), overrides in proxy.app.state.proxy.table.learned.items():
        if name == model:
            out.update(overrides)
    return out


# ------------------------------------------------------------------------------------------
# max_tokens → max_completion_tokens
# ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("stream", [True, False], ids=["stream", "json"])
def test_max_tokens_renamed_retried_once_and_remembered(
    proxy_factory: ProxyFactory, mock_upstream: MockUpstream, stream: bool
) -> None:
    proxy = proxy_for(proxy_factory)
    mock_upstream.enqueue(MAX_TOKENS_UNSUPPORTED)
    resp = post(proxy, body(stream=stream))
    if stream:
        ok_stream(resp)
    else:
        assert resp.status_code == 200, resp.text
        validate_anthropic_message(resp.content)
    first, retry = requests_json(mock_upstream)
    assert first["max_tokens"] == 4096 and "max_completion_tokens" not in first
    assert retry["max_completion_tokens"] == 4096 and "max_tokens" not in retry
    assert {k: v for k, v in retry.items() if k != "max_completion_tokens"} == {
        k: v for k, v in first.items() if k != "max_tokens"
    }  # nothing else changed
    assert learned(proxy)["max_tokens_field"] == "max_completion_tokens"

    # Remembered: the next request for this model is right the first time.
    ok_or_message = post(proxy, body(stream=stream, max_tokens=1000))
    assert ok_or_message.status_code == 200, ok_or_message.text
    assert len(mock_upstream.chat_requests) == 3
    third = requests_json(mock_upstream)[-1]
    assert third["max_completion_tokens"] == 1000 and "max_tokens" not in third


def test_learning_is_per_model(proxy_factory: ProxyFactory, mock_upstream: MockUpstream) -> None:
    proxy = proxy_factory(BIG_MODEL=MODEL, MIDDLE_MODEL="gpt-4o-other")
    mock_upstream.enqueue(MAX_TOKENS_UNSUPPORTED)
    ok_stream(post(proxy, body(model="claude-opus-4-1")))  # → BIG_MODEL
    ok_stream(post(proxy, body(model="claude-sonnet-4-5")))  # → MIDDLE_MODEL
    *_, other = requests_json(mock_upstream)
    assert other["model"] == "gpt-4o-other"
    assert other["max_tokens"] == 4096 and "max_completion_tokens" not in other


# ------------------------------------------------------------------------------------------
# unsupported sampling values
# ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("error", "param"),
    [(TEMPERATURE_UNSUPPORTED, "temperature"), (TOP_P_UNSUPPORTED, "top_p")],
)
def test_unsupported_sampling_param_dropped_and_remembered(
    proxy_factory: ProxyFactory, mock_upstream: MockUpstream, error: Any, param: str
) -> None:
    proxy = proxy_for(proxy_factory)
    mock_upstream.enqueue(error)
    ok_stream(post(proxy, body(temperature=0.7, top_p=0.9)))
    first, retry = requests_json(mock_upstream)
    assert param in first and param not in retry
    other = "top_p" if param == "temperature" else "temperature"
    assert retry[other] == first[other]  # only the named parameter goes
    assert param in learned(proxy)["drop_params"]

    ok_stream(post(proxy, body(temperature=0.7, top_p=0.9)))
    assert len(mock_upstream.chat_requests) == 3
    third = requests_json(mock_upstream)[-1]
    assert param not in third and third[other] == first[other]


@pytest.mark.parametrize(
    "message",
    [
        "This response_format type is unavailable now",
        "Invalid parameter: 'response_format' of type 'json_schema' is not supported with "
        "this model.",
    ],
)
def test_structured_output_rejected_is_dropped_and_remembered(
    proxy_factory: ProxyFactory, mock_upstream: MockUpstream, message: str
) -> None:
    """Claude Code's title request asks for json_schema output; not every server has it."""
    proxy = proxy_for(proxy_factory)
    mock_upstream.enqueue(error_response(400, message))
    schema = {
        "type": "object",
        "properties": {"title": {"type": "string"}},
        "required": ["title"],
        "additionalProperties": False,
    }
    titled = body(output_config={"format": {"type": "json_schema", "schema": schema}})
    ok_stream(post(proxy, titled))
    first, retry = requests_json(mock_upstream)
    assert first["response_format"]["type"] == "json_schema"
    assert "response_format" not in retry
    assert "response_format" in learned(proxy)["drop_params"]
    ok_stream(post(proxy, titled))
    assert "response_format" not in requests_json(mock_upstream)[-1]
    assert len(mock_upstream.chat_requests) == 3


def test_two_different_rejections_are_each_fixed_once(
    proxy_factory: ProxyFactory, mock_upstream: MockUpstream
) -> None:
    """A reasoning model unknown to the table: max_tokens first, then temperature."""
    proxy = proxy_for(proxy_factory)
    mock_upstream.enqueue(MAX_TOKENS_UNSUPPORTED, TEMPERATURE_UNSUPPORTED)
    ok_stream(post(proxy, body(temperature=0.7)))
    sent = requests_json(mock_upstream)
    assert len(sent) == 3
    assert "max_completion_tokens" in sent[2] and "temperature" not in sent[2]
    ok_stream(post(proxy, body(temperature=0.7)))
    fourth = requests_json(mock_upstream)[-1]
    assert len(mock_upstream.chat_requests) == 4
    assert "max_completion_tokens" in fourth and "temperature" not in fourth


# ------------------------------------------------------------------------------------------
# stream_options rejected (old Azure api-versions)
# ------------------------------------------------------------------------------------------


def test_stream_options_rejected_retried_without_and_remembered(
    proxy_factory: ProxyFactory, mock_upstream: MockUpstream
) -> None:
    path = f"/openai/deployments/{MODEL}/chat/completions"
    proxy = proxy_for(
        proxy_factory, OPENAI_BASE_URL=mock_upstream.origin, AZURE_API_VERSION="2023-05-15"
    )

    def no_usage_stream(_request: Any) -> Any:
        # An old api-version streams no usage at all.
        return sse_response(text_chunks(["Hello", " from", " mock"], model="gpt-4o", usage=None))

    mock_upstream.enqueue(STREAM_OPTIONS_UNRECOGNIZED, no_usage_stream, no_usage_stream, path=path)
    stream = ok_stream(post(proxy, body()))
    first, retry = (r.json for r in mock_upstream.requests)
    assert first["stream_options"] == {"include_usage": True}
    assert "stream_options" not in retry and retry["stream"] is True
    assert learned(proxy)["include_usage"] is False
    # Usage is still reported (estimated): message_delta carries non-negative counts.
    assert stream.usage["output_tokens"] >= 1
    assert stream.usage["input_tokens"] >= 1

    # Remembered, and the stream is not held waiting for a usage chunk that never comes.
    stream = ok_stream(post(proxy, body()))
    assert len(mock_upstream.requests) == 3
    assert "stream_options" not in mock_upstream.requests[-1].json
    assert stream.stop_reason == "end_turn"


# ------------------------------------------------------------------------------------------
# max_tokens above the model's limit
# ------------------------------------------------------------------------------------------


def test_max_tokens_too_large_retried_with_the_stated_limit_and_remembered(
    proxy_factory: ProxyFactory, mock_upstream: MockUpstream
) -> None:
    proxy = proxy_for(proxy_factory)
    mock_upstream.enqueue(MAX_TOKENS_TOO_LARGE)
    ok_stream(post(proxy, body(max_tokens=128000)))
    first, retry = requests_json(mock_upstream)
    assert first["max_tokens"] == 128000
    assert retry["max_tokens"] == 16384
    assert learned(proxy)["max_output_tokens"] == 16384

    ok_stream(post(proxy, body(max_tokens=128000)))
    assert len(mock_upstream.chat_requests) == 3
    assert requests_json(mock_upstream)[-1]["max_tokens"] == 16384
    # A smaller request is left alone.
    ok_stream(post(proxy, body(max_tokens=1000)))
    assert requests_json(mock_upstream)[-1]["max_tokens"] == 1000


def test_max_completion_tokens_too_large_keeps_the_field(
    proxy_factory: ProxyFactory, mock_upstream: MockUpstream
) -> None:
    proxy = proxy_for(proxy_factory, model="o3-mini")
    mock_upstream.enqueue(
        error_response(
            400,
            "max_completion_tokens is too large: 200000. This model supports at most 100000 "
            "completion tokens, whereas you provided 200000.",
            code="invalid_value",
            param="max_completion_tokens",
        )
    )
    ok_stream(post(proxy, body(max_tokens=200000)))
    _, retry = requests_json(mock_upstream)
    assert retry["max_completion_tokens"] == 100000 and "max_tokens" not in retry


def test_vllm_max_tokens_over_the_remaining_context(
    proxy_factory: ProxyFactory, mock_upstream: MockUpstream
) -> None:
    """vLLM's 400 when input + max_tokens exceed the window although the input alone fits.

    Telling Claude Code "prompt is too long" would make it compact a prompt that fits; the
    proxy should either retry with the room that is left (32768 - 30000 = 2768) or say what
    Anthropic says in this case (`input length and max_tokens exceed context limit`).
    """
    proxy = proxy_for(proxy_factory, model="Qwen/Qwen3-32B")
    mock_upstream.enqueue(
        error_response(
            400,
            "'max_tokens' or 'max_completion_tokens' is too large: 4096. This model's maximum "
            "context length is 32768 tokens and your request has 30000 input tokens "
            "(4096 > 32768 - 30000).",
            "BadRequestError",
            code=None,
        )
    )
    resp = post(proxy, body(max_tokens=4096))
    if resp.status_code == 200:
        ok_stream(resp)
        assert requests_json(mock_upstream)[-1]["max_tokens"] <= 2768
        return
    err = validate_anthropic_error(resp.content, status=400, error_type="invalid_request_error")
    assert re.search(r"input length and `?max_tokens`? exceed context limit", err["message"]), err[
        "message"
    ]


# ------------------------------------------------------------------------------------------
# what is NOT retried
# ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "error",
    [
        error_response(400, "We could not parse the JSON body of your request.", code=None),
        error_response(
            400,
            "Invalid 'messages[1].content': string too long. Expected a string with maximum "
            "length 10485760, but got a string with length 10485761 instead.",
            code="string_above_max_length",
            param="messages[1].content",
        ),
        # Names a parameter, but one the proxy must never drop.
        error_response(
            400,
            "Unsupported parameter: 'tools' is not supported with this model.",
            code="unsupported_parameter",
            param="tools",
        ),
        # Names a droppable parameter the request does not even carry.
        error_response(
            400,
            "Unsupported parameter: 'parallel_tool_calls' is not supported with this model.",
            code="unsupported_parameter",
            param="parallel_tool_calls",
        ),
    ],
    ids=["no-param", "messages", "tools", "absent-param"],
)
def test_400_without_a_fixable_parameter_is_not_retried(
    proxy_factory: ProxyFactory, mock_upstream: MockUpstream, error: Any
) -> None:
    proxy = proxy_for(proxy_factory)
    mock_upstream.enqueue(error)
    resp = post(proxy, body(tools=[{"name": "t", "input_schema": {"type": "object"}}]))
    assert resp.status_code == 400, resp.text
    validate_anthropic_error(resp.content, status=400, error_type="invalid_request_error")
    assert len(mock_upstream.chat_requests) == 1
    assert learned(proxy) == {}


@pytest.mark.parametrize(
    "error",
    [MAX_TOKENS_UNSUPPORTED, TEMPERATURE_UNSUPPORTED, STREAM_OPTIONS_UNRECOGNIZED],
    ids=["max_tokens", "temperature", "stream_options"],
)
def test_the_same_fix_is_tried_only_once(
    proxy_factory: ProxyFactory, mock_upstream: MockUpstream, error: Any
) -> None:
    """If the corrected retry fails the same way, the client gets the mapped error."""
    proxy = proxy_for(proxy_factory)
    mock_upstream.enqueue(error, error, error)
    resp = post(proxy, body(temperature=0.7))
    assert resp.status_code == 400, resp.text
    err = validate_anthropic_error(resp.content, status=400, error_type="invalid_request_error")
    assert len(mock_upstream.chat_requests) == 2
    assert error.body["error"]["message"] in err["message"]


def test_retry_failing_differently_reports_that_error(
    proxy_factory: ProxyFactory, mock_upstream: MockUpstream
) -> None:
    proxy = proxy_for(proxy_factory)
    mock_upstream.enqueue(
        MAX_TOKENS_UNSUPPORTED,
        error_response(401, "Incorrect API key provided.", code="invalid_api_key"),
    )
    resp = post(proxy, body())
    assert resp.status_code == 401, resp.text
    validate_anthropic_error(resp.content, status=401, error_type="authentication_error")
    assert len(mock_upstream.chat_requests) == 2


# ------------------------------------------------------------------------------------------
# context overflow → Anthropic's wording
# ------------------------------------------------------------------------------------------

OVERFLOWS = [
    pytest.param(
        error_response(
            400,
            "This model's maximum context length is 128000 tokens. However, your messages "
            "resulted in 130532 tokens. Please reduce the length of the messages.",
            code="context_length_exceeded",
            param="messages",
        ),
        (130532, 128000),
        id="openai",
    ),
    pytest.param(
        error_response(
            400,
            "This model's maximum context length is 32768 tokens. However, you requested 33792 "
            "tokens (31744 in the messages, 2048 in the completion). Please reduce the length "
            "of the messages or completion.",
            "BadRequestError",
            code=None,
        ),
        (31744, 2048, 32768),
        id="vllm-old",
    ),
    pytest.param(
        error_response(
            400,
            "This model's maximum context length is 32768 tokens. However, your request has "
            "40000 input tokens. Please reduce the length of the input messages.",
            "BadRequestError",
            code=None,
        ),
        (40000, 32768),
        id="vllm",
    ),
    pytest.param(
        json_response(
            {
                "object": "error",
                "message": "This model's maximum context length is 8192 tokens. However, you "
                "requested 9000 tokens (8000 in the messages, 1000 in the completion). Please "
                "reduce the length of the messages or completion.",
                "type": "BadRequestError",
                "param": None,
                "code": 400,
            },
            400,
        ),
        (8000, 1000, 8192),
        id="vllm-flat",
    ),
    pytest.param(
        error_response(400, "prompt too long; exceeded max context length by 4021 tokens"),
        None,  # Ollama states only the excess
        id="ollama",
    ),
    pytest.param(
        json_response(
            {
                "error": {
                    "code": 400,
                    "message": "request (13919 tokens) exceeds the available context size "
                    "(4096 tokens), try increasing it",
                    "type": "exceed_context_size_error",
                    "n_prompt_tokens": 13919,
                    "n_ctx": 4096,
                }
            },
            400,
        ),
        (13919, 4096),
        id="llama.cpp",
    ),
    pytest.param(
        json_response(
            {
                "error": {
                    "code": 400,
                    "message": "the request exceeds the available context size, try increasing it",
                    "type": "exceed_context_size_error",
                    "n_prompt_tokens": 5000,
                    "n_ctx": 4096,
                }
            },
            400,
        ),
        (5000, 4096),
        id="llama.cpp-old",
    ),
]


@pytest.mark.parametrize("stream", [True, False], ids=["stream", "json"])
@pytest.mark.parametrize(("error", "numbers"), OVERFLOWS)
def test_context_overflow_reads_like_anthropic(
    proxy_factory: ProxyFactory,
    mock_upstream: MockUpstream,
    error: Any,
    numbers: tuple[int, ...] | None,
    stream: bool,
) -> None:
    proxy = proxy_for(proxy_factory)
    mock_upstream.enqueue(error)
    resp = post(proxy, body(stream=stream))
    assert resp.status_code == 400, resp.text
    assert resp.headers["content-type"].startswith("application/json")
    err = validate_anthropic_error(resp.content, status=400, error_type="invalid_request_error")
    if numbers is not None and len(numbers) == 3:
        split = SPLIT_OVERFLOW_RE.match(err["message"])
        assert split, f"Claude Code cannot parse this overflow message: {err['message']!r}"
        prompt, completion, window = map(int, split.groups())
        assert (prompt, completion, window) == numbers
        assert prompt < window < prompt + completion
        assert len(mock_upstream.chat_requests) == 1
        return
    match = OVERFLOW_RE.match(err["message"])
    assert match, f"Claude Code cannot parse this overflow message: {err['message']!r}"
    used, limit = int(match.group(1)), int(match.group(2))
    assert used > limit
    if numbers is not None:
        assert (used, limit) == numbers
    else:
        assert used - limit == 4021  # consistent with the excess Ollama reported
    assert len(mock_upstream.chat_requests) == 1  # an overflow is never "fixed" by a retry
    assert learned(proxy) == {}


def test_a_successful_reply_after_healing_reports_usage(
    proxy_factory: ProxyFactory, mock_upstream: MockUpstream
) -> None:
    proxy = proxy_for(proxy_factory)
    mock_upstream.enqueue(
        MAX_TOKENS_UNSUPPORTED,
        sse_response(text_chunks(["Hello", " from", " mock"], usage=make_usage(50, 3, cached=20))),
    )
    stream = ok_stream(post(proxy, body()))
    assert stream.usage["input_tokens"] == 30
    assert stream.usage["cache_read_input_tokens"] == 20
    assert stream.usage["output_tokens"] == 3
