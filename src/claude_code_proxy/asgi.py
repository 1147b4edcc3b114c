"""Small ASGI building blocks: JSON/SSE sends, cancellation on disconnect, request ids."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from typing import Any

import orjson
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from claude_code_proxy.translate.ids import new_request_id

logger = logging.getLogger(__name__)

SSE_HEADERS = [
    (b"content-type", b"text/event-stream; charset=utf-8"),
    (b"cache-control", b"no-cache"),
    (b"x-accel-buffering", b"no"),
]


async def send_json(
    send: Send, status: int, body: Any, headers: dict[str, str] | None = None
) -> None:
    data = orjson.dumps(body)
    raw_headers = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(data)).encode()),
    ]
    raw_headers.extend((k.encode(), v.encode()) for k, v in (headers or {}).items())
    await send({"type": "http.response.start", "status": status, "headers": raw_headers})
    await send({"type": "http.response.body", "body": data})


async def start_sse(send: Send) -> None:
    await send({"type": "http.response.start", "status": 200, "headers": SSE_HEADERS})


class CancelOnDisconnect:
    """An ASGI response that runs `work(send)` and cancels it the moment the client leaves.

    The whole upstream exchange runs inside it, so pressing Esc in Claude Code aborts the
    upstream request whether it is still waiting for headers, streaming, or not streaming.
    `on_disconnect` is called just before that cancellation, so the work can tell a client
    that left (a cancellation) from a server shutting down.

    Once the response's last byte is sent the server reports `http.disconnect` for a client
    that is still there: from then on the work (writing a capture, the access line) is
    awaited, not cancelled.
    """

    def __init__(
        self,
        work: Callable[[Send], Awaitable[None]],
        on_disconnect: Callable[[], None] | None = None,
    ) -> None:
        self.work = work
        self.on_disconnect = on_disconnect

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        started = sent_all = False

        async def tracked_send(message: Message) -> None:
            nonlocal started, sent_all
            started = True
            await send(message)
            if message["type"] == "http.response.body" and not message.get("more_body", False):
                sent_all = True

        task = asyncio.ensure_future(self.work(tracked_send))
        watcher = asyncio.ensure_future(_wait_for_disconnect(receive))
        try:
            await asyncio.wait((task, watcher), return_when=asyncio.FIRST_COMPLETED)
            if not task.done() and sent_all:
                await asyncio.wait({task})  # the response is complete: let the work finish
        except asyncio.CancelledError:
            # The server is shutting down: let the exchange end its stream with an
            # `event: error` (it handles its own cancellation) instead of cutting it.
            watcher.cancel()
            task.cancel()
            await asyncio.wait({task}, timeout=2.0)
            if not started:
                # Still waiting for the upstream's head: say so, as Anthropic would.
                with contextlib.suppress(Exception):
                    await send_json(
                        send,
                        503,
                        {
                            "type": "error",
                            "error": {
                                "type": "overloaded_error",
                                "message": "the proxy is shutting down; retry the request",
                            },
                        },
                        {"retry-after": "1", "connection": "close"},
                    )
            return
        if task.done():
            watcher.cancel()
            task.result()
            return
        logger.info("client disconnected: upstream request aborted")
        if self.on_disconnect is not None:
            self.on_disconnect()
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await task


async def _wait_for_disconnect(receive: Receive) -> None:
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return


class RequestIdMiddleware:
    """Every response carries a `request-id: req_…` header, as Anthropic's do, and every
    JSON error body the same id as `request_id` (A.13), whichever layer produced it."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id = new_request_id()
        scope.setdefault("state", {})["request_id"] = request_id
        encoded = request_id.encode()
        held: Message | None = None  # the start of an error response, until its body is known
        chunks: list[bytes] = []

        async def send_with_id(message: Message) -> None:
            nonlocal held
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", []), (b"request-id", encoded)]
                if message["status"] >= 400 and _is_json(message["headers"]):
                    held = message
                    return
            elif message["type"] == "http.response.body" and held is not None:
                chunks.append(message.get("body", b""))
                if message.get("more_body", False):
                    return
                start, held = held, None
                body = with_request_id(b"".join(chunks), request_id)
                start["headers"] = [
                    *((k, v) for k, v in start["headers"] if k.lower() != b"content-length"),
                    (b"content-length", str(len(body)).encode()),
                ]
                await send(start)
                message = {"type": "http.response.body", "body": body}
            await send(message)

        await self.app(scope, receive, send_with_id)


