"""One `/v1/messages` exchange: walk the route's targets, then the translated reply.

The targets are tried in order while nothing has gone to the client: a target that fails
for a fallback reason (docs/routing.md) hands over to the next, each translated with its
own provider's profile. Streaming: the SSE head is sent only after an upstream answered
2xx, so earlier failures keep their HTTP status; later failures end the stream with
`event: error` and are never retried.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
from collections.abc import AsyncGenerator, AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import orjson
from starlette.types import Send

from claude_code_proxy.asgi import ClientTooSlow, EventSender, send_json, start_sse
from claude_code_proxy.capped import read_capped
from claude_code_proxy.capture import CaptureSession
from claude_code_proxy.config import Settings
from claude_code_proxy.dialects import CHAT, RESPONSES, Dialect
from claude_code_proxy.gateway.capabilities import Profile
from claude_code_proxy.gateway.providers import Provider
from claude_code_proxy.gateway.relay import (
    drain,
    error_event,
    internal_failure,
    timeout_error,
    translate_stream,
)
from claude_code_proxy.gateway.router import Decision, Target
from claude_code_proxy.gateway.upstream import ResponsesOnly, UpstreamError
from claude_code_proxy.metrics import Metrics
from claude_code_proxy.observe import RequestRecord, finish
from claude_code_proxy.redact import query_secrets, redact_url_queries
from claude_code_proxy.server_tools.web_search import SearchTurn
from claude_code_proxy.translate.chat.response import message_to_events
from claude_code_proxy.translate.errors import (
    ProxyError,
    RequestValidationError,
    embedded_error,
    redact_secrets,
)
from claude_code_proxy.translate.options import TranslatedRequest
from claude_code_proxy.translate.rescue import RescueContext, offered_tools
from claude_code_proxy.translate.search_turn import Event
from claude_code_proxy.translate.sse import encode_events
from claude_code_proxy.translate.usage import anthropic_usage

logger = logging.getLogger(__name__)


@dataclass
class Attempt:
    """One target of the route, translated with its provider's profile."""

    target: Target
    provider: Provider
    translated: TranslatedRequest
    profile: Profile
    key: str = ""
    dialect: Dialect = CHAT
    #: Re-translates the request for the Responses API, when Chat Completions may refuse the
    #: model as Responses-only (api "auto"): the self-healing switch.
    switch: Callable[[], TranslatedRequest] | None = None
    #: The client session the attempt was answered on (a web search turn's follow-ups use it).
    session: aiohttp.ClientSession | None = field(default=None, repr=False)


#: Translates the request for a later target of the route (validation errors: 400).
Prepare = Callable[[Target], Attempt]
#: Translates a web search turn's follow-up body for the attempt that served the first call.
Retranslate = Callable[[Attempt, dict[str, Any]], TranslatedRequest]


