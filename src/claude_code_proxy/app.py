"""The ASGI application: routes, auth, and the streaming/non-streaming exchange.

Request flow: client request → auth → translate request → upstream → translate
response or stream → client. Translation lives in `translate/`, upstream I/O in
`upstream.py`; this module only wires them together.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import orjson
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from starlette.types import Send

from claude_code_proxy import __version__
from claude_code_proxy.asgi import (
    CancelOnDisconnect,
    EventSender,
    RequestIdMiddleware,
    send_json,
    start_sse,
)
from claude_code_proxy.auth import upstream_key
from claude_code_proxy.config import Settings
from claude_code_proxy.models import ALIASES, map_model
from claude_code_proxy.providers import CapabilityTable, Profile
from claude_code_proxy.translate.errors import ProxyError, RequestValidationError, error_body
from claude_code_proxy.translate.ids import new_message_id
from claude_code_proxy.translate.request import TranslatedRequest, translate_request
from claude_code_proxy.translate.response import message_to_events, translate_completion
from claude_code_proxy.translate.sse import SSEDecoder, encode_events
from claude_code_proxy.translate.stream import StreamTranslator
from claude_code_proxy.upstream import Upstream

logger = logging.getLogger(__name__)

# After the finish chunk, how long to wait for the trailing usage chunk or [DONE].
FINISH_GRACE_SECONDS = 3.0
DRAIN_SECONDS = 0.5


def _json_error(error: ProxyError) -> JSONResponse:
    return JSONResponse(error.body(), status_code=error.status, headers=error.headers)


async def read_json_body(request: Request, limit: int) -> Any:
    """The request body as JSON, capped in size; Anthropic-shaped 4xx otherwise."""
    length = request.headers.get("content-length")
    if length and length.isdigit() and int(length) > limit:
        raise ProxyError(413, "request_too_large", f"request body exceeds {limit} bytes")
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise ProxyError(413, "request_too_large", f"request body exceeds {limit} bytes")
        chunks.append(chunk)
    body = b"".join(chunks)
    if not body.strip():
        raise ProxyError(400, "invalid_request_error", "request body is empty: expected JSON")
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise ProxyError(
            400, "invalid_request_error", f"request body is not valid JSON: {exc}"
        ) from None


class Proxy:
    """Holds the settings and the upstream; its methods are the route endpoints."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.table = CapabilityTable.from_file(settings.provider_profiles)
        self.upstream = Upstream(settings, self.table)

    # ------------------------------------------------------------------ routes

    async def root(self, request: Request) -> Response:
        return JSONResponse(
            {"status": "ok", "service": "claude-code-proxy", "version": __version__}
        )

    async def health(self, request: Request) -> Response:
        return JSONResponse({"status": "healthy", "version": __version__})

    async def messages(self, request: Request) -> Response | CancelOnDisconnect:
        try:
            key = upstream_key(request.headers, self.settings)
            body = await read_json_body(request, self.settings.max_request_bytes)
            session = request.headers.get("x-claude-code-session-id")
            translated, profile = self._translate(body, session)
        except ProxyError as error:
            return _json_error(error)
        if translated.max_tokens == 0:
            return self._empty_reply(translated)
        if translated.stream:
            return CancelOnDisconnect(lambda send: self._stream(send, translated, profile, key))
        return CancelOnDisconnect(lambda send: self._complete(send, translated, profile, key))

    async def count_tokens(self, request: Request) -> Response:
        from claude_code_proxy.tokens import count_request_tokens

        try:
            upstream_key(request.headers, self.settings)
            body = await read_json_body(request, self.settings.max_request_bytes)
            if not isinstance(body, dict):
                raise ProxyError(400, "invalid_request_error", "request body must be a JSON object")
            if not isinstance(body.get("model"), str) or not body["model"]:
                raise ProxyError(400, "invalid_request_error", "model: field required")
            if not isinstance(body.get("messages"), list):
                raise ProxyError(400, "invalid_request_error", "messages: field required")
        except ProxyError as error:
            return _json_error(error)
        count = await asyncio.get_running_loop().run_in_executor(None, count_request_tokens, body)
        return JSONResponse({"input_tokens": count})

    async def list_models(self, request: Request) -> Response:
        try:
            upstream_key(request.headers, self.settings)
        except ProxyError as error:
            return _json_error(error)
        entries = self._model_entries()
        limit_text = request.query_params.get("limit", "")
        limit = int(limit_text) if limit_text.isdigit() and int(limit_text) > 0 else 1000
        after, before = request.query_params.get("after_id"), request.query_params.get("before_id")
        ids = [e["id"] for e in entries]
        if after in ids:
            entries = entries[ids.index(after) + 1 :]
        elif before in ids:
            entries = entries[: ids.index(before)]
        page = entries[:limit]
        return JSONResponse(
            {
                "data": page,
                "has_more": len(entries) > len(page),
                "first_id": page[0]["id"] if page else None,
                "last_id": page[-1]["id"] if page else None,
            }
        )

    async def get_model(self, request: Request) -> Response:
        try:
            upstream_key(request.headers, self.settings)
        except ProxyError as error:
            return _json_error(error)
        model_id = request.path_params["model_id"]
        for entry in self._model_entries():
            if entry["id"] == model_id:
                return JSONResponse(entry)
        return _json_error(ProxyError(404, "not_found_error", f"model {model_id!r} not found"))

    async def test_connection(self, request: Request) -> Response:
        """A tiny real request to SMALL_MODEL: proves URL, key and model all work."""
        try:
            key = upstream_key(request.headers, self.settings)
            model = self.settings.small_model
            options = self.table.profile(self.settings.openai_base_url, model).options(
                max_tokens_limit=None
            )
            payload = {
                "model": model,
                "messages": [{"role": "user", "content": "Reply with the word ok."}],
                options.max_tokens_field: 16,
            }
            started = time.perf_counter()
            response = await self.upstream.post_chat(payload, key)
            try:
                data = orjson.loads(await response.read())
            finally:
                response.release()
        except ProxyError as error:
            return JSONResponse(
                {"status": "failed", **error.body()},
                status_code=error.status,
                headers=error.headers,
            )
        except (orjson.JSONDecodeError, aiohttp.ClientError, asyncio.TimeoutError) as exc:
            unreadable = ProxyError(
                502, "api_error", f"upstream answered unreadably: {type(exc).__name__}"
            )
            return JSONResponse({"status": "failed", **unreadable.body()}, status_code=502)
        return JSONResponse(
            {
                "status": "success",
                "model": model,
                "latency_ms": round((time.perf_counter() - started) * 1000),
                "response_id": data.get("id") if isinstance(data, dict) else None,
            }
        )

    # ------------------------------------------------------------- internals

    def _model_entries(self) -> list[dict[str, Any]]:
        s = self.settings
        created = "2025-01-01T00:00:00Z"
        entries = [
            {
                "type": "model",
                "id": alias,
                "display_name": f"{label} → {getattr(s, attr)}",
                "created_at": created,
            }
            for alias, label, attr in ALIASES
        ]
        seen = {e["id"] for e in entries}
        for model in (s.big_model, s.middle_model, s.small_model):
            if model not in seen:
                seen.add(model)
                entries.append(
                    {"type": "model", "id": model, "display_name": model, "created_at": created}
                )
        return entries

    def _translate(self, body: Any, session: str | None) -> tuple[TranslatedRequest, Profile]:
        model = body.get("model") if isinstance(body, dict) else None
        upstream_model = map_model(model, self.settings) if isinstance(model, str) else ""
        profile = self.table.profile(self.settings.openai_base_url, upstream_model)
        options = profile.options(max_tokens_limit=self.settings.max_tokens_limit)
        try:
            translated = translate_request(
                body, upstream_model=upstream_model, options=options, session_id=session
            )
        except RequestValidationError as exc:
            raise ProxyError(400, "invalid_request_error", str(exc)) from None
        return translated, profile

    def _empty_reply(self, translated: TranslatedRequest) -> Response | CancelOnDisconnect:
        """`max_tokens: 0` (cache pre-warm) generates nothing: no upstream call at all."""
        message: dict[str, Any] = {
            "id": new_message_id(),
            "type": "message",
            "role": "assistant",
            "model": translated.client_model,
            "content": [],
            "stop_reason": "max_tokens",
            "stop_sequence": None,
            "usage": {
                "input_tokens": translated.estimated_input_tokens,
                "output_tokens": 0,
                "cache_creation_input_tokens": 0,
                "cache_read_input_tokens": 0,
            },
        }
        if not translated.stream:
            return JSONResponse(message)

        async def work(send: Send) -> None:
            await start_sse(send)
            body = encode_events(message_to_events(message))
            await send({"type": "http.response.body", "body": body})

        return CancelOnDisconnect(work)

    async def _complete(
        self, send: Send, translated: TranslatedRequest, profile: Profile, key: str
    ) -> None:
        try:
            response = await self.upstream.post_chat(translated.payload, key)
            try:
                raw = await response.read()
            except (aiohttp.ClientError, asyncio.TimeoutError) as exc:
                raise ProxyError(
                    502, "api_error", f"upstream response broke off: {exc!r}"
                ) from None
            finally:
                response.release()
            message = self._message_from_body(raw, translated, profile)
        except ProxyError as error:
            await send_json(send, error.status, error.body(), error.headers)
            return
        await send_json(send, 200, message)

    def _message_from_body(
        self, raw: bytes, translated: TranslatedRequest, profile: Profile
    ) -> dict[str, Any]:
        try:
            completion = orjson.loads(raw)
        except orjson.JSONDecodeError:
            raise ProxyError(
                502, "api_error", "upstream returned a body that is not JSON"
            ) from None
        if not isinstance(completion, dict):
            raise ProxyError(502, "api_error", "upstream returned JSON that is not an object")
        if completion.get("error") and not completion.get("choices"):
            error = completion["error"]
            message = error.get("message") if isinstance(error, dict) else error
            raise ProxyError(502, "api_error", f"upstream error: {message}")
        return translate_completion(
            completion,
            client_model=translated.client_model,
            stop_sequences=translated.stop_sequences,
            fallback_input_tokens=translated.estimated_input_tokens,
            think_tags=profile.think_tags,
            stash_reasoning=profile.stash_reasoning,
        )

    async def _stream(
        self, send: Send, translated: TranslatedRequest, profile: Profile, key: str
    ) -> None:
        try:
            response = await self.upstream.post_chat(translated.payload, key)
        except ProxyError as error:
            # Nothing was sent yet: the client gets the real status and can retry.
            await send_json(send, error.status, error.body(), error.headers)
            return
        try:
            content_type = response.headers.get("content-type", "")
            if "json" in content_type and "event-stream" not in content_type:
                await self._replay_json(send, response, translated, profile)
                return
            translator = StreamTranslator(
                model=translated.client_model,
                input_tokens=translated.estimated_input_tokens,
                stop_sequences=translated.stop_sequences,
                expect_usage="stream_options" in translated.payload,
                think_tags=profile.think_tags,
                stash_reasoning=profile.stash_reasoning,
            )
            sender = EventSender(send, self.settings.ping_interval)
            await sender.start(encode_events(translator.start()))
            try:
                async for events in _translate_stream(response, translator):
                    await sender.write(encode_events(events))
            except asyncio.CancelledError:
                # Client gone (nothing to tell) or server shutting down: end the stream
                # properly so a client still listening sees an error, not a cut.
                if not translator.ended:
                    events = translator.fail("overloaded_error", "the proxy is shutting down")
                    with contextlib.suppress(Exception):
                        await asyncio.wait_for(sender.close(encode_events(events)), 1.0)
                raise
            finally:
                sender.stop_pings()
            await sender.close()
        finally:
            response.release()

    async def _replay_json(
        self,
        send: Send,
        response: aiohttp.ClientResponse,
        translated: TranslatedRequest,
        profile: Profile,
    ) -> None:
        """The upstream ignored `stream: true` and answered JSON: stream that message."""
        try:
            message = self._message_from_body(await response.read(), translated, profile)
        except ProxyError as error:
            await send_json(send, error.status, error.body(), error.headers)
            return
        await start_sse(send)
        await send(
            {"type": "http.response.body", "body": encode_events(message_to_events(message))}
        )


