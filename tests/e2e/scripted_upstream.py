"""A scripted OpenAI-compatible upstream for the Claude Code end-to-end test.

It plays one fixed agent turn: unless the conversation ends with a ``tool`` message it answers
"I'll create the file." plus a streamed ``Write`` tool call that writes ``hello.txt`` in the
working directory; after the tool result it answers "done". Every request is recorded.

Runs on 127.0.0.1 only, on a random free port, in a background thread (``with
ScriptedUpstream() as up:``) or on the caller's event loop (``await up.start()``).
"""

from __future__ import annotations

import asyncio
import json
import re
import socket
import threading
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aiohttp import web

WORKDIR_RE = re.compile(r"Primary working directory:\s*(\S[^\n]*?)\s*$", re.MULTILINE)
VALID_ROLES = frozenset({"system", "developer", "user", "assistant", "tool"})


@dataclass
class RecordedRequest:
    """One request as the upstream received it."""

    method: str
    path: str
    headers: dict[str, str]
    body: Any


def message_text(message: dict[str, Any]) -> str:
    """Concatenated text of an OpenAI message (string content or a list of text parts)."""
    content = message.get("content")
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "\n".join(
            str(part.get("text", ""))
            for part in content
            if isinstance(part, dict) and part.get("type") in ("text", "input_text")
        )
    return ""


def find_workdir(messages: list[dict[str, Any]]) -> str | None:
    """The "Primary working directory: ..." announced by Claude Code, system messages first."""
    ordered = sorted(messages, key=lambda m: m.get("role") not in ("system", "developer"))
    for message in ordered:
        match = WORKDIR_RE.search(message_text(message))
        if match:
            return match.group(1).strip().strip("`'\"")
    return None


def validate_messages(messages: Any) -> str | None:
    """Reject conversations a real OpenAI endpoint would reject; return the error, if any."""
    if not isinstance(messages, list) or not messages:
        return "'messages' must be a non-empty list"
    open_calls: set[str] = set()
    for i, message in enumerate(messages):
        if not isinstance(message, dict) or message.get("role") not in VALID_ROLES:
            return f"messages[{i}]: invalid role {message.get('role') if isinstance(message, dict) else message!r}"
        role = message["role"]
        if role == "assistant":
            open_calls = {
                str(call.get("id"))
                for call in message.get("tool_calls") or []
                if isinstance(call, dict)
            }
        elif role == "tool":
            call_id = message.get("tool_call_id")
            if call_id not in open_calls:
                return (
                    f"messages[{i}]: tool message with tool_call_id {call_id!r} does not answer "
                    f"a tool_call of the preceding assistant message ({sorted(open_calls)})"
                )
        else:
            open_calls = set()
    return None


