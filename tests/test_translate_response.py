"""OpenAI chat completion → Anthropic message (protocol.md A.8, A.14, B.4, E.3–E.5, F).

Includes tool-argument repair (`parse_arguments`, `JsonPrefixScanner`) and the replay of a
finished message as a stream (`message_to_events`), checked with the strict SSE validator.
"""

from __future__ import annotations

import json
import re
from typing import Any

import pytest

from claude_code_proxy.translate.chat.response import (
    message_to_events,
    stop_reason,
    translate_completion,
)
from claude_code_proxy.translate.errors import ProxyError
from claude_code_proxy.translate.ids import upstream_call_id
from claude_code_proxy.translate.reasoning import decode_signature
from claude_code_proxy.translate.tool_args import JsonPrefixScanner, parse_arguments
from claude_code_proxy.translate.usage import anthropic_usage
from sse_validator import (
    validate_anthropic_error,
    validate_anthropic_message,
    validate_anthropic_stream,
)

CLIENT_MODEL = "claude-sonnet-4-5"
TOOLU_RE = re.compile(r"^toolu_[A-Za-z0-9]{24}$")  # A.14: toolu_ + 24 base62
ANTHROPIC_TOOL_ID_RE = re.compile(r"^[A-Za-z0-9_-]+$")


def completion(
    message: dict[str, Any] | None = None,
    *,
    finish_reason: Any = "stop",
    usage: dict[str, Any] | None = None,
    **choice_extra: Any,
) -> dict[str, Any]:
    choice: dict[str, Any] = {
        "index": 0,
        "finish_reason": finish_reason,
        "logprobs": None,
        "message": {"role": "assistant", "content": None, **(message or {})},
        **choice_extra,
    }
    result: dict[str, Any] = {
        "id": "chatcmpl-B9xYz",
        "object": "chat.completion",
        "created": 1766000000,
        "model": "gpt-4.1-2025-04-14",
        "choices": [choice],
    }
    if usage is not None:
        result["usage"] = usage
    return result


def call(name: str, arguments: Any, call_id: str = "call_9FhK2sQ0xTzV") -> dict[str, Any]:
    return {"id": call_id, "type": "function", "function": {"name": name, "arguments": arguments}}


def translate(data: dict[str, Any], **kwargs: Any) -> dict[str, Any]:
    return translate_completion(data, client_model=CLIENT_MODEL, **kwargs)


def sse(events: list[dict[str, Any]]) -> str:
    return "".join(f"event: {e['type']}\ndata: {json.dumps(e)}\n\n" for e in events)


# ------------------------------------------------------------------------------------------
# envelope and content (A.8, E.3)
# ------------------------------------------------------------------------------------------


def test_text_only_response() -> None:
    data = completion(
        {"content": "Hello there."},
        usage={"prompt_tokens": 12, "completion_tokens": 3, "total_tokens": 15},
    )
    message = translate(data)
    validate_anthropic_message(message)
    assert message["type"] == "message"
    assert message["role"] == "assistant"
    assert message["model"] == CLIENT_MODEL  # the A-side model, not the upstream's
    assert re.match(r"^msg_[A-Za-z0-9]+$", message["id"])
    assert message["content"] == [{"type": "text", "text": "Hello there."}]
    assert message["stop_reason"] == "end_turn"
    assert message["stop_sequence"] is None
    assert message["usage"]["input_tokens"] == 12
    assert message["usage"]["output_tokens"] == 3


def test_message_id_can_be_given() -> None:
    message = translate(completion({"content": "x"}), message_id="msg_fixed123")
    assert message["id"] == "msg_fixed123"


def test_message_ids_are_fresh() -> None:
    ids = {translate(completion({"content": "x"}))["id"] for _ in range(20)}
    assert len(ids) == 20


@pytest.mark.parametrize("content", ["", None])
def test_empty_text_is_omitted(content: Any) -> None:
    message = translate(completion({"content": content}))
    assert message["content"] == []
    assert message["stop_reason"] == "end_turn"
    validate_anthropic_message(message)


