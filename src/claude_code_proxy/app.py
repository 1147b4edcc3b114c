"""The ASGI application: routes, auth and wiring.

Request flow: client request → auth → translate request → upstream → translate
response or stream → client. Translation lives in `translate/`, upstream I/O in
`gateway/upstream.py`, the messages exchange in `gateway/exchange.py`; this module wires them.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
from collections.abc import AsyncIterator
from functools import partial
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
from claude_code_proxy.asgi import CancelOnDisconnect, RequestIdMiddleware, start_sse
from claude_code_proxy.auth import client_key, upstream_key
from claude_code_proxy.capped import read_capped
from claude_code_proxy.capture import Capture
from claude_code_proxy.config import Settings
from claude_code_proxy.config_file import gateway_of
from claude_code_proxy.gateway.capabilities import CapabilityTable
from claude_code_proxy.gateway.dispatch import Dispatcher
from claude_code_proxy.gateway.exchange import Attempt, Exchange
from claude_code_proxy.gateway.pool import key_id
from claude_code_proxy.gateway.providers import Registry
from claude_code_proxy.gateway.router import Target, tier_of
from claude_code_proxy.gateway.upstream import Upstream
from claude_code_proxy.metrics import Metrics
from claude_code_proxy.models import ALIASES
from claude_code_proxy.observe import RequestRecord, finish
from claude_code_proxy.pdf_worker import PdfExtractor, PdfLimits
from claude_code_proxy.redact import install_log_filters, query_secrets, set_key_hash_secret
from claude_code_proxy.server_tools.web_search import SearchTurn, WebSearch
from claude_code_proxy.translate.chat.response import message_to_events
from claude_code_proxy.translate.documents import pdf_sources
from claude_code_proxy.translate.errors import ProxyError, error_body
from claude_code_proxy.translate.ids import new_message_id, new_request_id
from claude_code_proxy.translate.options import TranslatedRequest
from claude_code_proxy.translate.sse import encode_events
from claude_code_proxy.upstream_tokens import DIALECTS, UpstreamTokenizer
from claude_code_proxy.windows import ContextWindows

logger = logging.getLogger(__name__)

# GET /v1/models page size: the API's range and default (protocol.md A.1).
MODELS_LIMIT_MAX = 1000
MODELS_LIMIT_DEFAULT = 20
MODEL_CREATED_AT = "2025-01-01T00:00:00Z"
#: Bodies above this size count against MAX_LARGE_BODIES (Claude Code's are mostly smaller).
LARGE_BODY_BYTES = 4 * 1024 * 1024


def _json_error(error: ProxyError) -> JSONResponse:
    return JSONResponse(error.body(), status_code=error.status, headers=error.headers)


async def read_body(request: Request, limit: int, timeout: float = 60.0) -> bytes:
    """The raw request body, capped in size (413) and in time (408, BODY_TIMEOUT)."""
    length = request.headers.get("content-length")
    if length and length.isdigit() and int(length) > limit:
        raise ProxyError(413, "request_too_large", f"request body exceeds {limit} bytes")
    chunks: list[bytes] = []
    size = 0
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    stream = request.stream().__aiter__()
    while True:
        try:
            chunk = await asyncio.wait_for(stream.__anext__(), max(0.0, deadline - loop.time()))
        except StopAsyncIteration:
            break
        except asyncio.TimeoutError:
            raise ProxyError(
                408,
                "timeout_error",
                f"request body not received within {timeout:g}s (BODY_TIMEOUT)",
                {"connection": "close"},
            ) from None
        size += len(chunk)
        if size > limit:
            raise ProxyError(413, "request_too_large", f"request body exceeds {limit} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


def parse_json(body: bytes) -> Any:
    if not body.strip():
        raise ProxyError(400, "invalid_request_error", "request body is empty: expected JSON")
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise ProxyError(
            400, "invalid_request_error", f"request body is not valid JSON: {exc}"
        ) from None


class Proxy:
    """Holds the settings, upstream, metrics and capture; its methods are the endpoints."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.gateway = gateway_of(settings)
        self.metrics = Metrics(known_models=(t.model for t in self.gateway.targets()))
        self.registry = Registry(settings, self.metrics, self.gateway)
        self.dispatcher = Dispatcher(settings, self.registry)
        # Each provider's windows are discovered on it, and its tokenizer counts its requests.
        self.windows = ContextWindows(settings, self.registry)
        self.tokenizers = {p.name: UpstreamTokenizer(p.settings) for p in self.registry}
        self.web_search = WebSearch(settings.web_search, self.metrics)
        provider_keys = [k for p in self.gateway.providers for k in p.api_keys]
        secrets = [
            s
            for s in (
                settings.openai_api_key,
                settings.anthropic_api_key,
                settings.web_search.api_key,
                *provider_keys,
            )
            if s
        ]
        for provider in self.registry:
            secrets += query_secrets(provider.settings.openai_base_query)
        self.capture = (
            Capture(settings.capture_dir, secrets=secrets) if settings.capture_dir else None
        )
        self.json_logs = settings.log_format == "json"
        self.warned_doubled_v1 = False
        self.large_bodies = asyncio.Semaphore(settings.max_large_bodies)
        self.pdf = PdfExtractor(
            PdfLimits(
                max_pages=settings.max_pdf_pages,
                max_chars=settings.max_pdf_text_chars,
                timeout=settings.pdf_timeout,
                workers=settings.pdf_workers,
            )
        )

    @property
    def table(self) -> CapabilityTable:
        """The first provider's capability table (the only one without a file)."""
        return self.registry.first.table

    @property
    def upstream(self) -> Upstream:
        """The first provider's upstream (the only one without a file)."""
        return self.registry.first.upstream

    # ------------------------------------------------------------------ routes

    async def root(self, request: Request) -> Response:
        return JSONResponse(
            {"status": "ok", "service": "claude-code-proxy", "version": __version__}
        )

    async def health(self, request: Request) -> Response:
        return JSONResponse({"status": "healthy", "version": __version__})

    async def client_probe(self, request: Request) -> Response:
        """Claude Code's connectivity probe (`/api/hello`) and telemetry
        (`/api/event_logging/*`): answered here, never forwarded, no key needed."""
        return JSONResponse({})

    async def metrics_endpoint(self, request: Request) -> Response:
        if self.settings.metrics_require_auth:
            try:
                upstream_key(request.headers, self.settings)
            except ProxyError as error:
                return _json_error(error)
        body, content_type = self.metrics.exposition()
        return Response(body, media_type=content_type)

    async def messages(self, request: Request) -> Response | CancelOnDisconnect:
        record = RequestRecord(_request_id(request), "messages")
        capture = None
        try:
            key = upstream_key(request.headers, self.settings)
            record.client = key_id(client_key(request.headers) or key)
            async with self._body_slot(request):
                raw = await self._read_body(request)
                if self.capture is not None:
                    secrets = [key, client_key(request.headers) or ""]
                    capture = self.capture.session(record.request_id, secrets)
                    capture.add_json("1-client-request", _raw_json(raw), dict(request.headers))
                body = parse_json(raw)
                del raw
                session = request.headers.get("x-claude-code-session-id")
                record.client_model = body.get("model", "") if isinstance(body, dict) else ""
                if not isinstance(record.client_model, str):
                    record.client_model = ""
                documents = await self._pdf_texts(body)
                decision, first = self.dispatcher.plan(body, session, documents)
            record.route = decision.rule
            record.provider, record.upstream_model = first.target.provider, first.target.model
            record.stream = first.translated.stream
            if len(decision.targets) == 1:  # with fallbacks, a larger window may follow
                self._check_window(first)
        except ProxyError as error:
            record.status, record.error_type = error.status, error.error_type
            finish(record, self.metrics, json_logs=self.json_logs)
            if capture is not None:
                capture.add("4-client-response", orjson.dumps(error.body()))
                await capture.write()
            return _json_error(error)
        if first.translated.max_tokens == 0:
            record.status = 200
            finish(record, self.metrics, json_logs=self.json_logs)
            return self._empty_reply(first.translated)
        exchange = Exchange(
            settings=self.settings,
            metrics=self.metrics,
            record=record,
            decision=decision,
            first=first,
            prepare=lambda target: self.dispatcher.attempt(body, target, session, documents),
            client_key=key,
            capture=capture,
        )
        if first.translated.web_search is not None:
            # The proxy runs the web_search server tool; follow-up calls translate the same way.
            exchange.search = SearchTurn(self.web_search, first.translated.web_search, body)
            exchange.retranslate = partial(
                self.dispatcher.retranslate, session_id=session, documents=documents
            )
        return CancelOnDisconnect(exchange.run, on_disconnect=exchange.client_disconnected)

    async def count_tokens(self, request: Request) -> Response:
        from claude_code_proxy.tokens import count_request_tokens

        record = RequestRecord(_request_id(request), "count_tokens")
        loop = asyncio.get_running_loop()
        try:
            key = upstream_key(request.headers, self.settings)
            async with self._body_slot(request):
                body = parse_json(await self._read_body(request))
                if not isinstance(body, dict):
                    raise ProxyError(
                        400, "invalid_request_error", "request body must be a JSON object"
                    )
                if not isinstance(body.get("model"), str) or not body["model"]:
                    raise ProxyError(400, "invalid_request_error", "model: field required")
                if not isinstance(body.get("messages"), list):
                    raise ProxyError(400, "invalid_request_error", "messages: field required")
                record.client_model = body["model"]
                decision = self.dispatcher.decide(body)
                record.route, record.upstream_model = decision.rule, decision.first.model
                count = await self._upstream_count(body, decision.first, key)
                if count is None:
                    count = await loop.run_in_executor(None, count_request_tokens, body)
        except ProxyError as error:
            record.status, record.error_type = error.status, error.error_type
            finish(record, self.metrics, json_logs=self.json_logs)
            return _json_error(error)
        record.status, record.input_tokens = 200, count
        finish(record, None, json_logs=self.json_logs)
        if self.metrics:
            model = self.metrics.model_label(record.upstream_model)
            self.metrics.requests.labels("count_tokens", model, "200").inc()
        return JSONResponse({"input_tokens": count})

    async def list_models(self, request: Request) -> Response:
        try:
            upstream_key(request.headers, self.settings)
        except ProxyError as error:
            return _json_error(error)
        entries = self._model_entries()
        limit_text = request.query_params.get("limit")
        limit = MODELS_LIMIT_DEFAULT
        if limit_text is not None:
            limit = int(limit_text) if limit_text.strip().isdigit() else 0
            if not 1 <= limit <= MODELS_LIMIT_MAX:
                return _json_error(
                    ProxyError(
                        400,
                        "invalid_request_error",
                        f"limit: must be an integer from 1 to {MODELS_LIMIT_MAX}, "
                        f"got {limit_text!r}",
                    )
                )
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
        # Any id /v1/messages would map (dated or future claude ids) exists for the client.
        decision = self.dispatcher.decide({"model": model_id})
        if decision.rule != "passthrough":
            shown = self._shown(decision.first)
            return JSONResponse(_model_entry(model_id, f"{model_id} → {shown}"))
        return _json_error(ProxyError(404, "not_found_error", f"model {model_id!r} not found"))

    def doubled_v1(self, endpoint: Any) -> Any:
        """`endpoint` under `/v1/v1/…` (ANTHROPIC_BASE_URL ending in /v1), with one warning."""

        async def alias(request: Request) -> Any:
            if not self.warned_doubled_v1:
                self.warned_doubled_v1 = True
                origin = f"{request.url.scheme}://{request.url.netloc}"
                logger.warning(
                    "a client called %s: its ANTHROPIC_BASE_URL ends in /v1. Served anyway; "
                    "set ANTHROPIC_BASE_URL=%s (without /v1)",
                    request.url.path,
                    origin,
                )
            return await endpoint(request)

        return alias

    async def test_connection(self, request: Request) -> Response:
        """A tiny real request to SMALL_MODEL: proves URL, key and model all work."""
        try:
            client = upstream_key(request.headers, self.settings)
            target = self.dispatcher.decide({"model": "claude-haiku-4-5"}).first
            provider = self.registry.provider_of(target)
            model = target.model
            key = provider.key(client) or client
            profile = provider.profile(model)
            api = profile.upstream_api(self.dispatcher.api_setting(provider))
            prompt = "Reply with the word ok."
            payload: dict[str, Any] = {"model": model}
            if api == "responses":
                payload.update(input=prompt, max_output_tokens=16, store=False)
            else:
                payload["messages"] = [{"role": "user", "content": prompt}]
                payload[profile.max_tokens_field] = 16
            started = time.perf_counter()
            async with provider.upstream.lease(key) as session:
                response = await provider.upstream.post_chat(session, payload, key, api=api)
                try:
                    limit = self.settings.max_upstream_response_bytes
                    data = orjson.loads(await read_capped(response, limit))
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

    async def _read_body(self, request: Request) -> bytes:
        s = self.settings
        return await read_body(request, s.max_request_bytes, s.body_timeout)

    @contextlib.asynccontextmanager
    async def _body_slot(self, request: Request) -> AsyncIterator[None]:
        """At most MAX_LARGE_BODIES bodies over LARGE_BODY_BYTES are read, parsed and
        translated at once: that phase holds several copies of the body in memory."""
        length = request.headers.get("content-length")
        if length and length.isdigit() and int(length) <= LARGE_BODY_BYTES:
            yield
            return
        try:
            await asyncio.wait_for(self.large_bodies.acquire(), self.settings.body_timeout)
        except asyncio.TimeoutError:
            raise ProxyError(
                503,
                "overloaded_error",
                "the proxy is busy with other large requests (MAX_LARGE_BODIES); retry shortly",
                {"retry-after": "1"},
            ) from None
        try:
            yield
        finally:
            self.large_bodies.release()

    async def _pdf_texts(self, body: Any) -> dict[str, str] | None:
        """Text of the body's base64 PDFs, extracted off the event loop (pdf_worker.py),
        unless every target of its route takes PDFs as files."""
        sources = list(pdf_sources(body.get("messages"))) if isinstance(body, dict) else []
        if not sources:
            return None
        decision = self.dispatcher.decide(body)
        profiles = (self.registry.provider_of(t).profile(t.model) for t in decision.targets)
        if all(profile.pdf_as_file for profile in profiles):
            return None
        return await self.pdf.extract_all(sources)

    async def _upstream_count(self, body: dict[str, Any], target: Target, key: str) -> int | None:
        """The upstream tokenizer's count of the translated prompt, when it has one."""
        provider = self.registry.provider_of(target)
        server = self.windows.servers.get(provider.name) or provider.profile(target.model).name
        if server not in DIALECTS:
            return None
        try:
            attempt = self.dispatcher.attempt(
                {**body, "max_tokens": 1, "stream": False}, target, None
            )
        except ProxyError:
            return None
        return await self.tokenizers[provider.name].count(
            attempt.translated.payload, server, provider.key(key) or key
        )

    def _check_window(self, attempt: Attempt) -> None:
        """Known not to fit: the error Claude Code compacts on, without the upstream call."""
        target, tokens = attempt.target, attempt.translated.estimated_input_tokens
        window = self.windows.window(target)
        limit = window.tokens if window is not None else None
        if limit is not None and tokens > limit:
            raise ProxyError(
                400,
                "invalid_request_error",
                f"prompt is too long: {tokens} tokens > {limit} maximum",
            )

    def _shown(self, target: Target) -> str:
        """`provider/model` with a file; the bare model for the environment's one provider."""
        return str(target) if self.gateway.path is not None else target.model

    def _model_entries(self) -> list[dict[str, Any]]:
        """The claude aliases, every `[models]` id (not the globs) and every target."""
        routing = self.gateway.routing
        entries = [
            _model_entry(alias, f"{label} → {self._shown(routing.tier(str(tier_of(alias)))[0])}")
            for alias, label, _ in ALIASES
            if routing.tier(str(tier_of(alias)))
        ]
        seen = {e["id"] for e in entries}
        for alias, targets in routing.models:
            if alias not in seen and not any(ch in alias for ch in "*?["):
                seen.add(alias)
                entries.append(_model_entry(alias, f"{alias} → {self._shown(targets[0])}"))
        listed = (
            self.gateway.targets()
            if self.gateway.path is not None
            else [t for tier in (routing.opus, routing.sonnet, routing.haiku) for t in tier]
        )
        for target in listed:  # the environment lists BIG/MIDDLE/SMALL_MODEL, as before
            shown = self._shown(target)
            if shown not in seen:
                seen.add(shown)
                entries.append(_model_entry(shown, shown))
        return entries

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


