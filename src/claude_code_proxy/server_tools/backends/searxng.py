"""SearXNG (self-hosted metasearch): `GET /search?q=…&format=json`, no key.

The instance must list `json` under `search.formats` in its settings.yml, or it answers
403. It returns a page of results (about 20) whatever is asked; the caller keeps the first.
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


class SearxngBackend:
    name = "searxng"

    def __init__(self, base_url: str) -> None:
        self.url = base_url.rstrip("/") + "/search"

    async def search(
        self, session: aiohttp.ClientSession, request: SearchRequest, timeout: float
    ) -> list[SearchResult]:
        params = {"q": request.site_query(), "format": "json"}
        data = await fetch_json(
            session,
            self.name,
            "GET",
            self.url,
            params=params,
            headers={"Accept": "application/json"},
            timeout=timeout,
        )
        found = (
            result(
                item.get("url"), item.get("title"), item.get("content"), item.get("publishedDate")
            )
            for item in results_list(data, "results")
        )
        return [item for item in found if item is not None]