def test_text_content_given_as_parts() -> None:
    data = completion(
        {"content": [{"type": "text", "text": "Hel"}, {"type": "text", "text": "lo"}]}
    )
    message = translate(data)
    assert message["content"] == [{"type": "text", "text": "Hello"}]


def test_tool_call_becomes_tool_use_with_an_anthropic_id_carrying_the_upstream_one() -> None:
    data = completion(
        {
            "content": "Checking the forecast.",
            "tool_calls": [call("get_weather", '{"city":"Oslo"}', "functions.get_weather:0")],
        },
        finish_reason="tool_calls",
    )
    message = translate(data)
    validate_anthropic_message(message)
    assert [b["type"] for b in message["content"]] == ["text", "tool_use"]
    assert message["content"][0]["text"] == "Checking the forecast."
    block = message["content"][1]
    assert block["name"] == "get_weather"
    assert block["input"] == {"city": "Oslo"}
    assert block["id"].startswith("toolu_")
    assert ANTHROPIC_TOOL_ID_RE.match(block["id"])
    assert block["id"] != "functions.get_weather:0"
    assert upstream_call_id(block["id"]) == "functions.get_weather:0"  # docs/tool-ids.md
    assert message["stop_reason"] == "tool_use"


@pytest.mark.parametrize("upstream_id", ["", "call_0", "function-call-1", "a b:c/d|e@f", None])
def test_tool_use_ids_are_always_anthropic_legal(upstream_id: Any) -> None:
    data = completion(
        {"tool_calls": [call("f", "{}", upstream_id)]},
        finish_reason="tool_calls",
    )
    (block,) = translate(data)["content"]
    assert ANTHROPIC_TOOL_ID_RE.match(block["id"]), block["id"]
    if upstream_id:
        assert upstream_call_id(block["id"]) == upstream_id
    else:  # nothing to carry: an id shaped like Anthropic's own
        assert TOOLU_RE.match(block["id"]), block["id"]


def test_an_upstream_that_repeats_call_0_every_turn_still_gives_unique_client_ids() -> None:
    data = completion({"tool_calls": [call("f", "{}", "call_0")]}, finish_reason="tool_calls")
    ids = [translate(data)["content"][0]["id"] for _ in range(50)]
    assert len(set(ids)) == 50
    assert {upstream_call_id(i) for i in ids} == {"call_0"}


def test_several_tool_calls_get_distinct_ids_and_keep_order() -> None:
    data = completion(
        {
            "tool_calls": [
                call("Read", '{"file_path":"/a"}', "call_1"),
                call("Read", '{"file_path":"/b"}', "call_1"),  # duplicate upstream id
                call("Bash", '{"command":"ls"}', "call_2"),
            ]
        },
        finish_reason="tool_calls",
    )
    message = translate(data)
    validate_anthropic_message(message)
    blocks = message["content"]
    assert [b["input"] for b in blocks] == [
        {"file_path": "/a"},
        {"file_path": "/b"},
        {"command": "ls"},
    ]
    assert len({b["id"] for b in blocks}) == 3


def test_arguments_already_an_object_are_used_as_is() -> None:
    data = completion({"tool_calls": [call("f", {"a": 1})]}, finish_reason="tool_calls")
    (block,) = translate(data)["content"]
    assert block["input"] == {"a": 1}


def test_legacy_function_call_becomes_tool_use() -> None:
    data = completion(
        {"function_call": {"name": "get_time", "arguments": '{"tz":"UTC"}'}},
        finish_reason="function_call",
    )
    message = translate(data)
    validate_anthropic_message(message)
    (block,) = message["content"]
    assert block["type"] == "tool_use"
    assert block["name"] == "get_time"
    assert block["input"] == {"tz": "UTC"}
    assert message["stop_reason"] == "tool_use"


def test_tool_call_without_name_is_skipped() -> None:
    data = completion(
        {"content": "text", "tool_calls": [call("", "{}"), {"type": "function"}]},
        finish_reason="stop",
    )
    message = translate(data)
    assert [b["type"] for b in message["content"]] == ["text"]
    assert message["stop_reason"] == "end_turn"


