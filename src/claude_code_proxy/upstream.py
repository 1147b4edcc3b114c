"""All upstream I/O: pooled connections, URLs and auth, timeouts, retries, error mapping."""

from __future__ import annotations

import asyncio
import logging
import random
from typing import Any
from urllib.parse import urlsplit

import aiohttp
import orjson

from claude_code_proxy.config import Settings
from claude_code_proxy.translate.errors import ProxyError, map_upstream_error

logger = logging.getLogger(__name__)

RETRY_STATUSES = frozenset({502, 503, 504})
MAX_ERROR_BODY = 64 * 1024


class Upstream:
    """One pooled aiohttp session (keep-alive) talking to the configured provider."""

    def __init__(self, settings: Settings, *, max_retries: int = 2) -> None:
        self.settings = settings
        self.max_retries = max_retries
        self._session: aiohttp.ClientSession | None = None
        self.base_url = settings.openai_base_url
        self.host = urlsplit(self.base_url).netloc

    async def start(self) -> None:
        if self._session is None:
            connector = aiohttp.TCPConnector(limit=0, ttl_dns_cache=300, keepalive_timeout=75)
            timeout = aiohttp.ClientTimeout(
                total=None,
                sock_connect=self.settings.connect_timeout,
                sock_read=self.settings.request_timeout,
            )
            self._session = aiohttp.ClientSession(
                connector=connector,
                timeout=timeout,
                auto_decompress=True,
                skip_auto_headers=("User-Agent",),
            )

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    @property
    def session(self) -> aiohttp.ClientSession:
        if self._session is None:
            raise RuntimeError("Upstream.start() was not awaited")
        return self._session

    def chat_url(self, model: str) -> str:
        """The chat-completions URL, Azure's deployment forms included."""
        base = self.base_url
        version = self.settings.azure_api_version
        if version is None:
            return base + "/chat/completions"
        if "/openai/deployments/" in base or base.endswith("/openai/v1") or base.endswith("/v1"):
            url = base + "/chat/completions"
        else:
            root = base[: -len("/openai")] if base.endswith("/openai") else base
            url = f"{root}/openai/deployments/{model}/chat/completions"
        if base.endswith("/v1"):
            return url
        return f"{url}?api-version={version}"

    def models_url(self) -> str:
        return self.base_url + "/models"

    def headers(self, api_key: str) -> dict[str, str]:
        headers = dict(self.settings.custom_headers)
        headers["content-type"] = "application/json"
        if self.settings.azure_api_version is not None:
            headers["api-key"] = api_key
        else:
            headers["authorization"] = f"Bearer {api_key}"
        return headers

    async def post_chat(self, payload: dict[str, Any], api_key: str) -> aiohttp.ClientResponse:
        """POST the request; return the open response once the upstream answered 2xx.

        Failures before any byte reached the client are retried (connect errors and
        502/503/504) and otherwise raised as a mapped `ProxyError`.
        """
        url = self.chat_url(str(payload.get("model", "")))
        body = orjson.dumps(payload)
        headers = self.headers(api_key)
        attempt = 0
        while True:
            try:
                response = await self.session.post(url, data=body, headers=headers)
            except (asyncio.TimeoutError, aiohttp.ServerTimeoutError):
                error = ProxyError(
                    504,
                    "timeout_error",
                    f"upstream {self.host} sent nothing for {self.settings.request_timeout:g}s "
                    "(REQUEST_TIMEOUT)",
                )
            except aiohttp.ClientConnectorError as exc:
                error = ProxyError(
                    502,
                    "api_error",
                    f"cannot connect to upstream {self.host}: {exc.strerror or exc}",
                )
            except aiohttp.ClientError as exc:
                error = ProxyError(
                    502, "api_error", f"upstream {self.host} failed: {type(exc).__name__}: {exc}"
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
                error = map_upstream_error(response.status, raw, dict(response.headers))
                if response.status not in RETRY_STATUSES:
                    raise error
            if attempt >= self.max_retries:
                raise error
            attempt += 1
            delay = min(0.25 * 2**attempt, 4.0) * (0.75 + random.random() / 2)
            logger.info("retrying upstream request (%s) in %.2fs", error.error_type, delay)
            await asyncio.sleep(delay)