async def _translate_stream(
    response: aiohttp.ClientResponse, translator: StreamTranslator
) -> AsyncIterator[list[dict[str, Any]]]:
    """Read upstream SSE and yield Anthropic events; always ends with stop or error."""
    decoder = SSEDecoder()
    content = response.content
    saw_done = False
    try:
        while not translator.ended:
            if translator.finish_reason is None:
                raw = await content.readany()
            else:
                raw = await asyncio.wait_for(content.readany(), FINISH_GRACE_SECONDS)
            payloads = decoder.feed(raw) if raw else decoder.flush()
            events: list[dict[str, Any]] = []
            for payload in payloads:
                if payload == b"[DONE]":
                    saw_done = True
                    break
                try:
                    chunk = orjson.loads(payload)
                except orjson.JSONDecodeError:
                    preview = payload[:200].decode("utf-8", "replace")
                    events += translator.fail(
                        "api_error", f"upstream sent a malformed chunk: {preview}"
                    )
                    break
                events += translator.feed(chunk)
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
    if not saw_done:
        # Let a finished connection return to the pool when [DONE] is already on its way.
        with contextlib.suppress(Exception):
            await asyncio.wait_for(content.readany(), DRAIN_SECONDS)


async def _not_found(request: Request, exc: Exception) -> Response:
    status = exc.status_code if isinstance(exc, HTTPException) else 404
    error_type = "not_found_error" if status == 404 else "invalid_request_error"
    detail = exc.detail if isinstance(exc, HTTPException) else "not found"
    message = f"{request.method} {request.url.path}: {detail}"
    return JSONResponse(error_body(error_type, message), status_code=status)


