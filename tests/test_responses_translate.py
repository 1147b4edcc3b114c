"""The Responses API dialect's pure translators: request, Response object, stream events.

Upstream events and Responses are built by mock_responses.py and validated there against the
`openai` package's types; requests are checked with the same rules the mock upstream applies.
"""

from __future__ import annotations

import base64
import json
import re
from pathlib import Path
from typing import Any

import pytest

from claude_code_proxy.translate.errors import ProxyError, RequestValidationError
from claude_code_proxy.translate.ids import carried_upstream_id
from claude_code_proxy.translate.options import TranslationOptions
from claude_code_proxy.translate.reasoning import decode_signature, encode_signature
from claude_code_proxy.translate.responses.request import translate_request
from claude_code_proxy.translate.responses.response import translate_response
from claude_code_proxy.translate.responses.stream import ResponsesStreamTranslator
from claude_code_proxy.translate.sse import SSEDecoder, encode_events
from mock_responses import (
    ResponseScript,
    check_request,
    encode,
    error_event,
    number,
    responses_usage,
)
from sse_validator import ValidatedStream, parse_sse, validate_anthropic_stream

REASONING = TranslationOptions(
    reasoning_param="reasoning_effort",
    efforts=("low", "medium", "high"),
    drop_params=frozenset({"temperature", "top_p"}),
    pdf_as_file=True,
)
PNG = base64.b64encode(b"\x89PNG\r\n\x1a\n" + b"\0" * 32).decode()


def body(messages: list[Any], **extra: Any) -> dict[str, Any]:
    return {"model": "claude-sonnet-4-5", "max_tokens": 2048, "messages": messages, **extra}


def translate(payload: dict[str, Any], options: TranslationOptions = REASONING) -> dict[str, Any]:
    out = translate_request(payload, upstream_model="gpt-5-codex", options=options).payload
    assert check_request(out) is None, check_request(out)
    return out


# ------------------------------------------------------------------------------------------
# Request
# ------------------------------------------------------------------------------------------


def test_fields_every_request_carries() -> None:
    out = translate(
        body(
            [{"role": "user", "content": "hi"}],
            system=[{"type": "text", "text": "You are terse."}],
            stream=True,
            temperature=0.2,
            metadata={"user_id": "user_abc_account_1_session_2"},
            thinking={"type": "enabled", "budget_tokens": 20000},
        )
    )
    assert out["instructions"] == "You are terse."
    assert out["input"] == [
        {"type": "message", "role": "user", "content": [{"type": "input_text", "text": "hi"}]}
    ]
    assert out["store"] is False
    assert out["include"] == ["reasoning.encrypted_content"]
    assert out["max_output_tokens"] == 2048
    assert out["stream"] is True and "stream_options" not in out
    assert out["reasoning"] == {"effort": "high", "summary": "auto"}
    assert "temperature" not in out  # a reasoning model's dropped parameter
    assert out["prompt_cache_key"].startswith("ccp-") and len(out["prompt_cache_key"]) <= 64
    assert "max_tokens" not in out and "messages" not in out


def test_billing_header_is_not_in_instructions_and_prefix_stays_stable() -> None:
    system = [
        {"type": "text", "text": "x-anthropic-billing-header: cc_version=2.1; cch=abc"},
        {"type": "text", "text": "Be helpful."},
    ]
    first = translate(body([{"role": "user", "content": "a"}], system=system))
    later = translate(
        body(
            [
                {"role": "user", "content": "a"},
                {"role": "assistant", "content": "b"},
                {"role": "system", "content": "Reminder: be brief."},
                {"role": "user", "content": "c"},
            ],
            system=system,
        )
    )
    assert first["instructions"] == later["instructions"] == "Be helpful."
    assert later["input"][: len(first["input"])] == first["input"]
    assert later["input"][1] == {"type": "message", "role": "assistant", "content": "b"}
    assert later["input"][2]["role"] == "developer"
    assert later["input"][2]["content"] == [{"type": "input_text", "text": "Reminder: be brief."}]