# ------------------------------------------------------------------------------------------
# tool arguments: parse and repair (E.3 parse_object, F.5)
# ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("arguments", "expected"),
    [
        ('{"city": "Oslo"}', {"city": "Oslo"}),
        ("{'city': 'Oslo'}", {"city": "Oslo"}),  # single quotes
        ('{"city": "Oslo"} I hope this helps!', {"city": "Oslo"}),  # trailing prose
        ('{"flag": True, "x": None, "y": False}', {"flag": True, "x": None, "y": False}),
        ('{"city": "Oslo",}', {"city": "Oslo"}),  # trailing comma
        ('{"path": "/tmp/a", "n": 3', {"path": "/tmp/a", "n": 3}),  # cut off
        ('"{\\"city\\": \\"Oslo\\"}"', {"city": "Oslo"}),  # double-encoded JSON string
    ],
)
def test_broken_arguments_are_repaired(arguments: str, expected: dict[str, Any]) -> None:
    assert parse_arguments(arguments) == expected
    data = completion({"tool_calls": [call("f", arguments)]}, finish_reason="tool_calls")
    (block,) = translate(data)["content"]
    assert block["input"] == expected


@pytest.mark.parametrize("arguments", [None, "", "   "])
def test_empty_arguments_are_an_empty_object(arguments: Any) -> None:
    assert parse_arguments(arguments) == {}


@pytest.mark.parametrize(("arguments", "value"), [("[1, 2]", [1, 2]), ("42", 42), ('"hi"', "hi")])
def test_non_object_json_is_wrapped(arguments: str, value: Any) -> None:
    assert parse_arguments(arguments) == {"value": value}


@pytest.mark.parametrize("garbage", ["not json at all", "<tool_call>garbage", ")))((("])
def test_unrepairable_arguments_are_never_silently_empty(garbage: str) -> None:
    parsed = parse_arguments(garbage)
    assert isinstance(parsed, dict)
    assert parsed != {}
    assert garbage in json.dumps(parsed) or garbage in parsed.values()


def test_two_concatenated_objects_become_two_tool_calls() -> None:
    # E.3 parse_object: "two concatenated objects → split into two tool calls".
    data = completion(
        {"tool_calls": [call("Read", '{"file_path": "/a"}{"file_path": "/b"}')]},
        finish_reason="tool_calls",
    )
    message = translate(data)
    validate_anthropic_message(message)
    blocks = [b for b in message["content"] if b["type"] == "tool_use"]
    assert [(b["name"], b["input"]) for b in blocks] == [
        ("Read", {"file_path": "/a"}),
        ("Read", {"file_path": "/b"}),
    ]
    assert len({b["id"] for b in blocks}) == 2


def test_repaired_arguments_survive_the_stream_replay() -> None:
    data = completion(
        {"tool_calls": [call("Edit", "{'file_path': '/x.py', 'replace_all': False}")]},
        finish_reason="tool_calls",
    )
    message = translate(data)
    stream = validate_anthropic_stream(sse(message_to_events(message)))
    assert stream.tool_uses[0]["input"] == {"file_path": "/x.py", "replace_all": False}


# ------------------------------------------------------------------------------------------
# reasoning and refusal (E.3, F.14)
# ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("field", ["reasoning_content", "reasoning"])
def test_reasoning_becomes_a_leading_thinking_block_with_signature(field: str) -> None:
    data = completion(
        {
            field: "User wants weather; call the tool.",
            "content": "Checking.",
            "tool_calls": [call("get_weather", '{"city":"Oslo"}')],
        },
        finish_reason="tool_calls",
    )
    message = translate(data)
    validate_anthropic_message(message)
    assert [b["type"] for b in message["content"]] == ["thinking", "text", "tool_use"]
    thinking = message["content"][0]
    assert thinking["thinking"] == "User wants weather; call the tool."
    assert isinstance(thinking["signature"], str)
    assert thinking["signature"]


def test_reasoning_content_wins_over_reasoning() -> None:
    data = completion({"reasoning_content": "deepseek style", "reasoning": "vllm style"})
    message = translate(data)
    assert message["content"][0]["thinking"] == "deepseek style"
    assert "vllm style" not in json.dumps(message)


