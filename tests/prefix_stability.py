"""How much of each upstream request repeats the previous one byte for byte (prefix caches).

Provider prompt caches (OpenAI, DeepSeek, Gemini implicit caching, vLLM/SGLang/llama.cpp
prefix caching) reuse work only for an identical prefix. The measure: the previous request's
tools and messages serialized canonically, without the closing brackets, and how much of that is
a byte prefix of the next request's. 100 % means the whole previous request is a prefix of the
next one, which is what a growing conversation should give (docs/prefix-stability.md).
"""

from __future__ import annotations

import json
import os
from typing import Any


def canonical(body: dict[str, Any]) -> str:
    """Tools (which templates render first) then the messages, compact, open at the end."""
    text = json.dumps(
        {"tools": body.get("tools") or [], "messages": body.get("messages") or []},
        ensure_ascii=False,
        separators=(",", ":"),
    )
    return text[:-2]  # drop "]}": the next request continues the messages list


def common_prefix(first: str, second: str) -> int:
    limit = min(len(first), len(second))
    for index in range(limit):
        if first[index] != second[index]:
            return index
    return limit


def prefix_share(previous: dict[str, Any], current: dict[str, Any]) -> float:
    """The share of `previous` (0..1) that `current` repeats byte for byte from the start."""
    before, after = canonical(previous), canonical(current)
    if not before:
        return 1.0
    return common_prefix(before, after) / len(before)


def first_difference(previous: dict[str, Any], current: dict[str, Any]) -> str:
    """Where two requests part, for assertion messages."""
    before, after = canonical(previous), canonical(current)
    at = common_prefix(before, after)
    return (
        f"requests differ at byte {at} of {len(before)}:\n"
        f"  before: …{before[max(0, at - 120) : at + 200]!r}\n"
        f"  after:  …{after[max(0, at - 120) : at + 200]!r}"
    )


def messages_extend(previous: dict[str, Any], current: dict[str, Any]) -> bool:
    """The issue's property: the new messages start with the previous ones, unchanged."""
    before, after = previous.get("messages") or [], current.get("messages") or []
    return after[: len(before)] == before and previous.get("tools") == current.get("tools")


def report(line: str) -> None:
    """Print a measured figure, and append it to $CCP_PREFIX_REPORT when set."""
    print(line)
    path = os.environ.get("CCP_PREFIX_REPORT")
    if path:
        with open(path, "a", encoding="utf-8") as handle:
            handle.write(line + "\n")
