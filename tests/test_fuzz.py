"""Property tests: no request body or header set makes the proxy answer 500 or hang.

Hypothesis generates Anthropic request bodies — wrong types everywhere, missing fields, unknown
block types and roles, huge strings, deep nesting, non-object JSON, invalid UTF-8, truncated
JSON — and random headers.  They go through the real app, in-process over ASGI (the lifespan
opens the real upstream pool; the upstream is a :class:`MockUpstream` that answers normally) and,
for raw bytes on the wire, through a uvicorn-served proxy over a plain socket.

Property: the answer is 200 (a valid message, SSE stream or token count) or a 4xx whose body is
Anthropic-shaped — never a 500, never a hang — and ``/health`` stays 200 afterwards.  Every
example is counted; the last test prints the counts (the closing note quotes them).
"""

from __future__ import annotations

import asyncio
import base64
import json
import socket
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mock_upstream import MockUpstream
from sse_validator import (
    validate_anthropic_error,
    validate_anthropic_message,
    validate_anthropic_stream,
)

if TYPE_CHECKING:
    from conftest import ProxyFactory

MESSAGES = "/v1/messages"
COUNT_TOKENS = "/v1/messages/count_tokens"
PATHS = (MESSAGES, f"{MESSAGES}?beta=true", COUNT_TOKENS)
#: Upper bound for one request, far above what a healthy answer takes: exceeding it is a hang.
REQUEST_TIMEOUT = 20.0
BASE_ENV = {
    "BIG_MODEL": "gpt-big",
    "MIDDLE_MODEL": "gpt-middle",
    "SMALL_MODEL": "gpt-small",
    "REQUEST_TIMEOUT": "10",
    "LOG_LEVEL": "CRITICAL",
}
STATIC_ENV = {**BASE_ENV, "OPENAI_API_KEY": "sk-upstream-fuzz"}
DYNAMIC_ENV = dict(BASE_ENV)

#: Examples run per test, summed up by the final test.
CASES: Counter[str] = Counter()

_FUZZ_SETTINGS = settings(
    deadline=None,
    derandomize=True,
    database=None,
    print_blob=True,
    suppress_health_check=[
        HealthCheck.too_slow,
        HealthCheck.data_too_large,
        HealthCheck.large_base_example,
        HealthCheck.function_scoped_fixture,
    ],
)


def fuzz_settings(max_examples: int) -> settings:
    """Fixed, derandomized settings sized so that the whole file runs in well under 60 s."""
    return settings(_FUZZ_SETTINGS, max_examples=max_examples)


# ------------------------------------------------------------------------------------------
# The app in-process, on its own event loop
# ------------------------------------------------------------------------------------------


@dataclass
class Reply:
    """What the client saw."""

    status: int
    headers: dict[str, str]
    body: bytes

    @property
    def content_type(self) -> str:
        return self.headers.get("content-type", "")


