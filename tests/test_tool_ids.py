"""The tool-call id codec (docs/tool-ids.md): upstream ids carried in the client's, losslessly."""

from __future__ import annotations

import copy
import re
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from claude_code_proxy.translate.chat.request import TranslationOptions, translate_request
from claude_code_proxy.translate.chat.stream import StreamTranslator
from claude_code_proxy.translate.ids import (
    MAX_CARRIED_ID,
    carried_upstream_id,
    client_tool_id,
    mistral_tool_id,
    upstream_call_id,
)

ANTHROPIC_TOOL_ID = re.compile(r"^[A-Za-z0-9_-]+$")
ANTHROPIC_LIKE = re.compile(r"^toolu_[A-Za-z0-9]{24}$")
MISTRAL_ID = re.compile(r"^[A-Za-z0-9]{9}$")

UPSTREAM_IDS = [
    "call_0",  # repeated every turn by some servers
    "call_abcdefghijklmnopqrstuvwx",  # OpenAI
    "chatcmpl-tool-7d2f64b1e8c94a0b9c3e5f1a2b3c4d5e",  # vLLM
    "functions.Write:0",  # Kimi-K2 on vLLM
    "function-call-13274358826593085373",  # Gemini
    "D681PevKs",  # Mistral
    "mcp:server/tool|1 @ x",
    "日本語のid",
    "a" * MAX_CARRIED_ID,
]


@pytest.mark.parametrize("upstream_id", UPSTREAM_IDS)
def test_the_upstream_id_comes_back_byte_for_byte(upstream_id: str) -> None:
    client_id = client_tool_id(upstream_id, "msg_x:1")
    assert ANTHROPIC_TOOL_ID.fullmatch(client_id), client_id
    assert client_id.startswith("toolu_")
    assert carried_upstream_id(client_id) == upstream_id
    assert upstream_call_id(client_id) == upstream_id


@given(st.text(min_size=1, max_size=80), st.text(max_size=30))
def test_any_upstream_id_round_trips_in_a_legal_client_id(upstream_id: str, salt: str) -> None:
    client_id = client_tool_id(upstream_id, salt)
    assert ANTHROPIC_TOOL_ID.fullmatch(client_id), client_id
    assert upstream_call_id(client_id) == upstream_id
    assert client_tool_id(upstream_id, salt) == client_id  # deterministic


def test_valid_upstream_ids_stay_readable_in_the_client_id() -> None:
    assert client_tool_id("call_0", "s").endswith("_call_0")
    assert "functions" not in client_tool_id("functions.Write:0", "s")  # encoded, not copied


def test_repeated_upstream_ids_get_client_ids_unique_per_salt() -> None:
    ids = {client_tool_id("call_0", f"msg_{turn}:0") for turn in range(1000)}
    assert len(ids) == 1000
    assert {upstream_call_id(i) for i in ids} == {"call_0"}


@pytest.mark.parametrize("upstream_id", ["", None, "x" * (MAX_CARRIED_ID + 1)])
def test_nothing_to_carry_gives_an_anthropic_shaped_id(upstream_id: str | None) -> None:
    client_id = client_tool_id(upstream_id, "msg_x:0")
    assert ANTHROPIC_LIKE.match(client_id), client_id
    assert carried_upstream_id(client_id) is None
    assert upstream_call_id(client_id) == client_id  # legal as is: sent as is
    assert client_tool_id(upstream_id, "msg_y:0") != client_id


@pytest.mark.parametrize(
    ("client_id", "expected"),
    [
        ("toolu_01NRLabsLyVHZPKxbKvkfSMn", "toolu_01NRLabsLyVHZPKxbKvkfSMn"),  # Anthropic's
        ("call_0", "call_0"),
        ("toolu_abcdefghijkl_call_0", "toolu_abcdefghijkl_call_0"),  # our shape, wrong check
    ],
)
def test_ids_the_client_invented_are_sent_as_before(client_id: str, expected: str) -> None:
    assert carried_upstream_id(client_id) is None
    assert upstream_call_id(client_id) == expected


def test_ids_the_upstream_would_reject_are_mapped_deterministically() -> None:
    for client_id in ("mcp:server/tool|1", "x" * 41):
        mapped = upstream_call_id(client_id)
        assert re.fullmatch(r"call_[0-9a-f]{32}", mapped), mapped
        assert upstream_call_id(client_id) == mapped


def test_a_tampered_client_id_is_not_decoded() -> None:
    client_id = client_tool_id("call_secret", "s")
    tampered = client_id[:-1] + ("X" if client_id[-1] != "X" else "Y")
    assert carried_upstream_id(tampered) is None
    assert upstream_call_id(tampered) == tampered


def test_mistral_gets_its_own_ids_back_and_nine_alphanumerics_otherwise() -> None:
    own = client_tool_id("D681PevKs", "s")
    assert upstream_call_id(own, "mistral") == "D681PevKs"
    foreign = client_tool_id("call_0", "s")  # a conversation that started elsewhere
    assert MISTRAL_ID.match(upstream_call_id(foreign, "mistral"))
    invented = "toolu_01NRLabsLyVHZPKxbKvkfSMn"
    assert upstream_call_id(invented, "mistral") == mistral_tool_id(invented)


# -- through the request translator -------------------------------------------------------


