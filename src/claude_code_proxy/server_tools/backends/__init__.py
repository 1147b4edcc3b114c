"""Search backends for the web_search server tool: one module per service, one shape out.

Each backend turns a `SearchRequest` into the service's documented request and its answer
into `SearchResult`s; every failure is a `SearchFailure` carrying the Anthropic error code
the model and the client will see. Keys travel in headers only, and no message names them.
"""

from __future__ import annotations

from claude_code_proxy.config import WebSearchSettings
from claude_code_proxy.server_tools.backends.base import (
    SearchBackend,
    SearchFailure,
    SearchRequest,
)
from claude_code_proxy.server_tools.backends.brave import BraveBackend
from claude_code_proxy.server_tools.backends.searxng import SearxngBackend
from claude_code_proxy.server_tools.backends.tavily import TavilyBackend

__all__ = ["SearchBackend", "SearchFailure", "SearchRequest", "make_backend"]


def make_backend(settings: WebSearchSettings) -> SearchBackend | None:
    """The configured backend; None when WEB_SEARCH_BACKEND is not set."""
    if settings.backend is None or settings.url is None:
        return None
    if settings.backend == "brave":
        return BraveBackend(settings.url, settings.api_key or "")
    if settings.backend == "tavily":
        return TavilyBackend(settings.url, settings.api_key or "")
    return SearxngBackend(settings.url)