def split_fragments(text: str, parts: int) -> list[str]:
    """Split ``text`` into ``parts`` roughly equal, non-empty fragments."""
    size = max(1, -(-len(text) // parts))
    return [text[i : i + size] for i in range(0, len(text), size)]


@dataclass
class ScriptedUpstream:
    """OpenAI Chat Completions stand-in with a fixed Write-then-done script."""

    workdir: Path | str | None = None
    """Fallback working directory if the prompt does not announce one."""
    file_name: str = "hello.txt"
    file_content: str = "hi"
    host: str = "127.0.0.1"
    port: int = 0
    requests: list[RecordedRequest] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    _runner: web.AppRunner | None = field(default=None, repr=False)
    _loop: asyncio.AbstractEventLoop | None = field(default=None, repr=False)
    _thread: threading.Thread | None = field(default=None, repr=False)

    # -- public API -------------------------------------------------------------------------

    @property
    def base_url(self) -> str:
        """The OpenAI base URL, ending in ``/v1``."""
        return f"http://{self.host}:{self.port}/v1"

    @property
    def chat_bodies(self) -> list[dict[str, Any]]:
        """Bodies of all chat-completions requests, in arrival order."""
        return [
            r.body
            for r in self.requests
            if r.path.endswith("/chat/completions") and isinstance(r.body, dict)
        ]

    async def start(self) -> None:
        """Serve on the running event loop."""
        app = web.Application(client_max_size=64 * 1024 * 1024)
        app.router.add_post("/v1/chat/completions", self._chat)
        app.router.add_get("/v1/models", self._models)
        app.router.add_route("*", "/{tail:.*}", self._not_found)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((self.host, self.port))
        self.port = sock.getsockname()[1]
        await web.SockSite(self._runner, sock).start()

    async def stop(self) -> None:
        """Stop serving."""
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    def __enter__(self) -> ScriptedUpstream:
        """Serve from a private event loop in a daemon thread."""
        loop = asyncio.new_event_loop()
        started = threading.Event()
        failure: list[BaseException] = []

        def run() -> None:
            asyncio.set_event_loop(loop)
            try:
                loop.run_until_complete(self.start())
            except BaseException as exc:
                failure.append(exc)
                started.set()
                return
            started.set()
            loop.run_forever()
            loop.run_until_complete(self.stop())
            loop.close()

        self._loop = loop
        self._thread = threading.Thread(target=run, name="scripted-upstream", daemon=True)
        self._thread.start()
        started.wait(30)
        if failure:
            raise RuntimeError("scripted upstream failed to start") from failure[0]
        return self

    def __exit__(self, *exc_info: object) -> None:
        """Stop the background thread."""
        if self._loop is not None and self._thread is not None:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(30)

    def describe(self) -> str:
        """Human-readable summary of the recorded traffic, for assertion messages."""
        lines = [f"scripted upstream at {self.base_url}: {len(self.requests)} request(s)"]
        for i, req in enumerate(self.requests):
            body = json.dumps(req.body, ensure_ascii=False)
            lines.append(f"  [{i}] {req.method} {req.path} body={body[:3000]}")
        lines.extend(f"  error: {err}" for err in self.errors)
        return "\n".join(lines)

    # -- handlers ---------------------------------------------------------------------------

    async def _record(self, request: web.Request) -> RecordedRequest:
        raw = await request.read()
        try:
            body: Any = json.loads(raw) if raw else None
        except ValueError:
            body = raw.decode("utf-8", "replace")
        rec = RecordedRequest(request.method, request.path_qs, dict(request.headers), body)
        self.requests.append(rec)
        return rec

    def _error(self, status: int, message: str) -> web.Response:
        self.errors.append(f"{status}: {message}")
        payload = {"error": {"message": message, "type": "invalid_request_error", "code": None}}
        return web.json_response(payload, status=status)

    async def _not_found(self, request: web.Request) -> web.Response:
        await self._record(request)
        return self._error(404, f"no route {request.method} {request.path}")

    async def _models(self, request: web.Request) -> web.Response:
        await self._record(request)
        data = [
            {"id": name, "object": "model", "created": 0, "owned_by": "scripted"}
            for name in ("gpt-test-big", "gpt-test-small")
        ]
        return web.json_response({"object": "list", "data": data})

    async def _chat(self, request: web.Request) -> web.StreamResponse:
        rec = await self._record(request)
        body = rec.body
        if not isinstance(body, dict):
            return self._error(400, "request body must be a JSON object")
        problem = validate_messages(body.get("messages"))
        if problem:
            return self._error(400, problem)
        messages: list[dict[str, Any]] = body["messages"]
        model = str(body.get("model") or "gpt-test")
        if messages[-1].get("role") == "tool":
            texts, call = ["done"], None
        else:
            workdir = find_workdir(messages) or (str(self.workdir) if self.workdir else None)
            if workdir is None:
                return self._error(400, "scripted upstream: no working directory known")
            args = {"file_path": str(Path(workdir) / self.file_name), "content": self.file_content}
            texts = ["I'll create ", "the file."]
            call = {
                "id": f"call_{uuid.uuid4().hex[:24]}",
                "name": "Write",
                "args": json.dumps(args),
            }
        if body.get("stream"):
            return await self._stream(request, model, texts, call)
        return web.json_response(self._completion(model, texts, call))

    # -- response builders ------------------------------------------------------------------

    @staticmethod
    def _usage() -> dict[str, int]:
        return {"prompt_tokens": 1200, "completion_tokens": 30, "total_tokens": 1230}

    def _completion(
        self, model: str, texts: list[str], call: dict[str, str] | None
    ) -> dict[str, Any]:
        message: dict[str, Any] = {"role": "assistant", "content": "".join(texts)}
        if call is not None:
            message["tool_calls"] = [
                {
                    "id": call["id"],
                    "type": "function",
                    "function": {"name": call["name"], "arguments": call["args"]},
                }
            ]
        return {
            "id": f"chatcmpl-{uuid.uuid4().hex}",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": model,
            "choices": [
                {
                    "index": 0,
                    "message": message,
                    "finish_reason": "tool_calls" if call else "stop",
                }
            ],
            "usage": self._usage(),
        }

    def _chunks(
        self, model: str, texts: list[str], call: dict[str, str] | None
    ) -> Iterator[dict[str, Any]]:
        base = {
            "id": f"chatcmpl-{uuid.uuid4().hex}",
            "object": "chat.completion.chunk",
            "created": int(time.time()),
            "model": model,
        }

        def chunk(delta: dict[str, Any], finish: str | None = None) -> dict[str, Any]:
            return {**base, "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}

        yield chunk({"role": "assistant", "content": ""})
        for text in texts:
            yield chunk({"content": text})
        if call is not None:
            head = {"index": 0, "id": call["id"], "type": "function"}
            yield chunk(
                {"tool_calls": [{**head, "function": {"name": call["name"], "arguments": ""}}]}
            )
            for fragment in split_fragments(call["args"], 4):
                yield chunk({"tool_calls": [{"index": 0, "function": {"arguments": fragment}}]})
        yield chunk({}, "tool_calls" if call else "stop")
        yield {**base, "choices": [], "usage": self._usage()}

    async def _stream(
        self, request: web.Request, model: str, texts: list[str], call: dict[str, str] | None
    ) -> web.StreamResponse:
        resp = web.StreamResponse(
            headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache"}
        )
        await resp.prepare(request)
        async for payload in self._paced(self._chunks(model, texts, call)):
            await resp.write(f"data: {json.dumps(payload)}\n\n".encode())
        await resp.write(b"data: [DONE]\n\n")
        await resp.write_eof()
        return resp

    @staticmethod
    async def _paced(chunks: Iterator[dict[str, Any]]) -> AsyncIterator[dict[str, Any]]:
        """Yield chunks with a tiny pause so they reach the proxy as separate reads."""
        for payload in chunks:
            yield payload
            await asyncio.sleep(0.005)
