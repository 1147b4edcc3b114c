"""Client authentication and the choice of upstream key."""

from __future__ import annotations

import functools
import hmac
import re
from collections.abc import Mapping

from claude_code_proxy.config import ANY_KEY_PATTERN, DEFAULT_CLIENT_KEY_PATTERN, Settings
from claude_code_proxy.gateway.capabilities import profile_for
from claude_code_proxy.translate.errors import ProxyError


def client_key(headers: Mapping[str, str]) -> str | None:
    """The key a client sent: `x-api-key` (ANTHROPIC_API_KEY) or a Bearer token
    (ANTHROPIC_AUTH_TOKEN); SDKs may send both."""
    key = headers.get("x-api-key", "").strip()
    if key:
        return key
    authorization = headers.get("authorization", "").strip()
    scheme, _, token = authorization.partition(" ")
    if scheme.lower() == "bearer" and token.strip():
        return token.strip()
    return None


def _matches(candidate: str, expected: str) -> bool:
    return hmac.compare_digest(candidate.encode(), expected.encode())


def upstream_key(headers: Mapping[str, str], settings: Settings) -> str:
    """Authenticate the client and return the key to use upstream; raises 401 otherwise.

    With a configuration file the result is the key forwarded to providers that have none
    of their own ("" when there is nothing to forward: the client sent the proxy's secret).
    """
    key = client_key(headers)
    gateway = settings.gateway
    if gateway is not None and gateway.has_own_keys:
        if settings.anthropic_api_key is not None:
            _check_secret(headers, key, settings.anthropic_api_key)
            return ""
        return key or ""
    if settings.openai_api_key is not None and gateway is None:
        if settings.anthropic_api_key is not None:
            _check_secret(headers, key, settings.anthropic_api_key)
        return settings.openai_api_key
    if not key:
        raise ProxyError(
            401,
            "authentication_error",
            "missing API key: this proxy runs without OPENAI_API_KEY, so each client "
            "must send its own upstream key (x-api-key or Authorization: Bearer)",
        )
    if not _compiled(key_pattern(settings)).search(key):
        raise ProxyError(
            401,
            "authentication_error",
            "this key cannot be an upstream key (it does not match CLIENT_KEY_PATTERN; "
            "set CLIENT_KEY_PATTERN=any for providers that accept any key)",
        )
    return key


def _check_secret(headers: Mapping[str, str], key: str | None, expected: str) -> None:
    """The client must send the proxy's ANTHROPIC_API_KEY (either header)."""
    candidates = [key] if key else []
    bearer = headers.get("authorization", "")
    if bearer.lower().startswith("bearer "):
        candidates.append(bearer[7:].strip())
    if not any(_matches(c, expected) for c in candidates if c):
        raise ProxyError(
            401,
            "authentication_error",
            "invalid API key: send the proxy's ANTHROPIC_API_KEY as x-api-key "
            "or Authorization: Bearer",
        )


def key_pattern(settings: Settings) -> str:
    """CLIENT_KEY_PATTERN, or its default: any non-empty key for a local server (Ollama,
    LM Studio, llama.cpp, vLLM, SGLang: their keys are whatever the user chose, often none),
    an `sk-…` key for hosted providers."""
    if settings.client_key_pattern is not None:
        return settings.client_key_pattern
    if settings.gateway is not None:
        # A configuration file: the client's key goes only to providers without their own.
        urls = [p.base_url for p in settings.gateway.providers if p.dynamic]
        if urls and all(_default_pattern(url) == ANY_KEY_PATTERN for url in urls):
            return ANY_KEY_PATTERN
        return DEFAULT_CLIENT_KEY_PATTERN
    return _default_pattern(settings.openai_base_url)


@functools.lru_cache(maxsize=8)
def _default_pattern(base_url: str) -> str:
    local = profile_for(base_url, "").local_server
    return ANY_KEY_PATTERN if local else DEFAULT_CLIENT_KEY_PATTERN


@functools.lru_cache(maxsize=8)
def _compiled(pattern: str) -> re.Pattern[str]:
    return re.compile(pattern)
