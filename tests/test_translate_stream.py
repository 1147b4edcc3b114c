"""The stream state machine: OpenAI chunks in, a strictly valid Anthropic SSE stream out."""

from __future__ import annotations

import json
from typing import Any

import pytest

from claude_code_proxy.translate.chat.stream import StreamTranslator
from claude_code_proxy.translate.reasoning import decode_signature
from claude_code_proxy.translate.sse import SSEDecoder, encode_events
from claude_code_proxy.translate.tool_args import parse_arguments
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


def partials(events: list[dict[str, Any]]) -> list[str]:
    return [
        e["delta"]["partial_json"]
        for e in events
        if e["type"] == "content_block_delta" and e["delta"]["type"] == "input_json_delta"
    ]


def test_tool_arguments_stream_incrementally() -> None:
    # Fragments go out as they come, up to the last point that can still be closed: a
    # dangling key waits for its value, a string value streams character by character.
    translator = StreamTranslator(model="m")
    translator.start()
    out = translator.feed(delta(tool_calls=[call(0, id="c", name="Bash", args='{"comm')]))
    assert partials(out) == ["{"]
    out = translator.feed(delta(tool_calls=[call(0, args='and": "ls -')]))
    assert partials(out) == ['"command": "ls -']
    out = translator.feed(delta(tool_calls=[call(0, args='la", "timeout": 12')]))
    assert partials(out) == ['la", "timeout": 12']
    out = translator.feed(delta(tool_calls=[call(0, args="0}")]))
    assert partials(out) == ["0}"]


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


@pytest.mark.parametrize(
    "extra",
    [
        {"matched_stop": "END"},  # SGLang
        {"stop_reason": None, "matched_stop": "END"},  # both keys, vLLM's null
        {"stop_reason": "END", "matched_stop": None},
    ],
)
def test_the_stop_string_the_upstream_names_is_the_stop_sequence(extra: dict[str, Any]) -> None:
    _, raw = run([delta(content="a"), finish("stop", **extra)], stop_sequences=["X", "END"])
    stream = validate_anthropic_stream(raw)
    assert (stream.stop_reason, stream.stop_sequence) == ("stop_sequence", "END")


@pytest.mark.parametrize("extra", [{}, {"stop_reason": 128009}, {"stop_reason": None}])
def test_without_a_named_stop_string_the_turn_just_ends(extra: dict[str, Any]) -> None:
    # The text ends with a requested sequence, but the upstream did not say it stopped there.
    _, raw = run([delta(content="a END"), finish("stop", **extra)], stop_sequences=["END"])
    stream = validate_anthropic_stream(raw)
    assert (stream.stop_reason, stream.stop_sequence) == ("end_turn", None)


@pytest.mark.parametrize(
    "error",
    [
        {"message": "Overloaded", "type": "overloaded_error"},
        {"message": "model busy", "code": "overloaded"},
        {"message": "busy", "code": 529},
        {"message": "no capacity", "code": 503},
        {"message": "busy", "code": 500, "type": "server_overloaded"},
    ],
)
def test_an_embedded_overload_mid_stream_is_overloaded_error(error: dict[str, Any]) -> None:
    _, raw = run([delta(content="partial"), {"error": error}], end=False)
    stream = validate_anthropic_stream(raw, expect_error=True)
    assert stream.error is not None and stream.error["type"] == "overloaded_error"


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


def test_fail_leaves_a_tool_call_with_cut_arguments_open() -> None:
    translator = StreamTranslator(model="m")
    events = translator.start()
    events += translator.feed(
        delta(tool_calls=[call(0, id="c", name="Write", args='{"content": "ab')])
    )
    events += translator.feed(delta(content="text after the call"))  # held: never sent
    events += translator.fail("api_error", "upstream connection dropped")
    stream = validate_anthropic_stream(encode_events(events), expect_error=True)
    assert stream.left_open is not None and stream.left_open["name"] == "Write"
    assert stream.tool_input_json[0] == '{"content": "ab'
    assert "content_block_stop" not in stream.event_types
    assert stream.text == ""


