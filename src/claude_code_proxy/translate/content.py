"""Walking Anthropic content: turns, blocks, text of blocks, and the request's size estimate.

Shared by every upstream dialect: how a message list is validated and merged, how a block
that has no upstream equivalent is rendered as text, and how the system prompt is read.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import orjson

from claude_code_proxy.translate.errors import RequestValidationError

BILLING_HEADER_PREFIX = "x-anthropic-billing-header:"
IMAGE_TOKEN_ESTIMATE = 1600


@dataclass
class Stats:
    """What the walk saw, for the proxy's own input-token estimate."""

    text_chars: int = 0
    images: int = 0

    @property
    def estimated_tokens(self) -> int:
        return self.text_chars // 4 + self.images * IMAGE_TOKEN_ESTIMATE


SystemPiece = tuple[str, Any]  # (text, the block's cache_control or None)


def system_texts(system: Any, stats: Stats) -> list[SystemPiece]:
    """System prompt texts, without Claude Code's per-request billing header block."""
    if system is None:
        return []
    if isinstance(system, str):
        if system.lstrip().startswith(BILLING_HEADER_PREFIX):
            system = system.lstrip().partition("\n")[2].lstrip("\n")
        stats.text_chars += len(system)
        return [(system, None)] if system else []
    if not isinstance(system, list):
        raise RequestValidationError("system: must be a string or a list of text blocks")
    pieces = []
    for block in system:
        text = block_text(block)
        if text is None or text.lstrip().startswith(BILLING_HEADER_PREFIX):
            continue
        stats.text_chars += len(text)
        pieces.append((text, cache_mark(block)))
    return pieces


def cache_mark(block: Any) -> Any:
    """The `cache_control` of a block, or of the last block of a content list that has one."""
    if isinstance(block, dict):
        mark = block.get("cache_control")
        return mark if isinstance(mark, dict) else None
    if isinstance(block, list):
        marks = [m for m in map(cache_mark, block) if m is not None]
        return marks[-1] if marks else None
    return None


def block_text(block: Any) -> str | None:
    if isinstance(block, str):
        return block
    if isinstance(block, dict):
        text = block.get("text")
        if isinstance(text, str):
            return text
        content = block.get("content")
        if isinstance(content, str):
            return content
        if isinstance(content, list):
            parts = [t for t in (block_text(b) for b in content) if t]
            return "\n".join(parts)
    return None


def merged_turns(messages: list[Any]) -> Iterator[tuple[int, str, str | list[Any]]]:
    """Validated (position, role, content) turns, consecutive same-role turns merged first.

    The Messages API merges neighbours of one role into one turn (protocol.md A.5), so a
    tool_result in the second of two user messages still answers the call before them.
    """
    pending: tuple[int, str, str | list[Any]] | None = None
    # Blocks of the pending turn once a second same-role message joined it: extended in
    # place, so a run of N messages costs O(N), not O(N²) list copies.
    joined: list[Any] | None = None
    for position, message in enumerate(messages):
        if not isinstance(message, dict):
            raise RequestValidationError(f"messages.{position}: must be an object")
        role = message.get("role")
        if role not in ("user", "assistant", "system", "developer"):
            raise RequestValidationError(
                f"messages.{position}.role: must be 'user', 'assistant' or 'system', got {role!r}"
            )
        if "content" not in message:
            raise RequestValidationError(f"messages.{position}.content: field required")
        content = message["content"]
        if content is None:
            content = []
        if not isinstance(content, str | list):
            raise RequestValidationError(
                f"messages.{position}.content: must be a string or a list of blocks"
            )
        role = "system" if role == "developer" else role
        if pending is not None and pending[1] == role and role != "system":
            if joined is None:
                joined = [*as_blocks(pending[2])]
                pending = (pending[0], role, joined)
            joined.extend(as_blocks(content))
            continue
        if pending is not None:
            yield pending
        pending, joined = (position, role, content), None
    if pending is not None:
        yield pending


def as_blocks(content: str | list[Any]) -> list[Any]:
    if isinstance(content, str):
        return [{"type": "text", "text": content}] if content else []
    return content


