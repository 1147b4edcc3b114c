"""All upstream I/O: pooled connections, URLs and auth, timeouts, retries, error mapping.

One `Upstream` per provider. Its failures carry a fallback `reason` (docs/routing.md) so
the exchange can decide, without parsing messages, whether the route's next target helps.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import socket
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, urlsplit

import aiohttp
import orjson

from claude_code_proxy.config import Settings
from claude_code_proxy.gateway.capabilities import CapabilityTable
from claude_code_proxy.gateway.pool import ClientPool
from claude_code_proxy.metrics import Metrics
from claude_code_proxy.redact import redact_url_queries
from claude_code_proxy.translate.errors import (
    ParameterFix,
    ProxyError,
    map_upstream_error,
    needs_responses_api,
    parameter_fix,
    redact_secrets,
    retry_after_seconds,
)

logger = logging.getLogger(__name__)

RETRY_STATUSES = frozenset({502, 503, 504})  # retried with backoff when no wait is given
WAIT_STATUSES = frozenset({429, 503, 529})  # a retry-after on these is honoured
MAX_ERROR_BODY = 64 * 1024
MAX_PARAMETER_FIXES = 3
# getaddrinfo's "no such name" answers: definitive, unlike EAI_AGAIN (resolver unreachable).
_UNKNOWN_HOST = frozenset(
    code
    for code in (getattr(socket, "EAI_NONAME", None), getattr(socket, "EAI_NODATA", None))
    if code
)


@dataclass
class UpstreamError(ProxyError):
    """A failed upstream call; `reason` names why a fallback may help ("" when it cannot)."""

    reason: str = ""
    #: The upstream's retry-after on a 429, in seconds (key pools rest the key that long).
    retry_after: float | None = None


#: Upstream HTTP status → fallback reason (docs/routing.md). Other statuses: none.
STATUS_REASONS = {
    401: "auth",
    403: "auth",
    404: "not_found",
    429: "rate_limit",
    500: "server_error",
    502: "server_error",
    503: "server_error",
    504: "server_error",
    529: "server_error",
}


def _failed(error: ProxyError, reason: str, retry_after: float | None = None) -> UpstreamError:
    return UpstreamError(
        error.status, error.error_type, error.message, error.headers, reason, retry_after
    )


def _status_reason(status: int, error: ProxyError) -> str:
    reason = STATUS_REASONS.get(status, "")
    if not reason and status in (400, 413) and not error.message.startswith("upstream error ("):
        reason = "context_overflow"  # map_upstream_error rewrote it into Anthropic's wording
    return reason


@dataclass
class ResponsesOnly(ProxyError):
    """Chat Completions refused the model: it answers only on the Responses API."""


class Upstream:
    """Talks to the configured provider through pooled keep-alive sessions.

    Static mode shares one session; dynamic mode keeps one per client key (see pool.py).
    """

    def __init__(
        self,
        settings: Settings,
        table: CapabilityTable | None = None,
        metrics: Metrics | None = None,
    ) -> None:
        self.settings = settings
        self.table = table or CapabilityTable()
        self.metrics = metrics
        self.max_retries = settings.max_retries
        self.base_url = settings.openai_base_url
        self.host = urlsplit(self.base_url).netloc
        self.pool = ClientPool(
            self._new_session,
            max_clients=settings.max_clients if settings.dynamic_keys else 1,
            idle_timeout=settings.client_idle_timeout,
            metrics=metrics,
        )

    def _new_session(self) -> aiohttp.ClientSession:
        connector = aiohttp.TCPConnector(limit=0, ttl_dns_cache=300, keepalive_timeout=75)
        timeout = aiohttp.ClientTimeout(
            total=None,
            sock_connect=self.settings.connect_timeout,
            sock_read=self.settings.request_timeout,
        )
        return aiohttp.ClientSession(
            connector=connector,
            timeout=timeout,
            auto_decompress=True,
            skip_auto_headers=("User-Agent",),
        )

    async def start(self) -> None:
        await self.pool.start()

    async def close(self) -> None:
        await self.pool.close()

    def lease(self, api_key: str) -> contextlib.AbstractAsyncContextManager[aiohttp.ClientSession]:
        """A session for this key, kept in use (not evictable) until the exchange ends."""
        return self.pool.lease(api_key if self.settings.dynamic_keys else "static")

    def chat_url(self, model: str) -> str:
        return chat_url(self.settings, model)

    def api_url(self, api: str, model: str) -> str:
        """The endpoint of a dialect: Chat Completions or the Responses API."""
        return (
            responses_url(self.settings) if api == "responses" else chat_url(self.settings, model)
        )

    def models_url(self) -> str:
        return models_url(self.settings)

    def headers(self, api_key: str) -> dict[str, str]:
        return upstream_headers(self.settings, api_key)

    async def post_chat(
        self,
        session: aiohttp.ClientSession,
        payload: dict[str, Any],
        api_key: str,
        *,
        error_tap: Callable[[bytes], None] | None = None,
        prompt_tokens: int | None = None,
        retries: int | None = None,
        rotate_keys: bool = False,
        api: str = "chat",
    ) -> aiohttp.ClientResponse:
        """POST the request; return the open response once the upstream answered 2xx.

        Before any byte reached the client: transient failures (connect errors other than
        an unknown host name, 502/503/504) are retried with backoff, and 429/503/529 wait
        out a `retry-after` of at most RETRY_AFTER_MAX (a longer one goes to the client);
        a 400 naming one rejected parameter is fixed, retried once and remembered for the
        model; anything else is raised as a mapped `UpstreamError` with its fallback reason
        (`ResponsesOnly` when Chat Completions says the model answers only on the Responses
        API). `retries` overrides MAX_RETRIES (0 when the route has a next target: falling
        back is faster than waiting); `rotate_keys` raises a 429 at once so a key pool can
        rotate. `api` picks the endpoint: "chat" (Chat Completions) or "responses".
        """
        model = str(payload.get("model", ""))
        url = self.api_url(api, model)
        headers = self.headers(api_key)
        attempt = fixes = 0
        max_retries = self.max_retries if retries is None else retries
        while True:
            delay: float | None = None
            try:
                data = orjson.dumps(payload)
            except TypeError as exc:  # e.g. a tool schema nested beyond orjson's limit
                raise ProxyError(
                    400, "invalid_request_error", f"request cannot be serialised: {exc}"
                ) from None
            try:
                response = await session.post(url, data=data, headers=headers)
            except (asyncio.TimeoutError, aiohttp.ServerTimeoutError):
                # Not retried: a hung upstream would otherwise cost several timeouts.
                raise UpstreamError(
                    504,
                    "timeout_error",
                    f"upstream {self.host} sent nothing for {self.settings.request_timeout:g}s "
                    "(REQUEST_TIMEOUT)",
                    reason="timeout",
                ) from None
            except aiohttp.ClientConnectorDNSError as exc:
                error = UpstreamError(
                    502,
                    "api_error",
                    redact_url_queries(
                        f"cannot resolve upstream host {exc.host} (DNS): {exc.strerror or exc}; "
                        "check OPENAI_BASE_URL"
                    ),
                    reason="connect",
                )
                if exc.os_error.errno in _UNKNOWN_HOST:
                    raise error from None  # a name that does not exist will not appear on retry
            except aiohttp.ClientConnectorError as exc:
                error = UpstreamError(
                    502,
                    "api_error",
                    redact_url_queries(
                        f"cannot connect to upstream {self.host}: {exc.strerror or exc}"
                    ),
                    reason="connect",
                )
            except aiohttp.ClientError as exc:
                # aiohttp quotes the full URL, whose query may hold a key (OPENAI_BASE_URL).
                detail = redact_url_queries(f"{type(exc).__name__}: {exc}")
                error = UpstreamError(
                    502, "api_error", f"upstream {self.host} failed: {detail}", reason="connect"
                )
            else:
                if response.status < 400:
                    return response
                try:
                    raw = await response.content.read(MAX_ERROR_BODY)
                except (aiohttp.ClientError, asyncio.TimeoutError):
                    raw = b""
                finally:
                    response.release()
                status, response_headers = response.status, dict(response.headers)
                if error_tap is not None:
                    error_tap(f"HTTP {status}\n".encode() + raw + b"\n")
                if api == "chat" and needs_responses_api(status, raw):
                    refused = map_upstream_error(status, raw, response_headers)
                    message = redact_secrets(refused.message, (api_key,))
                    raise ResponsesOnly(refused.status, refused.error_type, message)
                fix = parameter_fix(status, raw, payload)
                if fix is not None and fixes < MAX_PARAMETER_FIXES:
                    fixes += 1
                    self._apply_fix(fix, payload, model)
                    continue
                mapped = map_upstream_error(
                    status, raw, response_headers, prompt_tokens=prompt_tokens
                )
                mapped.message = redact_url_queries(redact_secrets(mapped.message, (api_key,)))
                wait = retry_after_seconds(response_headers) if status in WAIT_STATUSES else None
                error = _failed(mapped, _status_reason(status, mapped), wait)
                if status == 429 and rotate_keys:
                    raise error
                if wait is not None:
                    # The upstream said when: wait that long ourselves only if it is short,
                    # otherwise the client gets the status with retry-after and decides.
                    if wait > self.settings.retry_after_max:
                        raise error
                    delay = float(wait)
                elif status not in RETRY_STATUSES:
                    raise error
            if attempt >= max_retries:
                raise error
            attempt += 1
            if self.metrics:
                self.metrics.retries.inc()
            if delay is None:
                delay = min(0.25 * 2**attempt, 4.0) * (0.75 + random.random() / 2)
            logger.info("retrying upstream request (%s) in %.2fs", error.error_type, delay)
            await asyncio.sleep(delay)

    def _apply_fix(self, fix: ParameterFix, payload: dict[str, Any], model: str) -> None:
        """Change the payload for the retry and remember the fix for this model."""
        base = self.base_url
        if fix.kind == "rename_max_tokens":
            payload["max_completion_tokens"] = payload.pop("max_tokens")
            self.table.learn(base, model, max_tokens_field="max_completion_tokens")
        elif fix.kind == "fit_max_tokens":
            payload[fix.param] = fix.limit  # this request only: it depends on the input size
        elif fix.kind == "limit_max_tokens":
            payload[fix.param] = fix.limit
            self.table.learn(base, model, max_output_tokens=fix.limit)
        elif fix.param == "stream_options":
            payload.pop("stream_options", None)
            self.table.learn(base, model, include_usage=False)
        else:
            payload.pop(fix.param, None)
            self.table.learn(base, model, drop_params=[fix.param])
        logger.warning(
            "upstream rejected %r for model %s; retrying with it %s and remembering that",
            fix.param,
            model,
            "lowered" if fix.kind == "limit_max_tokens" else "changed",
        )


def chat_url(settings: Settings, model: str) -> str:
    """The chat-completions URL, Azure's deployment forms included."""
    base = settings.openai_base_url
    version = settings.azure_api_version
    if version is None:
        return _with_query(settings, base + "/chat/completions")
    if "/openai/deployments/" in base or base.endswith("/openai/v1") or base.endswith("/v1"):
        url = base + "/chat/completions"
    else:
        root = base[: -len("/openai")] if base.endswith("/openai") else base
        url = f"{root}/openai/deployments/{model}/chat/completions"
    if base.endswith("/v1"):  # Azure's v1 API takes no api-version
        return _with_query(settings, url)
    return _with_query(settings, url, version)


