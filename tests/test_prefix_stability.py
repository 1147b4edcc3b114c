"""A growing conversation through the real proxy: each upstream request starts with the previous
one, byte for byte, and the upstream gets its own tool-call ids back (issue 14, points 1 and 2).

The client is shaped like Claude Code: a billing-header system block that changes every request,
cache breakpoints that move to the newest block, an environment `role: "system"` message after
the first prompt (a list with a breakpoint on turn 1, a plain string later), and here a second
system message that arrives at turn four.
"""

from __future__ import annotations

import itertools
import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from claude_code_proxy.translate.chat.request import TranslationOptions, translate_request
from claude_code_proxy.translate.ids import client_tool_id
from mock_upstream import MockUpstream, chunk, sse_response
from prefix_stability import first_difference, messages_extend, prefix_share
from sse_validator import validate_anthropic_stream

if TYPE_CHECKING:
    from conftest import ProxyFactory

HEADERS = {"x-api-key": "sk-ant-client-0001", "anthropic-version": "2023-06-01"}
EPHEMERAL = {"type": "ephemeral"}
WRITE = {
    "name": "Write",
    "description": "Write a file",
    "input_schema": {
        "type": "object",
        "properties": {"file_path": {"type": "string"}, "content": {"type": "string"}},
        "required": ["file_path", "content"],
    },
}
# What the upstream emits per turn: text and (id, arguments) of its tool calls. Valid ids, an
# odd one (Kimi's), and `call_0` again on every turn.
REPLIES: list[tuple[str, list[tuple[str, dict[str, Any]]]]] = [
    ("Looking.", [("call_0", {"file_path": "/a", "content": "1"})]),
    (
        "",
        [
            ("functions.Write:0", {"file_path": "/b", "content": "2"}),
            ("call_0", {"file_path": "/c", "content": "3"}),
        ],
    ),
    ("Again.", [("call_0", {"file_path": "/d", "content": "4"}), ("chatcmpl-tool-9f3", {})]),
    ("All done.", []),
    ("Sure.", []),
]
LATE_RULE = "From now on, answer in French."


def reply_chunks(text: str, calls: list[tuple[str, dict[str, Any]]]) -> list[dict[str, Any]]:
    chunks = [chunk({"role": "assistant", "content": ""})]
    if text:
        chunks.append(chunk({"content": text}))
    for index, (call_id, args) in enumerate(calls):
        head = {"index": index, "id": call_id, "type": "function"}
        function = {"name": "Write", "arguments": ""}
        chunks.append(chunk({"tool_calls": [{**head, "function": function}]}))
        arguments = json.dumps(args)
        for start in range(0, len(arguments), 7):
            piece = {"index": index, "function": {"arguments": arguments[start : start + 7]}}
            chunks.append(chunk({"tool_calls": [piece]}))
    chunks.append(chunk({}, finish_reason="tool_calls" if calls else "stop"))
    chunks.append(
        chunk(choices=[], usage={"prompt_tokens": 900, "completion_tokens": 9, "total_tokens": 909})
    )
    return chunks


def system_blocks(turn: int) -> list[dict[str, Any]]:
    return [
        {"type": "text", "text": f"x-anthropic-billing-header: cc_version=2.1.331.{turn:03x};"},
        {"type": "text", "text": "You are a Claude agent.", "cache_control": EPHEMERAL},
        {"type": "text", "text": "Main prompt. Be helpful.", "cache_control": EPHEMERAL},
    ]


