"""The pure half of the proxy-run web_search tool: tool offer, blocks, history, stitching."""

from __future__ import annotations

from typing import Any

import pytest

from claude_code_proxy.translate.chat.request import translate_request
from claude_code_proxy.translate.chat.response import message_to_events
from claude_code_proxy.translate.errors import RequestValidationError
from claude_code_proxy.translate.ids import client_tool_id, server_call_client_id, server_tool_id
from claude_code_proxy.translate.search_turn import TurnStitcher, continuation
from claude_code_proxy.translate.web_search import (
    SearchResult,
    WebSearchTool,
    checked_query,
    decode_content,
    domain_allowed,
    encode_content,
    error_block,
    filter_results,
    result_block,
    result_text,
    web_search_tool,
)
from sse_validator import validate_anthropic_message, validate_anthropic_stream

TOOL = {"type": "web_search_20250305", "name": "web_search", "max_uses": 3}
SRV = "srvtoolu_01abc"


def translate(messages: list[Any], **extra: Any) -> dict[str, Any]:
    body = {"model": "claude-x", "max_tokens": 100, "messages": messages, "tools": [TOOL], **extra}
    return translate_request(body, upstream_model="gpt-x").payload


def events_bytes(events: list[dict[str, Any]]) -> bytes:
    import json

    return b"".join(f"event: {e['type']}\ndata: {json.dumps(e)}\n\n".encode() for e in events)


# ------------------------------------------------------------------------------ the tool


def test_the_server_tool_is_parsed_and_validated() -> None:
    tool = web_search_tool(
        [
            {"name": "Bash"},
            dict(
                TOOL,
                allowed_domains=["Docs.Python.org/", "example.com/blog"],
                user_location={"type": "approximate", "city": "Oslo", "country": "NO"},
            ),
        ]
    )
    assert tool is not None
    assert tool.max_uses == 3
    assert tool.allowed_domains == ("docs.python.org", "example.com/blog")
    assert tool.user_location is not None and tool.user_location.city == "Oslo"
    assert web_search_tool([{"name": "Bash"}]) is None
    for bad, message in [
        ({"max_uses": 0}, "max_uses"),
        ({"max_uses": True}, "max_uses"),
        ({"allowed_domains": "a.com"}, "list of domain strings"),
        ({"blocked_domains": ["https://a.com"]}, "scheme"),
        ({"user_location": {"city": 5}}, "city"),
    ]:
        with pytest.raises(RequestValidationError, match=message):
            web_search_tool([dict(TOOL, **bad)])


def test_the_model_is_offered_a_web_search_function_beside_other_tools() -> None:
    bash = {"name": "Bash", "input_schema": {"type": "object", "properties": {}}}
    tool = dict(TOOL, blocked_domains=["pinterest.com"])
    body = {
        "model": "claude-x",
        "max_tokens": 100,
        "messages": [{"role": "user", "content": "hi"}],
        "tools": [bash, tool],
        "tool_choice": {"type": "any"},
    }
    translated = translate_request(body, upstream_model="gpt-x")
    names = [t["function"]["name"] for t in translated.payload["tools"]]
    assert names == ["Bash", "web_search"]
    function = translated.payload["tools"][1]["function"]
    assert function["parameters"]["properties"]["query"]["type"] == "string"
    assert "pinterest.com" in function["description"]
    assert "At most 3 searches" in function["description"]
    assert translated.payload["tool_choice"] == "required"
    assert translated.web_search == web_search_tool([tool])


def test_a_custom_tool_named_web_search_beside_the_server_tool_is_a_400() -> None:
    custom = {"name": "web_search", "input_schema": {"type": "object"}}
    with pytest.raises(RequestValidationError, match="unique"):
        translate([{"role": "user", "content": "hi"}], tools=[custom, TOOL])


@pytest.mark.parametrize(
    ("tool_input", "expected"),
    [
        ({"query": "  oslo weather "}, ("oslo weather", None)),
        ({"query": ""}, ("", "invalid_tool_input")),
        ({"q": "x"}, ("", "invalid_tool_input")),
        ("oslo", ("", "invalid_tool_input")),
        ({"query": "y" * 401}, ("y" * 401, "query_too_long")),
    ],
)
def test_queries_are_checked(tool_input: Any, expected: tuple[str, str | None]) -> None:
    assert checked_query(tool_input) == expected


# ------------------------------------------------------------------------------ domains


@pytest.mark.parametrize(
    ("url", "allowed", "blocked", "ok"),
    [
        ("https://docs.python.org/3/", ("python.org",), (), True),
        ("https://python.org.evil.com/", ("python.org",), (), False),
        ("https://notpython.org/", ("python.org",), (), False),
        ("https://example.com/blog/post", ("example.com/blog",), (), True),
        ("https://example.com/shop", ("example.com/blog",), (), False),
        ("https://www.reddit.com/r/x", (), ("reddit.com",), False),
        ("https://example.com/", (), ("reddit.com",), True),
        ("not a url", (), (), False),
    ],
)
def test_domain_rules(
    url: str, allowed: tuple[str, ...], blocked: tuple[str, ...], ok: bool
) -> None:
    tool = WebSearchTool(allowed_domains=allowed, blocked_domains=blocked)
    assert domain_allowed(url, tool) is ok


