"""The web_search server tool, run by the proxy: call model → search → feed result → call model.

`WebSearch` (one per app) owns the configured backend and its HTTP session and runs one
search per call of the `web_search` function. `SearchTurn` (one per request) is the loop:
it gets "one model call" from the exchange as a callable taking an Anthropic request body,
so it is the same for every upstream, dialect or fallback target. The pure rules — blocks,
stitching the calls into one message, the history the next call sees — live in
`translate/web_search.py` and `translate/search_turn.py`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable
from typing import Any

import aiohttp

from claude_code_proxy.config import WebSearchSettings
from claude_code_proxy.metrics import Metrics
from claude_code_proxy.server_tools.backends import (
    SearchBackend,
    SearchFailure,
    SearchRequest,
    make_backend,
)
from claude_code_proxy.translate.chat.response import message_to_events
from claude_code_proxy.translate.errors import ProxyError
from claude_code_proxy.translate.search_turn import Event, TurnStitcher, continuation
from claude_code_proxy.translate.web_search import (
    WebSearchTool,
    checked_query,
    error_block,
    filter_results,
    result_block,
)

logger = logging.getLogger(__name__)

# Model calls in one turn when the tool sets no max_uses: a model that never stops
# searching must not keep the request open forever.
DEFAULT_MAX_USES = 10

# One model call: given the request body, the events of its reply (streaming) or the reply
# itself. Raises ProxyError when the upstream refused before answering.
Events = AsyncGenerator[list[Event], None]
StreamCall = Callable[[dict[str, Any]], Awaitable[Events]]
MessageCall = Callable[[dict[str, Any]], Awaitable[dict[str, Any]]]


class WebSearch:
    """Runs searches with the configured backend; counts them in `ccp_web_searches_total`."""

    def __init__(self, settings: WebSearchSettings, metrics: Metrics | None = None) -> None:
        self.settings = settings
        self.backend: SearchBackend | None = make_backend(settings)
        self.metrics = metrics
        self._session: aiohttp.ClientSession | None = None
        self._warned = False

    @property
    def backend_name(self) -> str:
        return self.backend.name if self.backend is not None else "none"

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    def _client(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(limit=0, ttl_dns_cache=300),
                skip_auto_headers=("User-Agent",),
            )
        return self._session

    async def run(self, tool: WebSearchTool, call_id: str, tool_input: Any) -> dict[str, Any]:
        """The `web_search_tool_result` block answering one call: results or an error code."""
        query, code = checked_query(tool_input)
        if code is not None:
            return self._failed(call_id, code)
        if self.backend is None:
            if not self._warned:
                self._warned = True
                logger.warning(
                    "a client used web search, but no search backend is configured: set "
                    "WEB_SEARCH_BACKEND (searxng, brave or tavily); until then every search "
                    "answers `unavailable`"
                )
            return self._failed(call_id, "unavailable")
        request = SearchRequest(
            query=query,
            max_results=self.settings.max_results,
            allowed_domains=tool.allowed_domains,
            blocked_domains=tool.blocked_domains,
            location=tool.user_location,
        )
        try:
            found = await self.backend.search(self._client(), request, self.settings.timeout)
        except SearchFailure as failure:
            logger.warning("web search failed: %s", failure.detail)
            return self._failed(call_id, failure.code)
        results = filter_results(found, tool, self.settings.max_results)
        self._count("ok" if results else "no_results")
        return result_block(call_id, results)

    def max_uses_exceeded(self, call_id: str) -> dict[str, Any]:
        return self._failed(call_id, "max_uses_exceeded")

    def _failed(self, call_id: str, code: str) -> dict[str, Any]:
        self._count(code)
        return error_block(call_id, code)

    def _count(self, outcome: str) -> None:
        if self.metrics is not None:
            self.metrics.web_searches.labels(self.backend_name, outcome).inc()


class SearchTurn:
    """One request's turn: model calls joined by the searches they asked for."""

    def __init__(self, search: WebSearch, tool: WebSearchTool, body: dict[str, Any]) -> None:
        self.search = search
        self.tool = tool
        self.body = body
        self.stitcher = TurnStitcher()
        self.max_uses = tool.max_uses or DEFAULT_MAX_USES
        self._used = 0
        self._exhausted = False  # a call was refused for max_uses: the model must answer now

    async def stream(self, first: Events, call: StreamCall) -> AsyncIterator[list[Event]]:
        """The client's events for the whole turn; a failed later call ends it with `error`."""
        async for events in self._turn(first, call, raise_errors=False):
            yield events

    async def complete(self, first: dict[str, Any], call: MessageCall) -> dict[str, Any]:
        """The whole turn as one message; a failed later call raises its ProxyError."""

        async def as_events(message: dict[str, Any]) -> Events:
            yield message_to_events(message)

        async def call_events(body: dict[str, Any]) -> Events:
            return as_events(await call(body))

        async for _ in self._turn(as_events(first), call_events, raise_errors=True):
            pass
        if self.stitcher.error_type is not None:
            raise ProxyError(502, "api_error", "the upstream failed during a web search turn")
        return self.stitcher.final_message(str(self.body.get("model", "")))

    async def _turn(
        self, source: Events, call: StreamCall, *, raise_errors: bool
    ) -> AsyncIterator[list[Event]]:
        stitcher = self.stitcher
        calls = 1
        while True:
            stitcher.begin_call()
            async with contextlib.aclosing(source):
                async for events in source:
                    out = stitcher.feed(events)
                    if out:
                        yield out
                    if stitcher.ended:
                        return
            if not stitcher.call_ended:
                yield stitcher.fail("api_error", "the model call ended without finishing")
                return
            if not stitcher.searches:
                break
            for block in await self._answer(stitcher.searches):
                yield stitcher.add_result(block, searched=_searched(block))
            if stitcher.client_tool_called or calls >= self.max_uses + 2:
                # The client runs its tools now; or the model would not stop searching even
                # after the call that followed max_uses_exceeded.
                break
            body = continuation(
                self.body, stitcher.content, self.tool, may_search=not self._exhausted
            )
            try:
                source = await call(body)
            except ProxyError as error:
                if raise_errors:
                    raise
                yield stitcher.fail(error.error_type, error.message)
                return
            calls += 1
        yield stitcher.finish()

    async def _answer(self, searches: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """Results for one model call's searches, in call order; concurrent; cancellable."""
        jobs: list[Awaitable[dict[str, Any]]] = []
        for block in searches:
            if self._used >= self.max_uses:
                self._exhausted = True
                jobs.append(_ready(self.search.max_uses_exceeded(block["id"])))
            else:
                self._used += 1
                jobs.append(self.search.run(self.tool, block["id"], block.get("input")))
        return list(await asyncio.gather(*jobs))


async def _ready(value: dict[str, Any]) -> dict[str, Any]:
    return value


def _searched(block: dict[str, Any]) -> bool:
    """Whether a result block comes from a search that ran (counted in usage)."""
    return isinstance(block.get("content"), list)