def test_images_and_pdfs_are_input_parts() -> None:
    pdf = base64.b64encode(b"%PDF-1.4 fake").decode()
    out = translate(
        body(
            [
                {
                    "role": "user",
                    "content": [
                        {"type": "text", "text": "look"},
                        {
                            "type": "image",
                            "source": {"type": "base64", "media_type": "image/png", "data": PNG},
                        },
                        {
                            "type": "document",
                            "title": "spec",
                            "source": {
                                "type": "base64",
                                "media_type": "application/pdf",
                                "data": pdf,
                            },
                        },
                    ],
                }
            ]
        )
    )
    parts = out["input"][0]["content"]
    assert parts[0] == {"type": "input_text", "text": "look"}
    assert parts[1] == {
        "type": "input_image",
        "image_url": f"data:image/png;base64,{PNG}",
        "detail": "auto",
    }
    assert parts[2] == {
        "type": "input_file",
        "filename": "spec.pdf",
        "file_data": f"data:application/pdf;base64,{pdf}",
    }


def tool_turns(result_content: Any = "42") -> list[dict[str, Any]]:
    return [
        {"role": "user", "content": "compute"},
        {
            "role": "assistant",
            "content": [
                {"type": "text", "text": "Calling."},
                {"type": "tool_use", "id": "call_Abc123", "name": "calc", "input": {"x": 1}},
            ],
        },
        {
            "role": "user",
            "content": [
                {"type": "tool_result", "tool_use_id": "call_Abc123", "content": result_content}
            ],
        },
    ]


def test_tool_use_and_result_become_call_items_with_the_same_call_id() -> None:
    out = translate(body(tool_turns()))
    assert out["input"][1:] == [
        {"type": "message", "role": "assistant", "content": "Calling."},
        {
            "type": "function_call",
            "call_id": "call_Abc123",
            "name": "calc",
            "arguments": '{"x":1}',
        },
        {"type": "function_call_output", "call_id": "call_Abc123", "output": "42"},
    ]