def test_filter_drops_duplicates_and_keeps_the_limit() -> None:
    results = [SearchResult(f"https://a.com/{i % 3}", "t") for i in range(10)]
    kept = filter_results(results, WebSearchTool(), 2)
    assert [r.url for r in kept] == ["https://a.com/0", "https://a.com/1"]


# ------------------------------------------------------------------------------- blocks


def test_encrypted_content_round_trips_and_foreign_content_is_not_misread() -> None:
    encoded = encode_content("Excerpt with ünïcode")
    assert decode_content(encoded) == "Excerpt with ünïcode"
    assert decode_content("EqQBCkYIBhgCIkB…anthropic-opaque") is None
    assert decode_content("ccp1.!!!not base64") is None
    assert decode_content(None) is None


def test_result_text_is_what_the_model_reads() -> None:
    block = result_block(
        SRV,
        [
            SearchResult("https://a.com", "A", "alpha excerpt", "May 1, 2025"),
            SearchResult("https://b.com", "B"),
        ],
    )
    text = result_text(block)
    assert text.startswith("Web search results:")
    assert "[1] A\nURL: https://a.com\nAge: May 1, 2025\nalpha excerpt" in text
    assert "[2] B\nURL: https://b.com" in text
    assert result_text(error_block(SRV, "too_many_requests")).startswith(
        "Web search failed (too_many_requests)"
    )
    assert result_text(result_block(SRV, [])) == "Web search returned no results."


# ------------------------------------------------------------------------------ history


def search_turn(*after: dict[str, Any]) -> list[dict[str, Any]]:
    return [
        {"role": "user", "content": "q"},
        {
            "role": "assistant",
            "content": [
                {"type": "text", "text": "Let me search."},
                {
                    "type": "server_tool_use",
                    "id": SRV,
                    "name": "web_search",
                    "input": {"query": "x"},
                },
                result_block(SRV, [SearchResult("https://a.com", "A", "alpha")]),
                *after,
            ],
        },
    ]


def test_history_search_blocks_become_a_call_and_its_tool_message() -> None:
    messages = translate([*search_turn({"type": "text", "text": "Found it."})])["messages"]
    assert [m["role"] for m in messages] == ["user", "assistant", "tool", "assistant"]
    assert messages[1]["content"] == "Let me search."
    (call,) = messages[1]["tool_calls"]
    assert call["function"]["name"] == "web_search"
    assert messages[2]["tool_call_id"] == call["id"]
    assert "alpha" in messages[2]["content"]
    assert messages[3]["content"] == "Found it."


def test_parallel_searches_keep_their_results_in_order() -> None:
    second = "srvtoolu_02def"
    content = [
        {"type": "server_tool_use", "id": SRV, "name": "web_search", "input": {"query": "a"}},
        {"type": "server_tool_use", "id": second, "name": "web_search", "input": {"query": "b"}},
        error_block(SRV, "unavailable"),
        result_block(second, []),
        {"type": "text", "text": "Neither worked."},
    ]
    messages = translate(
        [{"role": "user", "content": "q"}, {"role": "assistant", "content": content}]
    )["messages"]
    assert [m["role"] for m in messages] == ["user", "assistant", "tool", "tool", "assistant"]
    assert [m["tool_call_id"] for m in messages[2:4]] == [
        c["id"] for c in messages[1]["tool_calls"]
    ]
    assert "unavailable" in messages[2]["content"]


def test_a_client_call_beside_a_search_still_gets_the_users_result() -> None:
    turn = search_turn()
    turn[1]["content"].insert(1, {"type": "tool_use", "id": "toolu_b", "name": "Bash", "input": {}})
    turn.append(
        {
            "role": "user",
            "content": [{"type": "tool_result", "tool_use_id": "toolu_b", "content": "ok"}],
        }
    )
    messages = translate(turn)["messages"]
    assert [m["role"] for m in messages] == ["user", "assistant", "tool", "tool"]
    assert messages[1]["tool_calls"][0]["id"] == "toolu_b"
    assert messages[2]["tool_call_id"] == messages[1]["tool_calls"][1]["id"]
    assert messages[3] == {"role": "tool", "tool_call_id": "toolu_b", "content": "ok"}


def test_anthropic_search_results_from_elsewhere_give_titles_and_urls() -> None:
    turn = search_turn()
    turn[1]["content"][2] = {
        "type": "web_search_tool_result",
        "tool_use_id": SRV,
        "content": [
            {
                "type": "web_search_result",
                "url": "https://real.com",
                "title": "Real",
                "encrypted_content": "EqQBopaque",
                "page_age": "1 day ago",
            }
        ],
    }
    tool_message = translate(turn)["messages"][2]
    assert tool_message["content"] == (
        "Web search results:\n\n[1] Real\nURL: https://real.com\nAge: 1 day ago"
    )


