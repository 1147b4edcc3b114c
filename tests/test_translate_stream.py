"""The stream state machine: OpenAI chunks in, a strictly valid Anthropic SSE stream out."""

from __future__ import annotations

import json
from typing import Any

import pytest

from claude_code_proxy.translate.sse import SSEDecoder, encode_events
from claude_code_proxy.translate.stream import StreamTranslator
from sse_validator import ValidatedStream, parse_sse, validate_anthropic_stream


def delta(**fields: Any) -> dict[str, Any]:
    return {"choices": [{"index": 0, "delta": fields, "finish_reason": None}]}


def finish(reason: str = "stop", **extra: Any) -> dict[str, Any]:
    return {"choices": [{"index": 0, "delta": {}, "finish_reason": reason, **extra}]}


def usage(prompt: int = 100, completion: int = 20, cached: int = 0) -> dict[str, Any]:
    body: dict[str, Any] = {"prompt_tokens": prompt, "completion_tokens": completion}
    if cached:
        body["prompt_tokens_details"] = {"cached_tokens": cached}
    return {"choices": [], "usage": body}


def call(
    index: int | None, *, id: str | None = None, name: str | None = None, args: str | None = None
) -> dict[str, Any]:
    fragment: dict[str, Any] = {}
    if index is not None:
        fragment["index"] = index
    if id is not None:
        fragment["id"] = id
        fragment["type"] = "function"
    function: dict[str, Any] = {}
    if name is not None:
        function["name"] = name
    if args is not None:
        function["arguments"] = args
    if function:
        fragment["function"] = function
    return fragment


def run(
    chunks: list[dict[str, Any]], *, end: bool = True, **options: Any
) -> tuple[StreamTranslator, bytes]:
    translator = StreamTranslator(model="claude-opus-5-5", **options)
    events = translator.start()
    for chunk in chunks:
        events += translator.feed(chunk)
    if end:
        events += translator.finish()
    return translator, encode_events(events)


def validated(chunks: list[dict[str, Any]], **kwargs: Any) -> ValidatedStream:
    return validate_anthropic_stream(run(chunks)[1], **kwargs)


def test_text_stream_with_trailing_usage_chunk() -> None:
    stream = validated(
        [
            delta(role="assistant", content=""),
            delta(content="Hel"),
            delta(content="lo"),
            finish(),
            usage(120, 7, cached=100),
        ],
        expect_error=False,
    )
    assert stream.text == "Hello"
    assert stream.stop_reason == "end_turn"
    assert stream.usage["input_tokens"] == 20
    assert stream.usage["cache_read_input_tokens"] == 100
    assert stream.usage["output_tokens"] == 7
    assert stream.event_types[0] == "message_start"
    assert stream.event_types[-2:] == ["message_delta", "message_stop"]


def test_message_delta_waits_for_usage_chunk() -> None:
    translator = StreamTranslator(model="m", expect_usage=True)
    translator.start()
    translator.feed(delta(content="hi"))
    events = translator.feed(finish())
    assert [e["type"] for e in events] == ["content_block_stop"]
    assert not translator.complete
    translator.feed(usage())
    assert translator.complete
    tail = translator.finish()
    assert [e["type"] for e in tail] == ["message_delta", "message_stop"]
    assert tail[0]["usage"]["output_tokens"] == 20


def test_usage_inside_the_finish_chunk_completes_at_once() -> None:
    translator = StreamTranslator(model="m")
    translator.start()
    translator.feed(delta(content="hi"))
    chunk = finish()
    chunk["usage"] = {"prompt_tokens": 5, "completion_tokens": 1}
    translator.feed(chunk)
    assert translator.complete


def test_stream_without_usage_still_reports_integer_usage() -> None:
    _, raw = run([delta(content="word " * 40), finish()], input_tokens=321)
    stream = validate_anthropic_stream(raw)
    assert stream.usage["input_tokens"] == 321
    assert stream.usage["output_tokens"] > 0