def test_empty_reasoning_gives_no_thinking_block() -> None:
    message = translate(completion({"reasoning_content": "", "content": "answer"}))
    assert [b["type"] for b in message["content"]] == ["text"]


def test_think_tags_are_split_into_a_thinking_block() -> None:
    # E.3: reasoning ?? (<think>…</think> extracted from content), for raw-format servers.
    data = completion({"content": "<think>Plan the answer.</think>The answer is 4."})
    message = translate(data, think_tags=True)
    validate_anthropic_message(message)
    assert [b["type"] for b in message["content"]] == ["thinking", "text"]
    assert message["content"][0]["thinking"].strip() == "Plan the answer."
    assert message["content"][1]["text"].strip() == "The answer is 4."
    assert "<think>" not in json.dumps(message)


def test_refusal_is_emitted_as_text() -> None:
    data = completion({"content": None, "refusal": "I can't help with that."})
    message = translate(data)
    validate_anthropic_message(message)
    texts = [b["text"] for b in message["content"] if b["type"] == "text"]
    assert texts
    assert "I can't help with that." in "".join(texts)


def test_refusal_with_content_keeps_both() -> None:
    data = completion({"content": "Partial answer.", "refusal": "Rest refused."})
    text = "".join(b["text"] for b in translate(data)["content"] if b["type"] == "text")
    assert "Partial answer." in text
    assert "Rest refused." in text


# ------------------------------------------------------------------------------------------
# stop reasons (E.4, F.12)
# ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("finish_reason", "expected"),
    [
        ("stop", "end_turn"),
        ("length", "max_tokens"),
        ("tool_calls", "tool_use"),
        ("function_call", "tool_use"),
        ("content_filter", "refusal"),
        (None, "end_turn"),
    ],
)
def test_stop_reason_map(finish_reason: Any, expected: str) -> None:
    saw_tool = expected == "tool_use"
    assert stop_reason(finish_reason, saw_tool_call=saw_tool) == (expected, None)


def test_tool_calls_with_finish_stop_are_tool_use() -> None:
    # Gemini / vLLM / old Ollama send "stop" with tool calls.
    assert stop_reason("stop", saw_tool_call=True) == ("tool_use", None)
    data = completion({"tool_calls": [call("f", "{}")]}, finish_reason="stop")
    message = translate(data)
    assert message["stop_reason"] == "tool_use"
    validate_anthropic_message(message)


def test_tool_calls_with_missing_finish_reason_are_tool_use() -> None:
    data = completion({"tool_calls": [call("f", "{}")]}, finish_reason=None)
    assert translate(data)["stop_reason"] == "tool_use"


def test_length_with_tool_calls_is_max_tokens() -> None:
    assert stop_reason("length", saw_tool_call=True) == ("max_tokens", None)
    data = completion({"tool_calls": [call("f", '{"a": 1')]}, finish_reason="length")
    message = translate(data)
    assert message["stop_reason"] == "max_tokens"
    validate_anthropic_message(message)


def test_content_filter_in_response_is_refusal() -> None:
    message = translate(completion({"content": "Partial"}, finish_reason="content_filter"))
    assert message["stop_reason"] == "refusal"
    assert message["stop_sequence"] is None


def test_vllm_stop_reason_matching_a_stop_sequence() -> None:
    data = completion({"content": "Answer: 42"}, finish_reason="stop", stop_reason="</answer>")
    message = translate(data, stop_sequences=["</answer>", "STOP"])
    validate_anthropic_message(message)
    assert message["stop_reason"] == "stop_sequence"
    assert message["stop_sequence"] == "</answer>"


def test_sglang_matched_stop_matching_a_stop_sequence() -> None:
    data = completion({"content": "x"}, finish_reason="stop", matched_stop="STOP")
    message = translate(data, stop_sequences=["STOP"])
    assert (message["stop_reason"], message["stop_sequence"]) == ("stop_sequence", "STOP")


@pytest.mark.parametrize("matched", [151645, "<|im_end|>", None])
def test_stop_token_that_is_not_a_requested_sequence_is_end_turn(matched: Any) -> None:
    # vLLM reports the EOS token id (int) or a special token when no stop string matched.
    data = completion({"content": "x"}, finish_reason="stop", stop_reason=matched)
    message = translate(data, stop_sequences=["</answer>"])
    assert (message["stop_reason"], message["stop_sequence"]) == ("end_turn", None)


