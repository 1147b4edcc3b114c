"""Documents the upstream cannot take as files: decoded to text.

PDF text is not extracted here: pypdf can spend unbounded CPU on a small hostile file, so the
server extracts it beforehand in a worker process with caps (`pdf_worker.py`, using
`pdf.pdf_page_texts`) and hands the results to translation keyed by the document's base64
data (`pdf_sources` finds them).
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Iterator, Mapping
from typing import Any

PDF_NOT_EXTRACTED = "[PDF document: its text was not extracted]"


def decode_document(data: str, media_type: str, extracted: Mapping[str, str] | None = None) -> str:
    """Text of a base64 document: PDFs from `extracted` (by data), text/* decoded as UTF-8."""
    text = extracted.get(data) if extracted is not None else None
    if text is not None:
        return text
    try:
        raw = base64.b64decode(data, validate=False)
    except (binascii.Error, ValueError):
        return "[document could not be decoded: invalid base64]"
    if media_type == "application/pdf":
        return PDF_NOT_EXTRACTED
    if media_type.startswith("text/") or media_type in ("application/json", "application/xml"):
        return raw.decode("utf-8", "replace")
    return f"[{media_type} document omitted: the upstream cannot read it]"


def pdf_sources(messages: Any) -> Iterator[str]:
    """The base64 data of every PDF document block translation would read as text:
    in message content and inside tool results."""
    if not isinstance(messages, list):
        return
    for message in messages:
        content = message.get("content") if isinstance(message, dict) else None
        if not isinstance(content, list):
            continue
        for block in content:
            if not isinstance(block, dict):
                continue
            if block.get("type") == "document":
                yield from _pdf_data(block)
            elif block.get("type") == "tool_result" and isinstance(block.get("content"), list):
                for item in block["content"]:
                    if isinstance(item, dict) and item.get("type") == "document":
                        yield from _pdf_data(item)


def _pdf_data(block: dict[str, Any]) -> Iterator[str]:
    source = block.get("source")
    if not isinstance(source, dict) or source.get("type") != "base64":
        return
    data, media_type = source.get("data"), source.get("media_type") or "application/pdf"
    if media_type == "application/pdf" and isinstance(data, str):
        yield data
