"""What every search backend shares: the request, the failure, and one HTTP helper."""

from __future__ import annotations

import asyncio
import html
import re
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

import aiohttp
import orjson

from claude_code_proxy.capped import read_capped
from claude_code_proxy.translate.errors import ProxyError
from claude_code_proxy.translate.web_search import SearchResult, UserLocation

# Statuses that mean "slow down or pay more": 402 and Tavily's plan limits (432, 433).
QUOTA_STATUSES = frozenset({402, 429, 432, 433})
#: A search API's answer is a few KB; anything near this is not one (issue 13).
MAX_RESULT_BYTES = 8 * 1024 * 1024
_TAG_RE = re.compile(r"<[^>]+>")


class SearchFailure(Exception):
    """A search that produced no results; `code` is the web_search_tool_result error code."""

    def __init__(self, code: str, detail: str) -> None:
        super().__init__(detail)
        self.code = code
        self.detail = detail


@dataclass(frozen=True)
class SearchRequest:
    query: str
    max_results: int
    allowed_domains: tuple[str, ...] = ()
    blocked_domains: tuple[str, ...] = ()
    location: UserLocation | None = None

    @property
    def filtered(self) -> bool:
        return bool(self.allowed_domains or self.blocked_domains)

    def site_query(self) -> str:
        """The query limited to the one allowed site, in the `site:` syntax engines share."""
        if len(self.allowed_domains) != 1:
            return self.query
        return f"{self.query} site:{self.allowed_domains[0].partition('/')[0]}"


class SearchBackend(Protocol):
    name: str

    async def search(
        self, session: aiohttp.ClientSession, request: SearchRequest, timeout: float
    ) -> list[SearchResult]: ...


async def fetch_json(
    session: aiohttp.ClientSession,
    backend: str,
    method: str,
    url: str,
    *,
    timeout: float,
    params: dict[str, str] | None = None,
    json: Any = None,
    headers: dict[str, str] | None = None,
) -> Any:
    """The backend's JSON answer; a SearchFailure for every way it can go wrong."""
    try:
        async with session.request(
            method,
            url,
            params=params,
            data=orjson.dumps(json) if json is not None else None,
            headers=headers,
            timeout=aiohttp.ClientTimeout(total=timeout),
        ) as response:
            status = response.status
            if status in QUOTA_STATUSES:
                raise SearchFailure("too_many_requests", f"{backend} answered HTTP {status}")
            if status == 403 and backend == "searxng":
                raise SearchFailure(
                    "unavailable",
                    "searxng answered HTTP 403: enable the json format "
                    "(search.formats: [html, json]) in its settings.yml",
                )
            if not 200 <= status < 300:
                raise SearchFailure("unavailable", f"{backend} answered HTTP {status}")
            try:
                body = await read_capped(response, MAX_RESULT_BYTES)
            except ProxyError as exc:
                raise SearchFailure("unavailable", f"{backend}: {exc.message}") from None
    except (asyncio.TimeoutError, aiohttp.ServerTimeoutError):
        raise SearchFailure(
            "unavailable", f"{backend} did not answer within {timeout:g}s (WEB_SEARCH_TIMEOUT)"
        ) from None
    except aiohttp.ClientError as exc:
        raise SearchFailure(
            "unavailable", f"{backend} is unreachable ({type(exc).__name__})"
        ) from None
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError:
        raise SearchFailure(
            "unavailable", f"{backend} answered with a body that is not JSON"
        ) from None


def plain_text(value: Any) -> str:
    """Snippet text without the highlighting tags and entities some engines put in."""
    if not isinstance(value, str):
        return ""
    return html.unescape(_TAG_RE.sub("", value)).strip()


def page_age(value: Any) -> str | None:
    """An ISO date as Anthropic shows page ages ("April 30, 2025"); other text as given."""
    if not isinstance(value, str) or not value.strip():
        return None
    text = value.strip()
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return text
    return f"{moment:%B} {moment.day}, {moment.year}"


def results_list(data: Any, *path: str) -> list[dict[str, Any]]:
    """The list of result objects at `path` in a backend's answer (missing: none)."""
    for key in path:
        data = data.get(key) if isinstance(data, dict) else None
    if data is None:
        return []
    if not isinstance(data, list):
        raise SearchFailure("unavailable", "the search backend answered in an unexpected shape")
    return [item for item in data if isinstance(item, dict)]


def result(url: Any, title: Any, excerpt: Any, age: Any) -> SearchResult | None:
    if not isinstance(url, str) or not url.startswith(("http://", "https://")):
        return None
    return SearchResult(
        url=url,
        title=plain_text(title) or url,
        excerpt=plain_text(excerpt),
        page_age=page_age(age),
    )