def test_reasoning_then_text_then_tool_blocks_in_order() -> None:
    stream = validated(
        [
            delta(reasoning_content="Let me "),
            delta(reasoning_content="think."),
            delta(content="Writing it."),
            delta(tool_calls=[call(0, id="call_1", name="Write", args="")]),
            delta(tool_calls=[call(0, args='{"file_path": "/tmp/a",')]),
            delta(tool_calls=[call(0, args=' "content": "hi"}')]),
            finish("tool_calls"),
            usage(),
        ]
    )
    assert [b["type"] for b in stream.content] == ["thinking", "text", "tool_use"]
    assert stream.thinking == "Let me think."
    assert stream.content[0]["signature"]
    assert stream.tool_uses[0]["input"] == {"file_path": "/tmp/a", "content": "hi"}
    assert stream.tool_uses[0]["name"] == "Write"
    assert stream.tool_uses[0]["id"].startswith("toolu_")
    assert stream.stop_reason == "tool_use"


def test_vllm_and_ollama_reasoning_field() -> None:
    stream = validated([delta(reasoning="pondering"), delta(content="answer"), finish()])
    assert stream.thinking == "pondering"
    assert stream.text == "answer"


def test_tool_arguments_stream_incrementally() -> None:
    translator = StreamTranslator(model="m")
    translator.start()
    out = translator.feed(delta(tool_calls=[call(0, id="c", name="Bash", args='{"comm')]))
    partials = [e["delta"]["partial_json"] for e in out if e["type"] == "content_block_delta"]
    assert partials == ['{"comm']


def test_arguments_arriving_before_the_name_are_kept() -> None:
    stream = validated(
        [
            delta(tool_calls=[call(0, args='{"command": ')]),
            delta(tool_calls=[call(0, id="call_9", name="Bash", args='"ls"}')]),
            finish("tool_calls"),
        ]
    )
    assert stream.tool_uses[0]["name"] == "Bash"
    assert stream.tool_uses[0]["input"] == {"command": "ls"}


def test_missing_ids_are_minted() -> None:
    stream = validated(
        [delta(tool_calls=[call(0, name="Read", args='{"file_path": "/x"}')]), finish("tool_calls")]
    )
    assert stream.tool_uses[0]["id"].startswith("toolu_")


def test_odd_upstream_ids_never_reach_the_client() -> None:
    stream = validated(
        [
            delta(tool_calls=[call(0, id="functions.Read:0", name="Read", args="{}")]),
            finish("tool_calls"),
        ]
    )
    assert stream.tool_uses[0]["id"].startswith("toolu_")


def test_several_complete_calls_in_one_chunk() -> None:
    stream = validated(
        [
            delta(
                tool_calls=[
                    call(0, id="a", name="Read", args='{"file_path": "/a"}'),
                    call(1, id="b", name="Read", args='{"file_path": "/b"}'),
                ]
            ),
            finish("tool_calls"),
        ]
    )
    assert [t["input"]["file_path"] for t in stream.tool_uses] == ["/a", "/b"]
    assert len({t["id"] for t in stream.tool_uses}) == 2


def test_interleaved_fragments_of_two_calls() -> None:
    stream = validated(
        [
            delta(tool_calls=[call(0, id="a", name="Read", args='{"file_')]),
            delta(tool_calls=[call(1, id="b", name="Bash", args='{"comm')]),
            delta(tool_calls=[call(0, args='path": "/a"}')]),
            delta(tool_calls=[call(1, args='and": "ls"}')]),
            finish("tool_calls"),
        ]
    )
    assert [(t["name"], t["input"]) for t in stream.tool_uses] == [
        ("Read", {"file_path": "/a"}),
        ("Bash", {"command": "ls"}),
    ]


def test_gemini_calls_without_index_and_reused_index() -> None:
    stream = validated(
        [
            delta(
                tool_calls=[
                    call(None, id="function-call-1", name="Read", args='{"file_path": "/a"}')
                ]
            ),
            delta(
                tool_calls=[
                    call(None, id="function-call-2", name="Read", args='{"file_path": "/b"}')
                ]
            ),
            delta(tool_calls=[call(0, id="x1", name="Bash", args='{"command": "a"}')]),
            delta(tool_calls=[call(0, id="x2", name="Bash", args='{"command": "b"}')]),
            finish("stop"),
        ]
    )
    assert [t["input"] for t in stream.tool_uses] == [
        {"file_path": "/a"},
        {"file_path": "/b"},
        {"command": "a"},
        {"command": "b"},
    ]
    assert stream.stop_reason == "tool_use"  # finish "stop" with tool calls


def test_gemini_empty_ids_with_complete_arguments_split_calls() -> None:
    stream = validated(
        [
            delta(tool_calls=[call(None, id="", name="Read", args='{"file_path": "/a"}')]),
            delta(tool_calls=[call(None, id="", name="Read", args='{"file_path": "/b"}')]),
            finish("stop"),
        ]
    )
    assert len(stream.tool_uses) == 2