@pytest.mark.parametrize("args", ["", "{", '{"file_path": "/a", "con', "{'bad"])
def test_an_error_chunk_in_tool_arguments_never_completes_the_call(args: str) -> None:
    """llama.cpp ends a failed generation with an error chunk, here after `args`."""
    fragments = [call(0, id="c", name="Write", args="")]
    chunks = [delta(tool_calls=fragments)]
    if args:
        chunks.append(delta(tool_calls=[call(0, args=args)]))
    chunks.append({"error": {"message": "generation failed", "code": 500}})
    _, raw = run(chunks, end=False)
    stream = validate_anthropic_stream(raw, expect_error=True)
    assert stream.left_open is not None
    assert "content_block_stop" not in stream.event_types
    assert stream.tool_input_json[0] in ("", "{", '{"file_path": "/a"')  # a safe prefix only


def test_fail_closes_a_tool_call_whose_arguments_are_whole() -> None:
    translator = StreamTranslator(model="m")
    events = translator.start()
    events += translator.feed(
        delta(tool_calls=[call(0, id="c", name="Write", args='{"content": "ab"}')])
    )
    events += translator.fail("api_error", "upstream connection dropped")
    stream = validate_anthropic_stream(encode_events(events), expect_error=True)
    assert stream.left_open is None
    assert stream.tool_uses[0]["input"] == {"content": "ab"}


def test_finish_reason_still_repairs_cut_arguments() -> None:
    """When the upstream says the reply is finished, a cut call is closed (repaired) as before."""
    stream = validated([delta(tool_calls=[call(0, id="c", name="f", args='{"a": 1')]), finish()])
    assert stream.tool_uses[0]["input"] == {"a": 1}
    assert stream.left_open is None


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


# ------------------------------------------------------------ tool arguments (F.5)


def tool_inputs(stream: ValidatedStream) -> list[dict[str, Any]]:
    """Each tool_use's concatenated partial_json, parsed as a client would at block stop."""
    return [
        json.loads(stream.tool_input_json[index] or "{}")
        for index, block in enumerate(stream.content)
        if block["type"] == "tool_use"
    ]


def sdk_accumulate(raw: bytes) -> Any:
    """Replay the stream through the official SDK accumulator, which re-parses every
    input_json_delta buffer as partial JSON and raises on anything that is not a prefix."""
    streaming = pytest.importorskip("anthropic.lib.streaming._messages")
    snapshot: Any = None
    buffers: dict[int, bytes] = {}
    for name, data in parse_sse(raw):
        if name in ("ping", "error"):
            continue
        snapshot = streaming.accumulate_event(
            event=data, current_snapshot=snapshot, json_bufs=buffers
        )
    return snapshot


def fragments(text: str, size: int) -> list[dict[str, Any]]:
    return [delta(tool_calls=[call(0, args=text[i : i + size])]) for i in range(0, len(text), size)]


def tool_stream(args: str, size: int, reason: str = "tool_calls") -> bytes:
    head = delta(tool_calls=[call(0, id="call_1", name="Edit", args="")])
    return run([head, *fragments(args, size), finish(reason)])[1]


WEAK_ARGUMENTS = [
    ('{"a": 1,}', {"a": 1}),  # trailing comma
    ('{"a": 1 "b": 2}', {"a": 1, "b": 2}),  # missing comma
    ('{"c": "line1\nline2"}', {"c": "line1\nline2"}),  # raw newline inside a string
    ('{"a": 1, "b": tru e}', {"a": 1, "b": "tru e"}),
    ('{"a":}', {"a": ""}),
    ("{,}", {}),
    ('{"a": nul}', {"a": "nul"}),
    ('{"a": 01}', {"a": 1}),
    ('{"a": "\\q"}', {"a": "\\q"}),  # an escape JSON does not have
    ('{"path": "/x", "flag": True, "n": None}', {"path": "/x", "flag": True, "n": None}),
]


