"""The load driver: closed-loop concurrent requests with per-request timings."""

from __future__ import annotations

import asyncio
import statistics
import time
from dataclasses import dataclass, field

import aiohttp


@dataclass
class Target:
    """Where and what to send, and how to recognise the first token and a complete answer."""

    url: str
    headers: dict[str, str]
    body: bytes
    token_marker: bytes  # first occurrence in the body = first token arrived
    end_marker: bytes  # must be in the response tail for the request to count as complete


@dataclass
class Sample:
    ttfb: float  # first response-body byte
    ttft: float  # first content token
    total: float


@dataclass
class Result:
    samples: list[Sample] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    wall: float = 0.0

    @property
    def rps(self) -> float:
        return len(self.samples) / self.wall if self.wall else 0.0

    def pct(self, attr: str, q: float) -> float:
        """The q-th percentile (0–100) of one timing, in seconds."""
        values: list[float] = sorted(getattr(s, attr) for s in self.samples)
        if not values:
            return float("nan")
        if len(values) == 1:
            return values[0]
        return statistics.quantiles(values, n=100, method="inclusive")[min(98, max(0, int(q) - 1))]


async def one_request(session: aiohttp.ClientSession, target: Target) -> Sample:
    """Send one request and read the whole response, timing the milestones."""
    started = time.perf_counter()
    ttfb = ttft = 0.0
    tail = b""
    marker = target.token_marker
    async with session.post(target.url, data=target.body, headers=target.headers) as response:
        if response.status != 200:
            text = (await response.read())[:200].decode("utf-8", "replace")
            raise RuntimeError(f"HTTP {response.status}: {text}")
        content = response.content
        while True:
            data = await content.readany()
            if not data:
                break
            now = time.perf_counter()
            if not ttfb:
                ttfb = now - started
            if not ttft:
                window = tail + data
                if marker in window:
                    ttft = now - started
            tail = (tail + data)[-256:] if len(data) < 256 else data[-256:]
    total = time.perf_counter() - started
    if target.end_marker not in tail:
        raise RuntimeError(f"incomplete response, ends with {tail[-80:]!r}")
    return Sample(ttfb=ttfb, ttft=ttft or total, total=total)


async def run_load(
    session: aiohttp.ClientSession, target: Target, *, concurrency: int, requests: int
) -> Result:
    """`requests` requests with `concurrency` in flight at all times (closed loop)."""
    result = Result()
    remaining = requests

    async def worker() -> None:
        nonlocal remaining
        while remaining > 0:
            remaining -= 1
            try:
                result.samples.append(await one_request(session, target))
            except (aiohttp.ClientError, asyncio.TimeoutError, RuntimeError) as exc:
                result.errors.append(f"{type(exc).__name__}: {exc}")

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(min(concurrency, requests))))
    result.wall = time.perf_counter() - started
    return result


def new_session() -> aiohttp.ClientSession:
    """A client with an unlimited keep-alive pool (connections are reused across requests)."""
    connector = aiohttp.TCPConnector(limit=0, force_close=False)
    timeout = aiohttp.ClientTimeout(total=300)
    return aiohttp.ClientSession(connector=connector, timeout=timeout, auto_decompress=False)