def test_sglang_matched_stop_next_to_a_null_stop_reason() -> None:
    data = completion({"content": "x"}, finish_reason="stop", stop_reason=None, matched_stop="S")
    message = translate(data, stop_sequences=["S"])
    assert (message["stop_reason"], message["stop_sequence"]) == ("stop_sequence", "S")


def test_matched_stop_without_requested_sequences_is_end_turn() -> None:
    data = completion({"content": "x"}, finish_reason="stop", stop_reason="</answer>")
    assert translate(data)["stop_reason"] == "end_turn"


# ------------------------------------------------------------------------------------------
# usage (E.5, F.7)
# ------------------------------------------------------------------------------------------


def test_usage_subtracts_cached_tokens() -> None:
    usage = {
        "prompt_tokens": 10042,
        "completion_tokens": 88,
        "total_tokens": 10130,
        "prompt_tokens_details": {"cached_tokens": 9630, "audio_tokens": 0},
        "completion_tokens_details": {"reasoning_tokens": 31},
    }
    message = translate(completion({"content": "x"}, usage=usage))
    assert message["usage"]["input_tokens"] == 412
    assert message["usage"]["cache_read_input_tokens"] == 9630
    assert message["usage"]["output_tokens"] == 88  # already includes reasoning
    assert message["usage"]["cache_creation_input_tokens"] == 0


def test_usage_deepseek_cache_hits() -> None:
    usage = {
        "prompt_tokens": 5000,
        "completion_tokens": 20,
        "prompt_cache_hit_tokens": 4500,
        "prompt_cache_miss_tokens": 500,
    }
    result = anthropic_usage(usage)
    assert result["input_tokens"] == 500
    assert result["cache_read_input_tokens"] == 4500
    assert result["output_tokens"] == 20


def test_usage_cache_writes_are_excluded_from_input() -> None:
    usage = {
        "prompt_tokens": 1000,
        "completion_tokens": 5,
        "prompt_tokens_details": {"cached_tokens": 600, "cache_write_tokens": 100},
    }
    result = anthropic_usage(usage)
    assert result["input_tokens"] == 300
    assert result["cache_read_input_tokens"] == 600
    assert result["cache_creation_input_tokens"] == 100


def test_usage_without_cache_details() -> None:
    result = anthropic_usage({"prompt_tokens": 77, "completion_tokens": 9, "total_tokens": 86})
    assert result["input_tokens"] == 77
    assert result["output_tokens"] == 9
    assert result["cache_read_input_tokens"] == 0


def test_usage_never_negative() -> None:
    result = anthropic_usage(
        {
            "prompt_tokens": 10,
            "completion_tokens": 1,
            "prompt_tokens_details": {"cached_tokens": 50},
        }
    )
    assert result["input_tokens"] >= 0


@pytest.mark.parametrize("usage", [None, {}, {"prompt_tokens": None, "completion_tokens": None}])
def test_missing_usage_does_not_crash(usage: Any) -> None:
    data = completion({"content": "hi"})
    if usage is not None:
        data["usage"] = usage
    message = translate(data)
    validate_anthropic_message(message)
    for key in ("input_tokens", "output_tokens"):
        assert isinstance(message["usage"][key], int)
        assert message["usage"][key] >= 0


def test_missing_usage_uses_the_request_estimate() -> None:
    message = translate(completion({"content": "hi"}), fallback_input_tokens=1234)
    assert message["usage"]["input_tokens"] == 1234


def test_reported_usage_wins_over_the_estimate_when_present() -> None:
    data = completion({"content": "hi"}, usage={"prompt_tokens": 1000, "completion_tokens": 2})
    message = translate(data, fallback_input_tokens=1234)
    assert message["usage"]["input_tokens"] == 1000
    assert message["usage"]["output_tokens"] == 2