@pytest.mark.parametrize("size", [1, 3, 1000])
@pytest.mark.parametrize(("args", "expected"), WEAK_ARGUMENTS)
def test_weak_model_arguments_never_reach_the_client_as_invalid_json(
    args: str, expected: dict[str, Any], size: int
) -> None:
    raw = tool_stream(args, size)
    stream = validate_anthropic_stream(raw, expect_error=False)
    assert tool_inputs(stream) == [expected]
    assert expected == parse_arguments(args)  # the same repair as the non-stream path
    snapshot = sdk_accumulate(raw)
    assert snapshot.content[0].input == expected


@pytest.mark.parametrize("size", [1, 2, 5, 1000])
def test_valid_arguments_split_anywhere_stream_unchanged(size: int) -> None:
    args = json.dumps(
        {"a": 'x{y}[z]"q\\\\ \u00e9 \\ud83d', "b": [1, -2.5e3, 0, True, None], "c": {"d": {}}}
    )
    raw = tool_stream(args, size)
    stream = validate_anthropic_stream(raw)
    assert "".join(stream.tool_input_json.values()) == args  # nothing rewritten
    assert tool_inputs(stream) == [json.loads(args)]
    sdk_accumulate(raw)


def test_later_fragments_of_an_invalid_call_are_kept() -> None:
    raw = tool_stream('{"a": 1 "b": 2, "c": [3, 4], "d": "e"}', 4)
    stream = validate_anthropic_stream(raw)
    assert tool_inputs(stream) == [{"a": 1, "b": 2, "c": [3, 4], "d": "e"}]


def test_repaired_value_that_already_streamed_is_replaced() -> None:
    # "line1" went out before the raw newline: the repair repeats the key with the right value
    # (the last duplicate wins in JSON.parse, jiter and Python alike).
    raw = tool_stream('{"old": "x", "new": "line1\nline2", "n": 2}', 1)
    stream = validate_anthropic_stream(raw)
    assert tool_inputs(stream) == [{"old": "x", "new": "line1\nline2", "n": 2}]
    assert sdk_accumulate(raw).content[0].input == {"old": "x", "new": "line1\nline2", "n": 2}


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        ('{"x":', {}),
        ('{"x": ', {}),
        ('{"x": 1,', {"x": 1}),
        ('{"x"', {}),
        ('{"x', {}),
        ('{"y": 2, "x": tr', {"y": 2}),
        ('{"x": -', {}),
        ('{"a": [1,', {"a": [1]}),
        ('{"a": {"b"', {"a": {}}),
        ('{"a": "x\\', {"a": "x"}),
        ('{"a": "\\u00', {"a": ""}),
    ],
)
def test_cut_off_arguments_close_into_valid_json(args: str, expected: dict[str, Any]) -> None:
    # The upstream stopped mid-call without finish_reason "length": what went out is closed;
    # a dangling key, comma or half literal was never sent, so it is simply not there.
    for size in (1, len(args)):
        raw = tool_stream(args, size, reason="stop")
        stream = validate_anthropic_stream(raw)
        assert tool_inputs(stream) == [expected]


@pytest.mark.parametrize("args", ['{"path": "/a", "content": "par', '{"x":', '{"x": 1 "y'])
def test_arguments_cut_by_max_tokens_stay_a_valid_prefix(args: str) -> None:
    raw = tool_stream(args, 2, reason="length")
    events = parse_sse(raw)
    assert events[-2][1]["delta"]["stop_reason"] == "max_tokens"
    sent = "".join(partials([data for _, data in events]))
    assert args.startswith(sent)
    snapshot = sdk_accumulate(raw)  # the SDK's partial parser accepts the prefix
    assert snapshot.stop_reason == "max_tokens"


