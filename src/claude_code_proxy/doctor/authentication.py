"""The key, checked with `GET /models` as the proxy would send it; the list feeds the model rows."""

from __future__ import annotations

import asyncio
import json

import aiohttp

from claude_code_proxy.doctor.context import Context
from claude_code_proxy.doctor.model_list import model_ids
from claude_code_proxy.doctor.replies import error_text
from claude_code_proxy.gateway.upstream import models_url, upstream_headers
from claude_code_proxy.launcher import mask_key

MAX_BODY = 1024 * 1024


def key_fix(ctx: Context) -> str:
    s = ctx.settings
    if s.dynamic_keys:
        return (
            "OPENAI_API_KEY is not set, so the client's key (ANTHROPIC_API_KEY) is sent "
            f"upstream: set OPENAI_API_KEY to a valid {ctx.host} key"
        )
    if s.azure_api_version is not None:
        return "set OPENAI_API_KEY to the Azure resource's key (portal: Keys and Endpoint)"
    return (
        f"set OPENAI_API_KEY to a valid {ctx.host} key (ANTHROPIC_API_KEY is the key "
        "clients send to this proxy, not the upstream key)"
    )


class AuthenticationCheck:
    """A 401/403 marks the key bad (later chat checks are skipped); a list is returned."""

    async def run(self, ctx: Context, session: aiohttp.ClientSession) -> list[str] | None:
        headers = upstream_headers(ctx.settings, ctx.key)
        headers.pop("content-type")
        url = models_url(ctx.settings)
        label = ctx.key_label or (
            "OPENAI_API_KEY" if not ctx.settings.dynamic_keys else "client key"
        )
        try:
            async with session.get(url, headers=headers, allow_redirects=False) as response:
                status = response.status
                content_type = response.headers.get("content-type", "")
                raw = await response.content.read(MAX_BODY)
        except (aiohttp.ClientError, asyncio.TimeoutError, TimeoutError) as exc:
            ctx.add(
                "authentication",
                "WARN",
                f"GET {url} failed ({type(exc).__name__}: {exc}); the chat checks test the key",
            )
            return None
        if status in (401, 403):
            ctx.auth_failed = True
            _, message = error_text(raw)
            ctx.add(
                "authentication",
                "FAIL",
                f"{ctx.host} rejected the {label} ({mask_key(ctx.key)}): HTTP {status}"
                + (f": {message}" if message else ""),
                key_fix(ctx),
            )
            return None
        if status >= 300:
            then = (
                "the key is not checked until OPENAI_BASE_URL is fixed"
                if ctx.base_url_doubled
                else "the chat checks test the key"
            )
            ctx.add(
                "authentication",
                "INFO",
                f"GET {url} answered HTTP {status} (no model list); {then}",
            )
            return None
        try:
            body = json.loads(raw)
        except ValueError:
            body = None
        ids = model_ids(body)
        ctx.model_list = body
        if ids is None:
            ctx.add(
                "authentication",
                "WARN",
                f"GET {url} answered {content_type or 'something'} that is not a model list",
                "OPENAI_BASE_URL should be the API root, usually ending in /v1",
            )
            return None
        ctx.add(
            "authentication",
            "PASS",
            f"{label} {mask_key(ctx.key)} accepted: GET {url} listed {len(ids)} models",
        )
        return ids