def without_breakpoints(messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Claude Code keeps one breakpoint, on the newest block: older ones are removed."""
    out = []
    for message in messages:
        content = message["content"]
        if isinstance(content, list):
            content = [{k: v for k, v in b.items() if k != "cache_control"} for b in content]
        out.append({**message, "content": content})
    return out


def request_body(turn: int, messages: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "model": "claude-opus-5-5",
        "max_tokens": 32000,
        "stream": True,
        "system": system_blocks(turn),
        "tools": [WRITE],
        "messages": messages,
    }


def post(url: str, body: dict[str, Any]) -> Any:
    resp = httpx.post(f"{url}/v1/messages", json=body, headers=HEADERS, timeout=20)
    assert resp.status_code == 200, resp.text
    return validate_anthropic_stream(resp.content, expect_error=False)


@pytest.mark.parametrize("in_place", [False, True], ids=["folded", "system-messages"])
def test_a_growing_conversation_keeps_every_upstream_prefix_and_tool_id(
    proxy_factory: ProxyFactory, mock_upstream: MockUpstream, tmp_path: Path, in_place: bool
) -> None:
    profiles = tmp_path / "profiles.json"
    profiles.write_text(json.dumps({"providers": {"127.0.0.1:*": {"system_in_place": in_place}}}))
    proxy = proxy_factory(PROVIDER_PROFILES=str(profiles))
    env = "# Environment\nPrimary working directory: /repo"
    messages: list[dict[str, Any]] = [
        {
            "role": "user",
            "content": [
                {"type": "text", "text": "<system-reminder>\nAttribution…\n</system-reminder>\n"},
                {"type": "text", "text": "Write the files."},
            ],
        },
        {"role": "system", "content": [{"type": "text", "text": env, "cache_control": EPHEMERAL}]},
    ]
    for turn, (text, calls) in enumerate(REPLIES, start=1):
        mock_upstream.enqueue(sse_response(reply_chunks(text, calls)))
        stream = post(proxy.base_url, request_body(turn, messages))
        ids = [u["id"] for u in stream.tool_uses]
        assert len(set(ids)) == len(ids) == len(calls)
        messages = without_breakpoints(messages)
        messages[1] = {"role": "system", "content": env}  # a plain string after turn 1
        messages.append({"role": "assistant", "content": stream.content})
        if calls:
            results = [
                {"type": "tool_result", "tool_use_id": i, "content": f"wrote {n}"}
                for n, i in enumerate(ids)
            ]
            results[-1]["cache_control"] = EPHEMERAL
            messages.append({"role": "user", "content": results})
        else:
            messages.append({"role": "user", "content": "Now translate it."})
        if turn == 3:  # arrives with the fourth request
            messages.append({"role": "system", "content": LATE_RULE})

    sent = [r.json for r in mock_upstream.chat_requests]
    assert len(sent) == len(REPLIES)
    for before, after in itertools.pairwise(sent):
        assert messages_extend(before, after), first_difference(before, after)
        assert prefix_share(before, after) == 1.0, first_difference(before, after)

    # The upstream got each of its tool-call ids back, in the turn that followed, byte for byte.
    last = sent[-1]["messages"]
    turns = [m for m in last if m["role"] == "assistant" and m.get("tool_calls")]
    assert [[c["id"] for c in m["tool_calls"]] for m in turns] == [
        [call_id for call_id, _ in calls] for _, calls in REPLIES if calls
    ]
    answered = [m["tool_call_id"] for m in last if m["role"] == "tool"]
    assert answered == [call_id for _, calls in REPLIES for call_id, _ in calls]

    # The system text stays where it arrived: no request carries it in the system prompt.
    for body in sent:
        assert env not in json.dumps(body["messages"][0])
    fourth = sent[3]["messages"]
    rule_at = next(i for i, m in enumerate(fourth) if LATE_RULE in json.dumps(m))
    assert rule_at == len(fourth) - 1  # after the turn-three results, the newest content
    assert (fourth[rule_at]["role"] == "system") is in_place


# -- the property over random growing conversations (the translator alone) -----------------

UPSTREAM_IDS = st.sampled_from(["call_0", "call_1", "functions.Write:0", "D681PevKs", ""])
TURN = st.fixed_dictionaries(
    {
        "text": st.sampled_from(["ok", "Let me look."]),
        "calls": st.lists(UPSTREAM_IDS, max_size=3),
        "answer": st.sampled_from(["all", "some", "none"]),
        "user_text": st.sampled_from(["", "go on"]),
        # Where system text arrives in the client's next turn, if at all.
        "system": st.sampled_from(["", "before", "after", "block-first", "block-last", "only"]),
    }
)


def next_user_side(turn: int, spec: dict[str, Any], ids: list[str]) -> list[dict[str, Any]]:
    answered = {"all": ids, "some": ids[:1], "none": []}[spec["answer"]]
    blocks: list[dict[str, Any]] = [
        {"type": "tool_result", "tool_use_id": i, "content": f"r{turn}"} for i in answered
    ]
    if spec["user_text"] or not blocks:  # a user turn follows every reply
        blocks.append({"type": "text", "text": spec["user_text"] or "next"})
    rule = {"type": "mid_conv_system", "content": [{"type": "text", "text": f"rule {turn}"}]}
    if spec["system"] == "block-first":
        blocks.insert(0, rule)
    elif spec["system"] == "block-last":
        blocks.append(rule)
    side: list[dict[str, Any]] = [{"role": "user", "content": blocks}] if blocks else []
    message = {"role": "system", "content": f"system {turn}"}
    if spec["system"] in ("before", "only"):
        side.insert(0, message)
    elif spec["system"] == "after":
        side.append(message)
    if spec["system"] == "only":
        side = [message]
    return side


@settings(max_examples=150, deadline=None)
@given(st.lists(TURN, min_size=1, max_size=5), st.booleans(), st.booleans())
def test_each_turn_starts_with_the_previous_turns_upstream_messages(
    turns: list[dict[str, Any]], in_place: bool, cache_control: bool
) -> None:
    options = TranslationOptions(system_in_place=in_place, cache_control=cache_control)
    messages: list[dict[str, Any]] = [
        {"role": "user", "content": "start"},
        {"role": "system", "content": "environment"},
    ]
    previous: list[dict[str, Any]] | None = None
    for turn, spec in enumerate(turns):
        body = {"model": "m", "max_tokens": 10, "system": "base", "messages": messages}
        sent = translate_request(body, upstream_model="m", options=options).payload["messages"]
        if previous is not None:
            assert sent[: len(previous)] == previous, (previous, sent)
        previous = sent
        ids = [client_tool_id(u, f"msg_{turn}:{n}") for n, u in enumerate(spec["calls"])]
        # The Messages API takes no empty assistant turn before the last: always some text
        # (the proxy could not send one upstream either).
        content: list[dict[str, Any]] = [{"type": "text", "text": spec["text"]}]
        content += [{"type": "tool_use", "id": i, "name": "f", "input": {}} for i in ids]
        messages = [*messages, {"role": "assistant", "content": content}]
        messages += next_user_side(turn, spec, ids)