def test_cumulative_argument_snapshots_take_only_the_new_part() -> None:
    stream = validated(
        [
            delta(tool_calls=[call(0, id="a", name="f", args='{"x":')]),
            delta(tool_calls=[call(0, args='{"x":1')]),
            delta(tool_calls=[call(0, args='{"x":1, "y": "a')]),
            delta(tool_calls=[call(0, args='{"x":1, "y": "ab"}')]),
            delta(tool_calls=[call(0, args='{"x":1, "y": "ab"}')]),
            finish("tool_calls"),
        ]
    )
    assert tool_inputs(stream) == [{"x": 1, "y": "ab"}]


@pytest.mark.parametrize(
    "trailing",
    [
        call(0, name="f", args=""),  # name repeated, no id
        call(0, id="a", name="f", args=""),  # same id and name
        call(0, id="a", name="f"),
        call(None, name="f"),  # Gemini's metadata-only delta
    ],
)
def test_a_trailing_fragment_repeating_the_name_opens_no_phantom_call(
    trailing: dict[str, Any],
) -> None:
    stream = validated(
        [
            delta(tool_calls=[call(0, id="a", name="f", args='{"x":')]),
            delta(tool_calls=[call(0, name="f", args="1}")]),
            delta(tool_calls=[trailing]),
            finish("tool_calls"),
        ]
    )
    assert tool_inputs(stream) == [{"x": 1}]


def test_gemini_parallel_calls_on_index_0_without_ids() -> None:
    stream = validated(
        [
            delta(tool_calls=[call(0, name="Read", args='{"file_path": "/a"}')]),
            delta(tool_calls=[call(0, name="Read", args='{"file_path": "/b"}')]),
            delta(tool_calls=[call(0, name="Glob", args='{"pattern": "*"}')]),
            delta(tool_calls=[call(0, name="Glob")]),
            finish("stop"),
        ]
    )
    assert [t["name"] for t in stream.tool_uses] == ["Read", "Read", "Glob"]
    assert tool_inputs(stream) == [{"file_path": "/a"}, {"file_path": "/b"}, {"pattern": "*"}]


@pytest.mark.parametrize("field", ["content", "reasoning_content"])
def test_text_or_reasoning_during_a_call_waits_for_its_arguments(field: str) -> None:
    stream = validated(
        [
            delta(tool_calls=[call(0, id="a", name="f", args='{"x":')]),
            delta(**{field: "meanwhile"}),
            delta(tool_calls=[call(0, args=' 1, "y"')]),
            delta(tool_calls=[call(0, args=": 2}")]),
            delta(tool_calls=[call(1, id="b", name="g", args="{}")]),
            finish("tool_calls"),
        ]
    )
    kinds = [b["type"] for b in stream.content]
    assert kinds == ["tool_use", "text" if field == "content" else "thinking", "tool_use"]
    assert tool_inputs(stream) == [{"x": 1, "y": 2}, {}]
    assert "meanwhile" in (stream.text or stream.thinking)


def test_text_held_for_an_unfinished_call_comes_out_at_finish() -> None:
    stream = validated(
        [
            delta(tool_calls=[call(0, id="a", name="f", args='{"x": "a')]),
            delta(content="later"),
            finish("stop"),
        ]
    )
    assert [b["type"] for b in stream.content] == ["tool_use", "text"]
    assert tool_inputs(stream) == [{"x": "a"}]
    assert stream.text == "later"


def test_another_object_after_a_closed_call_becomes_a_new_call() -> None:
    stream = validated(
        [
            delta(tool_calls=[call(0, id="a", name="Read", args='{"file_path": "/a"}')]),
            delta(content="and"),
            delta(tool_calls=[call(0, args='{"file_path": "/b"}')]),
            delta(tool_calls=[call(0, args='{"file_path": "/a"}')]),  # a repeat: dropped
            finish("tool_calls"),
        ]
    )
    assert [b["type"] for b in stream.content] == ["tool_use", "text", "tool_use"]
    assert tool_inputs(stream) == [{"file_path": "/a"}, {"file_path": "/b"}]


