"""HTTP server limits against slow and oversized clients (README "Security").

What uvicorn enforces by itself (measured for issue 13): with httptools, nothing — a 100 MB
header is parsed (13.5 s of CPU, RSS +200 MB each) and a silent connection stays open
forever; with h11, a header size cap (`h11_max_incomplete_event_size`, answered 400) and a
keep-alive timeout that only runs *between* requests; `limit_concurrency` answers 503 in
plain text only once a request head has been read, so it bounds nothing against slowloris.

So the proxy keeps uvicorn's protocol classes (httptools' C parser when installed, h11
otherwise; h11's pure-Python framing cost 15-50 % more proxy CPU per stream in `python -m
bench`) and subclasses them (`LimitedHttpToolsProtocol`, `LimitedH11Protocol`) to add:

* a header read timeout (HEADER_TIMEOUT): a request head must arrive within it, counted from
  when the connection starts waiting for one (open, or the previous response sent) — 408;
* a header size limit (MAX_HEADER_BYTES) checked as bytes arrive — 431, nothing buffered
  beyond one socket read;
* a connection limit (MAX_CONNECTIONS, at most half the descriptor limit): at the limit, the
  connection waiting longest for a request head is closed to make room (slowloris sockets
  cannot starve real clients); when every connection is busy the new one gets 503.

Error answers are Anthropic-shaped JSON with a `request-id`. The body read timeout
(BODY_TIMEOUT) is enforced where bodies are read (`app.read_body`: 408).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
from dataclasses import dataclass
from typing import Any, cast

import h11
import orjson
from uvicorn.protocols.http.h11_impl import H11Protocol

try:
    from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
except ImportError:  # uvicorn without httptools: the h11 protocol carries the limits
    HttpToolsProtocol = None  # type: ignore[assignment,misc]

from claude_code_proxy.config import Settings
from claude_code_proxy.translate.errors import error_body
from claude_code_proxy.translate.ids import new_request_id

logger = logging.getLogger(__name__)

#: Descriptors kept free of client connections (upstream sockets, logs, capture files …).
RESERVED_DESCRIPTORS = 64
#: h11's own buffer cap, above ours: one socket read (≤ 256 KB) past MAX_HEADER_BYTES.
H11_SLACK = 512 * 1024


@dataclass(frozen=True)
class ServerLimits:
    header_timeout: float = 10.0
    max_header_bytes: int = 64 * 1024
    max_connections: int = 2048

    @classmethod
    def from_settings(cls, settings: Settings) -> ServerLimits:
        return cls(
            header_timeout=settings.header_timeout,
            max_header_bytes=settings.max_header_bytes,
            max_connections=descriptor_bound(settings.max_connections),
        )


def descriptor_bound(wanted: int) -> int:
    """`wanted`, lowered so each connection can also hold an upstream socket."""
    try:
        import resource

        soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    except (ImportError, OSError, ValueError):
        return wanted
    if soft == resource.RLIM_INFINITY:
        return wanted
    room = max(1, (soft - RESERVED_DESCRIPTORS) // 2)
    if room < wanted:
        logger.info(
            "MAX_CONNECTIONS lowered from %d to %d: the descriptor limit is %d", wanted, room, soft
        )
    return min(wanted, room)


def server_options(settings: Settings) -> dict[str, Any]:
    """uvicorn.Config keyword arguments that put these limits in front of the app."""
    limits = ServerLimits.from_settings(settings)
    protocol = LimitedHttpToolsProtocol if HttpToolsProtocol is not None else LimitedH11Protocol
    return {"http": functools.partial(protocol, limits=limits)}


def raw_error(status: int, error_type: str, message: str) -> bytes:
    """A complete HTTP/1.1 error response that closes the connection."""
    request_id = new_request_id()
    body = orjson.dumps({**error_body(error_type, message), "request_id": request_id})
    reason = {408: b"Request Timeout", 431: b"Request Header Fields Too Large"}.get(
        status, b"Service Unavailable"
    )
    head = [
        b"HTTP/1.1 %d %s" % (status, reason),
        b"content-type: application/json",
        b"content-length: %d" % len(body),
        b"connection: close",
        b"request-id: " + request_id.encode(),
    ]
    if status == 503:
        head.append(b"retry-after: 1")
    return b"\r\n".join(head) + b"\r\n\r\n" + body


class _Limits:
    """The limits, over either of uvicorn's HTTP/1.1 protocols (see the module docstring).

    A mixin: `_head_pending` says whether the current request head is still incomplete.
    """

    limits: ServerLimits
    connections: set[Any]
    transport: asyncio.Transport
    loop: asyncio.AbstractEventLoop
    cycle: Any

    def _setup_limits(self, limits: ServerLimits) -> None:
        self.limits = limits
        self._refused = False
        self._head_timer: asyncio.TimerHandle | None = None
        self._head_bytes = 0
        self._waiting_since = 0.0

    def _head_pending(self) -> bool:
        raise NotImplementedError

    # -------------------------------------------------------------- connection limit

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        if len(self.connections) >= self.limits.max_connections and not self._evict_one():
            self._refused = True
            logger.warning("connection refused: %d connections open", len(self.connections))
            message = "the proxy has too many open connections (MAX_CONNECTIONS); retry shortly"
            with contextlib.suppress(Exception):
                cast(asyncio.Transport, transport).write(
                    raw_error(503, "overloaded_error", message)
                )
            transport.close()
            return
        super().connection_made(transport)  # type: ignore[misc]
        self._wait_for_head()

    def _evict_one(self) -> bool:
        """Close the connection that has waited longest for a request head, if any."""
        idle = [c for c in self.connections if isinstance(c, _Limits) and c._head_timer is not None]
        if not idle:
            return False
        oldest = min(idle, key=lambda c: c._waiting_since)
        oldest._give_up(408, "the connection was idle while the proxy was at MAX_CONNECTIONS")
        self.connections.discard(oldest)
        return True

    def connection_lost(self, exc: Exception | None) -> None:
        if self._refused:
            return
        self._stop_waiting()
        super().connection_lost(exc)  # type: ignore[misc]

    # -------------------------------------------------------- header timeout and size

    def _wait_for_head(self) -> None:
        """Start the HEADER_TIMEOUT clock: no request is in progress on this connection."""
        self._stop_waiting()
        self._head_bytes = 0
        self._waiting_since = self.loop.time()
        self._head_timer = self.loop.call_later(self.limits.header_timeout, self._head_timeout)

    def _stop_waiting(self) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None

    def _head_timeout(self) -> None:
        self._head_timer = None
        if self.cycle is not None and not self.cycle.response_complete:
            return  # the app is handling a request: its own limits apply
        self._give_up(
            408,
            f"no complete request head within {self.limits.header_timeout:g}s (HEADER_TIMEOUT)",
        )

    def _give_up(self, status: int, message: str) -> None:
        """Answer `status` (only if the client started a request) and close."""
        self._stop_waiting()
        if self.transport.is_closing():
            return
        if self._head_bytes or status != 408:
            with contextlib.suppress(Exception):
                self.transport.write(raw_error(status, _error_type(status), message))
        self.transport.close()

    def data_received(self, data: bytes) -> None:
        if self._refused:
            return
        reading_head = self._head_pending()
        if reading_head:
            self._head_bytes += len(data)
        super().data_received(data)  # type: ignore[misc]
        if not reading_head or self.transport.is_closing():
            return
        if not self._head_pending():
            self._stop_waiting()  # the head is complete: a request cycle started
        elif self._head_bytes > self.limits.max_header_bytes:
            self._give_up(
                431, f"request head exceeds {self.limits.max_header_bytes} bytes (MAX_HEADER_BYTES)"
            )

    def on_response_complete(self) -> None:
        super().on_response_complete()  # type: ignore[misc]
        if not self.transport.is_closing():
            # Waiting for the next head, or for the rest of a body the app did not read
            # (a GET with a trickling body): either gets HEADER_TIMEOUT, then is closed.
            self._wait_for_head()


class LimitedH11Protocol(_Limits, H11Protocol):
    """uvicorn's h11 protocol with the limits (used when httptools is not installed)."""

    def __init__(self, *args: Any, limits: ServerLimits, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._setup_limits(limits)
        self.conn = h11.Connection(h11.SERVER, limits.max_header_bytes + H11_SLACK)

    def _head_pending(self) -> bool:
        return self.conn.their_state is h11.IDLE


class LimitedHttpToolsProtocol(_Limits, HttpToolsProtocol):
    """uvicorn's httptools protocol (its C parser: the fast path) with the limits."""

    def __init__(self, *args: Any, limits: ServerLimits, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._setup_limits(limits)
        self._awaiting_head = True
        # False while the parser is still inside a request's body: bytes of a body the app
        # answered without reading are body bytes, not the next head.
        self._message_done = True

    def _head_pending(self) -> bool:
        return self._awaiting_head

    def _wait_for_head(self) -> None:
        self._awaiting_head = self._message_done
        super()._wait_for_head()

    def on_message_begin(self) -> None:
        self._awaiting_head = True  # a pipelined head is counted too
        self._message_done = False
        super().on_message_begin()

    def on_message_complete(self) -> None:
        self._message_done = True
        super().on_message_complete()
        if self.cycle is None or self.cycle.response_complete:
            self._awaiting_head = True

    def on_headers_complete(self) -> None:
        self._awaiting_head = False
        self._stop_waiting()
        super().on_headers_complete()


def _error_type(status: int) -> str:
    return {408: "timeout_error", 431: "request_too_large"}.get(status, "overloaded_error")
