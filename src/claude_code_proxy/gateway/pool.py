"""Pooled upstream HTTP clients: one keep-alive session per distinct upstream key.

In dynamic mode many users share the proxy, each with their own key. Each key gets its
own aiohttp session (its own connection pool) in a bounded LRU; idle sessions are closed
by a background task, and an evicted session is closed only once its in-flight requests
have finished, so eviction never cuts a running stream.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import time
from collections import OrderedDict
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field

import aiohttp

from claude_code_proxy.metrics import Metrics
from claude_code_proxy.redact import key_hash

logger = logging.getLogger(__name__)


@functools.lru_cache(maxsize=1024)
def key_id(key: str) -> str:
    """A short, non-reversible identifier for a key (logs, metrics, pool): keyed, so it
    cannot be used to check guesses of the key (redact.key_hash)."""
    return key_hash(key)


@dataclass
class _Entry:
    session: aiohttp.ClientSession
    last_used: float = field(default_factory=time.monotonic)
    in_flight: int = 0
    evicted: bool = False


class ClientPool:
    def __init__(
        self,
        make_session: Callable[[], aiohttp.ClientSession],
        *,
        max_clients: int = 50,
        idle_timeout: float = 3600.0,
        metrics: Metrics | None = None,
    ) -> None:
        self._make_session = make_session
        self.max_clients = max(1, max_clients)
        self.idle_timeout = idle_timeout
        self.metrics = metrics
        self._entries: OrderedDict[str, _Entry] = OrderedDict()
        self._closing: set[asyncio.Task[None]] = set()
        self._cleaner: asyncio.Task[None] | None = None

    def __len__(self) -> int:
        return len(self._entries)

    def __contains__(self, key: str) -> bool:
        return key_id(key) in self._entries

    async def start(self) -> None:
        if self._cleaner is None:
            self._cleaner = asyncio.ensure_future(self._clean_idle_forever())

    async def close(self) -> None:
        if self._cleaner is not None:
            self._cleaner.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._cleaner
            self._cleaner = None
        entries, self._entries = list(self._entries.values()), OrderedDict()
        for entry in entries:
            await entry.session.close()
        if self._closing:
            await asyncio.gather(*self._closing, return_exceptions=True)
        self._update_size()

    @contextlib.asynccontextmanager
    async def lease(self, key: str) -> AsyncIterator[aiohttp.ClientSession]:
        """The session for this key, held in use for the whole exchange."""
        entry = self._acquire(key)
        try:
            yield entry.session
        finally:
            entry.in_flight -= 1
            entry.last_used = time.monotonic()
            if entry.evicted and entry.in_flight == 0:
                self._close_later(entry)

    def _acquire(self, key: str) -> _Entry:
        ident = key_id(key)
        entry = self._entries.get(ident)
        if entry is not None:
            self._entries.move_to_end(ident)
            if self.metrics:
                self.metrics.pool_hits.inc()
        else:
            if self.metrics:
                self.metrics.pool_misses.inc()
            entry = _Entry(self._make_session())
            self._entries[ident] = entry
            while len(self._entries) > self.max_clients:
                _, oldest = self._entries.popitem(last=False)
                self._evict(oldest)
            self._update_size()
        entry.in_flight += 1
        entry.last_used = time.monotonic()
        return entry

    def _evict(self, entry: _Entry) -> None:
        entry.evicted = True
        if self.metrics:
            self.metrics.pool_evictions.inc()
        if entry.in_flight == 0:
            self._close_later(entry)

    def _close_later(self, entry: _Entry) -> None:
        task = asyncio.ensure_future(entry.session.close())
        self._closing.add(task)
        task.add_done_callback(self._closing.discard)

    def close_idle(self) -> int:
        """Close sessions unused for longer than the idle timeout; returns how many."""
        now = time.monotonic()
        idle = [
            ident
            for ident, entry in self._entries.items()
            if entry.in_flight == 0 and now - entry.last_used >= self.idle_timeout
        ]
        for ident in idle:
            self._close_later(self._entries.pop(ident))
        if idle:
            self._update_size()
            logger.info("closed %d idle upstream client(s)", len(idle))
        return len(idle)

    async def _clean_idle_forever(self) -> None:
        interval = min(60.0, max(0.05, self.idle_timeout / 4))
        while True:
            await asyncio.sleep(interval)
            self.close_idle()

    def _update_size(self) -> None:
        if self.metrics:
            self.metrics.pool_size.set(len(self._entries))
