"""The official ``anthropic`` Python SDK against the running proxy.

The SDK is the strictest practical client: its stream accumulator rejects out-of-order events,
re-parses tool input on every delta, and maps HTTP statuses to exception classes.  Retries are
off (``max_retries=0``) so that every upstream script is consumed exactly as written.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from typing import TYPE_CHECKING, Any

import anthropic
import pytest

from mock_upstream import (
    MockUpstream,
    completion,
    error_response,
    json_response,
    reasoning_chunks,
    sse_response,
    text_chunks,
    tool_call_chunks,
    usage_chunk,
)

if TYPE_CHECKING:
    from conftest import ProxyFactory, ProxyHandle

MODEL = "claude-sonnet-4-6"
SDK_KEY = "sk-ant-sdk-test"
WEATHER_TOOL: dict[str, Any] = {
    "name": "get_weather",
    "description": "Current weather for a city.",
    "input_schema": {
        "type": "object",
        "properties": {"city": {"type": "string"}, "unit": {"type": "string"}},
        "required": ["city"],
    },
}
USER = [{"role": "user", "content": "Hello there"}]


@pytest.fixture(autouse=True)
def _no_ambient_credentials(monkeypatch: pytest.MonkeyPatch) -> None:
    """The SDK falls back to these variables; tests pass credentials explicitly."""
    for name in ("ANTHROPIC_API_KEY", "ANTHROPIC_AUTH_TOKEN", "ANTHROPIC_BASE_URL"):
        monkeypatch.delenv(name, raising=False)


def make_client(proxy: ProxyHandle, **options: Any) -> anthropic.Anthropic:
    options.setdefault("api_key", SDK_KEY)
    return anthropic.Anthropic(base_url=proxy.base_url, max_retries=0, timeout=20.0, **options)


@pytest.fixture
def client(proxy: ProxyHandle) -> Iterator[anthropic.Anthropic]:
    with make_client(proxy) as sdk:
        yield sdk


@pytest.fixture
async def async_client(proxy: ProxyHandle) -> AsyncIterator[anthropic.AsyncAnthropic]:
    sdk = anthropic.AsyncAnthropic(
        base_url=proxy.base_url, api_key=SDK_KEY, max_retries=0, timeout=20.0
    )
    async with sdk:
        yield sdk


# ------------------------------------------------------------------------------------------
# messages
# ------------------------------------------------------------------------------------------


def test_create(client: anthropic.Anthropic, mock_upstream: MockUpstream) -> None:
    mock_upstream.enqueue(json_response(completion("Hi from upstream", usage=(120, 9, 100))))
    message = client.messages.create(model=MODEL, max_tokens=256, messages=USER)
    assert message.id.startswith("msg_")
    assert message.model == MODEL
    assert message.role == "assistant"
    assert message.stop_reason == "end_turn"
    assert len(message.content) == 1
    block = message.content[0]
    assert block.type == "text" and block.text == "Hi from upstream"
    assert message.usage.input_tokens == 20
    assert message.usage.cache_read_input_tokens == 100
    assert message.usage.output_tokens == 9
    assert mock_upstream.last_request.json["model"] == "gpt-middle"


def test_create_with_tool_call(client: anthropic.Anthropic, mock_upstream: MockUpstream) -> None:
    args = {"city": "Oslo", "unit": "celsius"}
    mock_upstream.enqueue(
        json_response(
            completion("Checking.", tool_calls=[{"name": "get_weather", "arguments": args}])
        )
    )
    message = client.messages.create(
        model=MODEL, max_tokens=256, messages=USER, tools=[WEATHER_TOOL]
    )
    assert message.stop_reason == "tool_use"
    assert [b.type for b in message.content] == ["text", "tool_use"]
    tool = message.content[1]
    assert tool.type == "tool_use"
    assert tool.name == "get_weather" and tool.input == args
    assert tool.id.startswith("toolu_")


def test_stream_text(client: anthropic.Anthropic, mock_upstream: MockUpstream) -> None:
    pieces = ["Streaming ", "through ", "the ", "proxy ", "→ ünïcødé"]
    mock_upstream.enqueue(sse_response(text_chunks(pieces, usage=(50, 11))))
    with client.messages.stream(model=MODEL, max_tokens=256, messages=USER) as stream:
        assert stream.request_id is not None and stream.request_id.startswith("req_")
        text = "".join(stream.text_stream)
        final = stream.get_final_message()
    assert text == "".join(pieces)
    assert final.model == MODEL
    assert final.stop_reason == "end_turn"
    assert final.content[0].type == "text" and final.content[0].text == text
    assert final.usage.output_tokens == 11
    assert final.usage.input_tokens == 50


def test_stream_get_final_message_only(
    client: anthropic.Anthropic, mock_upstream: MockUpstream
) -> None:
    with client.messages.stream(model="claude-haiku-4-5", max_tokens=64, messages=USER) as stream:
        final = stream.get_final_message()
    assert final.model == "claude-haiku-4-5"
    assert final.content[0].type == "text" and final.content[0].text == "Hello from mock"
    assert mock_upstream.last_request.json["model"] == "gpt-small"


def test_stream_tool_use(client: anthropic.Anthropic, mock_upstream: MockUpstream) -> None:
    args = {"city": "Zürich", "unit": "celsius"}
    mock_upstream.enqueue(
        sse_response(
            [
                *text_chunks(["Let me check."], finish_reason=None),
                *tool_call_chunks(
                    [{"id": "call_w1", "name": "get_weather", "arguments": args}],
                    role=False,
                    fragment_size=3,
                ),
                usage_chunk(80, 25),
            ]
        )
    )
    partials: list[str] = []
    snapshots: list[Any] = []
    with client.messages.stream(
        model=MODEL, max_tokens=256, messages=USER, tools=[WEATHER_TOOL]
    ) as stream:
        for event in stream:
            if event.type == "input_json":
                partials.append(event.partial_json)
                snapshots.append(event.snapshot)
        final = stream.get_final_message()
    assert len(partials) > 1, "arguments should arrive as several input_json events"
    assert snapshots[-1] == args
    assert final.stop_reason == "tool_use"
    tools = [b for b in final.content if b.type == "tool_use"]
    assert len(tools) == 1
    assert tools[0].name == "get_weather" and tools[0].input == args
    assert final.usage.output_tokens == 25


def test_stream_thinking(client: anthropic.Anthropic, mock_upstream: MockUpstream) -> None:
    mock_upstream.enqueue(
        sse_response(
            [
                *reasoning_chunks(["First, ", "consider the ", "question."]),
                *text_chunks(["Forty-two."], role=False, usage=(60, 30, 0, 20)),
            ]
        )
    )
    thinking_parts: list[str] = []
    signatures: list[str] = []
    with client.messages.stream(
        model=MODEL,
        max_tokens=4096,
        messages=USER,
        thinking={"type": "enabled", "budget_tokens": 2048},
    ) as stream:
        for event in stream:
            if event.type == "thinking":
                thinking_parts.append(event.thinking)
            elif event.type == "signature":
                signatures.append(event.signature)
        final = stream.get_final_message()
    assert "".join(thinking_parts) == "First, consider the question."
    assert len(signatures) == 1 and signatures[0]
    assert [b.type for b in final.content] == ["thinking", "text"]
    thinking = final.content[0]
    assert thinking.type == "thinking"
    assert thinking.thinking == "First, consider the question."
    assert thinking.signature == signatures[0]
    assert final.content[1].type == "text" and final.content[1].text == "Forty-two."
    assert "thinking" not in mock_upstream.last_request.json


def test_count_tokens(client: anthropic.Anthropic, mock_upstream: MockUpstream) -> None:
    small = client.messages.count_tokens(model=MODEL, messages=USER)
    large = client.messages.count_tokens(
        model=MODEL,
        system="You are helpful. " * 50,
        messages=[{"role": "user", "content": "Describe the weather. " * 100}],
        tools=[WEATHER_TOOL],
    )
    assert small.input_tokens > 0
    assert large.input_tokens > small.input_tokens
    assert mock_upstream.chat_requests == []


def test_beta_stream_uses_beta_query(
    client: anthropic.Anthropic, mock_upstream: MockUpstream
) -> None:
    # Older SDKs and Claude Code's JS SDK put ``?beta=true`` on beta calls; the Python SDK in use
    # here carries it only as an internal qualifier, so the test adds it the way those clients do.
    betas = ["fine-grained-tool-streaming-2025-05-14", "interleaved-thinking-2025-05-14"]
    args = {"city": "Lima"}
    mock_upstream.enqueue(
        sse_response(
            tool_call_chunks([{"name": "get_weather", "arguments": args}], fragment_size=2)
        )
    )
    with client.beta.messages.stream(
        model=MODEL,
        max_tokens=256,
        messages=USER,
        tools=[WEATHER_TOOL],
        betas=betas,
        extra_query={"beta": "true"},
    ) as stream:
        request = stream.response.request
        final = stream.get_final_message()
    assert request.url.path == "/v1/messages"
    assert request.url.params.get("beta") == "true"
    assert set(betas) <= {b.strip() for b in request.headers["anthropic-beta"].split(",")}
    assert final.stop_reason == "tool_use"
    tool = final.content[0]
    assert tool.type == "tool_use" and tool.input == args


def test_beta_stream_without_query(
    client: anthropic.Anthropic, mock_upstream: MockUpstream
) -> None:
    with client.beta.messages.stream(
        model=MODEL, max_tokens=64, messages=USER, betas=["context-management-2025-06-27"]
    ) as stream:
        text = "".join(stream.text_stream)
        final = stream.get_final_message()
    assert text == "Hello from mock"
    assert final.stop_reason == "end_turn"


def test_beta_count_tokens(client: anthropic.Anthropic) -> None:
    count = client.beta.messages.count_tokens(
        model=MODEL,
        messages=USER,
        betas=["token-counting-2024-11-01"],
        extra_query={"beta": "true"},
    )
    assert count.input_tokens > 0


def test_models(client: anthropic.Anthropic) -> None:
    ids = [model.id for model in client.models.list()]
    assert any(i.startswith("claude-") and "sonnet" in i for i in ids)
    assert {"gpt-big", "gpt-middle", "gpt-small"} <= set(ids)
    # The SDK's auto-pagination (after_id cursors) sees the same list with small pages.
    assert [model.id for model in client.models.list(limit=2)] == ids
    info = client.models.retrieve(ids[0])
    assert info.id == ids[0] and info.type == "model"
    with pytest.raises(anthropic.NotFoundError):
        client.models.retrieve("no-such-model")


# ------------------------------------------------------------------------------------------
# errors
# ------------------------------------------------------------------------------------------

SDK_ERRORS: list[tuple[int, str, type[anthropic.APIStatusError], int]] = [
    (400, "invalid_request_error", anthropic.BadRequestError, 400),
    (401, "invalid_api_key", anthropic.AuthenticationError, 401),
    (403, "permission_denied", anthropic.PermissionDeniedError, 403),
    (404, "model_not_found", anthropic.NotFoundError, 404),
    (429, "rate_limit_exceeded", anthropic.RateLimitError, 429),
    (500, "server_error", anthropic.InternalServerError, 500),
    (503, "server_error", anthropic.InternalServerError, 529),
]


def test_error_classes(proxy_factory: ProxyFactory, mock_upstream: MockUpstream) -> None:
    proxy = proxy_factory(MAX_RETRIES="0")
    with make_client(proxy) as client:
        for upstream_status, upstream_type, error_class, status in SDK_ERRORS:
            message = f"scripted upstream failure {upstream_status}"
            mock_upstream.enqueue(error_response(upstream_status, message, upstream_type))
            with pytest.raises(error_class) as caught:
                client.messages.create(model=MODEL, max_tokens=64, messages=USER)
            exc = caught.value
            assert exc.status_code == status, (upstream_status, exc)
            assert message in str(exc)
            assert isinstance(exc.body, dict) and exc.body["type"] == "error"
            assert exc.request_id is not None and exc.request_id.startswith("req_")
            if status == 529 and hasattr(anthropic, "OverloadedError"):
                assert isinstance(exc, anthropic.OverloadedError)
                assert exc.body["error"]["type"] == "overloaded_error"


def test_upstream_503_is_529_when_streaming(
    proxy_factory: ProxyFactory, mock_upstream: MockUpstream
) -> None:
    mock_upstream.enqueue(error_response(503, "Service overloaded", "server_error"))
    with (
        make_client(proxy_factory(MAX_RETRIES="0")) as client,
        pytest.raises(anthropic.APIStatusError) as caught,
        client.messages.stream(model=MODEL, max_tokens=64, messages=USER) as stream,
    ):
        stream.get_final_message()
    assert caught.value.status_code == 529
    assert "Service overloaded" in str(caught.value)
    assert isinstance(caught.value, anthropic.InternalServerError)


def test_stream_pre_stream_errors(client: anthropic.Anthropic, mock_upstream: MockUpstream) -> None:
    mock_upstream.enqueue(error_response(429, "Too many requests", "rate_limit_exceeded"))
    with (
        pytest.raises(anthropic.RateLimitError),
        client.messages.stream(model=MODEL, max_tokens=64, messages=USER) as stream,
    ):
        stream.get_final_message()
    mock_upstream.enqueue(error_response(400, "Invalid 'messages[0]'", "invalid_request_error"))
    with (
        pytest.raises(anthropic.BadRequestError) as caught,
        client.messages.stream(model=MODEL, max_tokens=64, messages=USER) as stream,
    ):
        stream.get_final_message()
    assert "Invalid 'messages[0]'" in str(caught.value)


def test_mid_stream_error_raises_while_iterating(
    client: anthropic.Anthropic, mock_upstream: MockUpstream
) -> None:
    mock_upstream.enqueue(
        sse_response(text_chunks(["Half ", "an ", "answer"], finish_reason=None), drop_after=3)
    )
    received: list[str] = []
    with (
        client.messages.stream(model=MODEL, max_tokens=256, messages=USER) as stream,
        pytest.raises(anthropic.APIStatusError) as caught,
    ):
        for text in stream.text_stream:
            received.append(text)
    assert "".join(received) == "Half an "
    body = caught.value.body
    assert isinstance(body, dict) and body["type"] == "error"
    assert body["error"]["type"] in ("api_error", "overloaded_error")


def test_mid_stream_upstream_error_chunk_raises(
    client: anthropic.Anthropic, mock_upstream: MockUpstream
) -> None:
    mock_upstream.enqueue(
        sse_response(
            [
                *text_chunks(["Start"], finish_reason=None),
                {"error": {"message": "model fell over", "type": "server_error"}},
            ]
        )
    )
    with (
        pytest.raises(anthropic.APIStatusError) as caught,
        client.messages.stream(model=MODEL, max_tokens=256, messages=USER) as stream,
    ):
        for _ in stream:
            pass
    assert "model fell over" in str(caught.value)


# ------------------------------------------------------------------------------------------
# authentication as the SDK sends it
# ------------------------------------------------------------------------------------------


def test_sdk_credentials_against_a_protected_proxy(
    proxy_factory: ProxyFactory, mock_upstream: MockUpstream
) -> None:
    proxy = proxy_factory(ANTHROPIC_API_KEY="proxy-secret")
    with make_client(proxy, api_key="proxy-secret") as client:  # x-api-key
        assert client.messages.create(model=MODEL, max_tokens=16, messages=USER).content
    with make_client(proxy, api_key=None, auth_token="proxy-secret") as client:  # Bearer
        assert client.messages.create(model=MODEL, max_tokens=16, messages=USER).content
    assert mock_upstream.last_request.headers["authorization"] == "Bearer sk-upstream-test"
    calls = len(mock_upstream.requests)
    with make_client(proxy, api_key="wrong") as client:
        with pytest.raises(anthropic.AuthenticationError):
            client.messages.create(model=MODEL, max_tokens=16, messages=USER)
        with pytest.raises(anthropic.AuthenticationError):
            client.models.list()
    assert len(mock_upstream.requests) == calls


# ------------------------------------------------------------------------------------------
# AsyncAnthropic
# ------------------------------------------------------------------------------------------


async def test_async_create_and_stream(
    async_client: anthropic.AsyncAnthropic, mock_upstream: MockUpstream
) -> None:
    message = await async_client.messages.create(model=MODEL, max_tokens=64, messages=USER)
    assert message.content[0].type == "text" and message.content[0].text == "Hello from mock"

    args = {"city": "Kyoto"}
    mock_upstream.enqueue(
        sse_response(
            [
                *text_chunks(["Sure."], finish_reason=None),
                *tool_call_chunks(
                    [{"name": "get_weather", "arguments": args}], role=False, fragment_size=4
                ),
                usage_chunk(10, 4),
            ]
        )
    )
    texts: list[str] = []
    async with async_client.messages.stream(
        model=MODEL, max_tokens=64, messages=USER, tools=[WEATHER_TOOL]
    ) as stream:
        async for event in stream:
            if event.type == "text":
                texts.append(event.text)
        final = await stream.get_final_message()
    assert "".join(texts) == "Sure."
    assert final.stop_reason == "tool_use"
    assert final.content[-1].type == "tool_use" and final.content[-1].input == args


async def test_async_errors(
    async_client: anthropic.AsyncAnthropic, mock_upstream: MockUpstream
) -> None:
    mock_upstream.enqueue(error_response(429, "slow down", "rate_limit_exceeded"))
    with pytest.raises(anthropic.RateLimitError):
        await async_client.messages.create(model=MODEL, max_tokens=64, messages=USER)

    mock_upstream.enqueue(sse_response(text_chunks(["a", "b"], finish_reason=None), drop_after=2))
    with pytest.raises(anthropic.APIStatusError):
        async with async_client.messages.stream(
            model=MODEL, max_tokens=64, messages=USER
        ) as stream:
            async for _ in stream.text_stream:
                pass


# ------------------------------------------------------------------------------------------
# web search (the proxy runs the server tool)
# ------------------------------------------------------------------------------------------

WEB_SEARCH = {"type": "web_search_20250305", "name": "web_search", "max_uses": 3}


@pytest.fixture
def search_proxy(proxy_factory: ProxyFactory) -> Iterator[ProxyHandle]:
    from mock_search import MockSearch

    with MockSearch() as searxng:
        yield proxy_factory(WEB_SEARCH_BACKEND="searxng", WEB_SEARCH_URL=searxng.origin)


def _search_then_answer(mock: MockUpstream, *, stream: bool) -> None:
    calls = [{"id": "c1", "name": "web_search", "arguments": {"query": "python 3.13"}}]
    if stream:
        mock.enqueue(
            sse_response(tool_call_chunks(calls, usage=(50, 5))),
            sse_response(text_chunks(["Free-threaded", " build."], usage=(90, 6))),
        )
    else:
        mock.enqueue(
            json_response(completion(None, tool_calls=calls)),
            json_response(completion("Free-threaded build.")),
        )


def _check_search_blocks(message: anthropic.types.Message) -> None:
    use, result, text = message.content
    assert isinstance(use, anthropic.types.ServerToolUseBlock)
    assert use.name == "web_search" and use.input == {"query": "python 3.13"}
    assert isinstance(result, anthropic.types.WebSearchToolResultBlock)
    assert result.tool_use_id == use.id
    assert isinstance(result.content, list)
    first = result.content[0]
    assert isinstance(first, anthropic.types.WebSearchResultBlock)
    assert first.url.startswith("https://docs.python.org/")
    assert first.page_age == "October 7, 2024"
    assert isinstance(text, anthropic.types.TextBlock)
    assert message.usage.server_tool_use is not None
    assert message.usage.server_tool_use.web_search_requests == 1


def test_web_search_blocks_parse_as_sdk_types(
    search_proxy: ProxyHandle, mock_upstream: MockUpstream
) -> None:
    _search_then_answer(mock_upstream, stream=False)
    with make_client(search_proxy) as sdk:
        message = sdk.messages.create(
            model=MODEL,
            max_tokens=256,
            messages=USER,
            tools=[WEB_SEARCH],  # type: ignore[list-item]
        )
    _check_search_blocks(message)


def test_web_search_stream_accumulates_into_sdk_types(
    search_proxy: ProxyHandle, mock_upstream: MockUpstream
) -> None:
    _search_then_answer(mock_upstream, stream=True)
    with (
        make_client(search_proxy) as sdk,
        sdk.messages.stream(
            model=MODEL,
            max_tokens=256,
            messages=USER,
            tools=[WEB_SEARCH],  # type: ignore[list-item]
        ) as stream,
    ):
        message = stream.get_final_message()
    _check_search_blocks(message)
    assert message.stop_reason == "end_turn"
