"""Reasoning in both directions: effort mapping, signature stash, `<think>` splitting."""

from __future__ import annotations

import base64
import binascii
import zlib
from collections.abc import Sequence
from typing import Any

import orjson

EFFORTS = ("none", "minimal", "low", "medium", "high", "xhigh", "max")
# thinking.budget_tokens upper bounds for low and medium; anything above is high.
DEFAULT_BUDGET_THRESHOLDS = (2048, 16384)
SIGNATURE_PREFIX = "ccp1."
PLAIN_SIGNATURE = "claude-code-proxy"


def requested_effort(
    body: dict[str, Any], thresholds: tuple[int, int] = DEFAULT_BUDGET_THRESHOLDS
) -> str | None:
    """The effort a request asks for: `output_config.effort` first, then the thinking budget.

    Returns "none" for `thinking: {type: disabled}` and None when the request leaves it
    to the provider (adaptive thinking without an effort, or no thinking at all).
    """
    config = body.get("output_config")
    effort = config.get("effort") if isinstance(config, dict) else None
    thinking = body.get("thinking")
    kind = thinking.get("type") if isinstance(thinking, dict) else None
    if kind == "disabled":
        return "none"
    if isinstance(effort, str) and effort in EFFORTS:
        return effort
    if kind == "enabled":
        budget = thinking.get("budget_tokens") if isinstance(thinking, dict) else None
        if isinstance(budget, int) and not isinstance(budget, bool):
            low, medium = thresholds
            return "low" if budget <= low else "medium" if budget <= medium else "high"
        return "medium"
    return None


def supported_effort(effort: str, supported: Sequence[str]) -> str | None:
    """The nearest effort the model accepts, never exceeding what was asked for if possible."""
    if not supported:
        return None
    if effort in supported:
        return effort
    rank = EFFORTS.index(effort)
    lower = [e for e in supported if EFFORTS.index(e) <= rank]
    if effort == "none":
        return None  # a model that cannot switch reasoning off: leave it at its default
    return lower[-1] if lower else supported[0]


def encode_signature(
    reasoning: str,
    details: Any = None,
    *,
    google: str | None = None,
    item: dict[str, Any] | None = None,
) -> str:
    """Stash upstream reasoning state in the thinking signature Claude Code echoes back.

    `google` is a Gemini thought signature: the request side re-attaches it to the tool call
    that follows the thinking block. `item` is a Responses API reasoning item (its id,
    summary texts and encrypted content), sent back as that item on the next turn.
    """
    state: dict[str, Any] = {"r": reasoning}
    if details:
        state["d"] = details
    if google:
        state["g"] = google
    if item:
        state["o"] = item
    packed = zlib.compress(orjson.dumps(state), 6)
    return SIGNATURE_PREFIX + base64.urlsafe_b64encode(packed).decode().rstrip("=")


def decode_signature(signature: Any) -> dict[str, Any] | None:
    """The stashed state, or None for foreign or damaged signatures."""
    if not isinstance(signature, str) or not signature.startswith(SIGNATURE_PREFIX):
        return None
    data = signature[len(SIGNATURE_PREFIX) :]
    try:
        packed = base64.urlsafe_b64decode(data + "=" * (-len(data) % 4))
        state = orjson.loads(zlib.decompress(packed))
    except (binascii.Error, ValueError, zlib.error, orjson.JSONDecodeError):
        return None
    return state if isinstance(state, dict) else None


OPEN_TAG = "<think>"
CLOSE_TAG = "</think>"


class ThinkTagSplitter:
    """Splits `<think>…</think>` at the start of streamed content into reasoning and text.

    Works incrementally: a tag split across chunks is held back until it is decided.
    Only a leading `<think>` counts, so prose that mentions the tag later is untouched.
    """

    __slots__ = ("_held", "_state")

    def __init__(self) -> None:
        self._state = "detect"  # detect → think → after (strip newlines) → text
        self._held = ""

    def feed(self, text: str) -> list[tuple[str, str]]:
        """Returns ("thinking" | "text", piece) pairs in order."""
        out: list[tuple[str, str]] = []
        text = self._held + text
        self._held = ""
        if self._state == "detect":
            stripped = text.lstrip()
            if not stripped:
                self._held = text
                return out
            if stripped.startswith(OPEN_TAG):
                self._state = "think"
                text = stripped[len(OPEN_TAG) :].lstrip("\n")
            elif OPEN_TAG.startswith(stripped):
                self._held = text
                return out
            else:
                self._state = "text"
        if self._state == "think":
            end = text.find(CLOSE_TAG)
            if end >= 0:
                if end:
                    out.append(("thinking", text[:end]))
                self._state = "after"
                text = text[end + len(CLOSE_TAG) :]
            else:
                keep = _partial_suffix(text, CLOSE_TAG)
                if len(text) > keep:
                    out.append(("thinking", text[: len(text) - keep]))
                self._held = text[len(text) - keep :] if keep else ""
                return out
        if self._state == "after":
            text = text.lstrip("\r\n")
            if not text:
                return out  # blank lines between </think> and the answer, maybe more to come
            self._state = "text"
        if text:
            out.append(("text", text))
        return out

    @property
    def settled(self) -> bool:
        """Past any leading reasoning, holding nothing: the rest is plain text."""
        return self._state == "text" and not self._held

    def flush(self) -> list[tuple[str, str]]:
        held, self._held = self._held, ""
        if not held:
            return []
        return [("thinking" if self._state == "think" else "text", held)]


def _partial_suffix(text: str, tag: str) -> int:
    """Length of the longest suffix of text that is a proper prefix of tag."""
    for size in range(min(len(tag) - 1, len(text)), 0, -1):
        if text.endswith(tag[:size]):
            return size
    return 0


def split_think_tags(content: str) -> tuple[str, str]:
    """(reasoning, text) of a complete message whose content may start with `<think>`."""
    splitter = ThinkTagSplitter()
    pieces = splitter.feed(content) + splitter.flush()
    reasoning = "".join(p for kind, p in pieces if kind == "thinking")
    text = "".join(p for kind, p in pieces if kind == "text")
    return reasoning, text