def test_whole_arguments_as_object_are_serialized() -> None:
    fragment = {
        "index": 0,
        "id": "call_ab12cd34",
        "function": {"name": "Bash", "arguments": {"command": "ls"}},
    }
    stream = validated([delta(tool_calls=[fragment]), finish("tool_calls")])
    assert stream.tool_uses[0]["input"] == {"command": "ls"}


def test_repeated_full_arguments_are_not_duplicated() -> None:
    stream = validated(
        [
            delta(tool_calls=[call(0, id="c", name="Bash", args='{"command": "ls"}')]),
            delta(tool_calls=[call(0, args='{"command": "ls"}')]),
            finish("tool_calls"),
        ]
    )
    assert stream.tool_uses[0]["input"] == {"command": "ls"}


def test_invalid_whole_arguments_are_repaired() -> None:
    stream = validated(
        [
            delta(
                tool_calls=[call(0, id="c", name="Bash", args="{'command': 'ls', 'timeout': None}")]
            ),
            finish("tool_calls"),
        ]
    )
    assert stream.tool_uses[0]["input"]["command"] == "ls"


def test_non_object_garbage_is_kept_not_emptied() -> None:
    stream = validated(
        [delta(tool_calls=[call(0, id="c", name="Bash", args="ls -la")]), finish("tool_calls")]
    )
    assert stream.tool_uses[0]["input"] != {}


def test_empty_arguments_give_empty_input() -> None:
    stream = validated(
        [delta(tool_calls=[call(0, id="c", name="ListAgents", args="")]), finish("tool_calls")]
    )
    assert stream.tool_uses[0]["input"] == {}


def test_cut_off_arguments_on_length_report_max_tokens() -> None:
    args = '{"file_path": "/a", "content": "par'
    _, raw = run([delta(tool_calls=[call(0, id="c", name="Write", args=args)]), finish("length")])
    # Like Anthropic, a call cut by max_tokens stays a JSON prefix (not "completed" into a
    # truncated file write); the block is still closed and the stop reason is honest.
    events = parse_sse(raw)
    partial = "".join(
        d["delta"]["partial_json"]
        for name, d in events
        if name == "content_block_delta" and d["delta"]["type"] == "input_json_delta"
    )
    assert partial == args
    assert [n for n, _ in events].count("content_block_stop") == 1
    assert events[-2][1]["delta"]["stop_reason"] == "max_tokens"


def test_cut_off_arguments_without_length_are_closed() -> None:
    stream = validated(
        [
            delta(
                tool_calls=[
                    call(0, id="c", name="Write", args='{"file_path": "/a", "content": "par')
                ]
            ),
            finish("stop"),
        ]
    )
    assert stream.tool_uses[0]["input"] == {"file_path": "/a", "content": "par"}


def test_text_after_a_tool_call_opens_a_new_block() -> None:
    stream = validated(
        [
            delta(content="first"),
            delta(tool_calls=[call(0, id="c", name="Bash", args='{"command": "ls"}')]),
            delta(content="after"),
            finish("tool_calls"),
        ]
    )
    assert [b["type"] for b in stream.content] == ["text", "tool_use", "text"]
    assert stream.content[2]["text"] == "after"


def test_empty_choices_chunks_are_skipped() -> None:
    azure_filter = {"id": "", "choices": [], "prompt_filter_results": [{"prompt_index": 0}]}
    stream = validated([azure_filter, delta(content="ok"), finish(), usage()])
    assert stream.text == "ok"


def test_no_empty_leading_text_block() -> None:
    stream = validated([delta(role="assistant", content=""), delta(content=""), finish()])
    assert stream.content == []
    assert stream.stop_reason == "end_turn"


@pytest.mark.parametrize(
    ("reason", "expected"),
    [
        ("stop", "end_turn"),
        ("length", "max_tokens"),
        ("content_filter", "refusal"),
        (None, "end_turn"),
    ],
)
def test_stop_reason_mapping(reason: str | None, expected: str) -> None:
    chunks = [delta(content="x")]
    if reason:
        chunks.append(finish(reason))
    assert validated(chunks).stop_reason == expected


