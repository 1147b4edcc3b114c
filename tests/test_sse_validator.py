"""Tests for the strict Anthropic SSE / JSON validators used by every proxy stream test.

Each rule gets a failing example so that a validator regression (accepting a stream the SDKs
would choke on) is caught here rather than silently weakening the proxy tests.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest

from sse_validator import (
    iter_sse_records,
    parse_sse,
    validate_anthropic_error,
    validate_anthropic_message,
    validate_anthropic_stream,
)

REFERENCE = Path(__file__).parent / "fixtures" / "sse-reply-accepted-by-claude-code.txt"

Event = tuple[str, dict[str, Any]]


# --------------------------------------------------------------------------------------------
# Builders
# --------------------------------------------------------------------------------------------


def render(events: list[Event], *, newline: str = "\n") -> bytes:
    """Serialise ``(event, data)`` pairs the way the proxy should."""
    out = []
    for name, data in events:
        lines = []
        if name:
            lines.append(f"event: {name}")
        lines.append(f"data: {json.dumps(data)}")
        out.append(newline.join(lines) + newline + newline)
    return "".join(out).encode()


def message_start(**overrides: Any) -> Event:
    msg: dict[str, Any] = {
        "id": "msg_0123456789abcdef",
        "type": "message",
        "role": "assistant",
        "model": "claude-sonnet-4-5",
        "content": [],
        "stop_reason": None,
        "stop_sequence": None,
        "usage": {"input_tokens": 10, "output_tokens": 1},
    }
    msg.update(overrides)
    return ("message_start", {"type": "message_start", "message": msg})


def start(index: int, block: dict[str, Any]) -> Event:
    return (
        "content_block_start",
        {"type": "content_block_start", "index": index, "content_block": block},
    )


def delta(index: int, d: dict[str, Any]) -> Event:
    return ("content_block_delta", {"type": "content_block_delta", "index": index, "delta": d})


def stop(index: int) -> Event:
    return ("content_block_stop", {"type": "content_block_stop", "index": index})


def text_block(index: int, *pieces: str) -> list[Event]:
    return [
        start(index, {"type": "text", "text": ""}),
        *(delta(index, {"type": "text_delta", "text": p}) for p in pieces),
        stop(index),
    ]


def thinking_block(index: int, thinking: str = "hmm", signature: str = "sig") -> list[Event]:
    return [
        start(index, {"type": "thinking", "thinking": "", "signature": ""}),
        delta(index, {"type": "thinking_delta", "thinking": thinking}),
        delta(index, {"type": "signature_delta", "signature": signature}),
        stop(index),
    ]


def tool_block(
    index: int, *parts: str, tool_id: str = "toolu_01abc", name: str = "get_weather"
) -> list[Event]:
    return [
        start(index, {"type": "tool_use", "id": tool_id, "name": name, "input": {}}),
        *(delta(index, {"type": "input_json_delta", "partial_json": p}) for p in parts),
        stop(index),
    ]


def message_delta(
    stop_reason: Any = "end_turn", usage: Any = None, stop_sequence: Any = None
) -> Event:
    return (
        "message_delta",
        {
            "type": "message_delta",
            "delta": {"stop_reason": stop_reason, "stop_sequence": stop_sequence},
            "usage": {"output_tokens": 5} if usage is None else usage,
        },
    )


MESSAGE_STOP: Event = ("message_stop", {"type": "message_stop"})
PING: Event = ("ping", {"type": "ping"})


def error_event(etype: str = "overloaded_error", message: str = "Overloaded") -> Event:
    return ("error", {"type": "error", "error": {"type": etype, "message": message}})


def simple_text_stream(*pieces: str) -> list[Event]:
    return [
        message_start(),
        *text_block(0, *(pieces or ("Hello",))),
        message_delta(),
        MESSAGE_STOP,
    ]


def tool_stream() -> list[Event]:
    return [
        message_start(),
        *text_block(0, "Checking."),
        *tool_block(1, "", '{"city": ', '"Oslo"}'),
        message_delta("tool_use"),
        MESSAGE_STOP,
    ]


# --------------------------------------------------------------------------------------------
# SSE framing
# --------------------------------------------------------------------------------------------


class TestFraming:
    def test_lf_crlf_and_cr_line_endings_parse_identically(self) -> None:
        events = simple_text_stream("a", "b")
        parsed = [parse_sse(render(events, newline=nl)) for nl in ("\n", "\r\n", "\r")]
        assert parsed[0] == parsed[1] == parsed[2] == events

    def test_comments_multiline_data_and_unknown_fields(self) -> None:
        raw = (
            ": keep-alive comment\n"
            "event: ping\n"
            "id: 7\n"
            "retry: 1000\n"
            "x-unknown: whatever\n"
            'data: {"type":\n'
            'data: "ping"}\n'
            "\n"
            ":another\n\n"
        )
        records = iter_sse_records(raw)
        assert len(records) == 1
        assert records[0].event == "ping"
        assert records[0].id == "7"
        assert records[0].data == '{"type":\n"ping"}'
        assert parse_sse(raw) == [("ping", {"type": "ping"})]

    def test_field_without_space_and_bom(self) -> None:
        raw = '\ufeffevent:ping\ndata:{"type":"ping"}\n\n'
        assert parse_sse(raw) == [("ping", {"type": "ping"})]

    def test_record_without_event_line_has_empty_name(self) -> None:
        assert parse_sse('data: {"type":"ping"}\n\n') == [("", {"type": "ping"})]

    def test_openai_style_done_is_a_record_but_not_json(self) -> None:
        raw = 'data: {"a":1}\n\ndata: [DONE]\n\n'
        assert [r.data for r in iter_sse_records(raw)] == ['{"a":1}', "[DONE]"]
        with pytest.raises(AssertionError, match="non-JSON data"):
            parse_sse(raw)

    def test_non_object_json_rejected(self) -> None:
        with pytest.raises(AssertionError, match="expected a JSON object"):
            parse_sse("event: ping\ndata: [1, 2]\n\n")

    def test_event_without_data_rejected(self) -> None:
        with pytest.raises(AssertionError, match="no data: line"):
            iter_sse_records("event: ping\n\n")

    def test_unterminated_last_record_rejected(self) -> None:
        raw = render(simple_text_stream())[:-1]  # drop the final blank line
        with pytest.raises(AssertionError, match="missing blank line"):
            validate_anthropic_stream(raw)
        assert len(iter_sse_records(raw, require_terminated=False)) == 6

    def test_invalid_utf8_rejected(self) -> None:
        raw = render(simple_text_stream())
        # A lone UTF-8 lead byte: what a proxy emits if it splits a character across writes
        # and never sends the rest.
        broken = raw + b'event: ping\ndata: {"type":"ping","x":"\xc3"}\n\n'
        with pytest.raises(AssertionError, match="not valid UTF-8"):
            parse_sse(broken)


# --------------------------------------------------------------------------------------------
# Valid streams
# --------------------------------------------------------------------------------------------


class TestValidStreams:
    def test_reference_stream_accepted_by_claude_code_passes(self) -> None:
        result = validate_anthropic_stream(REFERENCE.read_bytes())
        assert result.completed
        assert result.error is None
        assert result.stop_reason == "tool_use"
        assert result.text == "I'll create the file now."
        assert result.tool_uses == [
            {
                "type": "tool_use",
                "id": "toolu_d575f3d92e464706b7103107",
                "name": "Write",
                "input": {"file_path": "/home/dev/project/hello.txt", "content": "hi\n"},
            }
        ]
        assert result.usage["input_tokens"] == 13685
        assert result.usage["output_tokens"] == 49
        assert result.ping_count == 1
        assert result.event_types[0] == "message_start"
        assert result.event_types[-1] == "message_stop"

    def test_reference_stream_with_crlf_passes(self) -> None:
        raw = REFERENCE.read_bytes().replace(b"\n", b"\r\n")
        assert validate_anthropic_stream(raw).stop_reason == "tool_use"

    def test_reconstructs_thinking_text_and_tools(self) -> None:
        events = [
            message_start(),
            *thinking_block(0, "Let me think.", "c2ln"),
            *text_block(1, "Hi ", "there"),
            *tool_block(2, "", '{"a": [1, ', "2]}", tool_id="toolu_A"),
            *tool_block(3, tool_id="toolu_B", name="noargs"),
            *tool_block(4, "", "  ", tool_id="toolu_C"),
            message_delta("tool_use", usage={"output_tokens": 42, "input_tokens": 99}),
            MESSAGE_STOP,
        ]
        result = validate_anthropic_stream(render(events))
        assert [b["type"] for b in result.content] == [
            "thinking",
            "text",
            "tool_use",
            "tool_use",
            "tool_use",
        ]
        assert result.content[0] == {
            "type": "thinking",
            "thinking": "Let me think.",
            "signature": "c2ln",
        }
        assert result.text == "Hi there"
        assert result.thinking == "Let me think."
        assert [t["input"] for t in result.tool_uses] == [{"a": [1, 2]}, {}, {}]
        assert result.tool_input_json == {2: '{"a": [1, 2]}', 3: "", 4: "  "}
        assert result.usage == {"input_tokens": 99, "output_tokens": 42}
        assert result.message is not None
        assert result.message["id"] == "msg_0123456789abcdef"

    def test_pings_anywhere_before_message_stop(self) -> None:
        events = [
            PING,
            message_start(),
            PING,
            start(0, {"type": "text", "text": ""}),
            PING,
            delta(0, {"type": "text_delta", "text": "x"}),
            PING,
            stop(0),
            PING,
            message_delta(),
            PING,
            MESSAGE_STOP,
        ]
        assert validate_anthropic_stream(render(events)).ping_count == 6

    def test_empty_message_without_blocks(self) -> None:
        events = [message_start(), message_delta("end_turn"), MESSAGE_STOP]
        assert validate_anthropic_stream(render(events)).content == []

    def test_multiple_message_deltas_last_wins(self) -> None:
        events = [
            message_start(),
            *text_block(0, "x"),
            message_delta("max_tokens", usage={"output_tokens": 3}),
            message_delta("end_turn", usage={"output_tokens": 7, "input_tokens": None}),
            MESSAGE_STOP,
        ]
        result = validate_anthropic_stream(render(events))
        assert result.stop_reason == "end_turn"
        assert result.usage == {"input_tokens": 10, "output_tokens": 7}

    def test_stop_sequence(self) -> None:
        events = [
            message_start(),
            *text_block(0, "x"),
            message_delta("stop_sequence", stop_sequence="###"),
            MESSAGE_STOP,
        ]
        result = validate_anthropic_stream(render(events))
        assert (result.stop_reason, result.stop_sequence) == ("stop_sequence", "###")

    def test_max_tokens_may_end_a_tool_turn(self) -> None:
        events = [
            message_start(),
            *tool_block(0, '{"x": 1}'),
            message_delta("max_tokens"),
            MESSAGE_STOP,
        ]
        assert validate_anthropic_stream(render(events)).stop_reason == "max_tokens"

    def test_non_strict_tool_stop_reason(self) -> None:
        events = [message_start(), *tool_block(0, "{}"), message_delta("end_turn"), MESSAGE_STOP]
        with pytest.raises(AssertionError, match="expected 'tool_use'"):
            validate_anthropic_stream(render(events))
        validate_anthropic_stream(render(events), strict_tool_stop_reason=False)

    def test_redacted_thinking_block(self) -> None:
        events = [
            message_start(),
            start(0, {"type": "redacted_thinking", "data": "EmwK"}),
            stop(0),
            *text_block(1, "ok"),
            message_delta(),
            MESSAGE_STOP,
        ]
        assert validate_anthropic_stream(render(events)).content[0]["data"] == "EmwK"

    def test_allow_empty_text_flag(self) -> None:
        events = [message_start(), *text_block(0), message_delta(), MESSAGE_STOP]
        with pytest.raises(AssertionError, match="empty"):
            validate_anthropic_stream(render(events))
        result = validate_anthropic_stream(render(events), allow_empty_text=True)
        assert result.content == [{"type": "text", "text": ""}]

    def test_error_after_closed_blocks(self) -> None:
        events = [message_start(), *text_block(0, "partial"), error_event("api_error", "boom")]
        result = validate_anthropic_stream(render(events), expect_error=True)
        assert result.error == {"type": "api_error", "message": "boom"}
        assert not result.completed
        assert result.text == "partial"
        assert result.stop_reason is None

    def test_error_as_first_event(self) -> None:
        result = validate_anthropic_stream(render([error_event()]))
        assert result.message is None
        assert result.content == []
        assert result.usage == {}
        assert result.error is not None and result.error["type"] == "overloaded_error"

    def test_error_inside_open_block_allowed_when_flag_off(self) -> None:
        events = [
            message_start(),
            start(0, {"type": "text", "text": ""}),
            delta(0, {"type": "text_delta", "text": "par"}),
            error_event("api_error", "upstream stream interrupted"),
        ]
        with pytest.raises(AssertionError, match="still open"):
            validate_anthropic_stream(render(events))
        result = validate_anthropic_stream(render(events), require_closed_before_error=False)
        assert result.error is not None

    def test_error_inside_an_open_tool_use_block_is_the_apis_own_ending(self) -> None:
        # A stream cut in a tool call's input: the block stays open, the client drops the turn.
        block = {"type": "tool_use", "id": "toolu_01", "name": "Write", "input": {}}
        events = [
            message_start(),
            start(0, block),
            delta(0, {"type": "input_json_delta", "partial_json": '{"file_path": "/a'}),
            error_event("api_error", "upstream stream interrupted"),
        ]
        result = validate_anthropic_stream(render(events), expect_error=True)
        assert result.left_open is not None and result.left_open["id"] == "toolu_01"
        assert result.tool_input_json == {0: '{"file_path": "/a'}
        assert not result.completed

    def test_expect_error_flags(self) -> None:
        with pytest.raises(AssertionError, match="expected the stream to end with an error"):
            validate_anthropic_stream(render(simple_text_stream()), expect_error=True)
        with pytest.raises(AssertionError, match="ended with an error event"):
            validate_anthropic_stream(render([error_event()]), expect_error=False)

    def test_str_input_accepted(self) -> None:
        assert validate_anthropic_stream(render(tool_stream()).decode()).completed

    def test_citations_delta(self) -> None:
        citation = {"type": "char_location", "cited_text": "x"}
        events = [
            message_start(),
            start(0, {"type": "text", "text": ""}),
            delta(0, {"type": "text_delta", "text": "x"}),
            delta(0, {"type": "citations_delta", "citation": citation}),
            stop(0),
            message_delta(),
            MESSAGE_STOP,
        ]
        result = validate_anthropic_stream(render(events))
        assert result.content[0]["citations"] == [citation]


# --------------------------------------------------------------------------------------------
# Invalid streams — one or more failing examples per rule
# --------------------------------------------------------------------------------------------


def _replace(events: list[Event], i: int, new: Event) -> list[Event]:
    out = list(events)
    out[i] = new
    return out


def _ms_without(key: str) -> Event:
    name, data = message_start()
    data = copy.deepcopy(data)
    del data["message"][key]
    return (name, data)


def _usage_variant(**usage: Any) -> Event:
    return message_start(usage=usage)


TEXT = simple_text_stream("Hello")  # ms, start, delta, stop, mdelta, mstop
TOOLS = tool_stream()

INVALID_STREAMS: list[tuple[str, list[Event], str]] = [
    # -- framing / naming --
    (
        "missing_event_line",
        _replace(TEXT, 4, ("", message_delta()[1])),
        "no 'event:' line",
    ),
    (
        "event_name_differs_from_type",
        _replace(TEXT, 2, ("content_block_stop", delta(0, {"type": "text_delta", "text": "x"})[1])),
        "!= data.type",
    ),
    ("unknown_event_type", [message_start(), ("bogus", {"type": "bogus"})], "unknown event type"),
    ("empty_stream", [], "no events"),
    # -- message_start --
    ("first_event_not_message_start", TEXT[1:], "first event must be message_start"),
    ("message_start_twice", [TEXT[0], *TEXT], "message_start sent twice"),
    ("bad_message_id", _replace(TEXT, 0, message_start(id="chatcmpl-1")), "msg_"),
    ("bare_msg_prefix", _replace(TEXT, 0, message_start(id="msg_")), "msg_"),
    ("wrong_message_type", _replace(TEXT, 0, message_start(type="completion")), "'message'"),
    ("wrong_role", _replace(TEXT, 0, message_start(role="user")), "assistant"),
    ("missing_model", _replace(TEXT, 0, _ms_without("model")), "model"),
    ("empty_model", _replace(TEXT, 0, message_start(model="")), "model"),
    (
        "content_not_empty",
        _replace(TEXT, 0, message_start(content=[{"type": "text", "text": "x"}])),
        "content must be",
    ),
    (
        "stop_reason_not_null",
        _replace(TEXT, 0, message_start(stop_reason="end_turn")),
        "stop_reason must be null",
    ),
    ("stop_reason_absent", _replace(TEXT, 0, _ms_without("stop_reason")), "stop_reason"),
    ("usage_absent", _replace(TEXT, 0, _ms_without("usage")), "usage must be an object"),
    (
        "input_tokens_absent",
        _replace(TEXT, 0, _usage_variant(output_tokens=1)),
        r"usage\.input_tokens is required",
    ),
    (
        "output_tokens_absent",
        _replace(TEXT, 0, _usage_variant(input_tokens=1)),
        r"usage\.output_tokens is required",
    ),
    (
        "input_tokens_string",
        _replace(TEXT, 0, _usage_variant(input_tokens="10", output_tokens=1)),
        "non-negative integer",
    ),
    (
        "input_tokens_null",
        _replace(TEXT, 0, _usage_variant(input_tokens=None, output_tokens=1)),
        "got null",
    ),
    (
        "input_tokens_float",
        _replace(TEXT, 0, _usage_variant(input_tokens=1.5, output_tokens=1)),
        "non-negative integer",
    ),
    (
        "input_tokens_bool",
        _replace(TEXT, 0, _usage_variant(input_tokens=True, output_tokens=1)),
        "non-negative integer",
    ),
    (
        "negative_tokens",
        _replace(TEXT, 0, _usage_variant(input_tokens=-1, output_tokens=1)),
        "non-negative integer",
    ),
    (
        "cache_tokens_string",
        _replace(
            TEXT,
            0,
            _usage_variant(input_tokens=1, output_tokens=1, cache_read_input_tokens="3"),
        ),
        "cache_read_input_tokens",
    ),
    # -- indexes and nesting --
    (
        "first_index_not_zero",
        [message_start(), *text_block(1, "x"), message_delta(), MESSAGE_STOP],
        "expected 0",
    ),
    (
        "index_gap",
        [message_start(), *text_block(0, "x"), *text_block(2, "y"), message_delta(), MESSAGE_STOP],
        "expected 1",
    ),
    (
        "index_repeated",
        [message_start(), *text_block(0, "x"), *text_block(0, "y"), message_delta(), MESSAGE_STOP],
        "expected 1",
    ),
    (
        "start_while_open",
        [
            message_start(),
            start(0, {"type": "text", "text": ""}),
            delta(0, {"type": "text_delta", "text": "x"}),
            *text_block(1, "y"),
            stop(0),
            message_delta(),
            MESSAGE_STOP,
        ],
        "still open",
    ),
    (
        "delta_without_open_block",
        [message_start(), delta(0, {"type": "text_delta", "text": "x"})],
        "no block is open",
    ),
    (
        "delta_for_closed_block",
        [
            message_start(),
            *text_block(0, "x"),
            start(1, {"type": "text", "text": ""}),
            delta(0, {"type": "text_delta", "text": "late"}),
        ],
        "open block is 1",
    ),
    (
        "stop_without_open_block",
        [message_start(), *text_block(0, "x"), stop(0)],
        "no block is open",
    ),
    (
        "stop_wrong_index",
        [message_start(), start(0, {"type": "text", "text": ""}), stop(1)],
        "open block is 0",
    ),
    (
        "block_never_closed",
        [
            message_start(),
            start(0, {"type": "text", "text": ""}),
            delta(0, {"type": "text_delta", "text": "x"}),
        ],
        "still open",
    ),
    (
        "index_missing",
        [message_start(), ("content_block_start", {"type": "content_block_start"})],
        "index None",
    ),
    # -- block skeletons --
    (
        "unknown_block_type",
        [message_start(), start(0, {"type": "image"})],
        "unknown content block type",
    ),
    (
        "text_skeleton_without_text",
        [message_start(), start(0, {"type": "text"})],
        "text: str",
    ),
    (
        "redacted_thinking_without_data",
        [message_start(), start(0, {"type": "redacted_thinking"})],
        "redacted_thinking needs",
    ),
    (
        "delta_in_complete_block",
        [
            message_start(),
            start(0, {"type": "redacted_thinking", "data": "x"}),
            delta(0, {"type": "text_delta", "text": "x"}),
        ],
        "not allowed in a 'redacted_thinking' block",
    ),
    # -- delta types --
    (
        "input_json_delta_in_text",
        [
            message_start(),
            start(0, {"type": "text", "text": ""}),
            delta(0, {"type": "input_json_delta", "partial_json": "{}"}),
        ],
        "'input_json_delta' not allowed in a 'text' block",
    ),
    (
        "text_delta_in_tool_use",
        [
            message_start(),
            start(0, {"type": "tool_use", "id": "toolu_1", "name": "f", "input": {}}),
            delta(0, {"type": "text_delta", "text": "x"}),
        ],
        "'text_delta' not allowed in a 'tool_use' block",
    ),
    (
        "thinking_delta_in_text",
        [
            message_start(),
            start(0, {"type": "text", "text": ""}),
            delta(0, {"type": "thinking_delta", "thinking": "x"}),
        ],
        "not allowed in a 'text' block",
    ),
    (
        "signature_delta_in_text",
        [
            message_start(),
            start(0, {"type": "text", "text": ""}),
            delta(0, {"type": "signature_delta", "signature": "x"}),
        ],
        "not allowed in a 'text' block",
    ),
    (
        "text_delta_in_thinking",
        [
            message_start(),
            start(0, {"type": "thinking", "thinking": "", "signature": ""}),
            delta(0, {"type": "text_delta", "text": "x"}),
        ],
        "not allowed in a 'thinking' block",
    ),
    (
        "text_delta_text_not_string",
        [
            message_start(),
            start(0, {"type": "text", "text": ""}),
            delta(0, {"type": "text_delta", "text": None}),
        ],
        "text_delta.text must be a string",
    ),
    (
        "partial_json_not_string",
        [
            message_start(),
            start(0, {"type": "tool_use", "id": "toolu_1", "name": "f", "input": {}}),
            delta(0, {"type": "input_json_delta", "partial_json": {"a": 1}}),
        ],
        "partial_json must be a string",
    ),
    (
        "delta_missing",
        [
            message_start(),
            start(0, {"type": "text", "text": ""}),
            ("content_block_delta", {"type": "content_block_delta", "index": 0}),
        ],
        "'delta' must be an object",
    ),
    # -- thinking signatures --
    (
        "thinking_without_signature",
        [
            message_start(),
            start(0, {"type": "thinking", "thinking": "", "signature": ""}),
            delta(0, {"type": "thinking_delta", "thinking": "x"}),
            stop(0),
        ],
        "exactly one signature_delta, got 0",
    ),
    (
        "thinking_with_two_signatures",
        [
            message_start(),
            start(0, {"type": "thinking", "thinking": "", "signature": ""}),
            delta(0, {"type": "signature_delta", "signature": "a"}),
            delta(0, {"type": "signature_delta", "signature": "b"}),
        ],
        "after signature_delta",
    ),
    (
        "thinking_delta_after_signature",
        [
            message_start(),
            start(0, {"type": "thinking", "thinking": "", "signature": ""}),
            delta(0, {"type": "thinking_delta", "thinking": "x"}),
            delta(0, {"type": "signature_delta", "signature": "a"}),
            delta(0, {"type": "thinking_delta", "thinking": "more"}),
        ],
        "thinking_delta after signature_delta",
    ),
    # -- tool_use blocks --
    (
        "tool_id_with_illegal_chars",
        [message_start(), *tool_block(0, "{}", tool_id="functions.get_weather:0")],
        "does not match",
    ),
    ("tool_id_empty", [message_start(), *tool_block(0, "{}", tool_id="")], "non-empty string"),
    (
        "tool_id_missing",
        [message_start(), start(0, {"type": "tool_use", "name": "f", "input": {}})],
        "tool_use.id",
    ),
    ("tool_name_empty", [message_start(), *tool_block(0, "{}", name="")], "tool_use.name"),
    (
        "tool_input_not_object_in_skeleton",
        [message_start(), start(0, {"type": "tool_use", "id": "toolu_1", "name": "f"})],
        "tool_use.input must be an object",
    ),
    (
        "duplicate_tool_ids",
        [
            message_start(),
            *tool_block(0, "{}", tool_id="toolu_same"),
            *tool_block(1, "{}", tool_id="toolu_same"),
        ],
        "duplicate tool id",
    ),
    (
        "tool_input_invalid_json",
        [message_start(), *tool_block(0, '{"city": ', "Oslo}")],
        "not valid JSON",
    ),
    (
        "tool_input_truncated_json",
        [message_start(), *tool_block(0, '{"city": "Os')],
        "not valid JSON",
    ),
    (
        "tool_input_two_objects",
        [message_start(), *tool_block(0, "{}", "{}")],
        "not valid JSON",
    ),
    (
        "tool_input_array",
        [message_start(), *tool_block(0, "[1, 2]")],
        "must be a JSON object",
    ),
    (
        "tool_input_string",
        [message_start(), *tool_block(0, '"x"')],
        "must be a JSON object",
    ),
    (
        "server_tool_id_pattern",
        [
            message_start(),
            start(
                0, {"type": "server_tool_use", "id": "toolu_1", "name": "web_search", "input": {}}
            ),
        ],
        "srvtoolu_",
    ),
    # -- empty text --
    (
        "empty_text_block",
        [message_start(), *text_block(0), message_delta(), MESSAGE_STOP],
        "text block 0 is empty",
    ),
    (
        "text_block_only_empty_deltas",
        [message_start(), *text_block(0, "", ""), message_delta(), MESSAGE_STOP],
        "text block 0 is empty",
    ),
    # -- message_delta --
    (
        "message_delta_missing_stop_reason",
        _replace(
            TEXT,
            4,
            (
                "message_delta",
                {"type": "message_delta", "delta": {}, "usage": {"output_tokens": 1}},
            ),
        ),
        "delta.stop_reason is required",
    ),
    ("message_delta_null_stop_reason", _replace(TEXT, 4, message_delta(None)), "must not be null"),
    (
        "message_delta_unknown_stop_reason",
        _replace(TEXT, 4, message_delta("stop")),
        "is not one of",
    ),
    (
        "message_delta_missing_usage",
        _replace(
            TEXT,
            4,
            ("message_delta", {"type": "message_delta", "delta": {"stop_reason": "end_turn"}}),
        ),
        "usage must be an object",
    ),
    (
        "message_delta_usage_without_output_tokens",
        _replace(TEXT, 4, message_delta(usage={"input_tokens": 3})),
        r"usage\.output_tokens is required",
    ),
    (
        "message_delta_output_tokens_string",
        _replace(TEXT, 4, message_delta(usage={"output_tokens": "3"})),
        "non-negative integer",
    ),
    (
        "message_delta_while_block_open",
        [
            message_start(),
            start(0, {"type": "text", "text": ""}),
            delta(0, {"type": "text_delta", "text": "x"}),
            message_delta(),
        ],
        "message_delta while block 0",
    ),
    (
        "block_after_message_delta",
        [message_start(), message_delta(), *text_block(0, "x"), MESSAGE_STOP],
        "content_block_start after message_delta",
    ),
    (
        "stop_sequence_without_reason",
        _replace(TEXT, 4, message_delta("end_turn", stop_sequence="###")),
        "stop_sequence '###' set",
    ),
    (
        "stop_sequence_reason_without_value",
        _replace(TEXT, 4, message_delta("stop_sequence")),
        "requires the matched stop_sequence",
    ),
    # -- tool_use stop reason --
    (
        "tool_use_reason_without_tool_blocks",
        _replace(TEXT, 4, message_delta("tool_use")),
        "no tool_use block",
    ),
    (
        "tool_blocks_with_end_turn",
        _replace(TOOLS, len(TOOLS) - 2, message_delta("end_turn")),
        "expected 'tool_use'",
    ),
    # -- message_stop / termination --
    ("missing_message_stop", TEXT[:-1], "no message_stop"),
    (
        "message_stop_without_message_delta",
        [message_start(), *text_block(0, "x"), MESSAGE_STOP],
        "without a preceding message_delta",
    ),
    (
        "message_stop_while_block_open",
        [message_start(), start(0, {"type": "text", "text": ""}), MESSAGE_STOP],
        "message_stop while block 0 is open",
    ),
    ("event_after_message_stop", [*TEXT, message_delta()], "after 'message_stop'"),
    ("ping_after_message_stop", [*TEXT, PING], "after 'message_stop'"),
    ("second_message_after_stop", [*TEXT, *TEXT], "after 'message_stop'"),
    # -- error events --
    ("event_after_error", [message_start(), error_event(), PING], "after 'error'"),
    (
        "message_after_error",
        [error_event(), *TEXT],
        "after 'error'",
    ),
    (
        "error_with_open_block",
        [
            message_start(),
            start(0, {"type": "text", "text": ""}),
            delta(0, {"type": "text_delta", "text": "x"}),
            error_event(),
        ],
        "still open",
    ),
    (
        "error_without_message",
        [message_start(), ("error", {"type": "error", "error": {"type": "api_error"}})],
        "error.message",
    ),
    (
        "error_with_empty_message",
        [message_start(), error_event("api_error", "")],
        "error.message",
    ),
    (
        "error_without_type",
        [message_start(), ("error", {"type": "error", "error": {"message": "x"}})],
        "error.type",
    ),
    (
        "error_unknown_type",
        [message_start(), error_event("server_error", "x")],
        "not an Anthropic error type",
    ),
    (
        "error_not_object",
        [message_start(), ("error", {"type": "error", "error": "boom"})],
        "'error' must be an object",
    ),
]


@pytest.mark.parametrize(
    ("events", "pattern"),
    [pytest.param(events, pattern, id=name) for name, events, pattern in INVALID_STREAMS],
)
def test_invalid_stream_rejected(events: list[Event], pattern: str) -> None:
    with pytest.raises(AssertionError, match=pattern):
        validate_anthropic_stream(render(events))


def test_invalid_cases_are_valid_without_their_defect() -> None:
    """Guard for the parametrised table: its baseline streams themselves are valid."""
    validate_anthropic_stream(render(TEXT))
    validate_anthropic_stream(render(TOOLS))


def test_error_message_names_event_number() -> None:
    events = [message_start(), *text_block(0, "x"), *text_block(2, "y")]
    with pytest.raises(AssertionError, match=r"event #4 \(content_block_start\)"):
        validate_anthropic_stream(render(events))


# --------------------------------------------------------------------------------------------
# Non-streaming messages
# --------------------------------------------------------------------------------------------


def make_message(**overrides: Any) -> dict[str, Any]:
    msg: dict[str, Any] = {
        "id": "msg_01HkY3pW9vQm2ZxR7tLc4NbA",
        "type": "message",
        "role": "assistant",
        "model": "claude-sonnet-4-5",
        "content": [
            {"type": "thinking", "thinking": "User wants weather.", "signature": "EqQB"},
            {"type": "text", "text": "Checking the forecast."},
            {
                "type": "tool_use",
                "id": "toolu_01Xq7ZbYzTqB9mNwLkP3sR2d",
                "name": "get_weather",
                "input": {"city": "Oslo"},
            },
        ],
        "stop_reason": "tool_use",
        "stop_sequence": None,
        "usage": {"input_tokens": 412, "output_tokens": 88, "cache_read_input_tokens": 9630},
    }
    msg.update(overrides)
    return msg


class TestMessage:
    def test_valid_message_dict_bytes_and_str(self) -> None:
        msg = make_message()
        assert validate_anthropic_message(msg) is msg
        assert validate_anthropic_message(json.dumps(msg)) == msg
        assert validate_anthropic_message(json.dumps(msg).encode()) == msg

    def test_text_only_and_empty_content(self) -> None:
        validate_anthropic_message(
            make_message(content=[{"type": "text", "text": "hi"}], stop_reason="end_turn")
        )
        validate_anthropic_message(make_message(content=[], stop_reason="end_turn"))

    def test_empty_text_flag(self) -> None:
        msg = make_message(content=[{"type": "text", "text": ""}], stop_reason="end_turn")
        with pytest.raises(AssertionError, match="empty text block"):
            validate_anthropic_message(msg)
        validate_anthropic_message(msg, allow_empty_text=True)

    @pytest.mark.parametrize(
        ("overrides", "pattern"),
        [
            ({"id": "chatcmpl-1"}, "msg_"),
            ({"type": "chat.completion"}, "type must be 'message'"),
            ({"role": "user"}, "assistant"),
            ({"model": None}, "model"),
            ({"content": None}, "content must be a list"),
            ({"content": ["text"]}, "block must be an object"),
            ({"content": [{"type": "image"}]}, "unknown content block type"),
            ({"content": [{"type": "text", "text": 3}]}, "text must be a string"),
            (
                {"content": [{"type": "thinking", "thinking": "x"}], "stop_reason": "end_turn"},
                "thinking.signature",
            ),
            (
                {
                    "content": [
                        {"type": "tool_use", "id": "call 1", "name": "f", "input": {}},
                    ]
                },
                "does not match",
            ),
            (
                {"content": [{"type": "tool_use", "id": "toolu_1", "name": "", "input": {}}]},
                "tool_use.name",
            ),
            (
                {"content": [{"type": "tool_use", "id": "toolu_1", "name": "f", "input": "{}"}]},
                "input must be an object",
            ),
            (
                {
                    "content": [
                        {"type": "tool_use", "id": "toolu_1", "name": "f", "input": {}},
                        {"type": "tool_use", "id": "toolu_1", "name": "g", "input": {}},
                    ]
                },
                "duplicate tool id",
            ),
            ({"usage": {"input_tokens": 1}}, r"usage\.output_tokens is required"),
            ({"usage": {"input_tokens": "1", "output_tokens": 1}}, "non-negative integer"),
            ({"usage": None}, "usage must be an object"),
            ({"stop_reason": None}, "must not be null"),
            ({"stop_reason": "length"}, "is not one of"),
            ({"stop_reason": "end_turn"}, "expected 'tool_use'"),
            (
                {"content": [{"type": "text", "text": "x"}], "stop_reason": "tool_use"},
                "no tool_use block",
            ),
            (
                {"content": [{"type": "text", "text": "x"}], "stop_reason": "stop_sequence"},
                "requires the matched stop_sequence",
            ),
        ],
    )
    def test_invalid_message(self, overrides: dict[str, Any], pattern: str) -> None:
        with pytest.raises(AssertionError, match=pattern):
            validate_anthropic_message(make_message(**overrides))

    def test_not_json(self) -> None:
        with pytest.raises(AssertionError, match="not JSON"):
            validate_anthropic_message(b"<html>502</html>")
        with pytest.raises(AssertionError, match="JSON object"):
            validate_anthropic_message("[]")


# --------------------------------------------------------------------------------------------
# Error bodies
# --------------------------------------------------------------------------------------------


class TestErrorBody:
    def test_valid(self) -> None:
        body = {
            "type": "error",
            "error": {"type": "rate_limit_error", "message": "slow down"},
            "request_id": "req_011CXzyBavZTx2LemQWEXiSt",
        }
        assert validate_anthropic_error(body, status=429, error_type="rate_limit_error") == {
            "type": "rate_limit_error",
            "message": "slow down",
        }
        assert validate_anthropic_error(json.dumps(body))["type"] == "rate_limit_error"

    def test_unlisted_status_needs_only_known_type(self) -> None:
        body = {"type": "error", "error": {"type": "invalid_request_error", "message": "x"}}
        validate_anthropic_error(body, status=422)

    @pytest.mark.parametrize("status", [502, 503])
    def test_502_503_accept_api_or_overloaded(self, status: int) -> None:
        for etype in ("api_error", "overloaded_error"):
            validate_anthropic_error(
                {"type": "error", "error": {"type": etype, "message": "x"}}, status=status
            )

    @pytest.mark.parametrize(
        ("body", "kwargs", "pattern"),
        [
            ({"error": {"type": "api_error", "message": "x"}}, {}, "type must be 'error'"),
            ({"type": "error"}, {}, "'error' must be an object"),
            ({"type": "error", "error": {"message": "x"}}, {}, "error.type"),
            ({"type": "error", "error": {"type": "api_error"}}, {}, "error.message"),
            (
                {"type": "error", "error": {"type": "server_error", "message": "x"}},
                {},
                "not an Anthropic error type",
            ),
            (
                {"type": "error", "error": {"type": "api_error", "message": "x"}, "request_id": 5},
                {},
                "request_id",
            ),
            (
                {"type": "error", "error": {"type": "api_error", "message": "x"}},
                {"status": 429},
                "HTTP 429 should carry",
            ),
            (
                {"type": "error", "error": {"type": "api_error", "message": "x"}},
                {"status": 200},
                "not an error status",
            ),
            (
                {"type": "error", "error": {"type": "api_error", "message": "x"}},
                {"error_type": "overloaded_error"},
                "expected 'overloaded_error'",
            ),
            ({"error": {"message": "openai style", "type": "server_error"}}, {}, "type must be"),
        ],
    )
    def test_invalid(self, body: dict[str, Any], kwargs: dict[str, Any], pattern: str) -> None:
        with pytest.raises(AssertionError, match=pattern):
            validate_anthropic_error(body, **kwargs)

    def test_html_body_rejected(self) -> None:
        with pytest.raises(AssertionError, match="not JSON"):
            validate_anthropic_error(b"<html><body>502 Bad Gateway</body></html>")


# --------------------------------------------------------------------------------------------
# Cross-check: what the validator reconstructs is what the official SDK accumulates
# --------------------------------------------------------------------------------------------


def _sdk_final_message(raw: bytes) -> dict[str, Any]:
    anthropic = pytest.importorskip("anthropic")
    httpx2 = pytest.importorskip("httpx2")  # this anthropic build rejects plain httpx clients

    def handler(request: Any) -> Any:
        return httpx2.Response(200, content=raw, headers={"content-type": "text/event-stream"})

    client = anthropic.Anthropic(
        api_key="test",
        base_url="http://sdk.invalid",
        http_client=httpx2.Client(transport=httpx2.MockTransport(handler)),
    )
    with client.messages.stream(
        model="m", max_tokens=16, messages=[{"role": "user", "content": "hi"}]
    ) as stream:
        message = stream.get_final_message()
    dumped: dict[str, Any] = message.model_dump(mode="json", exclude_none=True)
    return dumped


@pytest.mark.parametrize(
    "raw",
    [
        pytest.param(REFERENCE.read_bytes(), id="reference"),
        pytest.param(render(tool_stream()), id="text+tool"),
        pytest.param(
            render(
                [
                    message_start(usage={"input_tokens": 5, "output_tokens": 1}),
                    *thinking_block(0, "deep thought", "c2ln"),
                    *text_block(1, "a", "b"),
                    *tool_block(2, "", '{"q": ', '"x"}', tool_id="toolu_Q"),
                    *tool_block(3, tool_id="toolu_R", name="noargs"),
                    message_delta("tool_use", usage={"output_tokens": 9, "input_tokens": 6}),
                    MESSAGE_STOP,
                ]
            ),
            id="thinking+text+tools",
        ),
    ],
)
def test_reconstruction_matches_anthropic_sdk(raw: bytes) -> None:
    ours = validate_anthropic_stream(raw)
    sdk = _sdk_final_message(raw)
    assert ours.message is not None
    assert sdk["content"] == ours.content
    assert sdk["stop_reason"] == ours.stop_reason
    assert sdk["id"] == ours.message["id"]
    for key, value in ours.usage.items():
        assert sdk["usage"][key] == value


# --------------------------------------------------------------------------------------------
# Server tools: web search blocks (protocol.md A.6, A.9)
# --------------------------------------------------------------------------------------------

SERVER_ID = "srvtoolu_01AbCdEf"
SEARCH_RESULT = {
    "type": "web_search_result",
    "url": "https://example.org/a",
    "title": "A",
    "encrypted_content": "opaque",
    "page_age": "2 days ago",
}


def search_stream(result_content: Any, *, tool_use_id: str = SERVER_ID, usage: Any = None) -> bytes:
    result = {
        "type": "web_search_tool_result",
        "tool_use_id": tool_use_id,
        "content": result_content,
    }
    events = [
        message_start(),
        start(0, {"type": "server_tool_use", "id": SERVER_ID, "name": "web_search", "input": {}}),
        delta(0, {"type": "input_json_delta", "partial_json": '{"query": "oslo"}'}),
        stop(0),
        start(1, result),
        stop(1),
        *text_block(2, "Sunny."),
        message_delta(
            "end_turn",
            usage or {"output_tokens": 5, "server_tool_use": {"web_search_requests": 1}},
        ),
        MESSAGE_STOP,
    ]
    return render(events)


def test_web_search_blocks_stream_is_valid() -> None:
    stream = validate_anthropic_stream(search_stream([SEARCH_RESULT]))
    assert [b["type"] for b in stream.content] == [
        "server_tool_use",
        "web_search_tool_result",
        "text",
    ]
    assert stream.content[0]["input"] == {"query": "oslo"}
    assert stream.usage["server_tool_use"] == {"web_search_requests": 1}
    error = {"type": "web_search_tool_result_error", "error_code": "max_uses_exceeded"}
    validate_anthropic_stream(search_stream(error))


@pytest.mark.parametrize(
    ("raw", "pattern"),
    [
        (search_stream([SEARCH_RESULT], tool_use_id="srvtoolu_other"), "answers no earlier"),
        (search_stream({"type": "web_search_tool_result_error", "error_code": "x"}), "error_code"),
        (search_stream({"type": "oops"}), "web_search_tool_result_error"),
        (search_stream("text"), "must be a list or an error object"),
        (search_stream([dict(SEARCH_RESULT, url=None)]), r"content\[0\].url"),
        (search_stream([{"type": "text", "text": "x"}]), "must be a web_search_result"),
        (
            search_stream(
                [SEARCH_RESULT],
                usage={"output_tokens": 5, "server_tool_use": {"web_search_requests": -1}},
            ),
            "server_tool_use.web_search_requests",
        ),
    ],
)
def test_bad_web_search_blocks_are_rejected(raw: bytes, pattern: str) -> None:
    with pytest.raises(AssertionError, match=pattern):
        validate_anthropic_stream(raw)


def test_web_search_blocks_in_a_message() -> None:
    content = [
        {"type": "server_tool_use", "id": SERVER_ID, "name": "web_search", "input": {"query": "q"}},
        {"type": "web_search_tool_result", "tool_use_id": SERVER_ID, "content": [SEARCH_RESULT]},
        {"type": "text", "text": "Done."},
    ]
    message = make_message(content=content, stop_reason="end_turn")
    validate_anthropic_message(message)
    bad = make_message(content=[content[1], content[2]], stop_reason="end_turn")
    with pytest.raises(AssertionError, match="answers no earlier"):
        validate_anthropic_message(bad)
    bad_id = make_message(content=[dict(content[0], id="toolu_x"), *content[1:]])
    with pytest.raises(AssertionError, match="srvtoolu_"):
        validate_anthropic_message(bad_id)