class InProcessProxy:
    """``create_app(settings)`` inside its lifespan on a private loop, reached over ASGI.

    One loop thread for the whole module keeps the upstream pool warm across examples, as in a
    real process; requests are submitted from the (synchronous) Hypothesis test thread.
    """

    def __init__(self, env: dict[str, str]) -> None:
        self.env = env
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._client: httpx.AsyncClient | None = None
        self._stop: asyncio.Event | None = None
        self._serving: asyncio.Future[None] | None = None

    def start(self) -> InProcessProxy:
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self._start(), self._loop).result(timeout=30)
        return self

    async def _start(self) -> None:
        started = asyncio.get_running_loop().create_future()
        self._stop = asyncio.Event()
        self._serving = asyncio.ensure_future(self._serve(started))
        await asyncio.wait_for(started, 20)

    async def _serve(self, started: asyncio.Future[None]) -> None:
        from claude_code_proxy.app import create_app
        from claude_code_proxy.config import Settings

        app = create_app(Settings.from_env(self.env))
        transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
        async with (
            app.router.lifespan_context(app),
            httpx.AsyncClient(transport=transport, base_url="http://proxy.test") as client,
        ):
            self._client = client
            started.set_result(None)
            assert self._stop is not None
            await self._stop.wait()

    async def _request(
        self, method: str, path: str, content: bytes, headers: Sequence[tuple[bytes, bytes]]
    ) -> Reply:
        assert self._client is not None
        request = self._client.build_request(method, path, content=content, headers=list(headers))
        try:
            response = await asyncio.wait_for(self._client.send(request), REQUEST_TIMEOUT)
        except asyncio.TimeoutError:
            raise AssertionError(f"{method} {path} hung for more than {REQUEST_TIMEOUT}s") from None
        return Reply(response.status_code, dict(response.headers), response.content)

    def request(
        self,
        method: str,
        path: str,
        content: bytes = b"",
        headers: Sequence[tuple[bytes, bytes]] = (),
    ) -> Reply:
        """One request, bounded by :data:`REQUEST_TIMEOUT`."""
        future = asyncio.run_coroutine_threadsafe(
            self._request(method, path, content, headers), self._loop
        )
        return future.result(timeout=REQUEST_TIMEOUT + 10)

    def stop(self) -> None:
        async def shutdown() -> None:
            assert self._stop is not None and self._serving is not None
            self._stop.set()
            await asyncio.wait_for(self._serving, 10)

        try:
            asyncio.run_coroutine_threadsafe(shutdown(), self._loop).result(timeout=20)
        finally:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(10)
            if not self._thread.is_alive():
                self._loop.close()


@dataclass
class Apps:
    upstream: MockUpstream
    static: InProcessProxy
    dynamic: InProcessProxy


@pytest.fixture(scope="module")
def apps() -> Iterator[Apps]:
    """A static-key and a dynamic-key app in front of one normally answering upstream."""
    with MockUpstream() as upstream:
        static = InProcessProxy({**STATIC_ENV, "OPENAI_BASE_URL": upstream.base_url}).start()
        try:
            dynamic = InProcessProxy({**DYNAMIC_ENV, "OPENAI_BASE_URL": upstream.base_url}).start()
            try:
                yield Apps(upstream, static, dynamic)
            finally:
                dynamic.stop()
        finally:
            static.stop()


# ------------------------------------------------------------------------------------------
# The property
# ------------------------------------------------------------------------------------------


def _requested_stream(body: bytes) -> bool | None:
    try:
        parsed = json.loads(body)
    except (ValueError, RecursionError):
        return None
    return parsed.get("stream") is True if isinstance(parsed, dict) else None


def check_reply(path: str, body: bytes, reply: Reply) -> None:
    """200 with a valid payload, or a 4xx with an Anthropic error body; nothing else."""
    assert reply.status < 500, f"{path} answered {reply.status}: {reply.body[:500]!r}"
    if reply.status >= 400:
        validate_anthropic_error(reply.body, status=reply.status)
        return
    assert reply.status == 200, f"{path} answered {reply.status}: {reply.body[:300]!r}"
    if path.startswith(COUNT_TOKENS):
        data = json.loads(reply.body)
        assert isinstance(data.get("input_tokens"), int) and data["input_tokens"] >= 0, data
        return
    if "text/event-stream" in reply.content_type:
        validate_anthropic_stream(reply.body, expect_error=False)
        assert _requested_stream(body) is not False, "an SSE answer to stream: false"
    else:
        assert "json" in reply.content_type, reply.content_type
        validate_anthropic_message(reply.body)
        assert _requested_stream(body) is not True, "a JSON answer to stream: true"


def assert_healthy(proxy: InProcessProxy) -> None:
    reply = proxy.request("GET", "/health")
    assert reply.status == 200, reply
    assert json.loads(reply.body)["status"] in ("healthy", "ok")


# ------------------------------------------------------------------------------------------
# Strategies: JSON values and Anthropic-shaped bodies
# ------------------------------------------------------------------------------------------