def test_vllm_matched_stop_sequence() -> None:
    _, raw = run([delta(content="a"), finish("stop", stop_reason="END")], stop_sequences=["END"])
    stream = validate_anthropic_stream(raw)
    assert (stream.stop_reason, stream.stop_sequence) == ("stop_sequence", "END")


def test_error_chunk_mid_stream_ends_with_error_event() -> None:
    translator, raw = run(
        [delta(content="partial"), {"error": {"message": "provider exploded", "code": 502}}],
        end=False,
    )
    stream = validate_anthropic_stream(raw, expect_error=True)
    assert stream.error is not None
    assert "provider exploded" in stream.error["message"]
    assert "message_delta" not in stream.event_types
    assert translator.ended
    assert translator.finish() == []


def test_openrouter_finish_reason_error_is_an_error() -> None:
    _, raw = run([delta(content="x"), finish("error")], end=False)
    validate_anthropic_stream(raw, expect_error=True)


def test_fail_closes_an_open_tool_block() -> None:
    translator = StreamTranslator(model="m")
    events = translator.start()
    events += translator.feed(
        delta(tool_calls=[call(0, id="c", name="Write", args='{"content": "ab')])
    )
    events += translator.fail("api_error", "upstream connection dropped")
    stream = validate_anthropic_stream(encode_events(events), expect_error=True)
    assert stream.tool_uses[0]["input"] == {"content": "ab"}


def test_chunks_after_finish_are_ignored() -> None:
    stream = validated([delta(content="a"), finish(), delta(content="late"), usage()])
    assert stream.text == "a"


def test_non_dict_and_malformed_fragments_do_not_crash() -> None:
    stream = validated(
        [
            "not a chunk",  # type: ignore[list-item]
            {"choices": ["x"]},
            delta(tool_calls=["junk", {"index": 0, "function": "nope"}]),
            delta(content="fine"),
            finish(),
        ]
    )
    assert stream.text == "fine"


def test_unnamed_tool_call_is_dropped_without_breaking_the_stream() -> None:
    stream = validated([delta(tool_calls=[call(0, args='{"a": 1}')]), delta(content="t"), finish()])
    assert stream.tool_uses == []


# ------------------------------------------------------------------ SSE decoding


def sse_bytes(chunks: list[Any]) -> bytes:
    return (
        b"".join(b"data: " + json.dumps(c).encode() + b"\n\n" for c in chunks) + b"data: [DONE]\n\n"
    )


@pytest.mark.parametrize("step", [1, 2, 3, 7, 64])
def test_decoder_survives_any_read_boundary(step: int) -> None:
    raw = sse_bytes([delta(content="héllo wörld — ✓"), finish()])
    decoder = SSEDecoder()
    payloads: list[bytes] = []
    for i in range(0, len(raw), step):
        payloads += decoder.feed(raw[i : i + step])
    payloads += decoder.flush()
    assert payloads[-1] == b"[DONE]"
    assert json.loads(payloads[0])["choices"][0]["delta"]["content"] == "héllo wörld — ✓"


def test_decoder_handles_crlf_comments_and_multiline_data() -> None:
    raw = b': OPENROUTER PROCESSING\r\n\r\nevent: x\r\ndata: {"a":\r\ndata: 1}\r\n\r\ndata: [DONE]\r\n\r\n'
    decoder = SSEDecoder()
    assert decoder.feed(raw) == [b'{"a":\n1}', b"[DONE]"]


def test_decoder_flushes_a_final_record_without_blank_line() -> None:
    decoder = SSEDecoder()
    assert decoder.feed(b'data: {"x": 1}') == []
    assert decoder.flush() == [b'{"x": 1}']


def test_every_encoded_event_names_its_type() -> None:
    _, raw = run([delta(reasoning_content="r"), delta(content="t"), finish(), usage()])
    for record in raw.decode().strip().split("\n\n"):
        event_line, data_line = record.split("\n")
        assert event_line == "event: " + json.loads(data_line.removeprefix("data: "))["type"]


def test_glued_different_objects_become_separate_calls() -> None:
    stream = validated(
        [
            delta(tool_calls=[call(0, id="c", name="Read", args='{"file_path": "/a"}')]),
            delta(tool_calls=[call(0, args='{"file_path": "/b"}')]),
            finish("tool_calls"),
        ]
    )
    assert [t["input"] for t in stream.tool_uses] == [{"file_path": "/a"}, {"file_path": "/b"}]
    assert all(t["name"] == "Read" for t in stream.tool_uses)
