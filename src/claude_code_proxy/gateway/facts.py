"""The request facts the router needs, read from the Anthropic body only when a rule asks.

Pure and cheap: a route table without `image` / `web_search` / `long_context` rules makes
the router look at the model id alone, so the hot path pays nothing for them.
"""

from __future__ import annotations

from typing import Any


def has_image(body: dict[str, Any]) -> bool:
    """An image block anywhere in the messages, tool results included."""
    messages = body.get("messages")
    if not isinstance(messages, list):
        return False
    for message in messages:
        content = message.get("content") if isinstance(message, dict) else None
        if isinstance(content, list) and _blocks_have_image(content):
            return True
    return False


def _blocks_have_image(blocks: list[Any]) -> bool:
    for block in blocks:
        if not isinstance(block, dict):
            continue
        kind = block.get("type")
        if kind == "image":
            return True
        if kind == "tool_result":
            inner = block.get("content")
            if isinstance(inner, list) and _blocks_have_image(inner):
                return True
    return False


def has_web_search(body: dict[str, Any]) -> bool:
    """A `web_search_*` server tool among the request's tools."""
    tools = body.get("tools")
    if not isinstance(tools, list):
        return False
    return any(
        isinstance(tool, dict) and str(tool.get("type", "")).startswith("web_search")
        for tool in tools
    )