INTERESTING_STRINGS = st.sampled_from(
    [
        "",
        " ",
        "text",
        "image",
        "tool_use",
        "user",
        "assistant",
        "claude-sonnet-4-5",
        "claude-3-5-haiku-20241022",
        "<think>hmm</think>",
        "\x00",
        "\u202e",
        "😀" * 3,
        "<|endoftext|>",
        "x-anthropic-billing-header: cc_version=1",
        "data: [DONE]\n\n",
        "event: error\ndata: {}\n\n",
    ]
)
TEXT = st.one_of(st.text(max_size=20), INTERESTING_STRINGS)
JSON_LEAF = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**63), max_value=2**64 - 1),
    st.floats(allow_nan=False, allow_infinity=False),
    TEXT,
)
JSON_VALUE = st.recursive(
    JSON_LEAF,
    lambda children: st.one_of(
        st.lists(children, max_size=3), st.dictionaries(TEXT, children, max_size=3)
    ),
    max_leaves=6,
)
#: A value of some wrong type, flat (cheap to generate; the recursive one is used sparingly).
JUNK = st.one_of(
    JSON_LEAF,
    st.lists(JSON_LEAF, max_size=3),
    st.dictionaries(TEXT, JSON_LEAF, max_size=3),
)


def anything_or(*choices: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    """Usually a plausible value, sometimes a value of any type (a wrong one)."""
    return st.one_of(*choices, JUNK)


def _b64(prefix: bytes) -> st.SearchStrategy[str]:
    return st.binary(max_size=64).map(lambda b: base64.b64encode(prefix + b).decode())


BASE64_DATA = st.one_of(
    _b64(b""),
    _b64(b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR"),
    _b64(b"%PDF-1.4\n"),
    _b64(b"\xff\xd8\xff"),
    st.sampled_from(["", "!!!not base64!!!", "QUJD", "====", "data:image/png;base64,QUJD"]),
)
SOURCE = st.fixed_dictionaries(
    {},
    optional={
        "type": anything_or(st.sampled_from(["base64", "url", "text", "content", "file", "x"])),
        "media_type": anything_or(
            st.sampled_from(
                [
                    "image/png",
                    "image/jpeg",
                    "application/pdf",
                    "text/plain",
                    "application/json",
                    "video/mp4",
                ]
            )
        ),
        "data": anything_or(BASE64_DATA),
        "url": anything_or(st.sampled_from(["https://example.com/a.png", "file:///etc/passwd"])),
        "file_id": JUNK,
        "content": JUNK,
    },
)
BLOCK_TYPES = [
    "text",
    "image",
    "document",
    "tool_use",
    "tool_result",
    "thinking",
    "redacted_thinking",
    "search_result",
    "server_tool_use",
    "web_search_tool_result",
    "mcp_tool_use",
    "mcp_tool_result",
    "container_upload",
    "mid_conv_system",
    "tool_reference",
    "compaction",
    "bogus_block",
    "",
]
INNER_BLOCK = st.fixed_dictionaries(
    {"type": anything_or(st.sampled_from(BLOCK_TYPES))},
    optional={"text": anything_or(TEXT), "source": anything_or(SOURCE), "content": JSON_VALUE},
)
BLOCK = st.fixed_dictionaries(
    {"type": anything_or(st.sampled_from(BLOCK_TYPES))},
    optional={
        "text": anything_or(TEXT),
        "source": anything_or(SOURCE),
        "id": anything_or(st.sampled_from(["toolu_01", "call_1", "bad id!", "x" * 80])),
        "tool_use_id": anything_or(st.sampled_from(["toolu_01", "call_1", "bad id!"])),
        "name": anything_or(st.sampled_from(["Bash", "Read", "tool", ""])),
        "input": JSON_VALUE,
        "content": anything_or(TEXT, st.lists(st.one_of(INNER_BLOCK, TEXT), max_size=3)),
        "is_error": JUNK,
        "thinking": anything_or(TEXT),
        "signature": anything_or(TEXT),
        "data": anything_or(TEXT),
        "title": JUNK,
        "context": JUNK,
        "cache_control": anything_or(st.just({"type": "ephemeral"})),
        "citations": JUNK,
    },
)
ROLES = ["user", "assistant", "system", "developer", "tool", "function", "USER", ""]
MESSAGE = st.fixed_dictionaries(
    {
        "role": anything_or(st.sampled_from(ROLES)),
        "content": anything_or(TEXT, st.lists(st.one_of(BLOCK, TEXT), max_size=4)),
    },
    optional={"name": JUNK},
)
TOOL = st.fixed_dictionaries(
    {"name": anything_or(st.sampled_from(["Bash", "Read", "a" * 100]))},
    optional={
        "type": anything_or(
            st.sampled_from(
                [
                    "custom",
                    "bash_20250124",
                    "text_editor_20250728",
                    "web_search_20250305",
                    "computer_20250124",
                    "mystery_tool",
                ]
            )
        ),
        "description": anything_or(TEXT),
        "input_schema": anything_or(
            st.just({"type": "object", "properties": {"x": {"type": "string"}}})
        ),
        "strict": JUNK,
        "defer_loading": JUNK,
    },
)
TOOL_CHOICE = anything_or(
    st.fixed_dictionaries(
        {"type": anything_or(st.sampled_from(["auto", "any", "tool", "none", "other"]))},
        optional={"name": anything_or(st.just("Bash")), "disable_parallel_tool_use": JUNK},
    )
)
MODELS = st.sampled_from(
    [
        "claude-sonnet-4-5",
        "claude-opus-4-1",
        "claude-3-5-haiku-20241022",
        "claude-haiku-4-5",
        "gpt-4o",
        "some/provider-model:tag",
    ]
)
OPTIONAL_FIELDS: dict[str, st.SearchStrategy[Any]] = {
    "stream": anything_or(st.booleans()),
    "system": anything_or(TEXT, st.lists(st.one_of(BLOCK, TEXT), max_size=3)),
    "tools": anything_or(st.lists(TOOL, max_size=3)),
    "tool_choice": TOOL_CHOICE,
    "stop_sequences": anything_or(st.lists(TEXT, max_size=6)),
    "temperature": anything_or(st.floats(-1, 3)),
    "top_p": anything_or(st.floats(0, 1)),
    "top_k": JUNK,
    "thinking": anything_or(
        st.fixed_dictionaries(
            {"type": anything_or(st.sampled_from(["enabled", "disabled", "adaptive"]))},
            optional={"budget_tokens": anything_or(st.integers(-10, 200_000))},
        )
    ),
    "output_config": anything_or(
        st.fixed_dictionaries(
            {},
            optional={
                "effort": anything_or(st.sampled_from(["low", "medium", "high", "max"])),
                "format": anything_or(
                    st.fixed_dictionaries(
                        {"type": anything_or(st.just("json_schema"))},
                        optional={"schema": JSON_VALUE},
                    )
                ),
            },
        )
    ),
    "metadata": anything_or(st.fixed_dictionaries({}, optional={"user_id": JSON_VALUE})),
    "service_tier": JUNK,
    "container": JUNK,
    "mcp_servers": JUNK,
    "context_management": JUNK,
}

#: Required fields present and valid, the rest of the body random: reaches translation.
PLAUSIBLE_BODY = st.fixed_dictionaries(
    {
        "model": MODELS,
        "max_tokens": st.integers(0, 64_000),
        "messages": st.lists(MESSAGE, max_size=4),
    },
    optional=OPTIONAL_FIELDS,
)
#: Every field optional and of any type.
WILD_BODY = st.fixed_dictionaries(
    {},
    optional={
        "model": anything_or(MODELS),
        "max_tokens": anything_or(st.integers(-(2**63), 2**64 - 1)),
        "messages": anything_or(st.lists(MESSAGE, max_size=3)),
        **OPTIONAL_FIELDS,
    },
)


@st.composite
def mutated_body(draw: st.DrawFn) -> dict[str, Any]:
    """A plausible body with one field removed or replaced by junk."""
    body: dict[str, Any] = draw(PLAUSIBLE_BODY)
    key = draw(st.sampled_from(sorted(body)))
    if draw(st.booleans()):
        del body[key]
    else:
        body[key] = draw(JUNK)
    return body


ANTHROPIC_BODY = st.one_of(PLAUSIBLE_BODY, mutated_body(), WILD_BODY)
NON_OBJECT_JSON = st.one_of(
    st.lists(JSON_VALUE, max_size=4), JSON_LEAF, st.lists(PLAUSIBLE_BODY, max_size=2)
)


def _minimal(stream: bool = False, **extra: Any) -> dict[str, Any]:
    return {
        "model": "claude-sonnet-4-5",
        "max_tokens": 64,
        "stream": stream,
        "messages": [{"role": "user", "content": "hi"}],
        **extra,
    }


DEEP = "__DEEP_PLACEHOLDER__"
#: Where a deeply nested value can sit in a body; each builder puts ``DEEP`` there.
DEEP_SITES: dict[str, Callable[[bool], Any]] = {
    "tool_use.input": lambda s: _minimal(
        s,
        messages=[
            {"role": "user", "content": "hi"},
            {
                "role": "assistant",
                "content": [{"type": "tool_use", "id": "toolu_1", "name": "t", "input": DEEP}],
            },
            {
                "role": "user",
                "content": [{"type": "tool_result", "tool_use_id": "toolu_1", "content": "ok"}],
            },
        ],
    ),
    "tools.input_schema": lambda s: _minimal(s, tools=[{"name": "t", "input_schema": DEEP}]),
    "tool_result.content": lambda s: _minimal(
        s,
        messages=[{"role": "user", "content": [{"type": "tool_result", "content": DEEP}]}],
    ),
    "message.content": lambda s: _minimal(s, messages=[{"role": "user", "content": DEEP}]),
    "system": lambda s: _minimal(s, system=DEEP),
    "metadata": lambda s: _minimal(s, metadata=DEEP),
    "output_config.format.schema": lambda s: _minimal(
        s, output_config={"format": {"type": "json_schema", "schema": DEEP}}
    ),
    "unknown block": lambda s: _minimal(
        s, messages=[{"role": "user", "content": [{"type": "mystery", "content": DEEP}]}]
    ),
    "top level": lambda s: DEEP,
}


def deep_json(depth: int, kind: str) -> str:
    """``depth`` nested containers as JSON text (built as text: no recursion limits here)."""
    if kind == "list":
        return "[" * depth + "1" + "]" * depth
    if kind == "dict":
        return '{"a":' * depth + "{}" + "}" * depth
    if kind == "blocks":
        return '[{"type":"text","text":"x","content":' * depth + "[]" + "}]" * depth
    return '{"type":"object","properties":{"p":' * depth + '{"type":"string"}' + "}}" * depth


def deep_body(site: str, depth: int, kind: str, stream: bool) -> bytes:
    text = json.dumps(DEEP_SITES[site](stream))
    return text.replace(json.dumps(DEEP), deep_json(depth, kind)).encode()


@st.composite
def deep_bodies(draw: st.DrawFn) -> bytes:
    return deep_body(
        draw(st.sampled_from(sorted(DEEP_SITES))),
        draw(
            st.one_of(st.integers(1, 300), st.sampled_from([254, 255, 256, 500, 1023, 1024, 1100]))
        ),
        draw(st.sampled_from(["list", "dict", "blocks", "schema"])),
        draw(st.booleans()),
    )


@st.composite
def huge_bodies(draw: st.DrawFn) -> bytes:
    """One multi-megabyte string somewhere in an otherwise valid body."""
    size = draw(st.sampled_from([100_000, 1_000_000, 2_500_000]))
    unit = draw(st.sampled_from(["x", "hello world ", "é🙂", '\\"', "\x00"]))
    huge = (unit * (size // len(unit) + 1))[:size]
    where = draw(st.sampled_from(["content", "system", "tool_input", "model", "stop"]))
    stream = draw(st.booleans())
    if where == "content":
        body = _minimal(stream, messages=[{"role": "user", "content": huge}])
    elif where == "system":
        body = _minimal(stream, system=[{"type": "text", "text": huge}])
    elif where == "tool_input":
        body = _minimal(stream, tools=[{"name": "t", "description": huge}])
    elif where == "model":
        body = _minimal(stream, model=huge)
    else:
        body = _minimal(stream, stop_sequences=[huge])
    return json.dumps(body).encode()


def _splice(data: bytes, at: int, insert: bytes) -> bytes:
    at = min(max(at, 0), len(data))
    return data[:at] + insert + data[at:]


INVALID_UTF8 = st.sampled_from(
    [b"\xff", b"\xfe\xff", b"\xc3", b"\xc0\xaf", b"\xed\xa0\x80", b"\xf4\x90\x80\x80", b"\x80"]
)


@st.composite
def raw_bodies(draw: st.DrawFn) -> bytes:
    """Bytes that are not a well-formed JSON object: broken encodings, truncation, junk."""
    valid = json.dumps(draw(PLAUSIBLE_BODY), ensure_ascii=False).encode()
    choice = draw(st.integers(0, 6))
    if choice == 0:  # invalid UTF-8 anywhere (often inside a string)
        return _splice(valid, draw(st.integers(0, len(valid))), draw(INVALID_UTF8))
    if choice == 1:  # truncated
        return valid[: draw(st.integers(0, max(len(valid) - 1, 0)))]
    if choice == 2:  # non-object JSON
        return json.dumps(draw(NON_OBJECT_JSON)).encode()
    if choice == 3:  # random bytes
        return draw(st.binary(max_size=200))
    if choice == 4:  # lone surrogate escapes, NaN, trailing garbage, duplicate keys, BOM
        return draw(
            st.sampled_from(
                [
                    b'{"model":"\\ud800","max_tokens":1,"messages":[]}',
                    b'{"model":"m","max_tokens":NaN,"messages":[]}',
                    b'{"model":"m","max_tokens":1e999,"messages":[]}',
                    b'{"model":"m","max_tokens":1,"messages":[]} trailing',
                    b'{"model":"m","model":1,"max_tokens":1,"messages":[]}',
                    b"\xef\xbb\xbf" + valid,
                    valid + b"\x00",
                    b"{" * 5000,
                    b"[" * 100_000,
                    b" \n\t ",
                ]
            )
        )
    if choice == 5:  # a valid body in another encoding
        encoding = draw(st.sampled_from(["utf-16", "utf-32", "latin-1"]))
        return valid.decode().encode(encoding, "replace")
    return valid


# ------------------------------------------------------------------------------------------
# Strategies: headers
# ------------------------------------------------------------------------------------------

TOKEN_CHARS = "!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
#: Header bytes a real HTTP server accepts: visible ASCII, space, tab and obs-text.
HEADER_VALUE_CHARS = "".join(chr(c) for c in [9, *range(0x20, 0x7F), *range(0x80, 0x100)])
#: Framing headers the client library owns; random values would only test the HTTP parser.
FRAMING = frozenset(
    {"content-length", "transfer-encoding", "host", "connection", "expect", "upgrade", "te"}
)
KNOWN_HEADER_NAMES = st.sampled_from(
    [
        "x-api-key",
        "authorization",
        "anthropic-version",
        "anthropic-beta",
        "content-type",
        "accept",
        "accept-encoding",
        "x-claude-code-session-id",
        "x-stainless-retry-count",
        "x-forwarded-for",
        "origin",
        "cookie",
        "range",
    ]
)
HEADER_NAME = st.one_of(KNOWN_HEADER_NAMES, st.text(TOKEN_CHARS, min_size=1, max_size=24)).filter(
    lambda name: name.lower() not in FRAMING
)
HEADER_VALUE = st.one_of(
    st.text(HEADER_VALUE_CHARS, max_size=60),
    st.sampled_from(
        [
            "Bearer ",
            "Bearer sk-ant-client",
            "bearer  spaced ",
            "Basic dXNlcjpwYXNz",
            "application/json; charset=latin-1",
            "text/plain",
            "multipart/form-data; boundary=x",
            "gzip, br, zstd",
            "2023-06-01",
            "*/*",
            "bytes=0-10",
            "x" * 4000,
        ]
    ),
).map(lambda value: value.strip(" \t").encode("latin-1"))
HEADERS = st.lists(st.tuples(HEADER_NAME.map(str.encode), HEADER_VALUE), max_size=8)


# ------------------------------------------------------------------------------------------
# Tests through the in-process app
# ------------------------------------------------------------------------------------------


def _send(proxy: InProcessProxy, upstream: MockUpstream, path: str, body: bytes) -> None:
    headers = [(b"content-type", b"application/json"), (b"anthropic-version", b"2023-06-01")]
    reply = proxy.request("POST", path, body, headers)
    upstream.reset()  # bounded memory: recorded requests hold the bodies
    check_reply(path, body, reply)


def test_anthropic_bodies_never_500(apps: Apps) -> None:
    """Structured bodies with wrong types, missing fields, unknown blocks and roles."""

    @fuzz_settings(1200)
    @given(body=ANTHROPIC_BODY, path=st.sampled_from(PATHS))
    def run(body: dict[str, Any], path: str) -> None:
        CASES["anthropic bodies (ASGI)"] += 1
        _send(apps.static, apps.upstream, path, json.dumps(body).encode())

    run()
    assert_healthy(apps.static)


def test_raw_bodies_never_500(apps: Apps) -> None:
    """Invalid UTF-8, truncated JSON, non-object JSON, random bytes, other encodings."""

    @fuzz_settings(500)
    @given(body=raw_bodies(), path=st.sampled_from(PATHS))
    def run(body: bytes, path: str) -> None:
        CASES["raw bodies (ASGI)"] += 1
        _send(apps.static, apps.upstream, path, body)

    run()
    assert_healthy(apps.static)


def test_deeply_nested_bodies_never_500(apps: Apps) -> None:
    """Nesting up to past the JSON parser's limit, at every place a body can nest."""

    @fuzz_settings(200)
    @given(body=deep_bodies(), path=st.sampled_from(PATHS))
    def run(body: bytes, path: str) -> None:
        CASES["deep nesting (ASGI)"] += 1
        _send(apps.static, apps.upstream, path, body)

    run()
    assert_healthy(apps.static)


def test_huge_strings_never_500(apps: Apps) -> None:
    """Multi-megabyte strings in content, system, tool descriptions, model, stop sequences."""

    @fuzz_settings(25)
    @given(body=huge_bodies(), path=st.sampled_from(PATHS))
    def run(body: bytes, path: str) -> None:
        CASES["huge strings (ASGI)"] += 1
        _send(apps.static, apps.upstream, path, body)

    run()
    assert_healthy(apps.static)


def test_random_headers_never_500(apps: Apps) -> None:
    """Random header names and values (keys included) in static and dynamic key modes."""

    @fuzz_settings(400)
    @given(
        headers=HEADERS,
        dynamic=st.booleans(),
        stream=st.booleans(),
        path=st.sampled_from(PATHS),
    )
    def run(headers: list[tuple[bytes, bytes]], dynamic: bool, stream: bool, path: str) -> None:
        CASES["random headers (ASGI)"] += 1
        proxy = apps.dynamic if dynamic else apps.static
        body = json.dumps(_minimal(stream)).encode()
        reply = proxy.request("POST", path, body, headers)
        apps.upstream.reset()
        check_reply(path, body, reply)

    run()
    assert_healthy(apps.static)
    assert_healthy(apps.dynamic)


def test_other_methods_and_paths_never_500(apps: Apps) -> None:
    """Wrong methods and unknown paths are Anthropic-shaped 404/405s too."""

    @fuzz_settings(60)
    @given(
        method=st.sampled_from(["GET", "PUT", "DELETE", "PATCH", "OPTIONS", "HEAD"]),
        path=st.one_of(
            st.sampled_from([*PATHS, "/v1/complete", "/v1/messages/batches", "/v1/models/x"]),
            st.text("abcxyz/._-%0123", max_size=30).map(lambda p: "/" + p),
        ),
    )
    def run(method: str, path: str) -> None:
        CASES["methods and paths (ASGI)"] += 1
        reply = apps.static.request(method, path)
        assert reply.status < 500, (method, path, reply)
        if reply.status >= 400 and method != "HEAD":
            validate_anthropic_error(reply.body, status=reply.status)

    run()
    assert_healthy(apps.static)


# ------------------------------------------------------------------------------------------
# Regression examples (kept explicitly; each once made the proxy answer 500)
# ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("stream", [False, True])
@pytest.mark.parametrize(
    ("site", "kind"),
    [("tool_use.input", "dict"), ("tools.input_schema", "schema"), ("metadata", "dict")],
)
def test_regression_nesting_beyond_the_encoder_limit_is_not_a_500(
    apps: Apps, site: str, kind: str, stream: bool
) -> None:
    """Found by the fuzz test: ~255+ levels parse fine but the upstream payload cannot be
    encoded (orjson's recursion limit), which surfaced as ``500 internal proxy error``."""
    for path in (MESSAGES, COUNT_TOKENS):
        _send(apps.static, apps.upstream, path, deep_body(site, 300, kind, stream))
    assert_healthy(apps.static)


# ------------------------------------------------------------------------------------------
# Raw bytes over a real socket (uvicorn's HTTP parser in front of the app)
# ------------------------------------------------------------------------------------------


def _dechunk(data: bytes) -> bytes:
    out = bytearray()
    while True:
        size_line, _, rest = data.partition(b"\r\n")
        size = int(size_line.split(b";")[0], 16)
        if size == 0:
            return bytes(out)
        out += rest[:size]
        data = rest[size + 2 :]


def raw_http(host: str, port: int, request: bytes, timeout: float = REQUEST_TIMEOUT) -> Reply:
    """Send ``request`` verbatim (it must say ``Connection: close``); read to EOF, bounded."""
    deadline = time.monotonic() + timeout
    data = bytearray()
    with socket.create_connection((host, port), timeout=timeout) as sock:
        sock.sendall(request)
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise AssertionError(f"no complete answer within {timeout}s: {bytes(data[:300])!r}")
            sock.settimeout(remaining)
            try:
                piece = sock.recv(65536)
            except TimeoutError:
                continue
            if not piece:
                break
            data += piece
    head, _, body = bytes(data).partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    if "chunked" in headers.get("transfer-encoding", ""):
        body = _dechunk(body)
    return Reply(status, headers, body)


def build_request(path: str, headers: Sequence[tuple[bytes, bytes]], body: bytes) -> bytes:
    lines = [f"POST {path} HTTP/1.1".encode(), b"Host: 127.0.0.1", b"Connection: close"]
    lines += [name + b": " + value for name, value in headers]
    lines.append(b"Content-Length: " + str(len(body)).encode())
    return b"\r\n".join(lines) + b"\r\n\r\n" + body


def test_raw_requests_over_a_socket_never_500(
    proxy_factory: ProxyFactory, mock_upstream: MockUpstream
) -> None:
    """Broken bodies plus random headers on the wire, in both key modes."""
    static = proxy_factory(LOG_LEVEL="CRITICAL")
    dynamic = proxy_factory(OPENAI_API_KEY=None, LOG_LEVEL="CRITICAL")

    @fuzz_settings(200)
    @given(
        body=st.one_of(raw_bodies(), ANTHROPIC_BODY.map(lambda b: json.dumps(b).encode())),
        headers=HEADERS,
        dynamic_mode=st.booleans(),
        path=st.sampled_from(PATHS),
    )
    def run(body: bytes, headers: list[tuple[bytes, bytes]], dynamic_mode: bool, path: str) -> None:
        CASES["raw requests (socket)"] += 1
        proxy = dynamic if dynamic_mode else static
        reply = raw_http(proxy.host, proxy.port, build_request(path, headers, body))
        mock_upstream.reset()
        check_reply(path, body, reply)

    run()
    for proxy in (static, dynamic):
        assert httpx.get(proxy.url("/health"), timeout=10).status_code == 200


# ------------------------------------------------------------------------------------------
# Report
# ------------------------------------------------------------------------------------------


def test_zz_report_case_count(capsys: pytest.CaptureFixture[str]) -> None:
    """Print how many generated cases ran (shown without ``-s``)."""
    total = sum(CASES.values())
    with capsys.disabled():
        print(f"\nfuzz cases run: {total}")
        for name, count in sorted(CASES.items()):
            print(f"  {name}: {count}")
    assert all(count > 0 for count in CASES.values())
