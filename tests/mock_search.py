"""Fake SearXNG, Brave Search and Tavily servers on one real 127.0.0.1 socket.

Each endpoint answers in the shape its service documents, built from ``pages``:

* SearXNG ``GET /search?q=…&format=json`` → ``{"query", "number_of_results", "results":
  [{"url", "title", "content", "engine", "publishedDate", …}], "answers", "suggestions", …}``;
  any other ``format`` gets the 403 a stock instance sends when ``json`` is not enabled.
* Brave ``GET /res/v1/web/search`` (``X-Subscription-Token``) → ``{"type": "search", "web":
  {"type": "search", "results": [{"title", "url", "description", "age", "page_age", …}]}}``.
* Tavily ``POST /search`` (``Authorization: Bearer``) → ``{"query", "answer", "images",
  "results": [{"title", "url", "content", "score", "published_date"?}], "response_time"}``.

``enqueue(response, path=…)`` scripts failures (statuses, hangs, garbage) exactly as for
:class:`mock_upstream.MockUpstream`, which this server is built on.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from mock_upstream import JSONResponse, MockUpstream, RawResponse, RecordedRequest, Response

SEARXNG_PATH = "/search"
BRAVE_PATH = "/res/v1/web/search"
TAVILY_PATH = "/search"
BRAVE_KEY = "brave-key-secret-1234"
TAVILY_KEY = "tvly-secret-5678"


@dataclass(frozen=True)
class Page:
    url: str
    title: str
    content: str
    published: str | None = None  # ISO date
    age: str | None = None  # Brave's human-readable age


DEFAULT_PAGES = (
    Page(
        "https://docs.python.org/3/whatsnew/3.13.html",
        "What's New In Python 3.13",
        "Python 3.13 ships a new interactive interpreter and an experimental free-threaded build.",
        "2024-10-07T00:00:00",
        "October 7, 2024",
    ),
    Page(
        "https://en.wikipedia.org/wiki/Python_(programming_language)",
        "Python (programming language) - Wikipedia",
        "Python is a high-level, general-purpose programming language.",
    ),
    Page(
        "https://blog.example.org/python-313-review",
        "Python 3.13 review",
        "A long look at the <strong>free-threaded</strong> build &amp; the JIT.",
        None,
        "2 days ago",
    ),
)


class MockSearch(MockUpstream):
    """The three search services; ``searches`` lists what reached them."""

    def __init__(self, pages: tuple[Page, ...] = DEFAULT_PAGES) -> None:
        super().__init__()
        self.pages: list[Page] = list(pages)

    @property
    def searches(self) -> list[RecordedRequest]:
        with self._lock:
            return [r for r in self.requests if r.path in (SEARXNG_PATH, BRAVE_PATH)]

    def _pick(self, rec: RecordedRequest) -> Response:
        with self._lock:
            queue = self._queues.get(rec.path)
            item = queue.popleft() if queue else None
        if item is not None:
            return item(rec.json) if callable(item) else item
        if rec.path == BRAVE_PATH and rec.method == "GET":
            return self._brave(rec)
        if rec.path == SEARXNG_PATH and rec.method == "GET":
            return self._searxng(rec)
        if rec.path == TAVILY_PATH and rec.method == "POST":
            return self._tavily(rec)
        return JSONResponse({"error": f"no route for {rec.method} {rec.path}"}, status=404)

    def _searxng(self, rec: RecordedRequest) -> Response:
        if rec.query.get("format") != "json":
            return RawResponse(403, b"<html><body>403 Forbidden</body></html>")
        results = [
            {
                "url": page.url,
                "title": page.title,
                "content": page.content,
                "engine": "duckduckgo",
                "parsed_url": ["https", page.url.split("/")[2], "/", "", "", ""],
                "template": "default.html",
                "engines": ["duckduckgo", "brave"],
                "positions": [i + 1],
                "publishedDate": page.published,
                "score": 1.0 / (i + 1),
                "category": "general",
            }
            for i, page in enumerate(self.pages)
        ]
        return JSONResponse(
            {
                "query": rec.query.get("q", ""),
                "number_of_results": len(results),
                "results": results,
                "answers": [],
                "corrections": [],
                "infoboxes": [],
                "suggestions": [],
                "unresponsive_engines": [],
            }
        )

    def _brave(self, rec: RecordedRequest) -> Response:
        if rec.headers.get("x-subscription-token") != BRAVE_KEY:
            return JSONResponse(
                {
                    "type": "ErrorResponse",
                    "error": {
                        "id": "e1",
                        "status": 422,
                        "code": "SUBSCRIPTION_TOKEN_INVALID",
                        "detail": "The provided subscription token is invalid.",
                    },
                },
                status=422,
            )
        count = int(rec.query.get("count", "20"))
        results = [
            {
                "type": "search_result",
                "title": page.title,
                "url": page.url,
                "description": page.content,
                "is_source_local": False,
                "is_source_both": False,
                "language": "en",
                "family_friendly": True,
                "meta_url": {"scheme": "https", "netloc": page.url.split("/")[2]},
                **({"age": page.age} if page.age else {}),
                **({"page_age": page.published} if page.published else {}),
            }
            for page in self.pages[:count]
        ]
        query = {"original": rec.query.get("q", ""), "more_results_available": False}
        return JSONResponse(
            {
                "type": "search",
                "query": query,
                "mixed": {"type": "mixed", "main": [], "top": [], "side": []},
                "web": {"type": "search", "results": results, "family_friendly": True},
            }
        )

    def _tavily(self, rec: RecordedRequest) -> Response:
        if rec.headers.get("authorization") != f"Bearer {TAVILY_KEY}":
            return JSONResponse(
                {"detail": {"error": "Unauthorized: missing or invalid API key."}}, status=401
            )
        body: dict[str, Any] = rec.json if isinstance(rec.json, dict) else {}
        include = body.get("include_domains") or []
        exclude = body.get("exclude_domains") or []

        def host(page: Page) -> str:
            return page.url.split("/")[2]

        pages = [
            p
            for p in self.pages
            if (not include or any(host(p).endswith(d) for d in include))
            and not any(host(p).endswith(d) for d in exclude)
        ]
        results = [
            {
                "title": page.title,
                "url": page.url,
                "content": page.content,
                "score": 0.9 - i / 10,
                "raw_content": None,
                **({"published_date": page.published} if page.published else {}),
            }
            for i, page in enumerate(pages[: int(body.get("max_results", 5))])
        ]
        return JSONResponse(
            {
                "query": body.get("query", ""),
                "answer": None,
                "images": [],
                "results": results,
                "response_time": "0.42",
            }
        )