def test_legacy_function_call_deltas_are_tool_call_0() -> None:
    stream = validated(
        [
            delta(function_call={"name": "get_weather", "arguments": ""}),
            delta(function_call={"arguments": '{"city": '}),
            delta(function_call={"arguments": '"Oslo"}'}),
            finish("function_call"),
        ]
    )
    assert [t["name"] for t in stream.tool_uses] == ["get_weather"]
    assert tool_inputs(stream) == [{"city": "Oslo"}]
    assert stream.stop_reason == "tool_use"


def test_client_tool_names_are_restored() -> None:
    renamed = {"mcp__srv__do_thing_1a2b3c4d": "mcp__srv__do.thing"}
    _, raw = run(
        [
            delta(tool_calls=[call(0, id="a", name="mcp__srv__do_thing_1a2b3c4d", args="{}")]),
            delta(tool_calls=[call(1, id="b", name="Read", args="{}")]),
            finish("tool_calls"),
        ],
        tool_names=renamed,
    )
    stream = validate_anthropic_stream(raw)
    assert [t["name"] for t in stream.tool_uses] == ["mcp__srv__do.thing", "Read"]


# ----------------------------------------------------------- reasoning and tags


def test_encrypted_only_reasoning_details_keep_their_stash() -> None:
    encrypted = {"type": "reasoning.encrypted", "data": "gAAAAB…", "id": "rs_1", "index": 0}
    _, raw = run(
        [delta(reasoning_details=[encrypted]), delta(content="answer"), finish()],
        stash_reasoning=True,
    )
    stream = validate_anthropic_stream(raw)
    assert [b["type"] for b in stream.content] == ["thinking", "text"]
    assert stream.content[0]["thinking"] == ""
    assert decode_signature(stream.content[0]["signature"]) == {"r": "", "d": [encrypted]}


def test_encrypted_reasoning_details_without_stash_add_no_block() -> None:
    encrypted = {"type": "reasoning.encrypted", "data": "gAAAAB…"}
    stream = validated([delta(reasoning_details=[encrypted]), delta(content="a"), finish()])
    assert [b["type"] for b in stream.content] == ["text"]


def test_gemini_thought_signature_precedes_its_tool_use() -> None:
    first = call(None, id="function-call-1", name="Read", args='{"file_path": "/a"}')
    first["extra_content"] = {"google": {"thought_signature": "CiQBVKhc…"}}
    second = call(None, id="function-call-2", name="Read", args='{"file_path": "/b"}')
    stream = validated(
        [delta(content="Reading."), delta(tool_calls=[first]), delta(tool_calls=[second]), finish()]
    )
    assert [b["type"] for b in stream.content] == ["text", "thinking", "tool_use", "tool_use"]
    block = stream.content[1]
    assert block["thinking"] == ""
    assert decode_signature(block["signature"]) == {"r": "", "g": "CiQBVKhc…"}
    assert tool_inputs(stream) == [{"file_path": "/a"}, {"file_path": "/b"}]


def test_no_signature_block_without_a_thought_signature() -> None:
    plain = call(0, id="c", name="Read", args="{}")
    plain["extra_content"] = {"google": {}}
    stream = validated([delta(tool_calls=[plain]), finish()])
    assert [b["type"] for b in stream.content] == ["tool_use"]


def test_held_close_tag_prefix_is_flushed_before_a_tool_block() -> None:
    _, raw = run(
        [
            delta(content="<think>abc</th"),
            delta(tool_calls=[call(0, id="c", name="f", args='{"a": 1}')]),
            finish("tool_calls"),
        ],
        think_tags=True,
    )
    stream = validate_anthropic_stream(raw)
    assert [b["type"] for b in stream.content] == ["thinking", "tool_use"]
    assert stream.thinking == "abc</th"


def test_held_open_tag_prefix_is_flushed_as_text_before_a_tool_block() -> None:
    _, raw = run(
        [delta(content="<thi"), delta(tool_calls=[call(0, id="c", name="f", args="{}")]), finish()],
        think_tags=True,
    )
    stream = validate_anthropic_stream(raw)
    assert [b["type"] for b in stream.content] == ["text", "tool_use"]
    assert stream.text == "<thi"


