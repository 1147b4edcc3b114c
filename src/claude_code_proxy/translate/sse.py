"""Server-sent events: decoding the upstream's byte stream, encoding Anthropic events."""

from __future__ import annotations

from typing import Any

import orjson


class SSEDecoder:
    """Incremental SSE parser over raw bytes that yields each event's `data` payload.

    Works on bytes so a UTF-8 character split across network reads is never decoded
    half-way; comment lines (`: keep-alive`) and `event:`/`id:` fields are skipped.
    Lines may end in LF, CRLF or a bare CR, as the SSE spec allows.
    """

    __slots__ = ("_buffer", "_data")

    def __init__(self) -> None:
        self._buffer = b""
        self._data: list[bytes] = []

    def feed(self, chunk: bytes) -> list[bytes]:
        buffer = self._buffer + chunk if self._buffer else chunk
        if not self._data and b"\r" not in buffer:
            fast = self._fast(buffer)
            if fast is not None:
                return fast
        held = b""
        if b"\r" in buffer:
            # A CR at the very end may be the first half of a CRLF split across reads.
            if buffer[-1:] == b"\r":
                buffer, held = buffer[:-1], b"\r"
            buffer = buffer.replace(b"\r\n", b"\n").replace(b"\r", b"\n")
        payloads: list[bytes] = []
        start = 0
        find = buffer.find
        while True:
            end = find(b"\n", start)
            if end < 0:
                break
            line = buffer[start:end]
            start = end + 1
            self._line(line, payloads)
        self._buffer = buffer[start:] + held
        return payloads

    def _fast(self, buffer: bytes) -> list[bytes] | None:
        """The common shapes — every event one `data:` line, maybe after one `event:` line
        (the Responses API) — split without a line loop."""
        records = buffer.split(b"\n\n")
        rest = records.pop()
        payloads = []
        for record in records:
            if record[:6] == b"event:":
                record = record[record.find(b"\n") + 1 :]
            if record[:6] != b"data: " or b"\n" in record:
                return None
            payloads.append(record[6:])
        self._buffer = rest
        return payloads

    def flush(self) -> list[bytes]:
        """Payloads still pending when the stream ends without a final blank line."""
        payloads: list[bytes] = []
        if self._buffer:
            line, self._buffer = self._buffer.rstrip(b"\r"), b""
            self._line(line, payloads)
        if self._data:
            payloads.append(b"\n".join(self._data))
            self._data = []
        return payloads

    def _line(self, line: bytes, payloads: list[bytes]) -> None:
        if not line:
            if self._data:
                payloads.append(b"\n".join(self._data) if len(self._data) > 1 else self._data[0])
                self._data = []
            return
        if line[:5] == b"data:":
            value = line[5:]
            self._data.append(value[1:] if value[:1] == b" " else value)
        # Comments (":…") and other fields carry nothing the proxy needs.


def encode_event(event: dict[str, Any]) -> bytes:
    """One Anthropic SSE record; the `event:` line always equals the JSON `type`."""
    kind: str = event["type"]
    return b"event: " + kind.encode() + b"\ndata: " + orjson.dumps(event) + b"\n\n"


def encode_events(events: list[dict[str, Any]]) -> bytes:
    return b"".join([encode_event(event) for event in events])
