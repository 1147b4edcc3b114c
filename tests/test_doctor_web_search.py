"""The doctor's web search row: one real query against the mock search services."""

from __future__ import annotations

import asyncio
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

from claude_code_proxy.config import Settings
from claude_code_proxy.config_file import load_for
from claude_code_proxy.doctor.context import Context
from claude_code_proxy.doctor.report import Check, Report
from claude_code_proxy.doctor.web_search import WebSearchCheck
from mock_search import BRAVE_KEY, BRAVE_PATH, SEARXNG_PATH, TAVILY_KEY, TAVILY_PATH, MockSearch
from mock_upstream import MockUpstream, error_response, json_response
from test_doctor import base_env, clean_env, doctor, healthy, row  # noqa: F401  (clean_env: autouse)


@pytest.fixture
def search() -> Iterator[MockSearch]:
    with MockSearch() as mock:
        yield mock


def check(env: dict[str, str], *, chat: bool = True, settings: Settings | None = None) -> Check:
    settings = settings or Settings.from_env(env)
    report = Report()
    asyncio.run(WebSearchCheck().run(Context(settings, env, report, chat=chat, timeout=10)))
    [result] = report.results
    assert result.name == "web search"
    return result


def searxng(mock: MockSearch) -> dict[str, str]:
    return {"WEB_SEARCH_BACKEND": "searxng", "WEB_SEARCH_URL": mock.origin}


def test_a_working_backend_passes_with_a_real_query(search: MockSearch) -> None:
    result = check(searxng(search))
    assert result.status == "PASS", result
    assert result.detail.startswith(f"searxng at {search.origin} answered 'Claude Code': 3 ")
    assert "https://docs.python.org/3/whatsnew/3.13.html" in result.detail
    [sent] = search.searches
    assert sent.query["q"] == "Claude Code" and sent.query["format"] == "json"
    env = {"WEB_SEARCH_BACKEND": "brave", "WEB_SEARCH_URL": search.origin}
    result = check({**env, "WEB_SEARCH_API_KEY": BRAVE_KEY})
    assert result.status == "PASS", result
    assert search.requests_to(BRAVE_PATH)[0].headers["x-subscription-token"] == BRAVE_KEY


def test_unavailable_backends_fail_with_the_fix(search: MockSearch) -> None:
    env = {"WEB_SEARCH_BACKEND": "brave", "WEB_SEARCH_URL": search.origin}
    result = check({**env, "WEB_SEARCH_API_KEY": "wrong-key"})
    assert result.status == "FAIL"
    assert result.detail == "unavailable: brave answered HTTP 422"
    assert "WEB_SEARCH_API_KEY" in result.fix and "wrong-key" not in result.fix + result.detail
    search.enqueue(error_response(500, "engine crashed"), path=SEARXNG_PATH)
    result = check(searxng(search))
    assert result.status == "FAIL" and "HTTP 500" in result.detail
    assert "WEB_SEARCH_URL" in result.fix and "format=json" in result.fix
    dead = {"WEB_SEARCH_BACKEND": "searxng", "WEB_SEARCH_URL": "http://127.0.0.1:9"}
    result = check(dead)
    assert result.status == "FAIL" and "unreachable" in result.detail


@pytest.mark.parametrize("status", [429, 432])
def test_a_spent_quota_is_too_many_requests(search: MockSearch, status: int) -> None:
    search.enqueue(json_response({"detail": "limit"}, status=status), path=TAVILY_PATH)
    env = {"WEB_SEARCH_BACKEND": "tavily", "WEB_SEARCH_URL": search.origin}
    result = check({**env, "WEB_SEARCH_API_KEY": TAVILY_KEY})
    assert result.status == "WARN"
    assert result.detail == f"too_many_requests: tavily answered HTTP {status}"
    assert "quota or rate limit" in result.fix


def test_no_results_is_a_warning(search: MockSearch) -> None:
    search.pages = []
    result = check(searxng(search))
    assert result.status == "WARN" and "no results" in result.detail and "engines" in result.fix


def test_without_a_backend_or_without_chat(search: MockSearch) -> None:
    result = check({})
    assert result.status == "INFO" and "WEB_SEARCH_BACKEND" in result.fix
    result = check(searxng(search), chat=False)
    assert result.status == "SKIP" and search.requests == []


def test_with_a_file_the_fix_names_the_table(search: MockSearch, tmp_path: Path) -> None:
    path = tmp_path / "claude-code-proxy.toml"
    text = f"""
    [providers.a]
    base_url = "http://127.0.0.1:9/v1"
    [routes]
    default = "a/m"
    [web_search]
    backend = "brave"
    url = "{search.origin}"
    api_key = "not-the-key"
    """
    path.write_text(textwrap.dedent(text))
    settings = load_for(Settings(), {}, str(path))
    result = check({}, settings=settings)
    assert result.status == "FAIL"
    assert f"api_key in [web_search] in {path}" in result.fix


def test_doctor_shows_the_row(mock_upstream: MockUpstream, search: MockSearch) -> None:
    mock_upstream.responder = healthy()
    result = doctor(base_env(mock_upstream, **searxng(search)))
    assert result.exit_code == 0, result.output
    assert "answered 'Claude Code'" in row(result.output, "PASS", "web search")
