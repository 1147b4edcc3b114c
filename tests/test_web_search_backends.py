"""The SearXNG, Brave and Tavily backends against mock servers speaking their documented API."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Iterator

import aiohttp
import pytest

from claude_code_proxy.config import ConfigError, Settings, WebSearchSettings
from claude_code_proxy.server_tools.backends import SearchFailure, SearchRequest, make_backend
from claude_code_proxy.translate.web_search import UserLocation
from mock_search import BRAVE_KEY, BRAVE_PATH, SEARXNG_PATH, TAVILY_KEY, TAVILY_PATH, MockSearch
from mock_upstream import JSONResponse, RawResponse, disconnect, error_response, json_response


@pytest.fixture
def search() -> Iterator[MockSearch]:
    with MockSearch() as mock:
        yield mock


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as client:
        yield client


def backend(name: str, mock: MockSearch, key: str | None = None):  # type: ignore[no-untyped-def]
    settings = WebSearchSettings.create(backend=name, url=mock.origin, api_key=key)
    made = make_backend(settings)
    assert made is not None
    return made


REQUEST = SearchRequest(query="python 3.13", max_results=5)


async def test_searxng_sends_the_json_query_and_reads_results(
    search: MockSearch, session: aiohttp.ClientSession
) -> None:
    results = await backend("searxng", search).search(session, REQUEST, 5)
    (sent,) = search.searches
    assert (sent.method, sent.path) == ("GET", SEARXNG_PATH)
    assert sent.query == {"q": "python 3.13", "format": "json"}
    assert [r.url for r in results][:2] == [
        "https://docs.python.org/3/whatsnew/3.13.html",
        "https://en.wikipedia.org/wiki/Python_(programming_language)",
    ]
    assert results[0].page_age == "October 7, 2024"  # publishedDate, as Anthropic shows ages
    assert results[2].excerpt == "A long look at the free-threaded build & the JIT."


async def test_searxng_without_the_json_format_says_how_to_enable_it(
    search: MockSearch, session: aiohttp.ClientSession
) -> None:
    search.enqueue(RawResponse(403, b"Forbidden"), path=SEARXNG_PATH)
    with pytest.raises(SearchFailure) as failure:
        await backend("searxng", search).search(session, REQUEST, 5)
    assert failure.value.code == "unavailable"
    assert "settings.yml" in failure.value.detail


async def test_brave_sends_token_count_and_location(
    search: MockSearch, session: aiohttp.ClientSession
) -> None:
    location = UserLocation(city="Oslo", region="03", country="no", timezone="Europe/Oslo")
    request = SearchRequest(query="weather", max_results=3, location=location)
    results = await backend("brave", search, BRAVE_KEY).search(session, request, 5)
    (sent,) = search.searches
    assert sent.path == BRAVE_PATH
    assert sent.headers["x-subscription-token"] == BRAVE_KEY
    assert sent.query == {"q": "weather", "count": "3", "country": "NO"}
    assert sent.headers["x-loc-city"] == "Oslo"
    assert sent.headers["x-loc-country"] == "NO"
    assert sent.headers["x-loc-state"] == "03"
    assert sent.headers["x-loc-timezone"] == "Europe/Oslo"
    assert len(results) == 3
    assert results[0].page_age == "October 7, 2024"  # `age`
    assert results[2].page_age == "2 days ago"
    assert results[2].excerpt == "A long look at the free-threaded build & the JIT."


async def test_brave_asks_for_more_when_domain_limits_will_drop_some(
    search: MockSearch, session: aiohttp.ClientSession
) -> None:
    request = SearchRequest(query="x", max_results=5, blocked_domains=("example.org",))
    await backend("brave", search, BRAVE_KEY).search(session, request, 5)
    assert search.searches[0].query["count"] == "10"


async def test_brave_with_a_wrong_key_is_unavailable(
    search: MockSearch, session: aiohttp.ClientSession
) -> None:
    with pytest.raises(SearchFailure) as failure:
        await backend("brave", search, "wrong").search(session, REQUEST, 5)
    assert failure.value.code == "unavailable"
    assert "422" in failure.value.detail


async def test_tavily_posts_bearer_key_and_domain_filters(
    search: MockSearch, session: aiohttp.ClientSession
) -> None:
    request = SearchRequest(query="python", max_results=4, allowed_domains=("python.org",))
    results = await backend("tavily", search, TAVILY_KEY).search(session, request, 5)
    sent = search.requests[-1]
    assert (sent.method, sent.path) == ("POST", TAVILY_PATH)
    assert sent.headers["authorization"] == f"Bearer {TAVILY_KEY}"
    assert sent.json == {
        "query": "python",
        "max_results": 4,
        "search_depth": "basic",
        "topic": "general",
        "include_domains": ["python.org"],
    }
    assert [r.url for r in results] == ["https://docs.python.org/3/whatsnew/3.13.html"]
    assert results[0].page_age == "October 7, 2024"  # published_date


async def test_tavily_blocked_domains_go_as_exclude_domains(
    search: MockSearch, session: aiohttp.ClientSession
) -> None:
    request = SearchRequest(query="python", max_results=5, blocked_domains=("wikipedia.org",))
    results = await backend("tavily", search, TAVILY_KEY).search(session, request, 5)
    assert search.requests[-1].json["exclude_domains"] == ["wikipedia.org"]
    assert all("wikipedia" not in r.url for r in results)


@pytest.mark.parametrize("status", [429, 432, 433])
async def test_quota_and_rate_limits_are_too_many_requests(
    search: MockSearch, session: aiohttp.ClientSession, status: int
) -> None:
    search.enqueue(error_response(status, "limit"), path=TAVILY_PATH)
    with pytest.raises(SearchFailure) as failure:
        await backend("tavily", search, TAVILY_KEY).search(session, REQUEST, 5)
    assert failure.value.code == "too_many_requests"


@pytest.mark.parametrize(
    "response",
    [
        json_response({"results": []}, hang_before_headers=30),
        disconnect(),
        RawResponse(200, b"<html>not json</html>", content_type="text/html"),
        JSONResponse({"results": "not a list"}),
        error_response(500, "down"),
    ],
    ids=["timeout", "dropped", "not-json", "wrong-shape", "500"],
)
async def test_every_other_failure_is_unavailable(
    search: MockSearch, session: aiohttp.ClientSession, response: object
) -> None:
    # aiohttp retries an idempotent GET once on a dropped connection: script it twice.
    search.enqueue(response, response, path=SEARXNG_PATH)  # type: ignore[arg-type]
    with pytest.raises(SearchFailure) as failure:
        await backend("searxng", search).search(session, REQUEST, 0.5)
    assert failure.value.code == "unavailable"


async def test_an_unreachable_backend_is_unavailable(session: aiohttp.ClientSession) -> None:
    settings = WebSearchSettings.create(backend="searxng", url="http://127.0.0.1:9")
    made = make_backend(settings)
    assert made is not None
    with pytest.raises(SearchFailure, match="unreachable") as failure:
        await made.search(session, REQUEST, 2)
    assert failure.value.code == "unavailable"


async def test_failures_never_name_the_key(
    search: MockSearch, session: aiohttp.ClientSession, caplog: pytest.LogCaptureFixture
) -> None:
    search.enqueue(error_response(500, f"bad {TAVILY_KEY}"), path=TAVILY_PATH)
    with caplog.at_level(logging.DEBUG), pytest.raises(SearchFailure) as failure:
        await backend("tavily", search, TAVILY_KEY).search(session, REQUEST, 5)
    assert TAVILY_KEY not in failure.value.detail
    assert TAVILY_KEY not in caplog.text


# ----------------------------------------------------------------------------- settings


def test_environment_settings() -> None:
    env = {
        "WEB_SEARCH_BACKEND": "Brave",
        "WEB_SEARCH_API_KEY": "k",
        "WEB_SEARCH_MAX_RESULTS": "8",
        "WEB_SEARCH_TIMEOUT": "4.5",
    }
    settings = Settings.from_env(env).web_search
    assert settings.backend == "brave"
    assert settings.url == "https://api.search.brave.com"
    assert (settings.max_results, settings.timeout) == (8, 4.5)
    assert "k" not in repr(settings).replace("backend", "").replace("brave", "")
    assert Settings.from_env({}).web_search.backend is None
    assert Settings.from_env({}).web_search.max_results == 5


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"WEB_SEARCH_BACKEND": "google"}, "must be one of searxng, brave, tavily"),
        ({"WEB_SEARCH_BACKEND": "searxng"}, "needs WEB_SEARCH_URL"),
        ({"WEB_SEARCH_BACKEND": "tavily"}, "needs WEB_SEARCH_API_KEY"),
        ({"WEB_SEARCH_BACKEND": "searxng", "WEB_SEARCH_URL": "localhost:8888"}, "http(s) URL"),
        ({"WEB_SEARCH_MAX_RESULTS": "50"}, "between 1 and 20"),
        ({"WEB_SEARCH_TIMEOUT": "0"}, "greater than 0"),
    ],
)
def test_bad_settings_say_how_to_fix_them(env: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(")", r"\)")):
        Settings.from_env(env)
