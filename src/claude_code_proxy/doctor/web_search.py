"""The search backend behind the web_search server tool, asked one real query.

Claude Code's WebSearch tool only says "unavailable" mid-session; here the same backend code
the proxy runs (`server_tools/backends/`) answers a query now, and a failure gets its fix.
"""

from __future__ import annotations

import aiohttp

from claude_code_proxy.doctor.context import Context
from claude_code_proxy.server_tools.backends import SearchFailure, SearchRequest, make_backend

QUERY = "Claude Code"
NAME = "web search"


class WebSearchCheck:
    """One query (one result asked for) with the configured backend and timeout."""

    async def run(self, ctx: Context) -> None:
        settings = ctx.settings.web_search
        backend = make_backend(settings)
        names = _setting_names(ctx)
        if backend is None:
            ctx.add(
                NAME,
                "INFO",
                "no search backend: Claude Code's WebSearch tool gets 'unavailable'",
                f"to search, set {names['backend']} (searxng, brave or tavily) and "
                f"{names['url']} / {names['api_key']} (docs/web-search.md)",
            )
            return
        where = f"{backend.name} at {settings.url}"
        if not ctx.chat:
            ctx.add(NAME, "SKIP", f"{where}: not queried (--no-chat sends no requests)")
            return
        timeout = min(settings.timeout, ctx.timeout)
        request = SearchRequest(QUERY, max_results=1)
        async with aiohttp.ClientSession(skip_auto_headers=("User-Agent",)) as session:
            try:
                found = await backend.search(session, request, timeout)
            except SearchFailure as failure:
                self.failed(ctx, backend.name, failure, names)
                return
        if not found:
            ctx.add(
                NAME,
                "WARN",
                f"{where} answered {QUERY!r} with no results: the model gets none either",
                "searxng: enable some engines (and check `unresponsive_engines` in its answer)"
                if backend.name == "searxng"
                else f"check the {backend.name} account's plan and settings",
            )
            return
        first = found[0].url
        ctx.add(NAME, "PASS", f"{where} answered {QUERY!r}: {len(found)} results, first {first}")

    def failed(
        self, ctx: Context, backend: str, failure: SearchFailure, names: dict[str, str]
    ) -> None:
        detail = f"{failure.code}: {failure.detail}"
        if failure.code == "too_many_requests":
            ctx.add(
                NAME,
                "WARN",
                detail,
                f"the {backend} plan's quota or rate limit is spent: wait for it to reset or "
                "raise the plan; until then Claude Code's searches fail the same way",
            )
            return
        if backend == "searxng":
            fix = (
                f"check {names['url']}: a SearXNG instance answering /search?format=json "
                "(search.formats: [html, json] in its settings.yml), reachable from the proxy"
            )
        else:
            fix = (
                f"check {names['api_key']} (a {backend} API key) and {names['url']} "
                f"(the {backend} API's address)"
            )
        ctx.add(NAME, "FAIL", detail, fix)


def _setting_names(ctx: Context) -> dict[str, str]:
    """Where the user sets the backend: the configuration file's table, or the variables."""
    gateway = ctx.settings.gateway
    if gateway is not None and gateway.web_search is not None and gateway.path:
        table = f"[web_search] in {gateway.path}"
        return {k: f"{k} in {table}" for k in ("backend", "url", "api_key")}
    return {
        "backend": "WEB_SEARCH_BACKEND",
        "url": "WEB_SEARCH_URL",
        "api_key": "WEB_SEARCH_API_KEY",
    }
