"""Talking to the in-process proxy as Claude Code would, and judging its replies."""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass
from typing import Any

import aiohttp

from claude_code_proxy.doctor.authentication import MAX_BODY, key_fix
from claude_code_proxy.doctor.context import Context
from claude_code_proxy.doctor.replies import Reply, error_text, sse_events
from claude_code_proxy.launcher import client_key

TOOLS_FIX = (
    "Claude Code needs tool calls. Use a model with tool support and enable tool calling on "
    "the server (vLLM: --enable-auto-tool-choice --tool-call-parser <parser>; llama.cpp: "
    "--jinja; Ollama: a model listed with 'tools' on ollama.com)."
)


@dataclass(frozen=True)
class Target:
    """One distinct upstream model to chat with, and the client id that reaches it."""

    var: str
    client_id: str
    upstream: str


def snippet(text: str, limit: int = 60) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


@dataclass
class ProxyChat:
    """A streamed `POST /v1/messages` against the running proxy, bounded by the timeout."""

    ctx: Context
    session: aiohttp.ClientSession
    base_url: str

    async def message(self, body: dict[str, Any]) -> Reply:
        reply = Reply()
        headers = {
            "x-api-key": client_key(self.ctx.settings),
            "anthropic-version": "2023-06-01",
            "content-type": "application/json",
        }

        async def exchange() -> None:
            async with self.session.post(
                self.base_url + "/v1/messages", data=json.dumps(body), headers=headers
            ) as response:
                reply.status = response.status
                if response.status != 200:
                    reply.error_type, message = error_text(await response.content.read(MAX_BODY))
                    reply.failure = f"HTTP {response.status} {reply.error_type or ''}: {message}"
                    return
                async for event, data in sse_events(response.content.iter_any()):
                    reply.feed(event, data)
            if reply.failure is None and not reply.complete:
                reply.failure = "the event stream ended without message_stop"

        timeout = self.ctx.timeout
        try:
            await asyncio.wait_for(exchange(), timeout)
        except (asyncio.TimeoutError, TimeoutError):
            reply.error_type = "timeout_error"
            reply.failure = f"no complete reply within {timeout:g}s"
        except aiohttp.ClientError as exc:
            reply.failure = f"{type(exc).__name__}: {exc}"
        return reply


def reply_fix(ctx: Context, reply: Reply, target: Target) -> str:
    """The most likely fix for a failed reply, by its status and error text."""
    message = (reply.failure or "").lower()
    if "client_key_pattern" in message:
        return (
            "in dynamic mode the client key must look like an upstream key: set "
            "OPENAI_API_KEY, or CLIENT_KEY_PATTERN=any for key-less local servers"
        )
    if reply.status == 401 or reply.error_type == "authentication_error":
        return key_fix(ctx)
    if reply.error_type == "permission_error":
        return f"the key may not use '{target.upstream}': check the account's model access"
    if reply.status == 404 or reply.error_type == "not_found_error":
        return (
            f"check {target.var}='{target.upstream}' (the exact model id the provider expects) "
            "and the path in OPENAI_BASE_URL"
        )
    if "tool" in message and reply.status == 400:
        return TOOLS_FIX
    if "context" in message or "too long" in message:
        return (
            "the model's context window is too small for Claude Code (≥ 32k tokens; "
            "Ollama: OLLAMA_CONTEXT_LENGTH=32768)"
        )
    if reply.error_type == "timeout_error":
        return "the upstream is slow or stalled: raise --timeout / REQUEST_TIMEOUT"
    if reply.error_type == "rate_limit_error":
        return "rate limited: wait, or check the account's quota and credits"
    return "retry with --log-level DEBUG to see the upstream exchange"


def judge_text_reply(
    ctx: Context,
    name: str,
    reply: Reply,
    target: Target,
    *,
    where: str,
    empty: str,
    empty_fix: str,
    passed: str,
) -> None:
    """FAIL on an error or an empty text, else PASS: how every chat check ends."""
    if reply.failure:
        ctx.add(name, "FAIL", f"{where}: {reply.failure}", reply_fix(ctx, reply, target))
    elif not reply.text.strip():
        ctx.add(name, "FAIL", empty, empty_fix)
    else:
        ctx.add(name, "PASS", passed)