def responses_url(settings: Settings) -> str:
    """`POST …/responses`; on Azure the v1 form `…/openai/v1/responses` (no api-version)."""
    base = settings.openai_base_url
    if settings.azure_api_version is None or base.endswith("/v1"):
        return _with_query(settings, base + "/responses")
    parts = urlsplit(base)
    return _with_query(settings, f"{parts.scheme}://{parts.netloc}/openai/v1/responses")


def models_url(settings: Settings) -> str:
    """`GET …/models`; classic Azure lists models at the resource root."""
    base = settings.openai_base_url
    version = settings.azure_api_version
    if version is None or base.endswith("/v1"):
        return _with_query(settings, base + "/models")
    parts = urlsplit(base)
    return _with_query(settings, f"{parts.scheme}://{parts.netloc}/openai/models", version)


def _with_query(settings: Settings, url: str, api_version: str | None = None) -> str:
    """Re-attach OPENAI_BASE_URL's own query (and Azure's api-version) after the path."""
    params = [f"api-version={quote(api_version, safe='')}"] if api_version else []
    if settings.openai_base_query:
        params.append(settings.openai_base_query)
    return f"{url}?{'&'.join(params)}" if params else url


def upstream_headers(settings: Settings, api_key: str) -> dict[str, str]:
    """Custom headers first, so none of them can replace the key header."""
    headers = dict(settings.custom_headers)
    headers["content-type"] = "application/json"
    if not api_key:
        return headers  # a key-less provider behind a proxy secret: nothing to forward
    if settings.azure_api_version is not None:
        headers["api-key"] = api_key
    else:
        headers["authorization"] = f"Bearer {api_key}"
    return headers
