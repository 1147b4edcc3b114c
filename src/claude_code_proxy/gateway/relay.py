"""Reading an upstream SSE body into Anthropic events, and the small failure helpers the
exchange shares with it: every stream ends with stop or error, and a finished body is read
to its end (bounded) so the connection goes back to the pool.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Callable
from typing import Any

import aiohttp
import orjson

from claude_code_proxy.config import Settings
from claude_code_proxy.dialects import StreamTranslation
from claude_code_proxy.translate.errors import ProxyError
from claude_code_proxy.translate.search_turn import Event
from claude_code_proxy.translate.sse import DEFAULT_MAX_EVENT_BYTES, SSEDecoder, SSEEventTooLarge

logger = logging.getLogger(__name__)

# After the finish chunk, how long to wait for the trailing usage chunk or [DONE].
FINISH_GRACE_SECONDS = 3.0
DRAIN_SECONDS = 0.5


def error_event(error_type: str, message: str) -> Event:
    return {"type": "error", "error": {"type": error_type, "message": message}}


def internal_failure(translator: StreamTranslation) -> list[dict[str, Any]]:
    """Closing events after an unexpected error; a bare `error` if the translator is broken."""
    message = "the proxy failed while translating the upstream stream (see its log)"
    with contextlib.suppress(Exception):
        return translator.fail("api_error", message)
    translator.ended = True
    return [{"type": "error", "error": {"type": "api_error", "message": message}}]


def timeout_error(settings: Settings) -> ProxyError:
    return ProxyError(
        504,
        "timeout_error",
        f"upstream stopped sending for {settings.request_timeout:g}s (REQUEST_TIMEOUT)",
    )


async def translate_stream(
    response: aiohttp.ClientResponse,
    translator: StreamTranslation,
    tap: Callable[[bytes], None] | None = None,
    max_event_bytes: int = DEFAULT_MAX_EVENT_BYTES,
) -> AsyncIterator[list[dict[str, Any]]]:
    """Read upstream SSE and yield Anthropic events; always ends with stop or error.

    After the finish chunk the upstream gets FINISH_GRACE_SECONDS in all (not per read:
    keep-alive comments must not hold `message_stop` back) for its usage chunk or [DONE].
    One SSE event beyond `max_event_bytes` (MAX_SSE_EVENT_BYTES) ends the stream.
    """
    decoder = SSEDecoder(max_event_bytes)
    content = response.content
    saw_done = False
    finish_deadline: float | None = None
    loop = asyncio.get_running_loop()
    ignored = translator.IGNORED
    try:
        while not translator.ended:
            if translator.finish_reason is None:
                raw = await content.readany()
            else:
                if finish_deadline is None:
                    finish_deadline = loop.time() + FINISH_GRACE_SECONDS
                left = finish_deadline - loop.time()
                if left <= 0:
                    raise asyncio.TimeoutError
                raw = await asyncio.wait_for(content.readany(), left)
            if tap is not None and raw:
                tap(raw)
            try:
                payloads = decoder.feed(raw) if raw else decoder.flush()
            except SSEEventTooLarge as exc:
                yield translator.fail("api_error", f"{exc} (MAX_SSE_EVENT_BYTES)")
                return
            events: list[dict[str, Any]] = []
            for payload in payloads:
                if payload == b"[DONE]":
                    saw_done = True
                    break
                if ignored and payload.startswith(ignored):
                    continue  # an event the translator has no use for: not even parsed
                try:
                    chunk = orjson.loads(payload)
                except orjson.JSONDecodeError:
                    preview = payload[:200].decode("utf-8", "replace")
                    events += translator.fail(
                        "api_error", f"upstream sent a malformed chunk: {preview}"
                    )
                    break
                try:
                    events += translator.feed(chunk)
                except Exception:
                    # Keep what this read already produced: the client saw none of it yet.
                    logger.exception("translating an upstream chunk failed")
                    events += internal_failure(translator)
                if translator.ended:
                    break
            if not translator.ended and (saw_done or not raw or translator.complete):
                if saw_done or translator.finish_reason is not None:
                    events += translator.finish()
                else:
                    events += translator.fail(
                        "api_error", "upstream closed the stream before the response was complete"
                    )
            if events:
                yield events
    except (asyncio.TimeoutError, aiohttp.ServerTimeoutError):
        if translator.finish_reason is not None:
            yield translator.finish()
        else:
            yield translator.fail("timeout_error", "upstream stopped sending (REQUEST_TIMEOUT)")
        return
    except aiohttp.ClientError as exc:
        if translator.finish_reason is not None:
            yield translator.finish()
        else:
            yield translator.fail(
                "api_error", f"upstream connection dropped mid-stream ({type(exc).__name__})"
            )
        return


async def drain(
    response: aiohttp.ClientResponse, tap: Callable[[bytes], None] | None = None
) -> None:
    """Read to the end of the body (bounded) so the connection can return to the pool."""

    async def read_rest() -> None:
        while data := await response.content.readany():
            if tap is not None:
                tap(data)

    with contextlib.suppress(Exception):
        await asyncio.wait_for(read_rest(), DRAIN_SECONDS)