@dataclass
class Exchange:
    settings: Settings
    metrics: Metrics | None
    record: RequestRecord
    decision: Decision
    first: Attempt
    prepare: Prepare
    #: The client's key, forwarded to providers without a key of their own ("" for none).
    client_key: str = ""
    capture: CaptureSession | None = None
    attempt: Attempt = field(init=False)
    #: Tool calls written as text are rescued for the provider that served (its profile).
    rescue: RescueContext | None = field(init=False, default=None)
    # A web_search server tool turn, and how its follow-up request bodies are translated.
    search: SearchTurn | None = None
    retranslate: Retranslate | None = None
    #: The client went away (CancelOnDisconnect says so before cancelling the work).
    client_left: bool = False
    #: The client has the whole reply: an end after this point is no error.
    completed: bool = False

    def __post_init__(self) -> None:
        self.attempt = self.first

    @property
    def translated(self) -> TranslatedRequest:
        return self.attempt.translated

    @property
    def profile(self) -> Profile:
        return self.attempt.profile

    @property
    def key(self) -> str:
        return self.attempt.key

    @property
    def dialect(self) -> Dialect:
        return self.attempt.dialect

    def client_disconnected(self) -> None:
        self.client_left = True

    def _secrets(self) -> tuple[str, ...]:
        """What upstream text must never show the client: the key, the base URL's query."""
        query = self.attempt.provider.settings.openai_base_query
        return (self.key, *query_secrets(query))

    async def run(self, send: Send) -> None:
        active = self.metrics.active_streams if self.metrics and self.translated.stream else None
        if active is not None:
            active.inc()
        try:
            async with contextlib.AsyncExitStack() as held:
                if self.search is not None:
                    await self._search_turn(send, held, self.search)
                elif self.translated.stream:
                    await self._stream(send, held)
                else:
                    await self._complete(send, held)
        except asyncio.CancelledError:
            if self.completed:
                pass  # e.g. the client closed right after message_stop: a success
            elif self.client_left:
                # Esc in Claude Code: a cancellation, counted as status 499, not an error.
                self.record.cancelled = True
                self.record.status, self.record.error_type = 499, None
            else:
                # The server is shutting down (the stream got an `overloaded_error` event).
                self.record.error_type = self.record.error_type or "overloaded_error"
                self.record.status = self.record.status or 503
            raise
        finally:
            if active is not None:
                active.dec()
            finish(self.record, self.metrics, json_logs=self.settings.log_format == "json")
            if self.rescue is not None and self.rescue.rescued:
                self._count_rescued(self.rescue)
            if self.capture is not None:
                with contextlib.suppress(Exception):
                    await asyncio.shield(self.capture.write())

    def _count_rescued(self, rescue: RescueContext) -> None:
        forms = ", ".join(call.form for call in rescue.rescued)
        logger.info(
            "turned %d tool call(s) written as text into tool_use (%s)", len(rescue.rescued), forms
        )
        if self.metrics is not None:
            for call in rescue.rescued:
                self.metrics.rescued_tool_calls.labels(call.form).inc()

    async def _fail(self, send: Send, error: ProxyError) -> None:
        self.record.status, self.record.error_type = error.status, error.error_type
        body = error.body()
        if self.capture is not None:
            self.capture.add("4-client-response", orjson.dumps(body))
        await send_json(send, error.status, body, error.headers)

    # -------------------------------------------------------------- the targets

    async def _post(
        self, held: contextlib.AsyncExitStack, follow_up: TranslatedRequest | None = None
    ) -> aiohttp.ClientResponse:
        """The first target that answers 2xx; its slot and client stay held in `held`.

        A failure with a fallback reason moves on to the next target; the last target's
        failure (or one without such a reason) is raised for the client. A web search
        turn's follow-up goes to the attempt that served the turn's first call.
        """
        if follow_up is not None:
            return await self._post_follow_up(follow_up)
        targets = self.decision.targets
        for index, target in enumerate(targets):
            last = index == len(targets) - 1
            attempt = self.first if index == 0 else self.prepare(target)
            self.attempt = attempt
            self.record.provider, self.record.upstream_model = target.provider, target.model
            try:
                response = await self._try(attempt, held, last=last)
            except UpstreamError as error:
                if last or not error.reason:
                    raise
                self._fell_back(target, targets[index + 1], error)
                continue
            self.record.upstream_answered()
            if attempt.profile.rescue_tool_calls and attempt.dialect is CHAT:
                tools = offered_tools(attempt.translated.payload)
                self.rescue = RescueContext(tools) if tools else None
            return response
        raise AssertionError("a route has at least one target")

    def _fell_back(self, source: Target, to: Target, error: UpstreamError) -> None:
        self.record.tried.append(f"{source}:{error.reason}")
        if self.metrics is not None:
            self.metrics.route_fallbacks.labels(str(source), str(to), error.reason).inc()
        logger.info(
            "route %s: %s failed (%s: %s), trying %s",
            self.decision.rule,
            source,
            error.reason,
            error.error_type,
            to,
        )

    async def _try(
        self, attempt: Attempt, held: contextlib.AsyncExitStack, *, last: bool
    ) -> aiohttp.ClientResponse:
        """One target: a concurrency slot, a key (rotating through a pool), the request."""
        provider, pool = attempt.provider, attempt.provider.keys
        capture = self.capture
        tap = (lambda raw: capture.add("3-upstream-response", raw)) if capture else None
        async with contextlib.AsyncExitStack() as stack:
            await stack.enter_async_context(provider.slot())
            key = provider.key(self.client_key)
            if key is None:
                raise _keys_unavailable(provider)
            session = await stack.enter_async_context(provider.upstream.lease(key))
            while True:
                if capture is not None:
                    capture.add_json("2-upstream-request", attempt.translated.payload)
                try:
                    response = await provider.upstream.post_chat(
                        session,
                        attempt.translated.payload,
                        key,
                        error_tap=tap,
                        prompt_tokens=attempt.translated.estimated_input_tokens or None,
                        retries=None if last else 0,
                        rotate_keys=pool is not None,
                        api=attempt.dialect.api,
                    )
                except ResponsesOnly:
                    if attempt.switch is None or attempt.dialect is RESPONSES:
                        raise
                    # The model answers only on the Responses API: ask there, and remember it.
                    attempt.translated, attempt.dialect = attempt.switch(), RESPONSES
                    model = str(attempt.translated.payload.get("model", ""))
                    provider.table.learn(provider.base_url, model, api="responses")
                    logger.warning(
                        "model %s answers only on the Responses API; using it from now on", model
                    )
                    continue
                except UpstreamError as error:
                    if pool is None or error.reason not in ("rate_limit", "auth"):
                        raise
                    if error.reason == "rate_limit":
                        pool.rest(key, error.retry_after)
                    else:
                        pool.mark_bad(key)
                    next_key = pool.pick()
                    if next_key is None:
                        raise _keys_unavailable(provider, error) from None
                    key = next_key
                    continue
                attempt.key, attempt.session = key, session
                held.push_async_exit(stack.pop_all())
                return response

    async def _post_follow_up(self, translated: TranslatedRequest) -> aiohttp.ClientResponse:
        attempt = self.attempt
        assert attempt.session is not None, "the turn's first call answered on a session"
        capture = self.capture
        tap = (lambda raw: capture.add("3-upstream-response", raw)) if capture else None
        return await attempt.provider.upstream.post_chat(
            attempt.session,
            translated.payload,
            attempt.key,
            error_tap=tap,
            prompt_tokens=translated.estimated_input_tokens or None,
            api=attempt.dialect.api,
        )

    # -------------------------------------------------------------- non-streaming

    async def _complete(self, send: Send, held: contextlib.AsyncExitStack) -> None:
        try:
            message = await self._call_message(held)
        except ProxyError as error:
            await self._fail(send, error)
            return
        self._record_message(message)
        body = orjson.dumps(message)
        if self.capture is not None:
            self.capture.add("4-client-response", body)
        await send_json(send, 200, message)
        self.completed = True

    async def _call_message(
        self, held: contextlib.AsyncExitStack, follow_up: TranslatedRequest | None = None
    ) -> dict[str, Any]:
        """One non-streaming model call, translated; ProxyError for every failure."""
        response = await self._post(held, follow_up)
        try:
            raw = await read_capped(response, self.settings.max_upstream_response_bytes)
        except (asyncio.TimeoutError, aiohttp.ServerTimeoutError):
            raise timeout_error(self.settings) from None
        except aiohttp.ClientError as exc:
            raise ProxyError(
                502, "api_error", f"upstream response broke off: {type(exc).__name__}"
            ) from None
        finally:
            response.release()
        if self.capture is not None:
            self.capture.add("3-upstream-response", raw)
        return self._message(raw, follow_up)

    def _record_message(self, message: dict[str, Any]) -> None:
        self.record.status = 200
        self.record.first_token()
        self.record.stop_reason = message["stop_reason"]
        self.record.usage(message["usage"])

    def _message(self, raw: bytes, follow_up: TranslatedRequest | None = None) -> dict[str, Any]:
        translated = follow_up or self.translated
        try:
            completion = orjson.loads(raw)
        except orjson.JSONDecodeError:
            raise ProxyError(
                502, "api_error", "upstream returned a body that is not JSON"
            ) from None
        if not isinstance(completion, dict):
            raise ProxyError(502, "api_error", "upstream returned JSON that is not an object")
        if completion.get("error"):
            # A 2xx body that reports a failure, with or without choices (OpenRouter).
            error = embedded_error(
                completion["error"],
                prompt_tokens=translated.estimated_input_tokens or None,
            )
            error.message = redact_url_queries(redact_secrets(error.message, self._secrets()))
            raise error
        return self.dialect.reply(completion, translated, self.profile, self.rescue)

    # ------------------------------------------------------------------ streaming

    async def _stream(self, send: Send, held: contextlib.AsyncExitStack) -> None:
        try:
            response = await self._post(held)
        except ProxyError as error:
            await self._fail(send, error)  # nothing sent yet: the client can retry
            return
        try:
            content_type = response.headers.get("content-type", "")
            if "json" in content_type and "event-stream" not in content_type:
                await self._replay_json(send, response)
                return
            await self._relay(send, response)
        finally:
            response.release()

    async def _replay_json(self, send: Send, response: aiohttp.ClientResponse) -> None:
        """The upstream ignored `stream: true` and answered JSON: stream that message."""
        try:
            raw = await read_capped(response, self.settings.max_upstream_response_bytes)
            if self.capture is not None:
                self.capture.add("3-upstream-response", raw)
            message = self._message(raw)
        except (asyncio.TimeoutError, aiohttp.ServerTimeoutError):
            await self._fail(send, timeout_error(self.settings))
            return
        except aiohttp.ClientError:
            await self._fail(send, ProxyError(502, "api_error", "upstream response broke off"))
            return
        except ProxyError as error:
            await self._fail(send, error)
            return
        self._record_message(message)
        body = encode_events(message_to_events(message))
        if self.capture is not None:
            self.capture.add("4-client-response", body)
        await start_sse(send)
        await send({"type": "http.response.body", "body": body})
        self.completed = True

    async def _relay(self, send: Send, response: aiohttp.ClientResponse) -> None:
        translator = self.dialect.stream(
            self.translated, self.profile, self._secrets(), self.rescue
        )
        capture = self.capture
        tap = (lambda data: capture.add("3-upstream-response", data)) if capture else None
        sender = EventSender(send, self.settings.ping_interval, self.settings.write_timeout)
        self.record.status = 200
        first = encode_events(translator.start())
        if capture is not None:
            capture.add("4-client-response", first)
        too_slow = False
        try:
            await sender.start(first)
            async for events in translate_stream(
                response, translator, tap, self.settings.max_sse_event_bytes
            ):
                data = encode_events(events)
                if self.record.first_token_at is None:
                    self.record.first_token()
                if capture is not None:
                    capture.add("4-client-response", data)
                await sender.write(data)
                if translator.ended and translator.error_type is None:
                    self.completed = True  # message_stop is out
        except ClientTooSlow as exc:
            # Nothing more can reach this client: give up, and the upstream call with it
            # (the response is released unread, which closes its connection).
            logger.warning("%s: upstream request aborted", exc)
            too_slow = True
        except asyncio.CancelledError:
            # Server shutting down: end the stream properly so a client still listening
            # sees an error, not a cut. A client that left hears nothing any more.
            if not translator.ended and not self.client_left:
                events = translator.fail("overloaded_error", "the proxy is shutting down")
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(sender.close(encode_events(events)), 1.0)
            raise
        except Exception:
            # A translation bug must not cut the stream: the SSE head is out, so the
            # client can only learn of the failure from an `event: error`.
            logger.exception("translating the upstream stream failed")
            with contextlib.suppress(Exception):
                await sender.write(encode_events(internal_failure(translator)))
        finally:
            sender.stop_pings()
            self.record.stop_reason = translator.stop_reason
            self.record.error_type = translator.error_type
            self.record.usage(
                anthropic_usage(
                    translator.usage,
                    fallback_input=translator.input_tokens,
                    under_counts=self.profile.prompt_under_count and self.dialect.api == "chat",
                )
            )
        if too_slow:
            self.record.status, self.record.error_type = 499, "client_too_slow"
            return
        # Finish reading the upstream body first (bounded): the connection then goes back to
        # the pool before the client can send its next request. message_stop is already out.
        await drain(response, tap)
        with contextlib.suppress(ClientTooSlow):
            await sender.close()

    # --------------------------------------------------------- web search turns

    async def _search_turn(
        self, send: Send, held: contextlib.AsyncExitStack, turn: SearchTurn
    ) -> None:
        """The proxy runs the web_search server tool: several model calls, one reply.

        The loop (server_tools/web_search.py) gets one model call as a callable taking an
        Anthropic request body; the first call's refusal keeps its HTTP status.
        """
        try:
            if not self.translated.stream:
                first = await self._call_message(held)
                message = await turn.complete(
                    first, lambda body: self._call_message(held, self._follow_up(body))
                )
                self._record_message(message)
                if self.capture is not None:
                    self.capture.add("4-client-response", orjson.dumps(message))
                await send_json(send, 200, message)
                self.completed = True
                return
            events = await self._call_events(held)
        except ProxyError as error:
            await self._fail(send, error)
            return

        async def call(body: dict[str, Any]) -> AsyncGenerator[list[Event], None]:
            return await self._call_events(held, self._follow_up(body))

        await self._send_turn(send, turn, turn.stream(events, call))

    def _follow_up(self, body: dict[str, Any]) -> TranslatedRequest:
        """The next call of the turn, translated like the first (in its current dialect)."""
        assert self.retranslate is not None
        try:
            translated = self.retranslate(self.attempt, body)
        except RequestValidationError as exc:
            raise ProxyError(500, "api_error", f"continuing the web search turn: {exc}") from None
        if self.capture is not None:
            self.capture.add_json("2-upstream-request", translated.payload)
        return translated

    async def _call_events(
        self, held: contextlib.AsyncExitStack, follow_up: TranslatedRequest | None = None
    ) -> AsyncGenerator[list[Event], None]:
        """One streaming model call: ProxyError if refused, else the events of its reply."""
        response = await self._post(held, follow_up)
        return self._reply_events(response, follow_up or self.translated)

    async def _reply_events(
        self, response: aiohttp.ClientResponse, translated: TranslatedRequest
    ) -> AsyncGenerator[list[Event], None]:
        capture = self.capture
        tap = (lambda data: capture.add("3-upstream-response", data)) if capture else None
        try:
            content_type = response.headers.get("content-type", "")
            if "json" in content_type and "event-stream" not in content_type:
                try:
                    raw = await read_capped(response, self.settings.max_upstream_response_bytes)
                    message = self._message(raw, translated)
                except ProxyError as error:
                    yield [error_event(error.error_type, error.message)]
                    return
                except (asyncio.TimeoutError, aiohttp.ClientError):
                    yield [error_event("api_error", "upstream response broke off")]
                    return
                yield message_to_events(message)
                return
            translator = self.dialect.stream(translated, self.profile, self._secrets(), self.rescue)
            yield translator.start()
            async for events in translate_stream(
                response, translator, tap, self.settings.max_sse_event_bytes
            ):
                yield events
            await drain(response, tap)
        finally:
            response.release()

    async def _send_turn(
        self, send: Send, turn: SearchTurn, events: AsyncIterator[list[Event]]
    ) -> None:
        stitcher = turn.stitcher
        sender = EventSender(send, self.settings.ping_interval, self.settings.write_timeout)
        capture = self.capture
        started = False
        self.record.status = 200
        try:
            async for batch in events:
                data = encode_events(batch)
                if capture is not None:
                    capture.add("4-client-response", data)
                if not started:
                    started = True
                    await sender.start(data)
                    continue
                self.record.first_token()
                await sender.write(data)
                if stitcher.ended and stitcher.error_type is None:
                    self.completed = True  # message_stop is out
        except ClientTooSlow as exc:
            logger.warning("%s: web search turn aborted", exc)
            return
        except asyncio.CancelledError:
            if started and not stitcher.ended and not self.client_left:
                closing = stitcher.fail("overloaded_error", "the proxy is shutting down")
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(sender.close(encode_events(closing)), 1.0)
            raise
        except Exception:
            logger.exception("the web search turn failed")
            if started:
                message = "the proxy failed during a web search turn (see its log)"
                with contextlib.suppress(Exception):
                    await sender.write(encode_events(stitcher.fail("api_error", message)))
        finally:
            sender.stop_pings()
            self.record.stop_reason = stitcher.stop_reason
            self.record.error_type = stitcher.error_type
            self.record.usage(stitcher.final_usage())
        if not started:
            await self._fail(send, ProxyError(500, "api_error", "the web search turn failed"))
            return
        await sender.close()


def _keys_unavailable(provider: Provider, error: UpstreamError | None = None) -> UpstreamError:
    """Every pooled key rests (429, with the time until one is back) or was rejected."""
    pool = provider.keys
    wait = pool.ready_in() if pool is not None else None
    if wait is None:
        if error is not None and error.reason == "auth":
            return error
        return UpstreamError(
            401,
            "authentication_error",
            f"every key of provider {provider.name} was rejected by the upstream (401/403)",
            reason="auth",
        )
    seconds = max(1, math.ceil(wait))
    return UpstreamError(
        429,
        "rate_limit_error",
        f"every key of provider {provider.name} is rate-limited; one is back in {seconds}s",
        {"retry-after": str(seconds)},
        reason="rate_limit",
        retry_after=float(seconds),
    )