def test_tool_result_images_follow_in_a_user_message() -> None:
    image = {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": PNG}}
    out = translate(body(tool_turns([{"type": "text", "text": "shot:"}, image])))
    assert out["input"][3] == {
        "type": "function_call_output",
        "call_id": "call_Abc123",
        "output": "shot:",
    }
    follow = out["input"][4]
    assert follow["role"] == "user"
    assert follow["content"][0] == {"type": "input_text", "text": "Images returned by calc:"}
    assert follow["content"][1]["type"] == "input_image"


def test_unanswered_calls_get_an_output_and_orphan_results_become_text() -> None:
    messages = [
        *tool_turns()[:2],
        {
            "role": "user",
            "content": [{"type": "tool_result", "tool_use_id": "call_Other", "content": "late"}],
        },
    ]
    out = translate(body(messages))
    kinds = [(i["type"], i.get("call_id")) for i in out["input"]]
    assert kinds[2:] == [
        ("function_call", "call_Abc123"),
        ("function_call_output", "call_Abc123"),
        ("message", None),
    ]
    assert "not answered" in out["input"][3]["output"]
    assert "[Result of tool call call_Other]" in out["input"][4]["content"][0]["text"]


def test_tools_are_flat_and_tool_choice_maps() -> None:
    tools = [
        {"name": "calc", "description": "adds", "input_schema": {"type": "object"}},
        {"name": "web_fetch", "type": "web_fetch_20250910"},
        {"type": "bash_20250124", "name": "bash"},
    ]
    cases = {
        "auto": "auto",
        "any": "required",
        "none": "none",
    }
    for kind, expected in cases.items():
        out = translate(
            body([{"role": "user", "content": "x"}], tools=tools, tool_choice={"type": kind})
        )
        assert out["tool_choice"] == expected
    out = translate(
        body(
            [{"role": "user", "content": "x"}],
            tools=tools,
            tool_choice={"type": "tool", "name": "calc", "disable_parallel_tool_use": True},
        )
    )
    assert out["tools"][0] == {
        "type": "function",
        "name": "calc",
        "description": "adds",
        "parameters": {"type": "object"},
        "strict": False,
    }
    assert [t["name"] for t in out["tools"]] == ["calc", "bash"]  # server tools not forwarded
    # except web_search, which the proxy runs (docs/web-search.md)
    searching = translate(
        body(
            [{"role": "user", "content": "x"}],
            tools=[*tools, {"name": "web_search", "type": "web_search_20250305"}],
        )
    )
    assert [t["name"] for t in searching["tools"]] == ["calc", "bash", "web_search"]
    assert searching["tools"][2]["parameters"]["required"] == ["query"]
    assert out["tool_choice"] == {"type": "function", "name": "calc"}
    assert out["parallel_tool_calls"] is False


def test_structured_output_goes_to_text_format() -> None:
    schema = {
        "type": "object",
        "properties": {"a": {"type": "string"}},
        "required": ["a"],
        "additionalProperties": False,
    }
    out = translate(
        body(
            [{"role": "user", "content": "x"}],
            output_config={"format": {"type": "json_schema", "schema": schema}},
        )
    )
    assert out["text"] == {
        "format": {"type": "json_schema", "name": "output", "schema": schema, "strict": True}
    }


def test_effort_and_no_reasoning_for_models_without_it() -> None:
    out = translate(body([{"role": "user", "content": "x"}], output_config={"effort": "low"}))
    assert out["reasoning"] == {"effort": "low", "summary": "auto"}
    out = translate(body([{"role": "user", "content": "x"}]))
    assert out["reasoning"] == {"summary": "auto"}  # adaptive: the model's own effort
    plain = translate(
        body([{"role": "user", "content": "x"}], temperature=0.5), TranslationOptions()
    )
    assert "reasoning" not in plain and plain["temperature"] == 0.5


def test_max_tokens_limit_and_validation_errors() -> None:
    limited = TranslationOptions(max_tokens_limit=1000)
    assert translate(body([{"role": "user", "content": "x"}]), limited)["max_output_tokens"] == 1000
    with pytest.raises(RequestValidationError):
        translate_request({"model": "m", "messages": []}, upstream_model="u")
    with pytest.raises(RequestValidationError):
        translate_request(body([]), upstream_model="u")


# ------------------------------------------------------------------------------------------
# Reasoning round trip (pure): Response → thinking block → reasoning item in place
# ------------------------------------------------------------------------------------------


def test_reasoning_item_round_trips_before_its_function_call() -> None:
    script = (
        ResponseScript()
        .reasoning("**Plan**\n\nread the file", "then edit it")
        .function_call("Read", {"file_path": "/a"}, call_id="call_R1")
    )
    message = translate_response(
        script.response(usage=responses_usage()), client_model="claude-sonnet-4-5"
    )
    thinking, tool_use = message["content"]
    assert thinking["thinking"] == "**Plan**\n\nread the file\n\nthen edit it"
    assert carried_upstream_id(tool_use["id"]) == "call_R1"  # the upstream's id rides along
    # Claude Code may keep only type, thinking and signature of a thinking block.
    echoed = {k: thinking[k] for k in ("type", "thinking", "signature")}
    next_turn = [
        {"role": "user", "content": "go"},
        {"role": "assistant", "content": [echoed, tool_use]},
        {
            "role": "user",
            "content": [{"type": "tool_result", "tool_use_id": "call_R1", "content": "ok"}],
        },
    ]
    out = translate(body(next_turn))
    issued = script.items[0]
    assert out["input"][1] == {
        "type": "reasoning",
        "id": issued["id"],
        "summary": issued["summary"],
        "encrypted_content": issued["encrypted_content"],
    }
    assert out["input"][2]["type"] == "function_call"
    assert out["input"][2]["call_id"] == "call_R1"


def test_foreign_thinking_is_left_out_and_repeats_are_sent_once() -> None:
    stashed = encode_signature("", item={"id": "rs_1", "s": [], "e": "enc"})
    out = translate(
        body(
            [
                {"role": "user", "content": "x"},
                {
                    "role": "assistant",
                    "content": [
                        {"type": "thinking", "thinking": "mine", "signature": "EqQBCkYIBxgCKkD"},
                        {"type": "thinking", "thinking": "", "signature": stashed},
                        {"type": "thinking", "thinking": "", "signature": stashed},
                        {"type": "text", "text": "done"},
                    ],
                },
                {"role": "user", "content": "next"},
            ]
        )
    )
    reasoning = [i for i in out["input"] if i["type"] == "reasoning"]
    assert reasoning == [
        {"type": "reasoning", "id": "rs_1", "summary": [], "encrypted_content": "enc"}
    ]
    assert out["input"][2]["type"] == "message"  # the reasoning's following item


# ------------------------------------------------------------------------------------------
# Response object
# ------------------------------------------------------------------------------------------


def test_response_object_to_message() -> None:
    script = ResponseScript().reasoning("why").text("The answer.").function_call("calc", {"x": 2})
    usage = responses_usage(input_tokens=1000, output_tokens=50, cached=600, reasoning=30)
    message = translate_response(
        script.response(usage=usage), client_model="claude-x", tool_names={"calc": "calc"}
    )
    assert [b["type"] for b in message["content"]] == ["thinking", "text", "tool_use"]
    assert message["content"][2]["input"] == {"x": 2}
    assert message["stop_reason"] == "tool_use"
    assert message["usage"] == {
        "input_tokens": 400,
        "output_tokens": 50,
        "cache_creation_input_tokens": 0,
        "cache_read_input_tokens": 600,
        "output_tokens_details": {"thinking_tokens": 30},
    }
    state = decode_signature(message["content"][0]["signature"])
    assert state is not None and state["o"]["id"] == script.items[0]["id"]


def test_incomplete_refusal_and_failed_responses() -> None:
    cut = ResponseScript().text("partial")
    message = translate_response(
        cut.response("incomplete", incomplete_reason="max_output_tokens", usage=responses_usage()),
        client_model="m",
    )
    assert message["stop_reason"] == "max_tokens"
    refused = ResponseScript().text("I can't help with that.", refusal=True)
    message = translate_response(refused.response(usage=responses_usage()), client_model="m")
    assert message["stop_reason"] == "refusal"
    assert message["content"] == [{"type": "text", "text": "I can't help with that."}]
    failed = ResponseScript().response(
        "failed", error={"code": "rate_limit_exceeded", "message": "slow down"}
    )
    with pytest.raises(ProxyError) as raised:
        translate_response(failed, client_model="m")
    assert raised.value.status == 429 and raised.value.error_type == "rate_limit_error"


# ------------------------------------------------------------------------------------------
# Stream
# ------------------------------------------------------------------------------------------


def run(events: list[dict[str, Any]], **options: Any) -> tuple[ResponsesStreamTranslator, bytes]:
    translator = ResponsesStreamTranslator(model="claude-x", **options)
    out = translator.start()
    for event in events:
        out += translator.feed(event)
        if translator.ended:
            break
    if not translator.ended and translator.complete:
        out += translator.finish()
    return translator, encode_events(out)


def streamed(events: list[dict[str, Any]], **kwargs: Any) -> ValidatedStream:
    return validate_anthropic_stream(run(events)[1], **kwargs)


def test_text_stream() -> None:
    stream = streamed(ResponseScript().text("Hello there, world").events(), expect_error=False)
    assert stream.text == "Hello there, world"
    assert stream.stop_reason == "end_turn"
    assert stream.usage["input_tokens"] == 12 and stream.usage["output_tokens"] == 7


def test_reasoning_text_and_calls_stream_in_order() -> None:
    script = (
        ResponseScript(chunk=3)
        .reasoning("first part", "second part")
        .text("Let me look.")
        .function_call("Read", {"file_path": "/tmp/a.txt"}, call_id="call_1")
        .function_call("Bash", {"command": "ls -la"}, call_id="call_2")
    )
    stream = streamed(script.events(), expect_error=False)
    assert [b["type"] for b in stream.content] == ["thinking", "text", "tool_use", "tool_use"]
    assert stream.thinking == "first part\n\nsecond part"
    assert [carried_upstream_id(t["id"]) for t in stream.tool_uses] == ["call_1", "call_2"]
    assert stream.tool_uses[0]["input"] == {"file_path": "/tmp/a.txt"}
    assert stream.stop_reason == "tool_use"
    state = decode_signature(stream.content[0]["signature"])
    assert state is not None
    assert state["o"] == {
        "id": script.items[0]["id"],
        "s": ["first part", "second part"],
        "e": script.items[0]["encrypted_content"],
    }


def test_reasoning_without_summary_still_carries_its_item() -> None:
    stream = streamed(ResponseScript().reasoning().function_call("f", {}).events())
    thinking = stream.content[0]
    assert thinking["type"] == "thinking" and thinking["thinking"] == ""
    assert decode_signature(thinking["signature"])["o"]["e"].startswith("enc::")


def test_cut_by_max_output_tokens_mid_call_leaves_a_valid_prefix() -> None:
    script = ResponseScript(chunk=4).text("ok").function_call("Write", {"content": "a" * 40})
    events = script.events("incomplete", incomplete_reason="max_output_tokens", cut_after_items=1)
    # Like Anthropic (and the Chat path), a call cut by max_tokens stays a JSON prefix.
    parsed = parse_sse(run(events)[1])
    sent = "".join(
        d["delta"]["partial_json"]
        for name, d in parsed
        if name == "content_block_delta" and d["delta"]["type"] == "input_json_delta"
    )
    assert sent.startswith('{"content": "aaa') and not sent.endswith("}")
    assert [n for n, _ in parsed].count("content_block_stop") == 2
    assert parsed[-2][1]["delta"]["stop_reason"] == "max_tokens"
    assert parsed[-1][0] == "message_stop"


def test_failed_and_error_events_end_with_a_mapped_error() -> None:
    script = ResponseScript().text("partial answer")
    events = script.events(
        "failed", error={"code": "server_error", "message": "The model had an error"}
    )
    stream = streamed(events, expect_error=True)
    assert stream.error["type"] == "api_error"
    assert stream.text == "partial answer"
    start = ResponseScript().events()[:2]
    events = start + number([error_event("Rate limit reached", "rate_limit_exceeded")])[-1:]
    stream = streamed(events, expect_error=True)
    assert stream.error["type"] == "rate_limit_error"
    nested = {"type": "error", "error": {"type": "invalid_request_error", "message": "bad"}}
    assert streamed([*start, nested], expect_error=True).error["type"] == "invalid_request_error"


def test_refusal_stream() -> None:
    stream = streamed(ResponseScript().text("No.", refusal=True).events())
    assert stream.text == "No." and stream.stop_reason == "refusal"


def test_interleaved_items_never_interleave_blocks() -> None:
    script = (
        ResponseScript(chunk=2).function_call("a", {"k": "one"}).function_call("b", {"k": "two"})
    )
    events = script.events()
    head, tail = events[:2], events[2:]
    first = [e for e in tail if e.get("output_index") == 0]
    second = [e for e in tail if e.get("output_index") == 1]
    rest = [e for e in tail if "output_index" not in e]
    mixed = []
    for pair in zip(first, second, strict=False):
        mixed.extend(pair)
    mixed += first[len(second) :] + second[len(first) :]
    stream = streamed(head + mixed + rest, expect_error=False)
    assert [t["input"] for t in stream.tool_uses] == [{"k": "one"}, {"k": "two"}]


def test_output_only_in_the_terminal_event_is_replayed() -> None:
    script = ResponseScript().reasoning("thought").text("Answer").function_call("f", {"a": 1})
    events = script.events()
    terminal = events[-1]
    terminal["response"]["output"] = script.items
    stream = streamed([events[0], terminal], expect_error=False)
    assert [b["type"] for b in stream.content] == ["thinking", "text", "tool_use"]
    assert stream.text == "Answer" and stream.thinking == "thought"


def test_invalid_arguments_are_repaired_and_a_stream_without_end_is_incomplete() -> None:
    script = ResponseScript(chunk=5).function_call("f", '{"a": 1, "b": tru}')
    stream = streamed(script.events(), expect_error=False)
    assert json.loads(stream.tool_input_json[0])["a"] == 1
    translator, _raw = run(ResponseScript().text("abc").events()[:-1])
    assert not translator.ended  # the exchange fails such a stream: no terminal event yet
    assert translator.fail("api_error", "closed")[-1]["type"] == "error"


def test_sse_decoder_reads_event_lines_on_the_fast_and_the_slow_path() -> None:
    events = ResponseScript().reasoning("r").text("héllo wörld").events()
    raw = b"".join(encode(e) for e in events)
    fast = SSEDecoder().feed(raw)
    slow_decoder = SSEDecoder()
    slow = [p for i in range(len(raw)) for p in slow_decoder.feed(raw[i : i + 1])]
    crlf = SSEDecoder().feed(raw.replace(b"\n", b"\r\n"))
    assert [json.loads(p) for p in fast] == [json.loads(p) for p in slow] == events
    assert [json.loads(p) for p in crlf] == events


def test_bench_mock_speaks_the_openai_shapes(monkeypatch: pytest.MonkeyPatch) -> None:
    """bench/mock.py's pre-encoded Responses stream: valid events the translator reads."""
    monkeypatch.syspath_prepend(str(Path(__file__).resolve().parent.parent))
    from bench.mock import responses_events

    events = responses_events(12)
    number([{k: v for k, v in e.items() if k != "sequence_number"} for e in events])
    stream = streamed(events, expect_error=False)
    assert stream.text == "".join(e["delta"] for e in events if "delta" in e)
    assert stream.usage["output_tokens"] == 12


def test_mock_rejects_what_the_api_rejects() -> None:
    base = {"model": "gpt-5-codex", "input": [{"role": "user", "content": "hi"}]}
    assert check_request(base) is None
    chat_tools = {**base, "tools": [{"type": "function", "function": {"name": "f"}}]}
    assert "flat" in (check_request(chat_tools) or "")
    assistant = {
        "type": "message",
        "role": "assistant",
        "content": [{"type": "input_text", "text": "x"}],
    }
    assert "output_text" in (check_request({**base, "input": [assistant]}) or "")
    orphan = {"type": "function_call_output", "call_id": "call_x", "output": "1"}
    assert "No tool call" in (check_request({**base, "input": [orphan]}) or "")


def test_events_skipped_unparsed_change_nothing() -> None:
    """The relay skips `IGNORED` events before parsing: the translation must not need them."""
    script = (
        ResponseScript(chunk=4)
        .reasoning("one", "two")
        .text("Hello")
        .text("No.", refusal=True)
        .function_call("f", {"a": 1})
    )
    events = script.events()
    raw = [json.dumps(e, separators=(",", ":")).encode() for e in events]
    ignored = ResponsesStreamTranslator.IGNORED
    kept = [e for e, r in zip(events, raw, strict=True) if not r.startswith(ignored)]
    skipped = {e["type"] for e, r in zip(events, raw, strict=True) if r.startswith(ignored)}
    assert {"response.created", "response.in_progress", "response.content_part.added"} <= skipped
    full = run(events)[1].decode()
    lean = run(kept)[1].decode()
    strip = re.compile(r'"(id|signature)":"[^"]*"')  # message ids are random per run
    assert strip.sub("", full) == strip.sub("", lean)