def _model_entry(model_id: str, display_name: str) -> dict[str, Any]:
    return {
        "type": "model",
        "id": model_id,
        "display_name": display_name,
        "created_at": MODEL_CREATED_AT,
    }


def _request_id(request: Request) -> str:
    state = request.scope.get("state") or {}
    request_id = state.get("request_id")
    return request_id if isinstance(request_id, str) else new_request_id()


def _raw_json(raw: bytes) -> Any:
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError:
        return raw.decode("utf-8", "replace")


async def _not_found(request: Request, exc: Exception) -> Response:
    status = exc.status_code if isinstance(exc, HTTPException) else 404
    error_type = "not_found_error" if status == 404 else "invalid_request_error"
    detail = exc.detail if isinstance(exc, HTTPException) else "not found"
    message = f"{request.method} {request.url.path}: {detail}"
    headers = exc.headers if isinstance(exc, HTTPException) else None  # 405 keeps `Allow`
    return JSONResponse(error_body(error_type, message), status_code=status, headers=headers)


async def _internal_error(request: Request, exc: Exception) -> Response:
    """Starlette answers this from outside every middleware, RequestIdMiddleware included,
    so the request id it assigned is attached here."""
    logger.exception("unexpected error handling %s %s", request.method, request.url.path)
    request_id = _request_id(request)
    body = error_body("api_error", f"internal proxy error: {type(exc).__name__}")
    return JSONResponse(
        {**body, "request_id": request_id}, status_code=500, headers={"request-id": request_id}
    )


