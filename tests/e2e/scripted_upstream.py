"""A scripted OpenAI-compatible upstream: a tiny deterministic "model" for the e2e tests.

Every chat request is answered by a *scenario*, chosen by a marker ``[ccp:NAME]`` in the user's
prompt (no marker: ``write``). A scenario looks at the conversation it receives (how many tool
rounds happened, what the tool results say) and returns a :class:`Reply`: text, reasoning
(DeepSeek-style ``reasoning_content``), tool calls, how finely to fragment the stream, or an
HTTP error. Claude Code's session-title requests (structured output) get a JSON title.
Requests are validated like a strict OpenAI endpoint would (tool messages must answer the
preceding calls, no Anthropic-only fields) and recorded for the tests' assertions.

Runs on 127.0.0.1 only, on a random free port, from a daemon thread (``with
ScriptedUpstream() as up:``).
"""

from __future__ import annotations

import asyncio
import itertools
import json
import re
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aiohttp import web

from .background import BackgroundApp
from .scripted_responses import Ledger, chat_view, responses_body

MARKER_RE = re.compile(r"\[ccp:([a-z0-9_-]+)\]")
WORKDIR_RE = re.compile(r"Primary working directory:\s*(\S[^\n]*?)\s*$", re.MULTILINE)
READ_LINE_RE = re.compile(r"^\s*\d+(?:→|\t)(.*)$")
SECRET_RE = re.compile(r"secret word is (\S+?)\.?$", re.MULTILINE)
VALID_ROLES = frozenset({"system", "developer", "user", "assistant", "tool"})
OPENAI_PARAMS = frozenset(
    {
        "model",
        "messages",
        "max_tokens",
        "max_completion_tokens",
        "stream",
        "stream_options",
        "tools",
        "tool_choice",
        "parallel_tool_calls",
        "temperature",
        "top_p",
        "stop",
        "response_format",
        "reasoning_effort",
        "reasoning",
        "user",
        "prompt_cache_key",
        "seed",
        "n",
        "presence_penalty",
        "frequency_penalty",
    }
)
# Keys that only exist in the Anthropic Messages API; an OpenAI endpoint rejects them.
ANTHROPIC_ONLY_KEYS = frozenset(
    {"cache_control", "defer_loading", "input_schema", "tool_use_id", "signature", "is_error"}
)
TOOL_NAME_RE = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
MODEL_NAMES = ("gpt-test-big", "gpt-test-middle", "gpt-test-small")

FRAGMENT_TEXT = 'tiny "fragments" — ünïcödé ✓\nline\ttwo \\ end {braces} [brackets]'
LONG_ANSWER = "".join(
    f"Line {i:03d}: the quick brown fox jumps over the lazy dog.\n" for i in range(1, 201)
)
LOOP_FINAL_PREFIX = "loop.txt holds: "
OVERFLOW_ERROR = {
    "error": {
        "message": (
            "This model's maximum context length is 128000 tokens. However, your messages "
            "resulted in 250000 tokens. Please reduce the length of the messages."
        ),
        "type": "invalid_request_error",
        "param": "messages",
        "code": "context_length_exceeded",
    }
}
RATE_LIMIT_ERROR = {
    "error": {
        "message": "Rate limit reached for requests. Please try again in 1s.",
        "type": "requests",
        "param": None,
        "code": "rate_limit_exceeded",
    }
}


@dataclass
class Call:
    """A tool call the scripted model makes."""

    name: str
    args: dict[str, Any]
    id: str = field(default_factory=lambda: f"call_{uuid.uuid4().hex[:24]}")

    @property
    def arguments(self) -> str:
        """The arguments as the JSON text that gets streamed."""
        return json.dumps(self.args, ensure_ascii=False)