def test_a_result_without_its_call_is_read_as_text() -> None:
    content = [error_block("srvtoolu_gone", "unavailable"), {"type": "text", "text": "Sorry."}]
    messages = translate(
        [{"role": "user", "content": "q"}, {"role": "assistant", "content": content}]
    )["messages"]
    assert messages[1]["content"].startswith("Web search failed (unavailable)")
    assert "tool_calls" not in messages[1]


# ----------------------------------------------------------------------------- stitching


def call_message(content: list[dict[str, Any]], stop: str, output: int) -> dict[str, Any]:
    return {
        "id": "msg_call",
        "type": "message",
        "role": "assistant",
        "model": "claude-x",
        "content": content,
        "stop_reason": stop,
        "stop_sequence": None,
        "usage": {"input_tokens": 10, "output_tokens": output},
    }


def test_stitcher_joins_calls_into_one_valid_stream_and_message() -> None:
    stitcher = TurnStitcher()
    out: list[dict[str, Any]] = []
    first = call_message(
        [
            {"type": "thinking", "thinking": "search", "signature": "sig"},
            {"type": "tool_use", "id": "toolu_1", "name": "web_search", "input": {"query": "q"}},
        ],
        "tool_use",
        7,
    )
    stitcher.begin_call()
    out += stitcher.feed(message_to_events(first))
    assert stitcher.call_ended and not stitcher.client_tool_called
    (search,) = stitcher.searches
    assert search["type"] == "server_tool_use" and search["id"].startswith("srvtoolu_")
    assert search["input"] == {"query": "q"}
    out += stitcher.add_result(
        result_block(search["id"], [SearchResult("https://a.com", "A")]), searched=True
    )
    stitcher.begin_call()
    out += stitcher.feed(
        message_to_events(call_message([{"type": "text", "text": "Answer."}], "end_turn", 5))
    )
    out += stitcher.finish()

    stream = validate_anthropic_stream(events_bytes(out))
    assert [b["type"] for b in stream.content] == [
        "thinking",
        "server_tool_use",
        "web_search_tool_result",
        "text",
    ]
    assert stream.stop_reason == "end_turn"
    assert stream.usage["output_tokens"] == 12
    assert stream.usage["input_tokens"] == 20
    assert stream.usage["server_tool_use"] == {"web_search_requests": 1}
    message = validate_anthropic_message(stitcher.final_message("claude-x"))
    assert message["content"] == stream.content


def test_stitcher_passes_an_error_through_and_stops() -> None:
    stitcher = TurnStitcher()
    stitcher.begin_call()
    events = message_to_events(call_message([{"type": "text", "text": "Hi"}], "end_turn", 1))[:3]
    error = {"type": "error", "error": {"type": "overloaded_error", "message": "busy"}}
    out = stitcher.feed([*events, error, {"type": "ping"}])
    assert out[-1] == error and stitcher.ended and stitcher.error_type == "overloaded_error"
    assert stitcher.finish() == [] and stitcher.fail("api_error", "x") == []


def test_continuation_carries_the_turn_and_relaxes_a_forced_choice() -> None:
    body = {
        "model": "m",
        "messages": [{"role": "user", "content": "q"}],
        "tool_choice": {"type": "tool", "name": "web_search", "disable_parallel_tool_use": True},
    }
    content = [{"type": "text", "text": "so far"}]
    tool = WebSearchTool()
    follow = continuation(body, content, tool, may_search=True)
    assert follow["messages"][-1] == {"role": "assistant", "content": content}
    assert follow["tool_choice"] == {"type": "auto", "disable_parallel_tool_use": True}
    assert body["messages"] == [{"role": "user", "content": "q"}]  # the original is untouched
    assert continuation(body, content, tool, may_search=False)["tool_choice"] == {"type": "none"}
    custom = dict(body, tool_choice={"type": "tool", "name": "Bash"})
    assert continuation(custom, content, tool, may_search=True)["tool_choice"]["name"] == "Bash"


def test_server_tool_ids_carry_the_upstreams_call_id_back() -> None:
    carried = client_tool_id("call_abc", "salt")
    server = server_tool_id(carried)
    assert server.startswith("srvtoolu_") and server[len("srvtoolu_") :] == carried[len("toolu_") :]
    assert server_call_client_id(server) == carried
    # An encoded upstream id needs `-`, which srvtoolu ids may not hold: a fresh id then.
    encoded = client_tool_id("functions.Write:0", "salt")
    assert "-" in encoded
    fresh = server_tool_id(encoded)
    assert fresh.startswith("srvtoolu_") and "-" not in fresh
    turn = search_turn()
    turn[1]["content"][1]["id"] = server
    turn[1]["content"][2]["tool_use_id"] = server
    messages = translate(turn)["messages"]
    assert messages[1]["tool_calls"][0]["id"] == "call_abc"
    assert messages[2]["tool_call_id"] == "call_abc"