async def _internal_error(request: Request, exc: Exception) -> Response:
    logger.exception("unexpected error handling %s %s", request.method, request.url.path)
    return JSONResponse(
        error_body("api_error", f"internal proxy error: {type(exc).__name__}"), status_code=500
    )


def create_app(settings: Settings) -> Starlette:
    """Build the ASGI app; its lifespan opens and closes the upstream connection pool."""
    proxy = Proxy(settings)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        await proxy.upstream.start()
        try:
            yield
        finally:
            await proxy.upstream.close()

    routes = [
        Route("/", proxy.root, methods=["GET", "HEAD"]),
        Route("/health", proxy.health, methods=["GET", "HEAD"]),
        Route("/test-connection", proxy.test_connection, methods=["GET"]),
        Route("/v1/messages", proxy.messages, methods=["POST"]),
        Route("/v1/messages/count_tokens", proxy.count_tokens, methods=["POST"]),
        Route("/v1/models", proxy.list_models, methods=["GET"]),
        Route("/v1/models/{model_id:path}", proxy.get_model, methods=["GET"]),
    ]
    app = Starlette(
        routes=routes,
        lifespan=lifespan,
        middleware=[Middleware(RequestIdMiddleware)],
        exception_handlers={HTTPException: _not_found, Exception: _internal_error},
    )
    app.state.proxy = proxy
    return app