@dataclass
class Reply:
    """What the scripted model answers to one request."""

    text: str = ""
    calls: list[Call] = field(default_factory=list)
    reasoning: str = ""
    sizes: tuple[int, ...] = ()
    """Fragment sizes (cycled) for text, reasoning and arguments; empty: a few even pieces."""
    pace: float = 0.005
    """Pause between chunks, so they reach the proxy as separate reads."""
    status: int = 200
    error: dict[str, Any] | None = None
    headers: dict[str, str] = field(default_factory=dict)
    cut: bool = False
    """End the stream with an error chunk halfway through the last call's arguments, as a
    llama.cpp server that fails mid-generation does."""

    def fragments(self, text: str, default_parts: int) -> list[str]:
        """``text`` cut into stream fragments."""
        if not text:
            return []
        if not self.sizes:
            size = max(1, -(-len(text) // default_parts))
            return [text[i : i + size] for i in range(0, len(text), size)]
        pieces, pos = [], 0
        for size in itertools.cycle(self.sizes):
            if pos >= len(text):
                break
            pieces.append(text[pos : pos + size])
            pos += size
        return pieces


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


@dataclass
class Conversation:
    """The scenario's view of one chat request."""

    messages: list[dict[str, Any]]
    model: str
    workdir: str
    hit: int
    """How many requests this scenario received since the last reset, this one included."""
    responses: bool = False
    """The request came in on the Responses API (call ids must be unique there)."""

    @property
    def tool_rounds(self) -> int:
        """Assistant turns with tool calls so far."""
        return sum(1 for m in self.messages if m.get("role") == "assistant" and m.get("tool_calls"))

    @property
    def last_results(self) -> list[str]:
        """Contents of the tool messages answering the latest assistant turn."""
        results: list[str] = []
        for message in reversed(self.messages):
            if message.get("role") != "tool":
                break
            results.insert(0, message_text(message))
        return results

    def path(self, name: str) -> str:
        """Absolute path of ``name`` in the working directory."""
        return str(Path(self.workdir) / name)


def read_lines(result: str) -> list[str]:
    """File lines from a Read tool result (``cat -n`` style numbering removed)."""
    return [m.group(1) for m in map(READ_LINE_RE.match, result.splitlines()) if m]


# -- scenarios ------------------------------------------------------------------------------


def _write_then_done(conv: Conversation, name: str = "hello.txt", content: str = "hi") -> Reply:
    if conv.tool_rounds == 0:
        call = Call("Write", {"file_path": conv.path(name), "content": content})
        return Reply("I'll create the file.", [call])
    return Reply("done")


def scenario_write(conv: Conversation) -> Reply:
    """Write hello.txt = "hi", then "done"."""
    return _write_then_done(conv)


def scenario_bash(conv: Conversation) -> Reply:
    """Run ``echo bash-ok > bash.txt``, then "done"."""
    if conv.tool_rounds == 0:
        args = {"command": "echo bash-ok > bash.txt", "description": "Write bash.txt"}
        return Reply("Running it.", [Call("Bash", args, id="call_0")])
    return Reply("done")


def scenario_read(conv: Conversation) -> Reply:
    """Read notes.txt and answer with the secret word found in the tool result."""
    if conv.tool_rounds == 0:
        call = Call("Read", {"file_path": conv.path("notes.txt")}, id="D681PevKs")  # Mistral's
        return Reply("Let me read it.", [call])
    found = [m.group(1) for r in conv.last_results for m in SECRET_RE.finditer(r)]
    if not found:
        return Reply(f"I could not find the secret word in {conv.last_results!r}")
    return Reply(f"The secret word is {found[0]}.")


def scenario_parallel(conv: Conversation) -> Reply:
    """Two Write calls in one turn, then a summary of the two results."""
    if conv.tool_rounds == 0:
        # Kimi-K2's ids: `.` and `:` are not legal in Anthropic tool ids.
        calls = [
            Call(
                "Write", {"file_path": conv.path("a.txt"), "content": "alpha"}, "functions.Write:0"
            ),
            Call(
                "Write", {"file_path": conv.path("b.txt"), "content": "beta"}, "functions.Write:1"
            ),
        ]
        return Reply("Writing both files.", calls)
    results = conv.last_results
    ok = len(results) == 2 and "a.txt" in results[0] and "b.txt" in results[1]
    return Reply(f"wrote {len(results)} files" if ok else f"unexpected results {results!r}")


def scenario_loop(conv: Conversation) -> Reply:
    """Three tool rounds (Write, Bash copy + append, Read), then the lines read as the answer.

    The Read targets a file the CLI has not written itself: Claude Code 2.1.197 answers a Read
    of a file it wrote (and did not see change) with "Wasted call — file unchanged".
    """
    # `call_0` on every round, as some servers number calls per reply (Responses API call
    # ids are unique: there the default ids).
    ids = {} if conv.responses else {"id": "call_0"}
    if conv.tool_rounds == 0:
        call = Call("Write", {"file_path": conv.path("loop.txt"), "content": "one\n"}, **ids)
        return Reply("Step 1.", [call])
    if conv.tool_rounds == 1:
        command = "cp loop.txt loop2.txt && echo two >> loop2.txt"
        return Reply("Step 2.", [Call("Bash", {"command": command}, **ids)])
    if conv.tool_rounds == 2:
        return Reply("Step 3.", [Call("Read", {"file_path": conv.path("loop2.txt")}, **ids)])
    lines = [line for r in conv.last_results for line in read_lines(r) if line]
    return Reply(LOOP_FINAL_PREFIX + ",".join(lines))


REASONING_TURN_1 = "The user wants think.txt. I will call Write with the content."
REASONING_TURN_2 = "The Write succeeded, so I can finish."


def scenario_reasoning(conv: Conversation) -> Reply:
    """``reasoning_content`` streamed before a Write call, and before the final text."""
    sizes = (7, 5, 11)
    if conv.tool_rounds == 0:
        args = {"file_path": conv.path("think.txt"), "content": "thought"}
        call = Call("Write", args, id=f"chatcmpl-tool-{uuid.uuid4().hex}")  # vLLM's
        return Reply("", [call], reasoning=REASONING_TURN_1, sizes=sizes)
    return Reply("done", reasoning=REASONING_TURN_2, sizes=sizes)


def scenario_fragments(conv: Conversation) -> Reply:
    """Text and tool arguments streamed in 1-3 character fragments."""
    sizes = (1, 2, 3, 2)
    if conv.tool_rounds == 0:
        args = {"file_path": conv.path("frag.txt"), "content": FRAGMENT_TEXT}
        call = Call("Write", args, id="function-call-13274358826593085373")  # Gemini's
        return Reply("Writing a tricky file.", [call], sizes=sizes, pace=0.001)
    return Reply("done, in fragments", sizes=sizes, pace=0.001)


RATE_LIMITED_REQUESTS = 2  # the proxy's first try and its one retry (MAX_RETRIES=1)


def scenario_rate_limit(conv: Conversation) -> Reply:
    """429 with ``retry-after: 1`` for the first requests, then the write script."""
    if conv.hit <= RATE_LIMITED_REQUESTS:
        return Reply(status=429, error=RATE_LIMIT_ERROR, headers={"retry-after": "1"})
    return _write_then_done(conv, "rate.txt", "after 429")


CUT_CONTENT = "the whole file, which must never be written truncated\n"


def scenario_cut(conv: Conversation) -> Reply:
    """The first reply fails halfway through a Write's content; later ones write it whole."""
    if conv.tool_rounds == 0:
        call = Call("Write", {"file_path": conv.path("cut.txt"), "content": CUT_CONTENT})
        return Reply("Writing.", [call], sizes=(9,), cut=conv.hit == 1)
    return Reply("done")


def scenario_overflow(conv: Conversation) -> Reply:
    """Always an OpenAI ``context_length_exceeded`` 400."""
    return Reply(status=400, error=OVERFLOW_ERROR)


WEB_SEARCH_QUERY = "python 3.13 free-threaded build"
WEB_SEARCH_PROMPT_RE = re.compile(r"Perform a web search for the query:\s*(.+)", re.DOTALL)
RESULT_TITLE_RE = re.compile(r"^\[1\] (.+)$", re.MULTILINE)
RESULT_URL_RE = re.compile(r"^URL: (\S+)$", re.MULTILINE)


def scenario_websearch(conv: Conversation) -> Reply:
    """Claude Code's WebSearch tool, then an answer naming what the search returned."""
    if conv.tool_rounds == 0:
        return Reply("Let me search the web.", [Call("WebSearch", {"query": WEB_SEARCH_QUERY})])
    return Reply("search answered: " + " | ".join(conv.last_results)[:2000])


def web_search_request(body: dict[str, Any]) -> bool:
    """Claude Code's WebSearch side request, as the proxy forwards it: the `web_search`
    function it offers in place of Anthropic's server tool."""
    names = [
        (tool.get("function") or {}).get("name")
        for tool in body.get("tools") or []
        if isinstance(tool, dict)
    ]
    return "web_search" in names


def web_search_reply(messages: list[dict[str, Any]]) -> Reply:
    """The search "model": call `web_search` with the asked query, then summarise the result
    the proxy sent back (its first title and URL)."""
    results = [message_text(m) for m in messages if m.get("role") == "tool"]
    if not results:
        asked = next(
            (
                match.group(1).strip()
                for m in messages
                if m.get("role") == "user"
                for match in [WEB_SEARCH_PROMPT_RE.search(message_text(m))]
                if match
            ),
            "",
        )
        return Reply("", [Call("web_search", {"query": asked})])
    title, url = RESULT_TITLE_RE.search(results[-1]), RESULT_URL_RE.search(results[-1])
    if title is None or url is None:
        return Reply(f"The search gave nothing usable: {results[-1][:300]}")
    return Reply(f"The top result is {title.group(1)} at {url.group(1)}.")


def scenario_long(conv: Conversation) -> Reply:
    """A long answer in hundreds of small chunks."""
    return Reply(LONG_ANSWER, sizes=(9, 4, 13, 7), pace=0.0005)


SCENARIOS: dict[str, Callable[[Conversation], Reply]] = {
    "write": scenario_write,
    "bash": scenario_bash,
    "read": scenario_read,
    "parallel": scenario_parallel,
    "loop": scenario_loop,
    "reasoning": scenario_reasoning,
    "fragments": scenario_fragments,
    "rate_limit": scenario_rate_limit,
    "overflow": scenario_overflow,
    "cut": scenario_cut,
    "long": scenario_long,
    "websearch": scenario_websearch,
}


# -- request validation ---------------------------------------------------------------------


def _anthropic_keys(value: Any, where: str) -> str | None:
    """The first Anthropic-only key found anywhere inside ``value``."""
    if isinstance(value, dict):
        for key, item in value.items():
            if key in ANTHROPIC_ONLY_KEYS:
                return f"{where}.{key}"
            found = _anthropic_keys(item, f"{where}.{key}")
            if found:
                return found
    elif isinstance(value, list):
        for i, item in enumerate(value):
            found = _anthropic_keys(item, f"{where}[{i}]")
            if found:
                return found
    return None


def validate_messages(messages: Any) -> str | None:
    """Reject conversations a real OpenAI endpoint would reject; return the error, if any."""
    if not isinstance(messages, list) or not messages:
        return "'messages' must be a non-empty list"
    open_calls: list[str] = []
    for i, message in enumerate(messages):
        if not isinstance(message, dict) or message.get("role") not in VALID_ROLES:
            role = message.get("role") if isinstance(message, dict) else message
            return f"messages[{i}]: invalid role {role!r}"
        role = message["role"]
        if role == "tool":
            call_id = message.get("tool_call_id")
            if call_id not in open_calls:
                return (
                    f"messages[{i}]: tool message with tool_call_id {call_id!r} does not answer "
                    f"a pending tool_call of the preceding assistant message ({open_calls})"
                )
            open_calls.remove(call_id)
            if not isinstance(message.get("content"), str | list):
                return f"messages[{i}]: tool message content must be a string or parts"
            continue
        if open_calls:
            return f"messages[{i}]: tool_calls {open_calls} were not answered by tool messages"
        if role == "assistant":
            calls = message.get("tool_calls") or []
            for call in calls:
                fn = call.get("function") if isinstance(call, dict) else None
                if not isinstance(fn, dict) or not isinstance(fn.get("arguments"), str):
                    return f"messages[{i}]: malformed tool_call {call!r}"
                try:
                    json.loads(fn["arguments"])
                except ValueError:
                    return f"messages[{i}]: tool_call arguments are not JSON: {fn['arguments']!r}"
            open_calls = [str(c.get("id")) for c in calls]
            if message.get("content") is None and not calls:
                return f"messages[{i}]: assistant message without content or tool_calls"
        elif message.get("content") in (None, "", []):
            return f"messages[{i}]: {role} message with empty content"
    if open_calls:
        return f"tool_calls {open_calls} were not answered"
    return None


def validate_body(body: Any) -> str | None:
    """Reject request bodies a strict OpenAI endpoint would reject."""
    if not isinstance(body, dict):
        return "request body must be a JSON object"
    unknown = sorted(set(body) - OPENAI_PARAMS)
    if unknown:
        return f"Unrecognized request arguments supplied: {', '.join(unknown)}"
    if not isinstance(body.get("model"), str) or not body["model"]:
        return "'model' is required"
    # Tool parameter schemas may name their properties anything: not scanned.
    found = _anthropic_keys(body.get("messages"), "messages")
    for i, tool in enumerate(body.get("tools") or []):
        if isinstance(tool, dict) and isinstance(tool.get("function"), dict):
            shell = {k: v for k, v in tool["function"].items() if k != "parameters"}
            found = found or _anthropic_keys({**tool, "function": shell}, f"tools[{i}]")
    if found:
        return f"unknown field {found}"
    for i, tool in enumerate(body.get("tools") or []):
        fn = tool.get("function") if isinstance(tool, dict) else None
        if tool.get("type") != "function" or not isinstance(fn, dict):
            return f"tools[{i}]: must be {{type: function, function: {{...}}}}"
        if not TOOL_NAME_RE.match(str(fn.get("name"))):
            return f"tools[{i}].function.name {fn.get('name')!r} is invalid"
        if not isinstance(fn.get("parameters", {}), dict):
            return f"tools[{i}].function.parameters must be an object"
    return validate_messages(body.get("messages"))


def deepseek_problem(body: dict[str, Any]) -> str | None:
    """DeepSeek's thinking mode demands ``reasoning_content`` back on tool-call turns."""
    if not str(body.get("model", "")).startswith("deepseek-reasoner"):
        return None
    for i, message in enumerate(body["messages"]):
        tool_turn = message.get("role") == "assistant" and message.get("tool_calls")
        if tool_turn and "reasoning_content" not in message:
            return f"Missing `reasoning_content` field in the assistant message at {i}"
    return None


def title_request(body: dict[str, Any]) -> bool:
    """Claude Code's session-title request: structured output with a ``title`` property."""
    fmt = body.get("response_format")
    schema = (fmt.get("json_schema") or {}).get("schema") if isinstance(fmt, dict) else None
    return isinstance(schema, dict) and "title" in (schema.get("properties") or {})


def find_workdir(messages: list[dict[str, Any]]) -> str | None:
    """The "Primary working directory: ..." announced by Claude Code, system messages first."""
    ordered = sorted(messages, key=lambda m: m.get("role") not in ("system", "developer"))
    for message in ordered:
        match = WORKDIR_RE.search(message_text(message))
        if match:
            return match.group(1).strip().strip("`'\"")
    return None


def find_scenario(messages: list[dict[str, Any]]) -> str:
    """The ``[ccp:NAME]`` marker of the first user message that has one, else ``write``."""
    for message in messages:
        if message.get("role") == "user":
            match = MARKER_RE.search(message_text(message))
            if match:
                return match.group(1)
    return "write"


# -- the server -----------------------------------------------------------------------------


@dataclass
class RecordedRequest:
    """One request as the upstream received it, and how it was answered."""

    method: str
    path: str
    headers: dict[str, str]
    body: Any
    scenario: str = ""
    status: int = 0
    rejected: str | None = None
    """Why the request was invalid (a proxy defect), or None."""
    raw: Any = None
    """A Responses API request as received (``body`` is then its chat view)."""
    tool_ids: list[str] = field(default_factory=list)
    """Ids of the tool calls the reply sent whole (a cut call's id is not among them)."""

    @property
    def is_chat(self) -> bool:
        """A chat-completions (or Responses API) request with a JSON body."""
        return self.path.endswith(("/chat/completions", "/responses")) and isinstance(
            self.body, dict
        )

    @property
    def is_responses(self) -> bool:
        return self.path.endswith("/responses")


class ScriptedUpstream(BackgroundApp):
    """OpenAI Chat Completions stand-in answering through :data:`SCENARIOS`."""

    def __init__(self, workdir: Path | str | None = None) -> None:
        super().__init__()
        self.workdir = str(workdir) if workdir is not None else None
        """Fallback working directory if the conversation does not announce one."""
        self.requests: list[RecordedRequest] = []
        self.hits: Counter[str] = Counter()
        self.ledger = Ledger()

    @property
    def base_url(self) -> str:
        """The OpenAI base URL, ending in ``/v1``."""
        return f"http://{self.host}:{self.port}/v1"

    @property
    def chat_bodies(self) -> list[dict[str, Any]]:
        """Bodies of all chat-completions requests, in arrival order."""
        return [r.body for r in self.requests if r.is_chat]

    @property
    def errors(self) -> list[str]:
        """Why requests were rejected as invalid (should stay empty)."""
        return [f"{r.path}: {r.rejected}" for r in self.requests if r.rejected]

    def reset(self) -> None:
        """Forget per-scenario request counts (call before each CLI run)."""
        self.hits.clear()

    def build_app(self) -> web.Application:
        """Chat completions, model list, 404 for anything else."""
        app = web.Application(client_max_size=64 * 1024 * 1024)
        app.router.add_post("/v1/chat/completions", self._chat)
        app.router.add_post("/v1/responses", self._responses)
        app.router.add_get("/v1/models", self._models)
        app.router.add_route("*", "/{tail:.*}", self._not_found)
        return app

    def describe(self, start: int = 0) -> str:
        """Human-readable summary of the recorded traffic, for assertion messages."""
        lines = [f"scripted upstream at {self.base_url}: {len(self.requests) - start} request(s)"]
        for i, req in enumerate(self.requests[start:], start):
            shown = req.body
            if req.is_chat:  # the tail of the conversation, not the long tool list
                shown = {"model": req.body.get("model"), "messages": req.body["messages"][-4:]}
            body = json.dumps(shown, ensure_ascii=False)
            lines.append(
                f"  [{i}] {req.method} {req.path} scenario={req.scenario} -> {req.status}"
                f"{' REJECTED: ' + req.rejected if req.rejected else ''} body={body[-2500:]}"
            )
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

    @staticmethod
    def _reject(rec: RecordedRequest, status: int, message: str) -> web.Response:
        rec.status, rec.rejected = status, message
        payload = {"error": {"message": message, "type": "invalid_request_error", "code": None}}
        return web.json_response(payload, status=status)

    async def _not_found(self, request: web.Request) -> web.Response:
        rec = await self._record(request)
        return self._reject(rec, 404, f"no route {request.method} {request.path}")

    async def _models(self, request: web.Request) -> web.Response:
        rec = await self._record(request)
        rec.status = 200
        data = [
            {"id": name, "object": "model", "created": 0, "owned_by": "scripted"}
            for name in MODEL_NAMES
        ]
        return web.json_response({"object": "list", "data": data})

    async def _responses(self, request: web.Request) -> web.StreamResponse:
        """The Responses API: checked by the ledger, then served like a chat request."""
        rec = await self._record(request)
        problem = self.ledger.problem(rec.body) if isinstance(rec.body, dict) else "not JSON"
        if problem:
            return self._reject(rec, 400, problem)
        rec.raw, rec.body = rec.body, chat_view(rec.body)
        return await self._scenario(request, rec)

    async def _chat(self, request: web.Request) -> web.StreamResponse:
        rec = await self._record(request)
        problem = validate_body(rec.body)
        if problem:
            return self._reject(rec, 400, problem)
        return await self._scenario(request, rec)

    async def _scenario(self, request: web.Request, rec: RecordedRequest) -> web.StreamResponse:
        body: dict[str, Any] = rec.body
        messages: list[dict[str, Any]] = body["messages"]
        rec.scenario = find_scenario(messages)
        problem = deepseek_problem(body)
        if problem:
            return self._reject(rec, 400, problem)
        if web_search_request(body):
            rec.scenario, rec.status = "web_search", 200
            return await self._answer(request, rec, web_search_reply(messages))
        if title_request(body):
            rec.scenario, rec.status = "title", 200
            reply = Reply(json.dumps({"title": "Scripted end-to-end session"}))
            return await self._answer(request, rec, reply)
        script = SCENARIOS.get(rec.scenario)
        workdir = find_workdir(messages) or self.workdir
        if script is None or workdir is None:
            return self._reject(rec, 400, f"unknown scenario {rec.scenario!r} or no workdir")
        self.hits[rec.scenario] += 1
        conv = Conversation(
            messages, str(body["model"]), workdir, self.hits[rec.scenario], rec.is_responses
        )
        reply = script(conv)
        rec.status = reply.status
        return await self._answer(request, rec, reply)

    async def _answer(
        self, request: web.Request, rec: RecordedRequest, reply: Reply
    ) -> web.StreamResponse:
        if reply.status != 200:
            return web.json_response(reply.error, status=reply.status, headers=reply.headers)
        rec.tool_ids = [call.id for call in (reply.calls[:-1] if reply.cut else reply.calls)]
        model = str(rec.body["model"])
        if rec.is_responses:
            script = self.ledger.script(model, reply)
            if rec.body.get("stream"):
                return await self._write_sse(request, script.events(), reply.pace, done=False)
            return web.json_response(responses_body(script))
        if rec.body.get("stream"):
            return await self._write_sse(request, self._chunks(model, reply), reply.pace)
        return web.json_response(self._completion(model, reply))

    # -- response builders ------------------------------------------------------------------

    @staticmethod
    def _usage() -> dict[str, int]:
        return {"prompt_tokens": 1200, "completion_tokens": 30, "total_tokens": 1230}

    def _completion(self, model: str, reply: Reply) -> dict[str, Any]:
        message: dict[str, Any] = {"role": "assistant", "content": reply.text or None}
        if reply.reasoning:
            message["reasoning_content"] = reply.reasoning
        if reply.calls:
            message["tool_calls"] = [
                {
                    "id": call.id,
                    "type": "function",
                    "function": {"name": call.name, "arguments": call.arguments},
                }
                for call in reply.calls
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
                    "finish_reason": "tool_calls" if reply.calls else "stop",
                }
            ],
            "usage": self._usage(),
        }

    def _chunks(self, model: str, reply: Reply) -> Iterator[dict[str, Any]]:
        base = {
            "id": f"chatcmpl-{uuid.uuid4().hex}",
            "object": "chat.completion.chunk",
            "created": int(time.time()),
            "model": model,
        }

        def chunk(delta: dict[str, Any], finish: str | None = None) -> dict[str, Any]:
            return {**base, "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}

        yield chunk({"role": "assistant", "content": ""})
        for piece in reply.fragments(reply.reasoning, 3):
            yield chunk({"content": None, "reasoning_content": piece})
        for piece in reply.fragments(reply.text, 2):
            yield chunk({"content": piece})
        for index, call in enumerate(reply.calls):
            head = {"index": index, "id": call.id, "type": "function"}
            yield chunk(
                {"tool_calls": [{**head, "function": {"name": call.name, "arguments": ""}}]}
            )
            pieces = reply.fragments(call.arguments, 4)
            if reply.cut and index == len(reply.calls) - 1:
                for piece in pieces[: len(pieces) // 2]:
                    fragment = {"index": index, "function": {"arguments": piece}}
                    yield chunk({"tool_calls": [fragment]})
                # llama.cpp's ending for a generation that failed after the stream began.
                yield {
                    "error": {"code": 500, "message": "generation failed", "type": "server_error"}
                }
                return
            for piece in pieces:
                yield chunk({"tool_calls": [{"index": index, "function": {"arguments": piece}}]})
        yield chunk({}, "tool_calls" if reply.calls else "stop")
        yield {**base, "choices": [], "usage": self._usage()}

    @staticmethod
    async def _write_sse(
        request: web.Request, payloads: Iterable[dict[str, Any]], pace: float, *, done: bool = True
    ) -> web.StreamResponse:
        """Chat chunks as `data:` lines ending in `[DONE]`; Responses events with their
        `event:` line and no `[DONE]`."""
        resp = web.StreamResponse(
            headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache"}
        )
        await resp.prepare(request)
        try:
            for payload in payloads:
                if done:
                    data, head = json.dumps(payload, ensure_ascii=False), ""
                else:  # compact, `type` first, as OpenAI writes them
                    data = json.dumps(payload, ensure_ascii=False, separators=(",", ":"))
                    head = f"event: {payload['type']}\n"
                await resp.write(f"{head}data: {data}\n\n".encode())
                await asyncio.sleep(pace)
            if done:
                await resp.write(b"data: [DONE]\n\n")
            await resp.write_eof()
        except ConnectionResetError:
            pass  # the proxy stopped reading after an error chunk (the "cut" scenario)
        return resp