def test_a_prompt_count_far_below_the_estimate_is_kept_on_an_honest_upstream() -> None:
    data = completion({"content": "hi"}, usage={"prompt_tokens": 5, "completion_tokens": 2})
    message = translate(data, fallback_input_tokens=5000)
    assert message["usage"]["input_tokens"] == 5
    assert message["usage"]["output_tokens"] == 2


def test_an_under_counting_upstreams_low_prompt_count_is_replaced_by_the_estimate() -> None:
    """Ollama counts only the tokens that missed its KV cache (protocol.md C.2, E.5)."""
    data = completion({"content": "hi"}, usage={"prompt_tokens": 50, "completion_tokens": 2})
    message = translate(data, fallback_input_tokens=12000, under_counts=True)
    assert message["usage"]["input_tokens"] == 12000
    assert message["usage"]["output_tokens"] == 2
    fair = completion({"content": "hi"}, usage={"prompt_tokens": 5000, "completion_tokens": 2})
    assert (
        translate(fair, fallback_input_tokens=12000, under_counts=True)["usage"]["input_tokens"]
        == 5000
    )  # within a factor of three: the upstream's figure


def test_usage_without_a_prompt_count_falls_back_to_the_estimate() -> None:
    data = completion({"content": "hi"}, usage={"completion_tokens": 2})
    assert translate(data, fallback_input_tokens=700)["usage"]["input_tokens"] == 700


# ------------------------------------------------------------------------------------------
# robustness
# ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "data",
    [
        {"choices": [{"index": 0, "finish_reason": "stop"}]},
        {"choices": [{"message": None, "finish_reason": "stop"}]},
    ],
)
def test_degenerate_completions_do_not_crash(data: dict[str, Any]) -> None:
    message = translate(data)
    assert message["type"] == "message"
    assert message["content"] == []
    assert message["stop_reason"] == "end_turn"
    validate_anthropic_message(message)


@pytest.mark.parametrize(
    "data",
    [
        {"choices": []},
        {"choices": None},
        {},
        {"usage": {"prompt_tokens": 5, "completion_tokens": 0}},
        {"choices": [None]},
        {"choices": [{"index": 1, "message": {"content": "second choice"}}]},
    ],
)
def test_a_completion_without_choices_is_an_upstream_error(data: dict[str, Any]) -> None:
    # A 2xx without any choice is an upstream failure, not an empty end_turn (E.8).
    with pytest.raises(ProxyError) as caught:
        translate(data)
    assert (caught.value.status, caught.value.error_type) == (502, "api_error")
    assert "no choices" in caught.value.message
    validate_anthropic_error(caught.value.body(), status=502, error_type="api_error")


# ------------------------------------------------------------------------------------------
# replay as a stream (A.9, F.1–F.6)
# ------------------------------------------------------------------------------------------


def full_message() -> dict[str, Any]:
    data = completion(
        {
            "reasoning_content": "Think first.",
            "content": "Checking the forecast.",
            "tool_calls": [
                call("get_weather", '{"city": "Oslo", "days": [1, 2]}', "c1"),
                call("get_time", '{"tz": "Europe/Oslo"}', "c2"),
            ],
        },
        finish_reason="tool_calls",
        usage={
            "prompt_tokens": 500,
            "completion_tokens": 40,
            "prompt_tokens_details": {"cached_tokens": 100},
        },
    )
    return translate(data)


def test_message_to_events_is_a_valid_stream() -> None:
    message = full_message()
    events = message_to_events(message)
    stream = validate_anthropic_stream(sse(events), expect_error=False)
    assert stream.completed
    assert stream.event_types[0] == "message_start"
    assert stream.event_types[-2:] == ["message_delta", "message_stop"]
    assert stream.message is not None
    assert stream.message["id"] == message["id"]
    assert stream.message["model"] == CLIENT_MODEL
    assert stream.content == message["content"]
    assert stream.stop_reason == "tool_use"
    assert stream.stop_sequence is None
    assert stream.usage["output_tokens"] == message["usage"]["output_tokens"] == 40
    assert stream.usage["input_tokens"] == message["usage"]["input_tokens"] == 400
    assert stream.usage["cache_read_input_tokens"] == 100


