"""Server-sent events: decoding the upstream's byte stream, encoding Anthropic events."""

from __future__ import annotations

from typing import Any

import orjson

#: One upstream event larger than this ends the stream (`SSEDecoder(max_event_bytes=…)`).
DEFAULT_MAX_EVENT_BYTES = 16 * 1024 * 1024


class SSEEventTooLarge(ValueError):
    """One SSE event (or one line of it) grew beyond the decoder's cap."""


class SSEDecoder:
    """Incremental SSE parser over raw bytes that yields each event's `data` payload.

    Works on bytes so a UTF-8 character split across network reads is never decoded
    half-way; comment lines (`: keep-alive`) and `event:`/`id:` fields are skipped.
    Lines may end in LF, CRLF or a bare CR, as the SSE spec allows.

    Linear in the input: reads that end no line are only kept (joined once, when the
    line ends), never re-copied per read; an event beyond `max_event_bytes` raises
    `SSEEventTooLarge` instead of growing without bound.
    """

    __slots__ = ("_buffer", "_data", "_data_size", "_max", "_pending", "_pending_size")

    def __init__(self, max_event_bytes: int = DEFAULT_MAX_EVENT_BYTES) -> None:
        self._buffer = b""
        self._data: list[bytes] = []
        self._data_size = 0
        self._max = max_event_bytes
        self._pending: list[bytes] = []  # reads since the last line end, not yet joined
        self._pending_size = 0

    def feed(self, chunk: bytes) -> list[bytes]:
        if b"\n" not in chunk and b"\r" not in chunk:
            if self._buffer:
                self._pending.append(self._buffer)
                self._pending_size += len(self._buffer)
                self._buffer = b""
            self._pending.append(chunk)
            self._pending_size += len(chunk)
            self._check(self._pending_size)
            return []
        if self._pending:
            self._pending.append(chunk)
            chunk, self._pending, self._pending_size = b"".join(self._pending), [], 0
        buffer = self._buffer + chunk if self._buffer else chunk
        if not self._data and b"\r" not in buffer:
            fast = self._fast(buffer)
            if fast is not None:
                self._check(len(self._buffer))
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
        self._check(len(self._buffer))
        return payloads

    def _check(self, partial_line: int) -> None:
        if self._data_size + partial_line > self._max:
            self._buffer, self._data, self._pending = b"", [], []
            self._data_size = self._pending_size = 0
            raise SSEEventTooLarge(f"an upstream SSE event exceeds {self._max} bytes")

    def _fast(self, buffer: bytes) -> list[bytes] | None:
        """The common shapes — every event one `data:` line, maybe after one `event:` line
        (the Responses API) — split without a line loop."""
        records = buffer.split(b"\n\n")
        rest = records.pop()
        if b"\n" in rest:
            return None  # ended lines of an unfinished event: the line loop consumes them
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
        if self._pending:
            self._buffer = b"".join(self._pending)
            self._pending, self._pending_size = [], 0
        if self._buffer:
            line, self._buffer = self._buffer.rstrip(b"\r"), b""
            self._line(line, payloads)
        if self._data:
            payloads.append(b"\n".join(self._data))
            self._data, self._data_size = [], 0
        return payloads

    def _line(self, line: bytes, payloads: list[bytes]) -> None:
        if not line:
            if self._data:
                payloads.append(b"\n".join(self._data) if len(self._data) > 1 else self._data[0])
                self._data, self._data_size = [], 0
            return
        if line[:5] == b"data:":
            value = line[5:]
            self._data.append(value[1:] if value[:1] == b" " else value)
            self._data_size += len(value)
            self._check(0)
        # Comments (":…") and other fields carry nothing the proxy needs.


def encode_event(event: dict[str, Any]) -> bytes:
    """One Anthropic SSE record; the `event:` line always equals the JSON `type`."""
    kind: str = event["type"]
    return b"event: " + kind.encode() + b"\ndata: " + orjson.dumps(event) + b"\n\n"


def encode_events(events: list[dict[str, Any]]) -> bytes:
    return b"".join([encode_event(event) for event in events])
