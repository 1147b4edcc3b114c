"""Tavily: `POST /search` with a bearer key; it filters domains itself.

`include_domains` / `exclude_domains` carry the tool's limits (still enforced on the
answer); `max_results` is at most 20. Tavily takes no client location we can map.
"""

from __future__ import annotations

import aiohttp

from claude_code_proxy.server_tools.backends.base import (
    SearchRequest,
    fetch_json,
    result,
    results_list,
)
from claude_code_proxy.translate.web_search import SearchResult

MAX_RESULTS = 20


class TavilyBackend:
    name = "tavily"

    def __init__(self, base_url: str, api_key: str) -> None:
        self.url = base_url.rstrip("/") + "/search"
        self._key = api_key

    async def search(
        self, session: aiohttp.ClientSession, request: SearchRequest, timeout: float
    ) -> list[SearchResult]:
        body: dict[str, object] = {
            "query": request.query,
            "max_results": min(request.max_results, MAX_RESULTS),
            "search_depth": "basic",
            "topic": "general",
        }
        if request.allowed_domains:
            body["include_domains"] = list(request.allowed_domains)
        if request.blocked_domains:
            body["exclude_domains"] = list(request.blocked_domains)
        headers = {
            "Authorization": f"Bearer {self._key}",
            "Content-Type": "application/json",
            "Accept": "application/json",
        }
        data = await fetch_json(
            session, self.name, "POST", self.url, json=body, headers=headers, timeout=timeout
        )
        found = (
            result(
                item.get("url"), item.get("title"), item.get("content"), item.get("published_date")
            )
            for item in results_list(data, "results")
        )
        return [item for item in found if item is not None]
