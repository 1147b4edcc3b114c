"""Identifiers in the shapes Anthropic clients expect."""

from __future__ import annotations

import hashlib
import re
import secrets
import string

_BASE62 = string.digits + string.ascii_letters
_TOOL_ID_RE = re.compile(r"^[A-Za-z0-9_-]+$")
# OpenAI's function-name pattern; Anthropic allows the same set, MCP servers sometimes more.
_TOOL_NAME_RE = re.compile(r"[A-Za-z0-9_-]{1,64}")
_TOOL_NAME_CHAR_RE = re.compile(r"[^A-Za-z0-9_-]")
# OpenAI rejects tool_call ids longer than 40 characters.
_MAX_UPSTREAM_TOOL_ID = 40


def _random_base62(length: int) -> str:
    """One getrandom call instead of one per character (ids are minted per request)."""
    number = int.from_bytes(secrets.token_bytes(length), "big")  # 8 bits ≥ log2(62) each
    chars = []
    for _ in range(length):
        number, rest = divmod(number, 62)
        chars.append(_BASE62[rest])
    return "".join(chars)


def new_message_id() -> str:
    """A fresh `msg_…` id, as the Messages API mints them."""
    return "msg_" + _random_base62(24)


def new_tool_use_id() -> str:
    """A fresh `toolu_…` id: upstream ids are never trusted to be unique or well-formed."""
    return "toolu_" + _random_base62(24)


def new_server_tool_id() -> str:
    """A fresh `srvtoolu_…` id for a server tool call the proxy runs (web search)."""
    return "srvtoolu_" + _random_base62(24)


def new_request_id() -> str:
    return "req_" + _random_base62(24)


def is_valid_tool_id(value: object) -> bool:
    return isinstance(value, str) and _TOOL_ID_RE.match(value) is not None


def mistral_tool_id(anthropic_id: object) -> str:
    """Mistral accepts only ids of exactly 9 alphanumerics: a deterministic digest of ours."""
    text = anthropic_id if isinstance(anthropic_id, str) else str(anthropic_id)
    number = int.from_bytes(
        hashlib.sha256(text.encode("utf-8", "surrogatepass")).digest()[:8], "big"
    )
    chars = []
    for _ in range(9):
        number, rest = divmod(number, 62)
        chars.append(_BASE62[rest])
    return "".join(chars)


def upstream_tool_id(anthropic_id: object) -> str:
    """Map a client-side tool_use id to one every OpenAI-compatible upstream accepts.

    Deterministic, so a tool call and its result always carry the same id across turns.
    """
    text = anthropic_id if isinstance(anthropic_id, str) else str(anthropic_id)
    if text and len(text) <= _MAX_UPSTREAM_TOOL_ID and _TOOL_ID_RE.match(text):
        return text
    return "call_" + hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()[:32]


def upstream_tool_name(name: str) -> str:
    """`name` if OpenAI-style servers accept it, else a legal stand-in, stable per name."""
    if _TOOL_NAME_RE.fullmatch(name):
        return name
    digest = hashlib.sha256(name.encode("utf-8", "surrogatepass")).hexdigest()[:8]
    return f"{_TOOL_NAME_CHAR_RE.sub('_', name)[:55]}_{digest}"
