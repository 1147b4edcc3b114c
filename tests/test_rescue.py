"""Tool calls written as text: every form, the near misses, and streaming in any pieces."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from claude_code_proxy.translate.chat.response import translate_completion
from claude_code_proxy.translate.chat.stream import StreamTranslator
from claude_code_proxy.translate.rescue import (
    HEADER_LIMIT,
    RescueContext,
    RescuedCall,
    Rescuer,
    offered_tools,
    rescue_text,
)
from claude_code_proxy.translate.sse import encode_events
from sse_validator import ValidatedStream, validate_anthropic_stream

TOOLS: dict[str, Any] = {
    "Read": {
        "type": "object",
        "properties": {"file_path": {"type": "string"}, "limit": {"type": "integer"}},
    },
    "Write": {
        "type": "object",
        "properties": {"file_path": {"type": "string"}, "content": {"type": "string"}},
    },
    "TodoWrite": {"type": "object", "properties": {"todos": {"type": "array"}}},
}
READ = '{"name": "Read", "arguments": {"file_path": "/tmp/a.txt"}}'
READ_CALL = RescuedCall("Read", {"file_path": "/tmp/a.txt"}, "json")


def streamed(text: str, cuts: list[int]) -> tuple[str, list[RescuedCall], list[str]]:
    """Feed `text` cut at `cuts`; (all text sent, calls, what each feed released)."""
    rescuer = Rescuer(TOOLS)
    pieces, last = [], 0
    for cut in [*sorted(set(cuts)), len(text)]:
        pieces.append(rescuer.feed(text[last:cut]))
        last = cut
    rest, calls = rescuer.finish()
    return "".join(pieces) + rest, calls, pieces


# ------------------------------------------------------------------------------ the forms


@pytest.mark.parametrize(
    ("text", "before", "calls"),
    [
        (READ, "", [READ_CALL]),
        (f"  {READ}\n\n", "  ", [READ_CALL]),
        (f"I will read it.\n{READ}", "I will read it.\n", [READ_CALL]),
        (
            '{"name": "Read", "parameters": {"file_path": "/tmp/a.txt"}}',
            "",
            [READ_CALL],
        ),
        (
            '{"type": "function", "name": "Read", "arguments": "{\\"file_path\\": \\"/tmp/a.txt\\"}"}',
            "",
            [READ_CALL],
        ),
        (
            f"```json\n{READ}\n```\n",
            "",
            [RescuedCall("Read", {"file_path": "/tmp/a.txt"}, "fenced")],
        ),
        (
            f"Reading:\n```\n{READ}\n```",
            "Reading:\n",
            [RescuedCall("Read", {"file_path": "/tmp/a.txt"}, "fenced")],
        ),
        (
            f"Let me look.<tool_call>\n{READ}\n</tool_call>",
            "Let me look.",
            [RescuedCall("Read", {"file_path": "/tmp/a.txt"}, "hermes")],
        ),
        (
            f"<tool_call>{READ}",  # the answer ended before the closing tag
            "",
            [RescuedCall("Read", {"file_path": "/tmp/a.txt"}, "hermes")],
        ),
        (
            "<tool_call>\n<function=Read>\n<parameter=file_path>\n/tmp/a.txt\n</parameter>\n"
            "<parameter=limit>\n20\n</parameter>\n</function>\n</tool_call>",
            "",
            [RescuedCall("Read", {"file_path": "/tmp/a.txt", "limit": 20}, "xml")],
        ),
        (
            "<tool_call>\n<function=Write>\n<parameter=file_path>\n/tmp/b.py\n</parameter>\n"
            "<parameter=content>\nprint('hi')\n\n</parameter>\n</function>\n</tool_call>",
            "",
            [RescuedCall("Write", {"file_path": "/tmp/b.py", "content": "print('hi')\n"}, "xml")],
        ),
        (
            f'{READ}\n{{"name": "Write", "arguments": {{"file_path": "/b", "content": "x"}}}}',
            "",
            [READ_CALL, RescuedCall("Write", {"file_path": "/b", "content": "x"}, "json")],
        ),
        (
            f"<tool_call>{READ}</tool_call>\n<tool_call>{READ}</tool_call>\n",
            "",
            [RescuedCall("Read", {"file_path": "/tmp/a.txt"}, "hermes")] * 2,
        ),
        (f"{READ}{READ}", "", [READ_CALL, READ_CALL]),
    ],
)
def test_forms(text: str, before: str, calls: list[RescuedCall]) -> None:
    assert rescue_text(text, TOOLS) == (before, calls)
    assert streamed(text, list(range(len(text))))[:2] == (before, calls)


# ------------------------------------------------------------------------- near misses


@pytest.mark.parametrize(
    "text",
    [
        "",
        "Hello, world.",
        '{"name": "Grep", "arguments": {"pattern": "x"}}',  # not an offered tool
        '{"name": "Read", "arguments": {"file_path": "/tmp/a.txt"}',  # cut short
        '{"name": "Read", "arguments": {"file_path": /tmp/a.txt}}',  # broken JSON
        '{"name": "Read"}',  # no arguments
        '{"name": "Read", "arguments": ["a"]}',  # arguments not an object
        '{"name": "Read", "arguments": "not json"}',
        '{"name": "Read", "arguments": {}, "parameters": {}}',  # both
        '{"name": "Read", "arguments": {}, "extra": 1}',  # a key calls do not have
        '{"type": "object", "name": "Read", "arguments": {}}',
        '{"name": 7, "arguments": {}}',
        f"The call looks like {READ} in the docs.",  # JSON inside prose
        f"Like this: {READ}",  # not at the start of a line
        f"{READ}\nThat is how you call it.",  # prose after it
        f"```json\n{READ}\n```\nThat is the format.",
        f"```python\n{READ}\n```",  # a code block in another language
        '```json\n{"compilerOptions": {"strict": true}}\n```',  # JSON that is not a call
        '{\n  "name": "my-package",\n  "version": "1.0.0"\n}',  # package.json
        "{braces} are fine at the start of a line",
        "<tool_call>not json</tool_call>",
        "<tool_call>\n<function=Grep>\n<parameter=x>\n1\n</parameter>\n</function>\n</tool_call>",
        "<tool_call>\n<function=Read>\nfree text\n</function>\n</tool_call>",
        f"<tool_call>{READ}</tool_call> and more",
        "<toolbox> is a tag",
        "a < b and c > d",
        "```",
        "``not a fence``",
        "  indented text",
    ],
)
def test_near_misses_stay_text_byte_for_byte(text: str) -> None:
    assert rescue_text(text, TOOLS) == (text, [])
    assert streamed(text, list(range(len(text))))[:2] == (text, [])


def test_no_tools_offered_rescues_nothing() -> None:
    assert rescue_text(READ, {}) == (READ, [])


def test_offered_tools_from_the_upstream_payload() -> None:
    tools = [{"type": "function", "function": {"name": "Read", "parameters": {"type": "object"}}}]
    assert offered_tools({"tools": tools}) == {"Read": {"type": "object"}}
    assert offered_tools({"tools": tools, "tool_choice": "none"}) == {}
    assert offered_tools({}) == {}


# --------------------------------------------------------------------------- streaming


def test_ordinary_text_is_released_at_once() -> None:
    rescuer = Rescuer(TOOLS)
    for piece in ("Here is ", "the answer: 42.\n", "Done", " and a < b."):
        assert rescuer.feed(piece) == piece
    assert rescuer.finish() == ("", [])


def test_a_possible_tag_is_held_only_until_it_is_decided() -> None:
    rescuer = Rescuer(TOOLS)
    assert rescuer.feed("x <tool") == "x "
    assert rescuer.feed("box>") == "<toolbox>"


def test_a_json_line_is_decided_at_its_first_key_or_name() -> None:
    rescuer = Rescuer(TOOLS)
    assert rescuer.feed("Config:\n{") == "Config:\n"
    assert rescuer.feed('"compilerOptions": {') == '{"compilerOptions": {'
    rescuer = Rescuer(TOOLS)
    assert rescuer.feed('{"name": "my-pack') == ""
    assert rescuer.feed('age", "version": 1}') == '{"name": "my-package", "version": 1}'


def test_a_call_is_held_to_the_end_of_the_answer() -> None:
    rescuer = Rescuer(TOOLS)
    assert rescuer.feed("Reading.\n") == "Reading.\n"
    assert rescuer.feed(READ) == ""
    assert rescuer.feed("\n") == ""
    assert rescuer.finish() == ("", [READ_CALL])


def test_the_hold_is_bounded_while_the_tool_name_is_unknown() -> None:
    # `arguments` first: the name comes late, so the candidate is undecided; it is given up
    # once HEADER_LIMIT characters went by.
    text = '{"arguments": {"content": "' + "x" * (HEADER_LIMIT + 100)
    rescuer = Rescuer(TOOLS)
    released = ""
    for i in range(0, len(text), 64):
        released += rescuer.feed(text[i : i + 64])
        assert rescuer.held <= HEADER_LIMIT + 64
    assert released == text
    # A call with a known name is held until it is complete, however long.
    long_write = json.dumps(
        {"name": "Write", "arguments": {"file_path": "/a", "content": "y" * 50_000}}
    )
    text, calls, _ = streamed(long_write, list(range(0, len(long_write), 100)))
    assert text == "" and calls[0].arguments["content"] == "y" * 50_000


def test_abandon_gives_back_everything_held() -> None:
    rescuer = Rescuer(TOOLS)
    assert rescuer.feed("ok\n" + READ[:20]) == "ok\n"
    assert rescuer.abandon() == READ[:20]


_ALPHABET = st.sampled_from(
    ["a", " ", "\n", "{", "}", '"', ":", ",", "<", ">", "`", "name", "Read", "json", "\\"]
)
_PIECES = st.sampled_from(
    [
        READ,
        "<tool_call>",
        "</tool_call>",
        "```json\n",
        "```",
        "<function=Read>",
        "<parameter=file_path>",
        "</parameter>",
        "</function>",
        '{"name": "Write", "arguments": {"file_path": "/b", "content": "c"}}',
        "Some prose. ",
        "\n",
        "  ",
    ]
)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    parts=st.lists(st.one_of(_ALPHABET, _PIECES), max_size=12),
    cuts=st.lists(st.integers(min_value=0, max_value=400), max_size=8),
)
def test_any_chunking_gives_the_same_answer_and_loses_no_byte(
    parts: list[str], cuts: list[int]
) -> None:
    text = "".join(parts)
    before, calls = rescue_text(text, TOOLS)
    if not calls:
        assert before == text
    else:
        assert text.startswith(before)
    assert streamed(text, [c for c in cuts if c < len(text)])[:2] == (before, calls)


# -------------------------------------------------------------------- in the translators

OFFERED = {"Read": TOOLS["Read"], "Write": TOOLS["Write"]}


def chat_completion(content: str, **message: Any) -> dict[str, Any]:
    return {
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": content, **message},
                "finish_reason": "stop",
            }
        ],
        "usage": {"prompt_tokens": 10, "completion_tokens": 5},
    }


def test_response_translator_rescues_a_call() -> None:
    rescue = RescueContext(OFFERED)
    message = translate_completion(
        chat_completion(f"I will read it.\n<tool_call>{READ}</tool_call>"),
        client_model="claude-sonnet-4-5",
        rescue=rescue,
    )
    text, tool = message["content"]
    assert text == {"type": "text", "text": "I will read it.\n"}
    assert tool["type"] == "tool_use" and tool["id"].startswith("toolu_")
    assert (tool["name"], tool["input"]) == ("Read", {"file_path": "/tmp/a.txt"})
    assert message["stop_reason"] == "tool_use"
    assert [c.form for c in rescue.rescued] == ["hermes"]


def test_response_translator_maps_renamed_tools_and_keeps_text_otherwise() -> None:
    rescue = RescueContext({"mcp__x": {}})
    body = chat_completion('{"name": "mcp__x", "arguments": {}}')
    message = translate_completion(
        body, client_model="m", rescue=rescue, tool_names={"mcp__x": "mcp:x"}
    )
    assert [(b["type"], b.get("name")) for b in message["content"]] == [("tool_use", "mcp:x")]
    prose = chat_completion(f"Example: {READ}")
    message = translate_completion(prose, client_model="m", rescue=RescueContext(OFFERED))
    assert message["content"] == [{"type": "text", "text": f"Example: {READ}"}]
    assert message["stop_reason"] == "end_turn"
    # Without a rescue context (a hosted profile) the call stays text.
    message = translate_completion(chat_completion(READ), client_model="m")
    assert message["content"] == [{"type": "text", "text": READ}]


def stream_of(pieces: list[str], rescue: RescueContext | None) -> ValidatedStream:
    translator = StreamTranslator(model="claude-sonnet-4-5", rescue=rescue, expect_usage=False)
    events = translator.start()
    for piece in pieces:
        events += translator.feed({"choices": [{"index": 0, "delta": {"content": piece}}]})
    events += translator.feed({"choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]})
    events += translator.finish()
    return validate_anthropic_stream(encode_events(events))


def test_stream_translator_rescues_calls_split_anywhere() -> None:
    text = f"Reading both.\n```json\n{READ}\n```\n<tool_call>{READ}</tool_call>"
    rescue = RescueContext(OFFERED)
    stream = stream_of([text[i : i + 3] for i in range(0, len(text), 3)], rescue)
    assert [b["type"] for b in stream.content] == ["text", "tool_use", "tool_use"]
    assert stream.text == "Reading both.\n"
    assert [t["input"] for t in stream.tool_uses] == [{"file_path": "/tmp/a.txt"}] * 2
    assert stream.stop_reason == "tool_use"
    assert [c.form for c in rescue.rescued] == ["fenced", "hermes"]


def test_stream_translator_releases_what_is_no_call() -> None:
    text = f'Here:\n{{"name": "Grep", "arguments": {{}}}}\nand {READ}'
    stream = stream_of([text[i : i + 5] for i in range(0, len(text), 5)], RescueContext(OFFERED))
    assert stream.content == [{"type": "text", "text": text}]
    assert stream.stop_reason == "end_turn"


def test_stream_translator_gives_up_when_the_server_sends_real_calls() -> None:
    translator = StreamTranslator(model="m", rescue=RescueContext(OFFERED), expect_usage=False)
    events = translator.start()
    events += translator.feed({"choices": [{"index": 0, "delta": {"content": READ[:30]}}]})
    real = {"index": 0, "id": "c1", "function": {"name": "Write", "arguments": "{}"}}
    events += translator.feed({"choices": [{"index": 0, "delta": {"tool_calls": [real]}}]})
    events += translator.feed({"choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]})
    stream = validate_anthropic_stream(encode_events(events + translator.finish()))
    assert [b["type"] for b in stream.content] == ["text", "tool_use"]
    assert stream.text == READ[:30] and stream.tool_uses[0]["name"] == "Write"


def test_stream_translator_sends_held_text_before_an_error() -> None:
    translator = StreamTranslator(model="m", rescue=RescueContext(OFFERED), expect_usage=False)
    events = translator.start()
    events += translator.feed({"choices": [{"index": 0, "delta": {"content": READ[:30]}}]})
    events += translator.fail("api_error", "upstream went away")
    stream = validate_anthropic_stream(encode_events(events), expect_error=True)
    assert stream.text == READ[:30]
