"""A scriptable OpenAI-compatible upstream served over real TCP, for proxy tests.

The proxy talks to its upstream with a real HTTP client (connection pool, timeouts, chunked
SSE parsing), so the fake must be a real socket server: only then can tests exercise
keep-alive reuse, a stalled upstream, a connection dropped mid-body, or a byte stream split in
the middle of a UTF-8 character.  The server runs on its own thread and event loop so that
synchronous and ``async`` tests can drive it the same way, and ``stop()`` cancels handlers that
are deliberately hanging instead of waiting for them.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

__all__ = [
    "CHAT_PATH",
    "DEFAULT_MODEL",
    "MODELS_PATH",
    "Disconnect",
    "JSONResponse",
    "MockUpstream",
    "RawResponse",
    "RecordedRequest",
    "SSEResponse",
    "chunk",
    "completion",
    "default_responder",
    "disconnect",
    "error_body",
    "error_response",
    "json_response",
    "make_usage",
    "raw_response",
    "reasoning_chunks",
    "sse_response",
    "text_chunks",
    "tool_call_chunks",
    "usage_chunk",
]

CHAT_PATH = "/v1/chat/completions"
MODELS_PATH = "/v1/models"
DEFAULT_MODEL = "gpt-mock"
DEFAULT_CHUNK_ID = "chatcmpl-mock"
CREATED = 1766000000

Chunk = Mapping[str, Any] | bytes | str


# --------------------------------------------------------------------------------------------
# Scripted responses
# --------------------------------------------------------------------------------------------


@dataclass
class JSONResponse:
    """A complete JSON body (chat completion, OpenAI error, model list …)."""

    body: Any
    status: int = 200
    headers: Mapping[str, str] | None = None
    hang_before_headers: float = 0.0


@dataclass
class SSEResponse:
    """A streamed ``text/event-stream`` body, with knobs for the failure modes proxies meet.

    ``chunks``: dicts become ``data: <json>\\n\\n``; ``bytes``/``str`` are written verbatim, one
    write each (comments, CRLF framing, malformed JSON, half a UTF-8 character …).
    ``delay``: seconds to sleep before each chunk, or a per-chunk sequence (missing → 0).
    ``done``: append ``data: [DONE]``; None means "unless ``keep_open_after_end`` is set".
    ``hang_after``: after N chunks stop writing but keep the connection open (``hang_seconds``).
    ``drop_after``: after N chunks close the TCP connection without ending the chunked body.
    ``keep_open_after_end``: after the last chunk keep the connection open this long.
    """

    chunks: Sequence[Chunk]
    delay: float | Sequence[float] = 0.0
    done: bool | None = None
    headers: Mapping[str, str] | None = None
    status: int = 200
    hang_before_headers: float = 0.0
    hang_after: int | None = None
    drop_after: int | None = None
    keep_open_after_end: float = 0.0
    hang_seconds: float = 3600.0

    @property
    def sends_done(self) -> bool:
        return self.done if self.done is not None else not self.keep_open_after_end

    def delay_before(self, i: int) -> float:
        if isinstance(self.delay, (int, float)):
            return float(self.delay)
        return float(self.delay[i]) if i < len(self.delay) else 0.0


@dataclass
class RawResponse:
    """Arbitrary bytes with a content type, e.g. an HTML 502 page from a reverse proxy."""

    status: int
    body: bytes
    content_type: str = "text/html"
    headers: Mapping[str, str] | None = None
    hang_before_headers: float = 0.0


@dataclass
class Disconnect:
    """Close the TCP connection without sending a status line (after an optional wait)."""

    hang_before_headers: float = 0.0


Response = JSONResponse | SSEResponse | RawResponse | Disconnect
#: Computes a response from the parsed JSON request body (None when the body is not JSON).
Responder = Callable[[Any], Response]


def json_response(
    body: Any,
    status: int = 200,
    headers: Mapping[str, str] | None = None,
    *,
    hang_before_headers: float = 0.0,
) -> JSONResponse:
    return JSONResponse(body, status, headers, hang_before_headers)


def sse_response(
    chunks: Iterable[Chunk],
    delay: float | Sequence[float] = 0.0,
    done: bool | None = None,
    headers: Mapping[str, str] | None = None,
    status: int = 200,
    *,
    hang_before_headers: float = 0.0,
    hang_after: int | None = None,
    drop_after: int | None = None,
    keep_open_after_end: float = 0.0,
    hang_seconds: float = 3600.0,
) -> SSEResponse:
    return SSEResponse(
        list(chunks),
        delay,
        done,
        headers,
        status,
        hang_before_headers,
        hang_after,
        drop_after,
        keep_open_after_end,
        hang_seconds,
    )


def raw_response(
    status: int,
    body_bytes: bytes | str,
    content_type: str = "text/html",
    headers: Mapping[str, str] | None = None,
    *,
    hang_before_headers: float = 0.0,
) -> RawResponse:
    body = body_bytes.encode() if isinstance(body_bytes, str) else body_bytes
    return RawResponse(status, body, content_type, headers, hang_before_headers)


def disconnect(hang_before_headers: float = 0.0) -> Disconnect:
    return Disconnect(hang_before_headers)


def error_body(
    message: str,
    type: str = "invalid_request_error",
    *,
    code: str | None = None,
    param: str | None = None,
) -> dict[str, Any]:
    """OpenAI-style error body ``{"error": {message, type, param, code}}``."""
    return {"error": {"message": message, "type": type, "param": param, "code": code}}


def error_response(
    status: int,
    message: str,
    type: str = "invalid_request_error",
    *,
    code: str | None = None,
    param: str | None = None,
    headers: Mapping[str, str] | None = None,
) -> JSONResponse:
    """An OpenAI-style error with an HTTP status, e.g. ``error_response(429, "slow down")``."""
    return JSONResponse(error_body(message, type, code=code, param=param), status, headers)


# --------------------------------------------------------------------------------------------
# OpenAI body builders
# --------------------------------------------------------------------------------------------


def make_usage(prompt: int, completion: int, cached: int = 0, reasoning: int = 0) -> dict[str, Any]:
    """OpenAI ``usage`` object (``prompt_tokens`` includes ``cached``, as OpenAI reports it)."""
    return {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
        "prompt_tokens_details": {"cached_tokens": cached},
        "completion_tokens_details": {"reasoning_tokens": reasoning},
    }


UsageSpec = Mapping[str, Any] | Sequence[int] | None


def _usage_obj(usage: UsageSpec) -> dict[str, Any] | None:
    if usage is None:
        return None
    if isinstance(usage, Mapping):
        return dict(usage)
    return make_usage(*usage)


def chunk(
    delta: Mapping[str, Any] | None = None,
    *,
    finish_reason: str | None = None,
    model: str = DEFAULT_MODEL,
    chunk_id: str = DEFAULT_CHUNK_ID,
    index: int = 0,
    usage: Mapping[str, Any] | None = None,
    choices: list[dict[str, Any]] | None = None,
    **extra: Any,
) -> dict[str, Any]:
    """One ``chat.completion.chunk``; pass ``choices=[]`` for usage/filter-only chunks."""
    if choices is None:
        choices = [
            {
                "index": index,
                "delta": dict(delta or {}),
                "logprobs": None,
                "finish_reason": finish_reason,
            }
        ]
    return {
        "id": chunk_id,
        "object": "chat.completion.chunk",
        "created": CREATED,
        "model": model,
        "choices": choices,
        "usage": dict(usage) if usage is not None else None,
        **extra,
    }


def usage_chunk(
    prompt: int,
    completion: int,
    cached: int = 0,
    reasoning: int = 0,
    *,
    model: str = DEFAULT_MODEL,
    chunk_id: str = DEFAULT_CHUNK_ID,
) -> dict[str, Any]:
    """The trailing ``choices: []`` chunk sent with ``stream_options.include_usage``."""
    return chunk(
        choices=[],
        usage=make_usage(prompt, completion, cached, reasoning),
        model=model,
        chunk_id=chunk_id,
    )


def _tail(
    finish_reason: str | None, usage: UsageSpec, model: str, chunk_id: str
) -> list[dict[str, Any]]:
    out = []
    if finish_reason is not None:
        out.append(chunk({}, finish_reason=finish_reason, model=model, chunk_id=chunk_id))
    usage_obj = _usage_obj(usage)
    if usage_obj is not None:
        out.append(chunk(choices=[], usage=usage_obj, model=model, chunk_id=chunk_id))
    return out


def text_chunks(
    text_pieces: Iterable[str],
    *,
    model: str = DEFAULT_MODEL,
    finish_reason: str | None = "stop",
    usage: UsageSpec = None,
    role: bool = True,
    chunk_id: str = DEFAULT_CHUNK_ID,
) -> list[dict[str, Any]]:
    """Role chunk, one ``content`` chunk per piece, finish chunk, optional usage chunk.

    ``usage`` is a usage object or ``(prompt, completion[, cached[, reasoning]])``.
    Pass ``finish_reason=None`` to get a prefix that other builders can continue.
    """
    out = []
    if role:
        out.append(chunk({"role": "assistant", "content": ""}, model=model, chunk_id=chunk_id))
    out.extend(chunk({"content": p}, model=model, chunk_id=chunk_id) for p in text_pieces)
    return out + _tail(finish_reason, usage, model, chunk_id)


def reasoning_chunks(
    pieces: Iterable[str],
    *,
    field: str = "reasoning_content",
    model: str = DEFAULT_MODEL,
    role: bool = True,
    chunk_id: str = DEFAULT_CHUNK_ID,
) -> list[dict[str, Any]]:
    """Reasoning deltas (``reasoning_content`` à la DeepSeek, or ``field="reasoning"``)."""
    out = []
    if role:
        out.append(chunk({"role": "assistant", "content": ""}, model=model, chunk_id=chunk_id))
    out.extend(chunk({field: p}, model=model, chunk_id=chunk_id) for p in pieces)
    return out


def _arguments_text(arguments: Any) -> str:
    return arguments if isinstance(arguments, str) else json.dumps(arguments)


def _split(text: str, size: int) -> list[str]:
    return [text[i : i + size] for i in range(0, len(text), size)] or [""]


def tool_call_chunks(
    calls: Sequence[Mapping[str, Any]],
    *,
    model: str = DEFAULT_MODEL,
    finish_reason: str | None = "tool_calls",
    usage: UsageSpec = None,
    fragment_size: int | None = None,
    inline_arguments: bool = False,
    interleave: bool = False,
    role: bool = True,
    chunk_id: str = DEFAULT_CHUNK_ID,
) -> list[dict[str, Any]]:
    """Streamed tool calls, OpenAI style by default.

    Each call mapping: ``name``, ``arguments`` (str, or an object that is JSON-encoded),
    optional ``id`` (default ``call_<i>``; None omits it, as Gemini does), ``index`` (default
    ``i``; None omits it), ``fragments`` (explicit argument pieces).  Per call a header chunk
    carries id/type/name with ``arguments: ""``, then the argument fragments follow
    (``fragment_size`` splits them; default one fragment).  ``inline_arguments`` puts the whole
    arguments into the header chunk (Ollama style).  ``interleave`` round-robins the calls'
    chunks to imitate servers that interleave parallel calls.
    """
    per_call: list[list[dict[str, Any]]] = []
    for i, call in enumerate(calls):
        args = _arguments_text(call.get("arguments", ""))
        header: dict[str, Any] = {}
        if call.get("index", i) is not None:
            header["index"] = call.get("index", i)
        if call.get("id", f"call_{i}") is not None:
            header["id"] = call.get("id", f"call_{i}")
        header["type"] = call.get("type", "function")
        header["function"] = {"name": call["name"], "arguments": args if inline_arguments else ""}
        deltas = [header]
        if not inline_arguments:
            if "fragments" in call:
                pieces = list(call["fragments"])
            elif fragment_size:
                pieces = _split(args, fragment_size)
            else:
                pieces = [args]
            for piece in pieces:
                frag: dict[str, Any] = {"function": {"arguments": piece}}
                if "index" in header:
                    frag = {"index": header["index"], **frag}
                deltas.append(frag)
        per_call.append(deltas)

    ordered: list[dict[str, Any]] = []
    if interleave:
        for step in range(max((len(d) for d in per_call), default=0)):
            ordered.extend(d[step] for d in per_call if step < len(d))
    else:
        ordered = [d for deltas in per_call for d in deltas]

    out = []
    if role:
        out.append(chunk({"role": "assistant", "content": None}, model=model, chunk_id=chunk_id))
    out.extend(chunk({"tool_calls": [d]}, model=model, chunk_id=chunk_id) for d in ordered)
    return out + _tail(finish_reason, usage, model, chunk_id)


def completion(
    content: str | None = "Hello from mock",
    *,
    tool_calls: Sequence[Mapping[str, Any]] | None = None,
    reasoning_content: str | None = None,
    model: str = DEFAULT_MODEL,
    finish_reason: str | None = None,
    usage: UsageSpec = (10, 5),
    completion_id: str = DEFAULT_CHUNK_ID,
) -> dict[str, Any]:
    """Non-streaming ``chat.completion`` body.

    ``tool_calls`` uses the same call mappings as :func:`tool_call_chunks`; ``finish_reason``
    defaults to ``tool_calls`` when there are calls, else ``stop``.
    """
    message: dict[str, Any] = {"role": "assistant", "content": content, "refusal": None}
    if reasoning_content is not None:
        message["reasoning_content"] = reasoning_content
    if tool_calls:
        message["tool_calls"] = [
            {
                "id": call.get("id", f"call_{i}"),
                "type": call.get("type", "function"),
                "function": {
                    "name": call["name"],
                    "arguments": _arguments_text(call.get("arguments", "")),
                },
            }
            for i, call in enumerate(tool_calls)
        ]
    if finish_reason is None:
        finish_reason = "tool_calls" if tool_calls else "stop"
    body: dict[str, Any] = {
        "id": completion_id,
        "object": "chat.completion",
        "created": CREATED,
        "model": model,
        "choices": [
            {"index": 0, "message": message, "logprobs": None, "finish_reason": finish_reason}
        ],
    }
    usage_obj = _usage_obj(usage)
    if usage_obj is not None:
        body["usage"] = usage_obj
    return body


def default_responder(body: Any) -> Response:
    """Answer like a healthy upstream: echo the model, stream when asked, usage when asked."""
    req = body if isinstance(body, dict) else {}
    model = req.get("model") or DEFAULT_MODEL
    if req.get("stream"):
        options = req.get("stream_options") or {}
        usage = (10, 3) if options.get("include_usage") else None
        return sse_response(text_chunks(["Hello", " from", " mock"], model=model, usage=usage))
    return json_response(completion("Hello from mock", model=model))


# --------------------------------------------------------------------------------------------
# Server
# --------------------------------------------------------------------------------------------


@dataclass
class RecordedRequest:
    """What the upstream received; ``json`` is the parsed body or None."""

    method: str
    path: str
    query: dict[str, str]
    #: Header names lower-cased (last value wins for repeated headers).
    headers: dict[str, str]
    body: bytes
    json: Any
    #: 1-based number of the TCP connection the request arrived on.
    connection: int
    received_at: float = field(default_factory=time.monotonic)
    #: Set when the response was written completely.
    finished: bool = False
    #: Set when the client went away before the response was complete.
    client_disconnected: bool = False


class MockUpstream:
    """OpenAI-compatible fake upstream on ``127.0.0.1:<random port>``.

    Use as a context manager or call ``start()``/``stop()``.  ``enqueue()`` scripts responses
    FIFO per path (default ``/v1/chat/completions``); when the queue is empty,
    ``responder(request_json)`` answers chat completions and ``models`` feeds ``GET /v1/models``.
    """

    def __init__(
        self,
        responder: Responder | None = None,
        *,
        models: Sequence[str] = ("gpt-big", "gpt-middle", "gpt-small"),
        host: str = "127.0.0.1",
    ) -> None:
        self.responder: Responder = responder or default_responder
        self.models: list[str] = list(models)
        self.host = host
        self.port = 0
        self.requests: list[RecordedRequest] = []
        self._queues: dict[str, deque[Response | Responder]] = {}
        # Responders for other paths (e.g. /v1/responses), used when their queue is empty.
        self._routes: dict[str, Responder] = {}
        self._lock = threading.Lock()
        self._cond = threading.Condition(self._lock)
        self._connections_opened = 0
        # Strong refs on purpose: aiohttp's RequestHandler is not weak-referenceable, and
        # keeping the handlers alive until stop() prevents id() reuse across connections.
        self._conn_numbers: dict[Any, int] = {}
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._server: asyncio.AbstractServer | None = None
        self._web_server: web.Server | None = None
        self._tasks: set[asyncio.Task[Any]] = set()
        self._stopping = False

    # -- lifecycle ---------------------------------------------------------------------------

    def __enter__(self) -> MockUpstream:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    @property
    def base_url(self) -> str:
        """``http://127.0.0.1:PORT/v1`` — what the proxy's ``OPENAI_BASE_URL`` should be."""
        return f"http://{self.host}:{self.port}/v1"

    @property
    def origin(self) -> str:
        return f"http://{self.host}:{self.port}"

    def url(self, path: str) -> str:
        """Absolute URL for a server path such as ``/v1/models``."""
        return self.origin + path

    def start(self) -> MockUpstream:
        if self._thread is not None:
            raise RuntimeError("MockUpstream already started")
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((self.host, 0))
        self.port = sock.getsockname()[1]
        loop = asyncio.new_event_loop()
        self._loop = loop
        self._stopping = False
        self._thread = threading.Thread(
            target=self._run_loop, args=(loop,), name=f"mock-upstream-{self.port}", daemon=True
        )
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self._astart(sock), loop).result(timeout=10)
        return self

    def stop(self, timeout: float = 10.0) -> None:
        """Stop serving; hanging handlers are cancelled and open connections are closed."""
        loop, thread = self._loop, self._thread
        if loop is None or thread is None:
            return
        try:
            asyncio.run_coroutine_threadsafe(self._astop(), loop).result(timeout=timeout)
        finally:
            loop.call_soon_threadsafe(loop.stop)
            thread.join(timeout=timeout)
            if not thread.is_alive():
                loop.close()
            self._loop = self._thread = None

    @staticmethod
    def _run_loop(loop: asyncio.AbstractEventLoop) -> None:
        asyncio.set_event_loop(loop)
        loop.run_forever()

    async def _astart(self, sock: socket.socket) -> None:
        self._web_server = web.Server(self._handle, handler_cancellation=True, access_log=None)
        web_server = self._web_server

        def protocol_factory() -> Any:
            # Called once per accepted TCP connection: the hook for keep-alive assertions.
            proto = web_server()
            with self._lock:
                self._connections_opened += 1
                self._conn_numbers[proto] = self._connections_opened
            return proto

        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(protocol_factory, sock=sock, backlog=128)

    async def _astop(self) -> None:
        self._stopping = True
        if self._server is not None:
            self._server.close()
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        if self._web_server is not None:
            for conn in self._web_server.connections:
                conn.force_close()
        if tasks:
            await asyncio.wait(tasks, timeout=2)
        if self._web_server is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._web_server.shutdown(0.1), timeout=2)
        if self._server is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._server.wait_closed(), timeout=2)
        self._conn_numbers.clear()

    # -- scripting and inspection ------------------------------------------------------------

    def enqueue(self, *responses: Response | Responder, path: str = CHAT_PATH) -> MockUpstream:
        """Queue responses (or ``responder``-style callables) for ``path``, first in first out."""
        with self._lock:
            self._queues.setdefault(path, deque()).extend(responses)
        return self

    def route(self, path: str, responder: Responder) -> MockUpstream:
        """Answer every ``path`` request the queue does not script with ``responder``."""
        with self._lock:
            self._routes[path] = responder
        return self

    def requests_to(self, path: str) -> list[RecordedRequest]:
        with self._lock:
            return [r for r in self.requests if r.path == path]

    def pending(self, path: str = CHAT_PATH) -> int:
        """How many scripted responses for ``path`` have not been consumed yet."""
        with self._lock:
            return len(self._queues.get(path, ()))

    def reset(self) -> None:
        """Forget recorded requests and scripted responses (connection count is kept)."""
        with self._lock:
            self.requests.clear()
            self._queues.clear()

    @property
    def connections_opened(self) -> int:
        """TCP connections accepted so far (keep-alive reuse keeps this low)."""
        with self._lock:
            return self._connections_opened

    @property
    def connections_active(self) -> int:
        """TCP connections currently open."""
        return len(self._web_server.connections) if self._web_server is not None else 0

    @property
    def chat_requests(self) -> list[RecordedRequest]:
        """Recorded ``POST /v1/chat/completions`` requests."""
        with self._lock:
            return [r for r in self.requests if r.path == CHAT_PATH]

    @property
    def last_request(self) -> RecordedRequest:
        with self._lock:
            if not self.requests:
                raise AssertionError("the mock upstream has received no request")
            return self.requests[-1]

    def wait_for_requests(self, n: int = 1, timeout: float = 5.0) -> list[RecordedRequest]:
        """Block until at least ``n`` requests arrived (any path); returns a snapshot.

        It blocks the calling thread: from ``async`` tests use ``await asyncio.to_thread(...)``.
        """
        with self._cond:
            if not self._cond.wait_for(lambda: len(self.requests) >= n, timeout=timeout):
                raise AssertionError(
                    f"expected {n} upstream request(s) within {timeout}s, got {len(self.requests)}"
                )
            return list(self.requests)

    def wait_for(
        self, predicate: Callable[[MockUpstream], bool], timeout: float = 5.0, poll: float = 0.01
    ) -> None:
        """Poll until ``predicate(self)`` holds, e.g. ``lambda m: m.last_request.client_disconnected``."""
        deadline = time.monotonic() + timeout
        while not predicate(self):
            if time.monotonic() > deadline:
                raise AssertionError(f"condition not met within {timeout}s")
            time.sleep(poll)

    # -- request handling --------------------------------------------------------------------

    def _pick(self, rec: RecordedRequest) -> Response:
        with self._lock:
            queue = self._queues.get(rec.path)
            item: Response | Responder | None = queue.popleft() if queue else None
            if item is None:
                item = self._routes.get(rec.path)
        if item is None:
            if rec.path == CHAT_PATH:
                item = self.responder
            elif rec.path == MODELS_PATH and rec.method == "GET":
                return json_response(self.models_body())
            else:
                return error_response(
                    404, f"mock upstream: no route for {rec.method} {rec.path}", "not_found"
                )
        if callable(item):
            return item(rec.json)
        return item

    def models_body(self) -> dict[str, Any]:
        """``GET /v1/models`` body built from ``self.models``."""
        return {
            "object": "list",
            "data": [
                {"id": m, "object": "model", "created": CREATED, "owned_by": "mock"}
                for m in self.models
            ],
        }

    async def _handle(self, request: web.BaseRequest) -> web.StreamResponse:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        rec: RecordedRequest | None = None
        try:
            body = await request.read()
            try:
                parsed = json.loads(body) if body else None
            except ValueError:
                parsed = None
            rec = RecordedRequest(
                method=request.method,
                path=request.path,
                query=dict(request.query),
                headers={k.lower(): v for k, v in request.headers.items()},
                body=body,
                json=parsed,
                connection=self._conn_numbers.get(request.protocol, 0),
            )
            with self._cond:
                self.requests.append(rec)
                self._cond.notify_all()
            response = self._pick(rec)
            return await self._serve(request, rec, response)
        except asyncio.CancelledError:
            if rec is not None:
                rec.finished = False  # cancelled while writing the end: not complete
                if not self._stopping:
                    rec.client_disconnected = True
            raise
        finally:
            self._tasks.discard(task)

    async def _serve(
        self, request: web.BaseRequest, rec: RecordedRequest, response: Response
    ) -> web.StreamResponse:
        if response.hang_before_headers:
            await asyncio.sleep(response.hang_before_headers)
        if isinstance(response, Disconnect):
            self._close_transport(request)
            return web.Response(status=499)  # never reaches the wire
        if isinstance(response, SSEResponse):
            return await self._serve_sse(request, rec, response)
        if isinstance(response, JSONResponse):
            out = web.Response(
                status=response.status,
                body=json.dumps(response.body).encode(),
                content_type="application/json",
                headers=dict(response.headers or {}),
            )
        else:
            out = web.Response(
                status=response.status,
                body=response.body,
                headers={"Content-Type": response.content_type, **(response.headers or {})},
            )
        rec.finished = True
        return out

    @staticmethod
    def _close_transport(request: web.BaseRequest) -> None:
        transport = request.transport
        if transport is not None:
            transport.close()

    @staticmethod
    def _encode(item: Chunk) -> bytes:
        if isinstance(item, bytes):
            return item
        if isinstance(item, str):
            return item.encode()
        return b"data: " + json.dumps(item, ensure_ascii=False).encode() + b"\n\n"

    async def _serve_sse(
        self, request: web.BaseRequest, rec: RecordedRequest, spec: SSEResponse
    ) -> web.StreamResponse:
        resp = web.StreamResponse(
            status=spec.status,
            headers={
                "Content-Type": "text/event-stream",
                "Cache-Control": "no-cache",
                **(spec.headers or {}),
            },
        )
        resp.enable_chunked_encoding()
        try:
            await resp.prepare(request)
            items: list[Chunk] = list(spec.chunks)
            if spec.sends_done:
                items.append("data: [DONE]\n\n")
            # Cut points count scripted chunks only; past the end they land just before [DONE].
            drop_at = None if spec.drop_after is None else min(spec.drop_after, len(spec.chunks))
            hang_at = None if spec.hang_after is None else min(spec.hang_after, len(spec.chunks))
            for i in range(len(items) + 1):
                if i == drop_at:
                    self._close_transport(request)
                    return resp
                if i == hang_at:
                    await asyncio.sleep(spec.hang_seconds)
                    self._close_transport(request)
                    return resp
                if i == len(items):
                    break
                pause = spec.delay_before(i)
                if pause:
                    await asyncio.sleep(pause)
                await resp.write(self._encode(items[i]))
            if spec.keep_open_after_end:
                await asyncio.sleep(spec.keep_open_after_end)
            # Set before the last bytes go out: once they are written the client may return
            # and look at `finished` before this coroutine runs again.
            rec.finished = True
            await resp.write_eof()
        except ConnectionError:
            rec.finished = False
            if not self._stopping:
                rec.client_disconnected = True
            return resp
        return resp
