"""A fast mock OpenAI upstream for the benchmark: Chat Completions and the Responses API.

A raw asyncio protocol (uvloop when installed) with pre-encoded responses, so the mock
spends as little of the shared CPU as possible. Chat streams are `data: {...}\\n\\n` chunks in
HTTP/1.1 chunked encoding, one write per chunk, then a finish chunk, a usage chunk and
`data: [DONE]`. Responses API streams (`/v1/responses`) are the same text as
`response.output_text.delta` events between the item and part events, ending in
`response.completed` (the shapes are checked against the `openai` package in the tests).
Requests whose body lacks `"stream":true` get one JSON completion (or Response).

`POST /bench/config {"chunks": N, "delay_ms": D, "first_ms": F}` changes later responses:
F ms before the first chunk (time to first token), then D ms between content chunks.
Run standalone: `python bench/mock.py --port 9000` (prints `ready <port>` once listening).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from dataclasses import dataclass
from typing import Any, cast

CREATED = 1766000000
WORDS = ("The", " quick", " brown", " fox", " jumps", " over", " the", " lazy", " dog", ".")
SSE_HEAD = (
    b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\n"
    b"cache-control: no-cache\r\ntransfer-encoding: chunked\r\n\r\n"
)


def _frame(data: bytes) -> bytes:
    """One HTTP/1.1 chunk."""
    return b"%x\r\n%s\r\n" % (len(data), data)


def _chunk(delta: dict[str, object], finish: str | None = None) -> bytes:
    body = {
        "id": "chatcmpl-bench",
        "object": "chat.completion.chunk",
        "created": CREATED,
        "model": "gpt-4o",
        "system_fingerprint": "fp_bench",
        "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}],
    }
    return b"data: " + json.dumps(body, separators=(",", ":")).encode() + b"\n\n"


def _usage(chunks: int) -> dict[str, int]:
    return {"prompt_tokens": 100, "completion_tokens": chunks, "total_tokens": 100 + chunks}


def stream_events(chunks: int) -> list[bytes]:
    """The SSE events of one streamed answer with `chunks` content chunks (unframed)."""
    events = [_chunk({"role": "assistant", "content": "", "refusal": None})]
    events += [_chunk({"content": WORDS[i % len(WORDS)]}) for i in range(chunks)]
    events.append(_chunk({}, "stop"))
    usage = {
        "id": "chatcmpl-bench",
        "object": "chat.completion.chunk",
        "created": CREATED,
        "model": "gpt-4o",
        "choices": [],
        "usage": _usage(chunks),
    }
    events.append(b"data: " + json.dumps(usage, separators=(",", ":")).encode() + b"\n\n")
    events.append(b"data: [DONE]\n\n")
    return events


def completion_body(chunks: int) -> bytes:
    """A non-streamed chat completion whose text has `chunks` words."""
    text = "".join(WORDS[i % len(WORDS)] for i in range(chunks))
    body = {
        "id": "chatcmpl-bench",
        "object": "chat.completion",
        "created": CREATED,
        "model": "gpt-4o",
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": text, "refusal": None},
                "logprobs": None,
                "finish_reason": "stop",
            }
        ],
        "usage": _usage(chunks),
    }
    return json.dumps(body, separators=(",", ":")).encode()


def sse_event(event: dict[str, Any]) -> bytes:
    data = json.dumps(event, separators=(",", ":")).encode()
    return b"event: " + str(event["type"]).encode() + b"\ndata: " + data + b"\n\n"


def _response(status: str, output: list[dict[str, Any]], chunks: int) -> dict[str, Any]:
    return {
        "id": "resp_bench",
        "object": "response",
        "created_at": CREATED,
        "status": status,
        "model": "gpt-5-codex",
        "output": output,
        "parallel_tool_calls": True,
        "tool_choice": "auto",
        "tools": [],
        "error": None,
        "incomplete_details": None,
        "usage": None
        if status == "in_progress"
        else {
            "input_tokens": 100,
            "input_tokens_details": {"cached_tokens": 0, "cache_write_tokens": 0},
            "output_tokens": chunks,
            "output_tokens_details": {"reasoning_tokens": 0},
            "total_tokens": 100 + chunks,
        },
    }


def _message(text: str, status: str) -> dict[str, Any]:
    content = [{"type": "output_text", "text": text, "annotations": [], "logprobs": []}]
    return {
        "id": "msg_bench",
        "type": "message",
        "role": "assistant",
        "status": status,
        "content": content if status == "completed" else [],
    }


def responses_events(chunks: int) -> list[dict[str, Any]]:
    """The Responses API events of one streamed answer with `chunks` text deltas."""
    text = "".join(WORDS[i % len(WORDS)] for i in range(chunks))
    where = {"item_id": "msg_bench", "output_index": 0, "content_index": 0}
    part = {"type": "output_text", "text": "", "annotations": [], "logprobs": []}
    events: list[dict[str, Any]] = [
        {"type": "response.created", "response": _response("in_progress", [], chunks)},
        {"type": "response.in_progress", "response": _response("in_progress", [], chunks)},
        {
            "type": "response.output_item.added",
            "output_index": 0,
            "item": _message("", "in_progress"),
        },
        {"type": "response.content_part.added", **where, "part": part},
    ]
    events += [
        {"type": "response.output_text.delta", **where, "delta": WORDS[i % 10], "logprobs": []}
        for i in range(chunks)
    ]
    done = _message(text, "completed")
    events += [
        {"type": "response.output_text.done", **where, "text": text, "logprobs": []},
        {"type": "response.content_part.done", **where, "part": done["content"][0]},
        {"type": "response.output_item.done", "output_index": 0, "item": done},
        {"type": "response.completed", "response": _response("completed", [done], chunks)},
    ]
    return [{**event, "sequence_number": n} for n, event in enumerate(events)]


def responses_body(chunks: int) -> bytes:
    text = "".join(WORDS[i % len(WORDS)] for i in range(chunks))
    body = _response("completed", [_message(text, "completed")], chunks)
    return json.dumps(body, separators=(",", ":")).encode()


def _json_response(body: bytes, status: str = "200 OK") -> bytes:
    head = f"HTTP/1.1 {status}\r\ncontent-type: application/json\r\ncontent-length: {len(body)}"
    return head.encode() + b"\r\n\r\n" + body


@dataclass
class Shape:
    """The pre-encoded responses for the current configuration."""

    delay: float
    first: float
    head: bytes  # headers + role chunk + first content chunk
    middle: list[bytes]  # the remaining content chunks, framed
    last: bytes  # finish + usage + [DONE] + terminating chunk
    completion: bytes

    @classmethod
    def build(
        cls, chunks: int, delay_ms: float = 0.0, first_ms: float = 0.0, *, responses: bool = False
    ) -> Shape:
        if responses:
            framed = [_frame(sse_event(e)) for e in responses_events(chunks)]
            head, body, tail = framed[:5], framed[5:-4], framed[-4:]
            completion = _json_response(responses_body(chunks))
        else:
            framed = [_frame(e) for e in stream_events(chunks)]
            head, body, tail = framed[:2], framed[2:-3], framed[-3:]
            completion = _json_response(completion_body(chunks))
        return cls(
            delay=delay_ms / 1000,
            first=first_ms / 1000,
            head=SSE_HEAD + b"".join(head),
            middle=body,
            last=b"".join(tail) + b"0\r\n\r\n",
            completion=completion,
        )


class MockServer(asyncio.Protocol):
    """One client connection: minimal HTTP/1.1 keep-alive parsing, no pipelining."""

    shape = Shape.build(200, 0)
    responses_shape = Shape.build(200, 0, responses=True)

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.buffer = b""
        self.head: bytes | None = None
        self.length = 0
        self.task: asyncio.Task[None] | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's is not a subclass

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport = None
        if self.task is not None:
            self.task.cancel()

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        while True:
            if self.head is None:
                end = self.buffer.find(b"\r\n\r\n")
                if end < 0:
                    return
                self.head, self.buffer = self.buffer[:end], self.buffer[end + 4 :]
                self.length = 0
                for line in self.head.split(b"\r\n")[1:]:
                    name, _, value = line.partition(b":")
                    if name.strip().lower() == b"content-length":
                        self.length = int(value)
            if len(self.buffer) < self.length:
                return
            body, self.buffer = self.buffer[: self.length], self.buffer[self.length :]
            head, self.head = self.head, None
            self.respond(head.split(b" ", 2)[1], body)

    def respond(self, path: bytes, body: bytes) -> None:
        transport = self.transport
        assert transport is not None
        if path.startswith(b"/bench/config"):
            config = json.loads(body or b"{}")
            shape_of = (
                int(config.get("chunks", 200)),
                float(config.get("delay_ms", 0)),
                float(config.get("first_ms", 0)),
            )
            MockServer.shape = Shape.build(*shape_of)
            MockServer.responses_shape = Shape.build(*shape_of, responses=True)
            transport.write(_json_response(b'{"ok":true}'))
            return
        if path.endswith(b"/responses"):
            shape = self.responses_shape
        elif path.endswith(b"/chat/completions"):
            shape = self.shape
        else:
            transport.write(_json_response(b'{"error":{"message":"not found"}}', "404 Not Found"))
            return
        if b'"stream":true' not in body:
            transport.write(shape.completion)
        elif shape.delay > 0 or shape.first > 0:
            self.task = asyncio.ensure_future(self.paced(shape))
        else:
            write = transport.write
            write(shape.head)
            for frame in shape.middle:
                write(frame)
            write(shape.last)

    async def paced(self, shape: Shape) -> None:
        """Wait `first`, then stream with `delay` between content chunks, like a model."""
        transport = self.transport
        assert transport is not None
        loop = asyncio.get_running_loop()
        if shape.first:
            await asyncio.sleep(shape.first)
            if self.transport is None:
                return
        start = loop.time()
        transport.write(shape.head)
        # Chunk i is due at start + i * delay: a busy loop delays chunks but never the pace.
        for i, frame in enumerate([*shape.middle, shape.last], 1):
            if shape.delay:
                await asyncio.sleep(max(0.0, start + i * shape.delay - loop.time()))
                if self.transport is None:
                    return
            transport.write(frame)
        self.task = None


async def serve(port: int) -> None:
    loop = asyncio.get_running_loop()
    server = await loop.create_server(MockServer, "127.0.0.1", port, backlog=4096)
    bound = server.sockets[0].getsockname()[1]
    print(f"ready {bound}", flush=True)
    async with server:
        await server.serve_forever()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=0)
    args = parser.parse_args()
    run: Any = asyncio.run
    try:
        import uvloop

        run = uvloop.run
    except ImportError:
        pass
    try:
        run(serve(args.port))
    except KeyboardInterrupt:
        sys.exit(0)


if __name__ == "__main__":
    main()
