"""Documents the upstream cannot take as files: decoded to text (PDFs through pypdf)."""

from __future__ import annotations

import base64
import binascii
import io


def decode_document(data: str, media_type: str) -> str:
    """Text of a base64 document: PDFs through pypdf, text/* decoded as UTF-8."""
    try:
        raw = base64.b64decode(data, validate=False)
    except (binascii.Error, ValueError):
        return "[document could not be decoded: invalid base64]"
    if media_type.startswith("text/") or media_type in ("application/json", "application/xml"):
        return raw.decode("utf-8", "replace")
    if media_type == "application/pdf":
        try:
            from pypdf import PdfReader

            reader = PdfReader(io.BytesIO(raw))
            pages = [page.extract_text() or "" for page in reader.pages]
        except Exception as exc:  # pypdf raises many types on damaged files
            return f"[PDF document could not be converted to text: {type(exc).__name__}]"
        text = "\n\n".join(p.strip() for p in pages if p.strip())
        return text or "[PDF document contains no extractable text]"
    return f"[{media_type} document omitted: the upstream cannot read it]"