# --------------------------------------------------------------- usage, choices


def test_reasoning_tokens_are_reported_as_thinking_tokens() -> None:
    tail = usage(10, 40)
    tail["usage"]["completion_tokens_details"] = {"reasoning_tokens": 31}
    stream = validated([delta(content="x"), finish(), tail])
    assert stream.usage["output_tokens"] == 40
    delta_usage = next(d for n, d in stream.events if n == "message_delta")["usage"]
    assert delta_usage["output_tokens_details"] == {"thinking_tokens": 31}


def test_no_thinking_tokens_field_unless_reported() -> None:
    stream = validated([delta(content="x"), finish(), usage(10, 4)])
    delta_usage = next(d for n, d in stream.events if n == "message_delta")["usage"]
    assert "output_tokens_details" not in delta_usage


def test_only_choice_index_0_is_translated() -> None:
    both = {
        "choices": [
            {"index": 1, "delta": {"content": "B"}, "finish_reason": None},
            {"index": 0, "delta": {"content": "A"}, "finish_reason": None},
        ]
    }
    other = {"choices": [{"index": 1, "delta": {}, "finish_reason": "stop"}]}
    stream = validated([both, other, delta(content="A2"), finish()])
    assert stream.text == "AA2"


def test_content_given_as_a_list_of_parts() -> None:
    parts = [{"type": "text", "text": "hel"}, {"type": "text", "text": "lo"}]
    stream = validated([delta(content=parts), delta(content=[]), finish()])
    assert stream.text == "hello"


# ------------------------------------------------------------ mid-stream errors


@pytest.mark.parametrize(
    ("error", "error_type"),
    [
        ({"code": 429, "message": "Rate limited upstream"}, "rate_limit_error"),
        ({"code": "rate_limit_exceeded", "message": "slow down"}, "rate_limit_error"),
        ({"code": 503, "message": "no provider"}, "overloaded_error"),
        ({"code": 529, "message": "busy"}, "overloaded_error"),
        ({"code": 502, "message": "Provider returned error"}, "api_error"),
        ({"code": 400, "message": "bad"}, "invalid_request_error"),
        ({"code": 401, "message": "key revoked"}, "authentication_error"),
        ({"status": "RESOURCE_EXHAUSTED", "message": "quota"}, "rate_limit_error"),
        ({"message": "no code at all"}, "api_error"),
        ("a bare string", "api_error"),
    ],
)
def test_error_chunks_are_mapped_by_their_code(error: Any, error_type: str) -> None:
    chunk = {"error": error, "choices": [{"index": 0, "delta": {}, "finish_reason": "error"}]}
    _, raw = run([delta(content="partial"), chunk], end=False)
    stream = validate_anthropic_stream(raw, expect_error=True)
    assert stream.error is not None
    assert stream.error["type"] == error_type


def test_context_overflow_error_chunk_uses_anthropic_wording() -> None:
    message = (
        "This endpoint's maximum context length is 163840 tokens. However, you requested "
        "about 200000 tokens (190000 of text input, 10000 in the output)."
    )
    _, raw = run([{"error": {"code": 400, "message": message}}], end=False)
    stream = validate_anthropic_stream(raw, expect_error=True)
    assert stream.error == {
        "type": "invalid_request_error",
        "message": "prompt is too long: 190000 tokens > 163840 maximum",
    }


def test_usage_is_reported_as_the_upstream_counted_it() -> None:
    chunks = [delta(content="a"), finish(), usage(prompt=5, completion=2)]
    _, honest = run(chunks, input_tokens=5000)
    assert validate_anthropic_stream(honest).usage["input_tokens"] == 5
    _, ollama = run(chunks, input_tokens=5000, under_counts=True)
    assert validate_anthropic_stream(ollama).usage["input_tokens"] == 5000