def test_message_to_events_message_start_has_null_stop_reason() -> None:
    events = message_to_events(full_message())
    start = events[0]["message"]
    assert start["stop_reason"] is None
    assert start["content"] == []
    assert isinstance(start["usage"]["input_tokens"], int)


def test_message_to_events_text_only() -> None:
    message = translate(
        completion({"content": "Just text."}, usage={"prompt_tokens": 3, "completion_tokens": 2})
    )
    stream = validate_anthropic_stream(sse(message_to_events(message)), expect_error=False)
    assert stream.text == "Just text."
    assert stream.stop_reason == "end_turn"


def test_message_to_events_stop_sequence() -> None:
    data = completion({"content": "x"}, stop_reason="END")
    message = translate(data, stop_sequences=["END"])
    stream = validate_anthropic_stream(sse(message_to_events(message)), expect_error=False)
    assert (stream.stop_reason, stream.stop_sequence) == ("stop_sequence", "END")


def test_message_to_events_empty_message() -> None:
    message = translate(completion({"content": ""}))
    stream = validate_anthropic_stream(sse(message_to_events(message)), expect_error=False)
    assert stream.content == []
    assert stream.completed


def test_message_to_events_thinking_is_reconstructed_with_signature() -> None:
    message = full_message()
    stream = validate_anthropic_stream(sse(message_to_events(message)))
    assert stream.thinking == "Think first."
    assert stream.content[0]["signature"] == message["content"][0]["signature"]


# ------------------------------------------------------------------------------------------
# JsonPrefixScanner: forwarding streamed arguments only while they are a JSON prefix (F.5)
# ------------------------------------------------------------------------------------------


def feed_all(scanner: JsonPrefixScanner, pieces: list[str]) -> list[int]:
    return [scanner.feed(piece) for piece in pieces]


def test_scanner_accepts_an_object_split_anywhere() -> None:
    text = '{"a": "x{y}[z]\\"q", "b": [1, -2.5e3, true, false, null], "c": {"d": {}}}'
    for size in (1, 2, 3, 7):
        scanner = JsonPrefixScanner()
        pieces = [text[i : i + size] for i in range(0, len(text), size)]
        consumed = feed_all(scanner, pieces)
        assert consumed == [len(p) for p in pieces]
        assert scanner.valid
        assert scanner.complete
        assert json.loads(text)  # sanity: the sample is valid JSON


def test_scanner_stops_counting_after_the_object_closes() -> None:
    scanner = JsonPrefixScanner()
    first = '{"a": 1}'
    assert scanner.feed(first + '{"b": 2}') == len(first)
    assert scanner.complete


def test_scanner_ignores_leading_whitespace() -> None:
    scanner = JsonPrefixScanner()
    assert scanner.feed('  \n{"a": 1}') == len('  \n{"a": 1}')
    assert scanner.complete


@pytest.mark.parametrize("text", ['Sure! {"a": 1}', '["a"]', '{"a": ]', '{"a": None}', "{'a': 1}"])
def test_scanner_rejects_what_is_not_a_json_object_prefix(text: str) -> None:
    scanner = JsonPrefixScanner()
    consumed = scanner.feed(text)
    assert not scanner.valid
    assert consumed < len(text)


@pytest.mark.parametrize(
    "prefix",
    [
        '{"city": "Os',
        '{"a": [1, 2',
        '{"a": {"b": [',
        '{"a": "x\\',
        '{"a": "line\\nnext',
        "{",
    ],
)
def test_scanner_closing_suffix_makes_a_cut_prefix_parse(prefix: str) -> None:
    scanner = JsonPrefixScanner()
    scanner.feed(prefix)
    assert scanner.valid
    assert not scanner.complete
    value = json.loads(prefix[: scanner.safe] + scanner.closing_suffix())
    assert isinstance(value, dict)


def test_scanner_closing_suffix_is_empty_once_complete() -> None:
    scanner = JsonPrefixScanner()
    scanner.feed('{"a": [1]}')
    assert scanner.complete
    assert scanner.closing_suffix() == ""