def is_base64(data: str) -> bool:
    try:
        base64.b64decode(data, validate=True)
    except (binascii.Error, ValueError):
        return False
    return True


def blocks(content: list[Any], position: int) -> Iterator[tuple[int, dict[str, Any]]]:
    """A message's content blocks, bare strings read as text blocks; anything else is a 400."""
    for index, block in enumerate(content):
        if isinstance(block, str):
            block = {"type": "text", "text": block}
        if not isinstance(block, dict):
            raise RequestValidationError(f"messages.{position}.content.{index}: must be an object")
        yield index, block


def content_text(content: Any, stats: Stats) -> str:
    if isinstance(content, str):
        stats.text_chars += len(content)
        return content
    if isinstance(content, list):
        texts = [t for t in (block_text(b) for b in content) if t]
        text = "\n\n".join(texts)
        stats.text_chars += len(text)
        return text
    return ""


def render_block_as_text(block: Any) -> str | None:
    """Blocks OpenAI has no part for (search results, server tool results…) as readable text."""
    if isinstance(block, str):
        return block
    if not isinstance(block, dict):
        return json_text(block)
    kind = block.get("type")
    if kind == "text":
        text = block.get("text")
        return text if isinstance(text, str) else None
    if kind == "search_result":
        content = block.get("content")
        body = block_text({"content": content}) or ""
        title, source = block.get("title") or "", block.get("source") or ""
        return f"[Search result: {title}]({source})\n{body}".strip()
    if kind in ("thinking", "redacted_thinking"):
        return None
    if kind == "tool_reference":
        return f"[tool reference: {block.get('tool_name') or block.get('name') or ''}]"
    if kind == "server_tool_use":
        return f"[{block.get('name')} call: {json_text(block.get('input'))}]"
    if isinstance(kind, str) and kind.endswith("_tool_result"):
        return f"[{kind}: {json_text(block.get('content'))}]"
    if kind in ("container_upload",):
        return f"[file {block.get('file_id')} uploaded to the code container]"
    text = block.get("text")
    if isinstance(text, str):
        return text
    return None


def json_text(value: Any) -> str:
    if isinstance(value, str):
        return value
    try:
        return orjson.dumps(value).decode()
    except TypeError:
        return str(value)


def stop_sequences(value: Any) -> list[str]:
    if value is None:
        return []
    if isinstance(value, str):
        return [value] if value else []
    if not isinstance(value, list) or not all(isinstance(s, str) for s in value):
        raise RequestValidationError("stop_sequences: must be a list of strings")
    return [s for s in value if s]


def conversation_key(body: dict[str, Any], session_id: str | None) -> str | None:
    """A stable per-conversation prompt-cache key (≤ 64 chars, as OpenAI requires).

    Claude Code's session id, else the hashed `metadata.user_id`; None when neither is given.
    """
    seed = session_id
    if not seed:
        metadata = body.get("metadata")
        user_id = metadata.get("user_id") if isinstance(metadata, dict) else None
        seed = user_id if isinstance(user_id, str) and user_id else None
    if not seed:
        return None
    return "ccp-" + hashlib.sha256(seed.encode("utf-8", "surrogatepass")).hexdigest()[:40]


def request_fields(body: Any) -> tuple[str, int, list[Any], bool]:
    """The top-level fields every dialect needs, validated: model, max_tokens, messages, stream."""
    if not isinstance(body, dict):
        raise RequestValidationError("request body must be a JSON object")
    model = body.get("model")
    if not isinstance(model, str) or not model:
        raise RequestValidationError("model: field required (a non-empty string)")
    max_tokens = body.get("max_tokens")
    if isinstance(max_tokens, bool) or not isinstance(max_tokens, int):
        raise RequestValidationError("max_tokens: field required (an integer)")
    if max_tokens < 0:
        raise RequestValidationError("max_tokens: must be greater than or equal to 0")
    messages = body.get("messages")
    if not isinstance(messages, list):
        raise RequestValidationError("messages: field required (a list of messages)")
    stream = body.get("stream", False)
    if not isinstance(stream, bool):
        raise RequestValidationError("stream: must be a boolean")
    return model, max_tokens, messages, stream