def with_request_id(body: bytes, request_id: str) -> bytes:
    """An Anthropic error body with `request_id` added; anything else unchanged."""
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError:
        return body
    if not isinstance(data, dict) or data.get("type") != "error" or "request_id" in data:
        return body
    data["request_id"] = request_id
    return orjson.dumps(data)


def _is_json(headers: Any) -> bool:
    return any(
        k.lower() == b"content-type" and v.split(b";")[0].strip().lower() == b"application/json"
        for k, v in headers
    )


PING_EVENT = b'event: ping\ndata: {"type":"ping"}\n\n'


class ClientTooSlow(Exception):
    """The client stopped reading the response (WRITE_TIMEOUT)."""


class EventSender:
    """Writes SSE bytes to the client and keeps the connection alive during silence.

    While the upstream is quiet (a reasoning model thinking before its first token) a
    `ping` event goes out every `interval` seconds, so clients and proxies in between
    do not drop the connection. A lock keeps pings from landing after the final event.
    """

    def __init__(self, send: Send, interval: float, write_timeout: float | None = None) -> None:
        self._send = send
        self._interval = interval
        self._write_timeout = write_timeout
        self._lock = asyncio.Lock()
        self._last = 0.0
        self._closed = False
        self._pinger: asyncio.Task[None] | None = None
        # WRITE_TIMEOUT: one watchdog timer per response, not one per write (hot path).
        self._writing_since: float | None = None
        self._writer: asyncio.Task[Any] | None = None
        self._watchdog: asyncio.TimerHandle | None = None
        self._expired = False

    async def start(self, first: bytes) -> None:
        await self._send({"type": "http.response.start", "status": 200, "headers": SSE_HEADERS})
        await self.write(first)
        if self._interval > 0:
            self._pinger = asyncio.ensure_future(self._keep_alive())

    async def write(self, data: bytes) -> None:
        async with self._lock:
            if self._closed:
                return
            await self._timed({"type": "http.response.body", "body": data, "more_body": True})
            self._last = asyncio.get_running_loop().time()

    async def _timed(self, message: Message) -> None:
        """Send, or raise ClientTooSlow after WRITE_TIMEOUT: a client that stops reading
        must not hold its upstream request (and our buffers) open indefinitely.

        A send only blocks when the client's socket buffers are full, so instead of a timer
        per write, one watchdog per response wakes every WRITE_TIMEOUT/2 and cancels the
        writing task when a send has been pending for WRITE_TIMEOUT (it fires within
        1.5 × WRITE_TIMEOUT). A write costs two attribute stores."""
        if self._write_timeout is None:
            await self._send(message)
            return
        loop = asyncio.get_running_loop()
        self._writer = asyncio.current_task()  # the exchange, or the pinger
        if self._watchdog is None:
            self._watchdog = loop.call_later(self._write_timeout / 2, self._watch)
        self._writing_since = loop.time()
        try:
            await self._send(message)
        except asyncio.CancelledError:
            if not self._expired:
                raise
            task = asyncio.current_task()
            if task is not None and hasattr(task, "uncancel"):
                task.uncancel()
            self._closed = True
            raise ClientTooSlow(
                f"the client read nothing for {self._write_timeout:g}s (WRITE_TIMEOUT)"
            ) from None
        finally:
            self._writing_since = None

    def _watch(self) -> None:
        """The watchdog's tick: cancel a write pending too long, else re-arm while useful."""
        self._watchdog = None
        writer, timeout = self._writer, self._write_timeout
        if writer is None or timeout is None or writer.done() or self._expired:
            return
        loop = asyncio.get_running_loop()
        since = self._writing_since
        if since is not None and loop.time() - since >= timeout:
            self._expired = True
            writer.cancel()
            return
        if self._closed and since is None:
            return
        self._watchdog = loop.call_later(timeout / 2, self._watch)

    async def close(self, final: bytes = b"") -> None:
        """Send the last bytes and end the response; later writes and pings are dropped."""
        if self._pinger is not None:
            self._pinger.cancel()
        async with self._lock:
            if self._closed:
                return
            self._closed = True
            try:
                await self._timed({"type": "http.response.body", "body": final, "more_body": False})
            finally:
                if self._watchdog is not None:
                    self._watchdog.cancel()
                    self._watchdog = None

    def stop_pings(self) -> None:
        if self._pinger is not None:
            self._pinger.cancel()

    async def _keep_alive(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            wait = self._last + self._interval - loop.time()
            if wait > 0:
                await asyncio.sleep(wait)
                continue
            try:
                await self.write(PING_EVENT)
            except ClientTooSlow:
                return  # the exchange meets the same timeout on its next write
