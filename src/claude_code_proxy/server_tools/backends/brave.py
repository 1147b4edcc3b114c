"""Brave Search API: `GET /res/v1/web/search` with the key in `X-Subscription-Token`.

`count` asks for up to 20 results; the user's location goes in `country` and the
`X-Loc-*` headers Brave documents for local results.
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

MAX_COUNT = 20


class BraveBackend:
    name = "brave"

    def __init__(self, base_url: str, api_key: str) -> None:
        self.url = base_url.rstrip("/") + "/res/v1/web/search"
        self._key = api_key

    async def search(
        self, session: aiohttp.ClientSession, request: SearchRequest, timeout: float
    ) -> list[SearchResult]:
        # Domain limits are applied to what comes back: ask for more when they apply.
        count = min(request.max_results * (2 if request.filtered else 1), MAX_COUNT)
        params = {"q": request.site_query(), "count": str(count)}
        headers = {"Accept": "application/json", "X-Subscription-Token": self._key}
        location = request.location
        if location is not None:
            if location.country and len(location.country) == 2:
                params["country"] = location.country.upper()
                headers["X-Loc-Country"] = location.country.upper()
            if location.city:
                headers["X-Loc-City"] = location.city
            if location.region and len(location.region) <= 3:
                headers["X-Loc-State"] = location.region
            if location.timezone:
                headers["X-Loc-Timezone"] = location.timezone
        data = await fetch_json(
            session, self.name, "GET", self.url, params=params, headers=headers, timeout=timeout
        )
        found = (
            result(
                item.get("url"),
                item.get("title"),
                item.get("description"),
                item.get("age") or item.get("page_age"),
            )
            for item in results_list(data, "web", "results")
        )
        return [item for item in found if item is not None]
