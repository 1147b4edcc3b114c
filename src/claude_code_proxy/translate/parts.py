"""Anthropic content blocks → OpenAI content parts, shared by every upstream dialect.

Parts come out in the Chat Completions shapes (`text`, `image_url`, `file`); a dialect with
other names (the Responses API's `input_text`, `input_image`, `input_file`) renames them.
Images and PDFs the upstream can take stay attachments; every other block becomes text.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from claude_code_proxy.translate.content import (
    Stats,
    cache_mark,
    is_base64,
    json_text,
    render_block_as_text,
)
from claude_code_proxy.translate.documents import decode_document
from claude_code_proxy.translate.errors import RequestValidationError
from claude_code_proxy.translate.options import TranslationOptions

logger = logging.getLogger(__name__)


def text_part(text: str, mark: Any) -> dict[str, Any]:
    part: dict[str, Any] = {"type": "text", "text": text}
    if mark is not None:
        part["cache_control"] = mark
    return part


class PartBuilder:
    """Builds the parts of one request's blocks, counting what it saw for the size estimate."""

    def __init__(
        self,
        options: TranslationOptions,
        stats: Stats,
        documents: Mapping[str, str] | None = None,
    ) -> None:
        self.options = options
        self.stats = stats
        # Text of base64 PDFs, extracted before translation (keyed by their data).
        self.documents = documents

    def tool_result_content(self, block: dict[str, Any]) -> tuple[str, list[dict[str, Any]]]:
        content = block.get("content")
        images: list[dict[str, Any]] = []
        if content is None:
            text = ""
        elif isinstance(content, str):
            text = content
        elif isinstance(content, list):
            texts: list[str] = []
            for item in content:
                if isinstance(item, dict) and item.get("type") == "image":
                    images.extend(self.image(item))
                elif isinstance(item, dict) and item.get("type") == "document":
                    # Text goes into the tool message; PDF file parts and images cannot, so
                    # they follow in the user message with the other attachments.
                    for part in self.document(item):
                        if part["type"] == "text":
                            texts.append(part["text"])
                        else:
                            images.append(part)
                else:
                    rendered = render_block_as_text(item)
                    if rendered:
                        texts.append(rendered)
            text = "\n".join(texts)
        else:
            text = json_text(content)
        self.stats.text_chars += len(text)
        if block.get("is_error") is True:
            text = f"Error: {text}" if text else "Error: the tool call failed"
        elif not text:
            text = "(no output)" if not images else "(see the attachments below)"
        return text, images

    def content_part(
        self, block: dict[str, Any], position: int, index: int
    ) -> list[dict[str, Any]]:
        kind = block.get("type")
        if kind == "text":
            text = block.get("text")
            if not isinstance(text, str):
                raise RequestValidationError(
                    f"messages.{position}.content.{index}.text: must be a string"
                )
            self.stats.text_chars += len(text)
            mark = cache_mark(block) if self.options.cache_control else None
            return [text_part(text, mark)] if text else []
        if kind == "image":
            return self.image(block)
        if kind == "document":
            return self.document(block)
        if kind in ("thinking", "redacted_thinking"):
            return []
        rendered = render_block_as_text(block)
        if rendered is None:
            logger.warning("dropping content block of unknown type %r", kind)
            return []
        self.stats.text_chars += len(rendered)
        return [{"type": "text", "text": rendered}]

    def image(self, block: dict[str, Any]) -> list[dict[str, Any]]:
        source = block.get("source")
        if not isinstance(source, dict):
            raise RequestValidationError("image block: source must be an object")
        kind = source.get("type")
        if kind == "base64":
            data, media_type = source.get("data"), source.get("media_type") or "image/png"
            if not isinstance(data, str) or not isinstance(media_type, str):
                raise RequestValidationError("image block: base64 source needs data and media_type")
            self.stats.images += 1
            return [{"type": "image_url", "image_url": {"url": f"data:{media_type};base64,{data}"}}]
        if kind == "url":
            url = source.get("url")
            if not isinstance(url, str):
                raise RequestValidationError("image block: url source needs a url string")
            self.stats.images += 1
            return [{"type": "image_url", "image_url": {"url": url}}]
        note = f"[image {source.get('file_id') or kind!s} omitted: the upstream cannot resolve it]"
        return [{"type": "text", "text": note}]

    def document(self, block: dict[str, Any]) -> list[dict[str, Any]]:
        source = block.get("source")
        if not isinstance(source, dict):
            raise RequestValidationError("document block: source must be an object")
        title = block.get("title") if isinstance(block.get("title"), str) else None
        header = "\n".join(
            x
            for x in (
                title,
                block.get("context") if isinstance(block.get("context"), str) else None,
            )
            if x
        )
        kind = source.get("type")
        text: str
        if kind == "text":
            data = source.get("data")
            text = data if isinstance(data, str) else ""
        elif kind == "content":
            parts: list[dict[str, Any]] = []
            content = source.get("content")
            if isinstance(content, str):
                parts.append({"type": "text", "text": content})
            elif isinstance(content, list):
                for item in content:
                    if isinstance(item, dict) and item.get("type") == "image":
                        parts.extend(self.image(item))
                    else:
                        rendered = render_block_as_text(item)
                        if rendered:
                            parts.append({"type": "text", "text": rendered})
            if header:
                parts.insert(0, {"type": "text", "text": header})
            self.stats.text_chars += sum(len(p.get("text", "")) for p in parts)
            return parts
        elif kind == "base64":
            data = source.get("data")
            media_type = source.get("media_type") or "application/pdf"
            if not isinstance(data, str):
                raise RequestValidationError("document block: base64 source needs data")
            if media_type == "application/pdf" and self.options.pdf_as_file and is_base64(data):
                self.stats.text_chars += len(data) // 8
                filename = (title or "document") + ".pdf"
                file_part = {"file_data": f"data:{media_type};base64,{data}", "filename": filename}
                return [{"type": "file", "file": file_part}]
            text = decode_document(data, str(media_type), self.documents)
        elif kind == "url":
            text = f"[document at {source.get('url')} — fetch it if needed]"
        else:
            text = f"[document {source.get('file_id') or kind!s} omitted: the upstream cannot resolve it]"
        if header:
            text = f"{header}\n\n{text}"
        self.stats.text_chars += len(text)
        return [{"type": "text", "text": text}]