def tool_use(client_id: str, name: str = "Write") -> dict[str, Any]:
    return {"type": "tool_use", "id": client_id, "name": name, "input": {"n": client_id[-3:]}}


def tool_result(client_id: str) -> dict[str, Any]:
    return {"type": "tool_result", "tool_use_id": client_id, "content": f"ok {client_id}"}


def upstream_messages(messages: list[Any], **options: Any) -> list[dict[str, Any]]:
    body = {"model": "m", "max_tokens": 100, "messages": copy.deepcopy(messages)}
    opts = TranslationOptions(**options)
    return list(translate_request(body, upstream_model="m", options=opts).payload["messages"])


def calls_and_results(messages: list[dict[str, Any]]) -> list[tuple[list[str], list[str]]]:
    """Per assistant turn with tool calls: its call ids and the tool_call_ids answering them."""
    out = []
    for position, message in enumerate(messages):
        if message.get("tool_calls"):
            calls = [c["id"] for c in message["tool_calls"]]
            tools = messages[position + 1 : position + 1 + len(calls)]
            out.append((calls, [t["tool_call_id"] for t in tools]))
    return out


def test_three_turns_of_repeated_and_odd_upstream_ids_pair_and_come_back() -> None:
    turns = [["call_0"], ["call_0", "functions.Write:0"], ["call_0", "chatcmpl-tool-9f"]]
    history: list[dict[str, Any]] = [{"role": "user", "content": "go"}]
    for turn, upstream_ids in enumerate(turns):
        client_ids = [client_tool_id(u, f"msg_{turn}:{n}") for n, u in enumerate(upstream_ids)]
        history.append({"role": "assistant", "content": [tool_use(c) for c in client_ids]})
        history.append({"role": "user", "content": [tool_result(c) for c in client_ids]})
    pairs = calls_and_results(upstream_messages(history))
    assert pairs == [(ids, ids) for ids in turns]
    # Each result went with its own call, not with another turn's `call_0`.
    tools = [m for m in upstream_messages(history) if m["role"] == "tool"]
    assert [t["content"].split()[-1] for t in tools] == [
        block["tool_use_id"]
        for message in history[2::2]
        for block in message["content"]
        if isinstance(block, dict)
    ]


def test_an_upstream_id_repeated_within_one_turn_still_pairs() -> None:
    client_ids = [client_tool_id("call_0", f"msg_a:{n}") for n in range(3)]
    history = [
        {"role": "user", "content": "go"},
        {"role": "assistant", "content": [tool_use(c) for c in client_ids]},
        {"role": "user", "content": [tool_result(c) for c in reversed(client_ids)]},
    ]
    messages = upstream_messages(history)
    ((calls, results),) = calls_and_results(messages)
    assert calls[0] == "call_0"
    assert len(set(calls)) == 3 and calls == results
    tools = [m for m in messages if m["role"] == "tool"]
    assert [t["content"] for t in tools] == [f"ok {c}" for c in client_ids]


def test_a_client_id_repeated_within_one_turn_leaves_no_dangling_call() -> None:
    history = [
        {"role": "user", "content": "go"},
        {"role": "assistant", "content": [tool_use("dup"), tool_use("dup")]},
        {"role": "user", "content": [tool_result("dup")]},
    ]
    ((calls, results),) = calls_and_results(upstream_messages(history))
    assert len(set(calls)) == 2 and calls == results


def test_mistral_turns_give_back_mistral_ids_and_map_the_rest() -> None:
    own = client_tool_id("D681PevKs", "msg_a:0")
    invented = "toolu_01NRLabsLyVHZPKxbKvkfSMn"
    history = [
        {"role": "user", "content": "go"},
        {"role": "assistant", "content": [tool_use(own), tool_use(invented)]},
        {"role": "user", "content": [tool_result(own), tool_result(invented)]},
    ]
    ((calls, results),) = calls_and_results(upstream_messages(history, tool_id_style="mistral"))
    assert calls == results == ["D681PevKs", mistral_tool_id(invented)]


def test_streamed_calls_carry_their_upstream_ids_and_glued_ones_do_not() -> None:
    translator = StreamTranslator(model="m", message_id="msg_fixed")
    events = translator.start()
    fragments = [
        {"index": 0, "id": "functions.Write:0", "function": {"name": "Write", "arguments": "{}"}},
        {"index": 1, "id": "call_0", "function": {"name": "Read", "arguments": '{"a":1}{"a":2}'}},
    ]
    chunk = {"choices": [{"index": 0, "delta": {"tool_calls": fragments}}]}
    events += translator.feed(chunk)
    events += translator.feed({"choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]})
    events += translator.finish()
    starts = [e["content_block"] for e in events if e["type"] == "content_block_start"]
    ids = [block["id"] for block in starts]
    assert [b["name"] for b in starts] == ["Write", "Read", "Read"]
    assert [carried_upstream_id(i) for i in ids] == ["functions.Write:0", "call_0", None]
    assert len(set(ids)) == 3 and all(ANTHROPIC_TOOL_ID.fullmatch(i) for i in ids)
    again = StreamTranslator(model="m", message_id="msg_fixed")
    replay = again.start() + again.feed(chunk)
    replayed = [e["content_block"]["id"] for e in replay if e["type"] == "content_block_start"]
    assert replayed == ids[:2]