def create_app(settings: Settings) -> Starlette:
    """Build the ASGI app; its lifespan opens and closes the upstream connection pool."""
    set_key_hash_secret(settings.key_hash_secret)
    proxy = Proxy(settings)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        install_log_filters()  # after the server configured its loggers
        await proxy.registry.start()
        proxy.windows.start()
        try:
            yield
        finally:
            proxy.pdf.close()
            await proxy.windows.stop()
            for tokenizer in proxy.tokenizers.values():
                await tokenizer.close()
            await proxy.registry.close()
            await proxy.web_search.close()

    routes = [
        Route("/", proxy.root, methods=["GET", "HEAD"]),
        Route("/health", proxy.health, methods=["GET", "HEAD"]),
        Route("/metrics", proxy.metrics_endpoint, methods=["GET"]),
        Route("/test-connection", proxy.test_connection, methods=["GET"]),
        Route("/v1/messages", proxy.messages, methods=["POST"]),
        Route("/v1/messages/count_tokens", proxy.count_tokens, methods=["POST"]),
        Route("/v1/models", proxy.list_models, methods=["GET"]),
        Route("/v1/models/{model_id:path}", proxy.get_model, methods=["GET"]),
        Route("/api/hello", proxy.client_probe, methods=["GET", "HEAD"]),
        Route("/api/event_logging/{rest:path}", proxy.client_probe, methods=["POST"]),
    ]
    # ANTHROPIC_BASE_URL=http://host:port/v1 makes Claude Code call /v1/v1/messages.
    routes += [
        Route("/v1" + route.path, proxy.doubled_v1(route.endpoint), methods=route.methods)
        for route in list(routes)
        if route.path.startswith("/v1/")
    ]
    app = Starlette(
        routes=routes,
        lifespan=lifespan,
        middleware=[Middleware(RequestIdMiddleware)],
        exception_handlers={HTTPException: _not_found, Exception: _internal_error},
    )
    app.state.proxy = proxy
    return app


def create_app_from_env() -> Starlette:
    """App factory for `uvicorn --factory` and multi-worker runs: settings from the environment."""
    from claude_code_proxy.config import configure_logging

    settings = Settings.from_env(os.environ)
    configure_logging(settings.log_level, settings.log_format)
    return create_app(settings)
