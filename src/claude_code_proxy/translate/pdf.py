"""PDF text extraction, page by page and capped (pages, characters).

Pure (bytes in, text out) but not bounded in time: pypdf may spend seconds on one page of a
hostile file and cannot be interrupted, so the server runs this in a worker process it can
kill (`pdf_worker.py`). Yields as it goes so the caller keeps what was extracted in time.
"""

from __future__ import annotations

import base64
import binascii
import io
from collections.abc import Iterator

#: (kind, text): ("page", its text) per page, then at most one ("note", why it stopped).
PdfEvent = tuple[str, str]


def pdf_page_texts(data: str, *, max_pages: int, max_chars: int) -> Iterator[PdfEvent]:
    """Text of a base64 PDF, one event per page, stopping at `max_pages` or `max_chars`."""
    try:
        raw = base64.b64decode(data, validate=False)
    except (binascii.Error, ValueError):
        yield "note", "[document could not be decoded: invalid base64]"
        return
    try:
        from pypdf import PdfReader

        reader = PdfReader(io.BytesIO(raw))
        count = len(reader.pages)
        chars = 0
        for number in range(min(count, max_pages)):
            text = (reader.pages[number].extract_text() or "").strip()
            if chars + len(text) > max_chars:
                yield "page", text[: max_chars - chars]
                yield (
                    "note",
                    (
                        f"[PDF text truncated at {max_chars} characters, on page {number + 1} "
                        f"of {count} (MAX_PDF_TEXT_CHARS)]"
                    ),
                )
                return
            chars += len(text)
            yield "page", text
        if count > max_pages:
            yield (
                "note",
                (
                    f"[PDF text truncated: only the first {max_pages} of {count} pages were "
                    "extracted (MAX_PDF_PAGES)]"
                ),
            )
    except Exception as exc:  # pypdf raises many types on damaged files
        yield "note", f"[PDF document could not be converted to text: {type(exc).__name__}]"


def join_pdf_text(pages: list[str], notes: list[str]) -> str:
    """The document's text as the model sees it: pages, then why extraction stopped."""
    text = "\n\n".join(p for p in pages if p)
    if notes:
        return "\n\n".join([text, *notes]) if text else "\n\n".join(notes)
    return text or "[PDF document contains no extractable text]"