# ------------------------------------------------------------------------------------------
# upstream failures inside a 2xx, usage estimates, Gemini signatures, renamed tools
# ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("finish_reason", ["error", "abort"])
def test_generation_that_ended_in_error_is_an_upstream_error(finish_reason: str) -> None:
    with pytest.raises(ProxyError) as caught:
        translate(completion({"content": "half an ans"}, finish_reason=finish_reason))
    assert (caught.value.status, caught.value.error_type) == (502, "api_error")
    assert finish_reason in caught.value.message


def test_the_choice_with_index_0_is_used() -> None:
    data = completion({"content": "first"})
    data["choices"].insert(
        0, {"index": 1, "message": {"content": "second"}, "finish_reason": "stop"}
    )
    assert translate(data)["content"] == [{"type": "text", "text": "first"}]


def test_missing_usage_estimates_output_tokens_from_the_content() -> None:
    text = "word " * 100
    data = completion(
        {"content": text, "tool_calls": [call("Read", '{"file_path": "/etc/hosts"}')]},
        finish_reason="tool_calls",
    )
    message = translate(data, fallback_input_tokens=55)
    assert message["usage"]["input_tokens"] == 55
    assert (
        message["usage"]["output_tokens"] == (len(text) + len('{"file_path": "/etc/hosts"}')) // 4
    )


def test_reasoning_tokens_become_thinking_tokens() -> None:
    usage = {
        "prompt_tokens": 10,
        "completion_tokens": 40,
        "completion_tokens_details": {"reasoning_tokens": 31},
    }
    message = translate(completion({"content": "x"}, usage=usage))
    assert message["usage"]["output_tokens"] == 40
    assert message["usage"]["output_tokens_details"] == {"thinking_tokens": 31}
    validate_anthropic_message(message)
    plain = translate(
        completion({"content": "x"}, usage={"prompt_tokens": 1, "completion_tokens": 1})
    )
    assert "output_tokens_details" not in plain["usage"]


def test_gemini_thought_signature_goes_in_a_thinking_block_before_its_call() -> None:
    first = call("Read", '{"file_path": "/a"}', "function-call-1")
    first["extra_content"] = {"google": {"thought_signature": "CiQBVKhc…"}}
    second = call("Read", '{"file_path": "/b"}', "function-call-2")
    data = completion({"content": "Reading.", "tool_calls": [first, second]}, finish_reason="stop")
    message = translate(data)
    assert [b["type"] for b in message["content"]] == ["text", "thinking", "tool_use", "tool_use"]
    block = message["content"][1]
    assert block["thinking"] == ""
    assert decode_signature(block["signature"]) == {"r": "", "g": "CiQBVKhc…"}
    validate_anthropic_message(message)
    # The same order when the message is replayed as a stream.
    stream = validate_anthropic_stream(sse(message_to_events(message)))
    assert stream.content == message["content"]


def test_renamed_tools_get_the_client_name_back() -> None:
    data = completion(
        {"tool_calls": [call("mcp__srv__do_thing_1a2b3c4d", "{}"), call("Read", "{}", "c2")]},
        finish_reason="tool_calls",
    )
    message = translate(data, tool_names={"mcp__srv__do_thing_1a2b3c4d": "mcp__srv__do.thing"})
    assert [b["name"] for b in message["content"]] == ["mcp__srv__do.thing", "Read"]


def test_reasoning_details_text_becomes_the_thinking_text() -> None:
    details = [{"type": "reasoning.text", "text": "Let me see.", "signature": "sig"}]
    message = translate(
        completion({"content": "y", "reasoning_details": details}), stash_reasoning=True
    )
    assert message["content"][0]["thinking"] == "Let me see."
    assert decode_signature(message["content"][0]["signature"]) == {
        "r": "Let me see.",
        "d": details,
    }


def test_encrypted_only_reasoning_details_are_stashed_in_an_empty_thinking_block() -> None:
    details = [{"type": "reasoning.encrypted", "data": "gAAAAB…"}]
    data = completion({"content": "y", "reasoning_details": details})
    stashed = translate(data, stash_reasoning=True)
    assert stashed["content"][0]["thinking"] == ""
    assert decode_signature(stashed["content"][0]["signature"]) == {"r": "", "d": details}
    assert [b["type"] for b in translate(data)["content"]] == ["text"]  # nothing to keep
