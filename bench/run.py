"""Benchmark: the proxy against a direct connection to the same mock upstream.

Three processes: the mock OpenAI upstream (`bench/mock.py`), the proxy
(`python -m claude_code_proxy`), and this load driver. Every workload runs twice in the
same run, (a) directly against the mock with the OpenAI request the proxy would send and
(b) through the proxy with the Anthropic request, and the table compares them.
`--upstream-api responses` runs the same streams through the Responses API
(UPSTREAM_API=responses, `/v1/responses`); `both` runs the two and compares the proxy's CPU.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import orjson

from bench import procstat
from bench import profile as profiling
from bench.load import Result, Target, new_session, run_load
from bench.plot import plot_sweep

BENCH_DIR = Path(__file__).resolve().parent
FIXTURE = BENCH_DIR.parent / "tests" / "fixtures" / "claude_code_request.json"
SMALL_PROMPT = "Tell me everything about foxes."


@dataclass(frozen=True)
class Workload:
    key: str
    title: str
    chunks: int
    concurrency: int
    requests: int
    delay_ms: float = 0.0
    stream: bool = True
    first_ms: float = 0.0  # upstream time to first token
    body: str = "small"  # or "claude_code": the ~50 KB Claude Code request fixture


def workloads(quick: bool) -> list[Workload]:
    """The standard workloads; `quick` shrinks request counts, never concurrency."""
    q = 5 if quick else 1
    return [
        Workload("latency", "200-chunk streams, one at a time", 200, 1, 200 // q),
        Workload("short", "200-chunk streams, concurrency 50", 200, 50, 2000 // q),
        Workload(
            "ttft",
            "200-chunk streams, 200 ms upstream time to first token, c=10",
            200,
            10,
            200 // q,
            first_ms=200.0,
        ),
        Workload("long", "1000-chunk streams, concurrency 10", 1000, 10, 200 // q),
        Workload("slow", "500 slow streams (100 chunks, 20 ms apart)", 100, 500, 500, 20.0),
        Workload("claude_code", "Claude Code request (20-chunk streams), c=50", 20, 50, 1000 // q),
        Workload(
            "nonstream", "non-streaming (200 words), concurrency 50", 200, 50, 2000 // q, 0, False
        ),
    ]


# --------------------------------------------------------------------------- processes


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class Servers:
    """The mock upstream and the proxy as child processes."""

    def __init__(self, workers: int = 1, api: str = "chat") -> None:
        self.workers = workers
        self.api = api
        self.proxy_pids: list[int] = []
        self.workdir = Path(tempfile.mkdtemp(prefix="ccp-bench-"))
        self.mock = subprocess.Popen(
            [sys.executable, str(BENCH_DIR / "mock.py"), "--port", "0"],
            stdout=subprocess.PIPE,
            text=True,
        )
        assert self.mock.stdout is not None
        line = self.mock.stdout.readline().split()
        if len(line) != 2 or line[0] != "ready":
            raise SystemExit("the mock upstream did not start")
        self.mock_port = int(line[1])
        self.proxy_port = free_port()
        env = {
            **os.environ,
            "HOST": "127.0.0.1",
            "PORT": str(self.proxy_port),
            "OPENAI_BASE_URL": f"http://127.0.0.1:{self.mock_port}/v1",
            "OPENAI_API_KEY": "sk-bench",
            "LOG_LEVEL": "WARNING",
            "UPSTREAM_API": api,
        }
        env.pop("ANTHROPIC_API_KEY", None)
        self.proxy_log = self.workdir / "proxy.log"
        with self.proxy_log.open("wb") as log:
            # The work directory is empty, so no stray `.env` changes the proxy's settings.
            command = [sys.executable, "-m", "claude_code_proxy"]
            if workers > 1:
                command += ["--workers", str(workers)]
            self.proxy = subprocess.Popen(
                command,
                env=env,
                cwd=self.workdir,
                stdout=log,
                stderr=subprocess.STDOUT,
            )

    @property
    def mock_url(self) -> str:
        return f"http://127.0.0.1:{self.mock_port}"

    @property
    def proxy_url(self) -> str:
        return f"http://127.0.0.1:{self.proxy_port}"

    async def wait_ready(self, session: aiohttp.ClientSession) -> None:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.proxy.poll() is not None:
                break
            try:
                async with session.get(self.proxy_url + "/health") as response:
                    if response.status == 200:
                        await self._wait_workers()
                        return
            except aiohttp.ClientError:
                pass
            await asyncio.sleep(0.1)
        raise SystemExit("the proxy did not start:\n" + self.proxy_log.read_text())

    async def _wait_workers(self) -> None:
        """The proxy's processes: itself, or the supervisor and all its workers."""
        for _ in range(100):
            self.proxy_pids = procstat.tree(self.proxy.pid)
            if self.workers == 1 or len(self.proxy_pids) > self.workers:
                break
            await asyncio.sleep(0.1)
        await asyncio.sleep(0.5 if self.workers > 1 else 0)

    def stop(self) -> None:
        for process in (self.proxy, self.mock):
            if process.poll() is None:
                process.terminate()
        for process in (self.proxy, self.mock):
            try:
                process.wait(timeout=35)
            except subprocess.TimeoutExpired:
                process.kill()


# ---------------------------------------------------------------------------- requests


def anthropic_body(workload: Workload) -> dict[str, Any]:
    if workload.body == "claude_code":
        body: dict[str, Any] = orjson.loads(FIXTURE.read_bytes())
    else:
        body = {
            "model": "claude-sonnet-4-5",
            "max_tokens": 1024,
            "messages": [{"role": "user", "content": SMALL_PROMPT}],
        }
    body["stream"] = workload.stream
    return body


def targets(workload: Workload, servers: Servers) -> tuple[Target, Target]:
    """(direct, proxy): the same request, in OpenAI form to the mock, Anthropic to the proxy."""
    from claude_code_proxy.dialects import DIALECTS

    body = anthropic_body(workload)
    payload = DIALECTS[servers.api].translate_request(body, upstream_model="gpt-4o").payload
    json_headers = {"content-type": "application/json"}
    if servers.api == "responses":
        path, token, end = "/v1/responses", b"output_text.delta", b'"total_tokens"'
        whole = b'"text"'
    else:
        path, token, end = "/v1/chat/completions", b'"delta":{"content"', b"[DONE]"
        whole = b'"content"'
    direct = Target(
        url=servers.mock_url + path,
        headers={**json_headers, "authorization": "Bearer sk-bench"},
        body=orjson.dumps(payload),
        token_marker=token if workload.stream else whole,
        end_marker=end if workload.stream else b"}",
    )
    proxy = Target(
        url=servers.proxy_url + "/v1/messages",
        headers={**json_headers, "x-api-key": "bench", "anthropic-version": "2023-06-01"},
        body=orjson.dumps(body),
        token_marker=b'"text_delta"' if workload.stream else b'"text"',
        end_marker=b"message_stop" if workload.stream else b"}",
    )
    return direct, proxy


# ---------------------------------------------------------------------------- measuring


@dataclass
class Measured:
    workload: Workload
    mode: str
    result: Result
    proxy_cpu_ms: float  # per request
    mock_cpu_ms: float  # per request
    driver_cpu_ms: float  # per request
    proxy_peak_mb: float | None
    proxy_reads: float  # read-type syscalls per request
    proxy_writes: float  # write-type syscalls per request
    background: float  # share of the machine's CPU used by other processes during the run
    proxy_busy: float  # share of the wall time the proxy was on a CPU
    proxy_starved: float  # share of the wall time the proxy was runnable but had no CPU

    def row(self) -> dict[str, Any]:
        r = self.result
        return {
            "workload": self.workload.key,
            "mode": self.mode,
            "requests": len(r.samples),
            "errors": len(r.errors),
            "rps": r.rps,
            "wall_s": r.wall,
            "ttfb_p50_ms": r.pct("ttfb", 50) * 1000,
            "ttfb_p99_ms": r.pct("ttfb", 99) * 1000,
            "ttft_p50_ms": r.pct("ttft", 50) * 1000,
            "ttft_p99_ms": r.pct("ttft", 99) * 1000,
            "total_p50_ms": r.pct("total", 50) * 1000,
            "proxy_cpu_ms_per_req": self.proxy_cpu_ms,
            "mock_cpu_ms_per_req": self.mock_cpu_ms,
            "driver_cpu_ms_per_req": self.driver_cpu_ms,
            "proxy_peak_rss_mb": self.proxy_peak_mb,
            "proxy_read_syscalls_per_req": self.proxy_reads,
            "proxy_write_syscalls_per_req": self.proxy_writes,
            "background_cpu_pct": self.background * 100,
            "proxy_on_cpu_pct": self.proxy_busy * 100,
            "proxy_runqueue_wait_pct": self.proxy_starved * 100,
        }


async def wait_quiet(limit: float, threshold: float = 0.15) -> None:
    """Wait (at most `limit` seconds) until other processes use < `threshold` of the CPUs."""
    deadline = time.monotonic() + limit
    while True:
        before = procstat.machine_seconds()
        await asyncio.sleep(1.0)
        after = procstat.machine_seconds()
        load = (after[0] - before[0]) / max(1e-9, after[1] - before[1])
        if load < threshold or time.monotonic() > deadline:
            if load >= threshold:
                print(f"  machine still {load:.0%} busy: measuring anyway", file=sys.stderr)
            return


class Bench:
    def __init__(
        self, servers: Servers, session: aiohttp.ClientSession, quiet_wait: float = 0.0
    ) -> None:
        self.servers = servers
        self.session = session
        self.quiet_wait = quiet_wait

    async def configure(self, workload: Workload) -> None:
        config = {
            "chunks": workload.chunks,
            "delay_ms": workload.delay_ms,
            "first_ms": workload.first_ms,
        }
        async with self.session.post(self.servers.mock_url + "/bench/config", json=config) as r:
            r.raise_for_status()

    async def measure(
        self, workload: Workload, mode: str, target: Target, *, requests: int | None = None
    ) -> Measured:
        """Warm up (opens the keep-alive connections), then the measured run."""
        n = requests or workload.requests
        c = workload.concurrency
        await run_load(self.session, target, concurrency=c, requests=max(c, min(n, 20)))
        if self.quiet_wait:
            await wait_quiet(self.quiet_wait)
        proxy, mock = self.servers.proxy_pids, [self.servers.mock.pid]
        reset = mode == "proxy" and procstat.reset_peak_rss(proxy)
        before = procstat.cpu_seconds(proxy), procstat.cpu_seconds(mock)
        calls_before = procstat.syscalls(proxy)
        sched_before = procstat.run_queue_seconds(proxy)
        driver_before = time.process_time()
        machine_before = procstat.machine_seconds()
        result = await run_load(self.session, target, concurrency=c, requests=n)
        machine_after = procstat.machine_seconds()
        busy = machine_after[0] - machine_before[0]
        total = machine_after[1] - machine_before[1]
        driver = time.process_time() - driver_before
        proxy_cpu = procstat.cpu_seconds(proxy) - before[0]
        mock_cpu = procstat.cpu_seconds(mock) - before[1]
        calls = procstat.syscalls(proxy)
        sched = procstat.run_queue_seconds(proxy)
        wall = max(result.wall, 1e-9)
        done = max(1, len(result.samples))
        peak = procstat.peak_rss_mb(proxy) if mode == "proxy" else None
        is_proxy = mode == "proxy"
        ours = proxy_cpu + mock_cpu + driver
        background = max(0.0, busy - ours) / total if total else 0.0
        if mode == "proxy" and not reset:
            print("  (could not reset VmHWM: peak RSS is since proxy start)", file=sys.stderr)
        if result.errors:
            print(f"  {len(result.errors)} errors, e.g. {result.errors[0]}", file=sys.stderr)
        return Measured(
            workload,
            mode,
            result,
            proxy_cpu_ms=proxy_cpu * 1000 / done if is_proxy else 0.0,
            mock_cpu_ms=mock_cpu * 1000 / done,
            driver_cpu_ms=driver * 1000 / done,
            proxy_peak_mb=peak,
            proxy_reads=(calls[0] - calls_before[0]) / done if is_proxy else 0.0,
            proxy_writes=(calls[1] - calls_before[1]) / done if is_proxy else 0.0,
            background=background,
            proxy_busy=(sched[0] - sched_before[0]) / wall if is_proxy else 0.0,
            proxy_starved=(sched[1] - sched_before[1]) / wall if is_proxy else 0.0,
        )

    async def pair(
        self, workload: Workload, *, requests: int | None = None
    ) -> tuple[Measured, Measured]:
        await self.configure(workload)
        direct, proxy = targets(workload, self.servers)
        a = await self.measure(workload, "direct", direct, requests=requests)
        b = await self.measure(workload, "proxy", proxy, requests=requests)
        return a, b


# ---------------------------------------------------------------------------- reporting


def _f(value: float | None, digits: int = 1) -> str:
    return "–" if value is None else f"{value:,.{digits}f}"


def _ratio(a: float, b: float) -> str:
    return f"{b / a:.2f}×" if a else "–"


TABLE_HEAD = (
    "| workload | mode | req | err | req/s | TTFB p50 ms | TTFB p99 ms | TTFT p50 ms | "
    "total p50 ms | wall s | proxy CPU ms/req | proxy on CPU (+waiting) | "
    "proxy syscalls/req r/w | mock CPU ms/req | proxy peak RSS MB | other load |\n"
    "|---|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|"
)


def table(pairs: list[tuple[Measured, Measured]]) -> str:
    lines = [TABLE_HEAD]
    for direct, proxy in pairs:
        for m in (direct, proxy):
            r = m.row()
            is_proxy = m.mode == "proxy"
            cpu = _f(r["proxy_cpu_ms_per_req"], 2) if is_proxy else "–"
            busy = (
                f"{r['proxy_on_cpu_pct']:.0f}% (+{r['proxy_runqueue_wait_pct']:.0f}%)"
                if is_proxy
                else "–"
            )
            calls = (
                f"{r['proxy_read_syscalls_per_req']:.1f} / {r['proxy_write_syscalls_per_req']:.1f}"
                if is_proxy
                else "–"
            )
            lines.append(
                f"| {m.workload.key} | {m.mode} | {r['requests']} | {r['errors']} | "
                f"{_f(r['rps'])} | {_f(r['ttfb_p50_ms'], 2)} | {_f(r['ttfb_p99_ms'], 2)} | "
                f"{_f(r['ttft_p50_ms'], 2)} | {_f(r['total_p50_ms'], 2)} | "
                f"{_f(r['wall_s'], 2)} | {cpu} | {busy} | {calls} | "
                f"{_f(r['mock_cpu_ms_per_req'], 2)} | {_f(r['proxy_peak_rss_mb'])} | "
                f"{r['background_cpu_pct']:.0f}% |"
            )
        d, p = direct.row(), proxy.row()
        keys = ("ttfb_p50_ms", "ttfb_p99_ms", "ttft_p50_ms", "total_p50_ms")
        ratios = " | ".join(_ratio(d[k], p[k]) for k in keys)
        lines.append(
            f"| {direct.workload.key} | **proxy/direct** | | | **{_ratio(d['rps'], p['rps'])}** | "
            f"{ratios} | {_ratio(d['wall_s'], p['wall_s'])} | | | | | | |"
        )
    return "\n".join(lines)


def targets_table(pairs: dict[str, tuple[Measured, Measured]]) -> str:
    """The issue's targets, judged on this run's numbers."""
    lines = ["| target | measured | met |", "|---|---|---|"]

    def add(name: str, measured: str, ok: bool) -> None:
        lines.append(f"| {name} | {measured} | {'met' if ok else '**not met**'} |")

    if "short" in pairs:
        d, p = (m.row() for m in pairs["short"])
        cpu = p["proxy_cpu_ms_per_req"]
        add("proxy CPU ≤ 5 ms per 200-chunk stream (c=50)", f"{cpu:.2f} ms", cpu <= 5)
        ratio = p["rps"] / d["rps"] if d["rps"] else 0
        add("throughput ≥ 0.25× direct at c=50", f"{ratio:.2f}×", ratio >= 0.25)
    for key, label in (
        ("latency", "c=1, zero-latency upstream"),
        ("ttft", "c=10, upstream TTFT 200 ms"),
        ("short", "c=50"),
        ("slow", "500 slow streams"),
    ):
        if key in pairs:
            d, p = (m.row() for m in pairs[key])
            ratio = p["ttft_p50_ms"] / d["ttft_p50_ms"] if d["ttft_p50_ms"] else 0
            added = p["ttft_p50_ms"] - d["ttft_p50_ms"]
            add(
                f"TTFT p50 ≤ 1.2× direct ({label})",
                f"{ratio:.2f}× ({p['ttft_p50_ms']:.2f} vs {d['ttft_p50_ms']:.2f} ms, "
                f"+{added:.2f} ms)",
                ratio <= 1.2,
            )
    if "slow" in pairs:
        d, p = (m.row() for m in pairs["slow"])
        ratio = p["wall_s"] / d["wall_s"] if d["wall_s"] else 0
        add(
            "500 slow streams wall time ≤ 1.2× direct",
            f"{ratio:.2f}× ({p['wall_s']:.2f} vs {d['wall_s']:.2f} s)",
            ratio <= 1.2,
        )
        peak = p["proxy_peak_rss_mb"] or 0.0
        add("proxy peak RSS ≤ 150 MB at 500 slow streams", f"{peak:.0f} MB", peak <= 150)
    return "\n".join(lines)


def machine() -> str:
    cpu = "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return (
        f"{os.cpu_count()} CPUs ({cpu}), Linux {platform.release()}, "
        f"Python {platform.python_version()}"
    )


# ---------------------------------------------------------------------------- main


def sweep_levels(quick: bool) -> list[int]:
    return [1, 10, 50, 200] if quick else [1, 2, 5, 10, 25, 50, 100, 200, 400]


async def run_sweep(bench: Bench, quick: bool) -> list[dict[str, float]]:
    rows = []
    for c in sweep_levels(quick):
        requests = max(40, c * (3 if quick else 8))
        workload = Workload(f"sweep-{c}", f"concurrency {c}", 200, c, requests)
        direct, proxy = await bench.pair(workload)
        row: dict[str, float] = {"concurrency": c}
        for m in (direct, proxy):
            r = m.row()
            for key in ("rps", "ttfb_p50_ms", "ttfb_p99_ms", "ttft_p50_ms", "total_p50_ms"):
                row[f"{m.mode}_{key}"] = r[key]
        row["proxy_cpu_ms_per_req"] = proxy.proxy_cpu_ms
        row["background_cpu_pct"] = max(direct.background, proxy.background) * 100
        rows.append(row)
        print(
            f"  c={c:<4} direct {row['direct_rps']:7.1f} req/s  TTFB p50 "
            f"{row['direct_ttfb_p50_ms']:7.2f} ms | proxy {row['proxy_rps']:7.1f} req/s  "
            f"TTFB p50 {row['proxy_ttfb_p50_ms']:7.2f} ms",
            flush=True,
        )
    return rows


def sweep_table(rows: list[dict[str, float]]) -> str:
    lines = [
        "| concurrency | direct req/s | proxy req/s | ratio | direct TTFB p50 ms | "
        "proxy TTFB p50 ms | direct TTFT p50 ms | proxy TTFT p50 ms | proxy CPU ms/req | "
        "other load |",
        "|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|",
    ]
    for r in rows:
        lines.append(
            f"| {int(r['concurrency'])} | {r['direct_rps']:.1f} | {r['proxy_rps']:.1f} | "
            f"{_ratio(r['direct_rps'], r['proxy_rps'])} | {r['direct_ttfb_p50_ms']:.2f} | "
            f"{r['proxy_ttfb_p50_ms']:.2f} | {r['direct_ttft_p50_ms']:.2f} | "
            f"{r['proxy_ttft_p50_ms']:.2f} | {r['proxy_cpu_ms_per_req']:.2f} | "
            f"{r['background_cpu_pct']:.0f}% |"
        )
    return "\n".join(lines)


async def profile_proxy(bench: Bench, key: str) -> str:
    """py-spy the proxy during one workload (twice): a flame graph and a text summary."""
    if profiling.py_spy() is None:
        return "py-spy is not installed: profile skipped (pip install py-spy)"
    workload = next(w for w in workloads(False) if w.key == key)
    await bench.configure(workload)
    _, target = targets(workload, bench.servers)
    pid = bench.servers.proxy.pid
    c = workload.concurrency
    await run_load(bench.session, target, concurrency=c, requests=c)  # open the connections
    outputs = []
    for fmt, path in (
        ("raw", BENCH_DIR / "profile.txt"),
        ("flamegraph", BENCH_DIR / "profile.svg"),
    ):
        spy = profiling.start(pid, path, fmt, subprocesses=bench.servers.workers > 1)
        assert spy is not None
        await asyncio.sleep(0.5)
        await run_load(
            bench.session, target, concurrency=workload.concurrency, requests=workload.requests
        )
        error = profiling.stop(spy)
        if error:
            return f"py-spy failed: {error.strip()}"
        outputs.append(str(path))
    summary = profiling.summarise(BENCH_DIR / "profile.txt")
    return f"profile written to {', '.join(outputs)}\n\n{summary}"


def micro_table(timings: list[tuple[str, float, str]]) -> str:
    lines = ["| in-process timing (CPU time, best of 20 rounds) | value |", "|---|--:|"]
    lines += [f"| {name} | {value:.2f} {unit} |" for name, value, unit in timings]
    return "\n".join(lines)


async def main_async(args: argparse.Namespace) -> dict[str, Any]:
    command = "python -m bench " + " ".join(sys.argv[1:])
    report: dict[str, Any] = {"machine": machine(), "command": command.strip()}
    sections = [f"Command: `{report['command']}`", f"Machine: {report['machine']}"]

    def emit(text: str) -> None:
        sections.append(text)
        print("\n" + text, flush=True)

    print("\n\n".join(sections), flush=True)
    if not args.no_micro:
        from bench import micro

        timings = micro.run(budget=0.3 if args.quick else 1.0)
        report["micro"] = [{"name": n, "value": v, "unit": u} for n, v, u in timings]
        emit(micro_table(timings))
    if args.upstream_api == "both":
        by_api = await run_interleaved(args, emit)
        for api, pairs in by_api.items():
            emit(f"### Upstream API: {api} (best of {args.rounds} rounds)")
            emit(table(list(pairs.values())))
        emit(dialects_table(by_api))
        report["dialects"] = {
            api: [m.row() for pair in pairs.values() for m in pair] for api, pairs in by_api.items()
        }
    else:
        await run_servers(args, args.upstream_api, report, emit, extras=True)
    if args.report:
        Path(args.report).write_text("\n\n".join(sections) + "\n")
        print(f"\nreport written to {args.report}")
    return report


async def run_servers(
    args: argparse.Namespace,
    api: str,
    report: dict[str, Any],
    emit: Callable[[str], None],
    *,
    extras: bool,
) -> dict[str, tuple[Measured, Measured]]:
    """The workloads (and, when `extras`, the sweep and profile) against one proxy."""
    servers = Servers(args.proxy_workers, api)
    pairs: dict[str, tuple[Measured, Measured]] = {}
    suffix = "" if api == "chat" else f"_{api}"
    try:
        async with new_session() as session:
            await servers.wait_ready(session)
            bench = Bench(servers, session, args.wait_quiet)
            pids = servers.proxy_pids
            report[f"proxy_idle_rss_mb{suffix}"] = procstat.rss_mb(pids)
            emit(f"Proxy processes {pids}, idle RSS {procstat.rss_mb(pids):.1f} MB.")
            selected = [w for w in workloads(args.quick) if w.key in args.workloads]
            for workload in selected:
                print(f"{workload.key} ({api}): {workload.title} …", flush=True)
                pairs[workload.key] = await bench.pair(workload)
            if pairs:
                report[f"workloads{suffix}"] = [m.row() for pair in pairs.values() for m in pair]
                emit(table(list(pairs.values())))
                emit(targets_table(pairs))
            if extras and args.concurrency_sweep:
                print("concurrency sweep (200-chunk streams):", flush=True)
                rows = await run_sweep(bench, args.quick)
                report["sweep"] = rows
                emit(sweep_table(rows))
                title = f"200-chunk streams, {machine()}"
                emit(plot_sweep(rows, Path(args.plot), title))
            if extras and args.profile:
                print(f"profiling the proxy under '{args.profile}' …", flush=True)
                report["profile"] = await profile_proxy(bench, args.profile)
                emit("```\n" + report["profile"] + "\n```")
    finally:
        servers.stop()
    return pairs


async def run_interleaved(
    args: argparse.Namespace, emit: Callable[[str], None]
) -> dict[str, dict[str, tuple[Measured, Measured]]]:
    """Both dialects side by side: a proxy (and mock) each, workloads measured in alternating
    rounds so that load from other processes falls on both alike; the round with the least
    proxy CPU per request counts for each."""
    apis = ("chat", "responses")
    servers = {api: Servers(args.proxy_workers, api) for api in apis}
    best: dict[str, dict[str, tuple[Measured, Measured]]] = {api: {} for api in apis}
    try:
        async with new_session() as session:
            benches = {}
            for api in apis:
                await servers[api].wait_ready(session)
                benches[api] = Bench(servers[api], session, args.wait_quiet)
            emit("Proxies: " + ", ".join(f"{api} {servers[api].proxy_pids}" for api in apis))
            for workload in [w for w in workloads(args.quick) if w.key in args.workloads]:
                for round_ in range(args.rounds):
                    for api in apis:
                        print(f"{workload.key} ({api}, round {round_ + 1}) …", flush=True)
                        pair = await benches[api].pair(workload)
                        kept = best[api].get(workload.key)
                        if kept is None or pair[1].proxy_cpu_ms < kept[1].proxy_cpu_ms:
                            best[api][workload.key] = pair
    finally:
        for server in servers.values():
            server.stop()
    return best


def dialects_table(by_api: dict[str, dict[str, tuple[Measured, Measured]]]) -> str:
    """The proxy's CPU per stream and per chunk, Chat Completions vs the Responses API."""
    lines = [
        "| workload | chunks | chat: proxy CPU ms/stream | chat: µs/chunk | "
        "responses: proxy CPU ms/stream | responses: µs/chunk | responses/chat |",
        "|---|--:|--:|--:|--:|--:|--:|",
    ]
    chat, responses = by_api["chat"], by_api["responses"]
    for key in chat:
        if key not in responses:
            continue
        workload = chat[key][1].workload
        a = chat[key][1].proxy_cpu_ms
        b = responses[key][1].proxy_cpu_ms
        lines.append(
            f"| {key} | {workload.chunks} | {a:.2f} | {a * 1000 / workload.chunks:.1f} | "
            f"{b:.2f} | {b * 1000 / workload.chunks:.1f} | {_ratio(a, b)} |"
        )
    return "\n".join(lines)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    keys = [w.key for w in workloads(False)]
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer requests per workload")
    parser.add_argument(
        "--workloads",
        default=",".join(keys),
        help=f"comma-separated subset of {','.join(keys)}, or 'none' (default: all)",
    )
    parser.add_argument(
        "--concurrency-sweep", action="store_true", help="throughput/TTFB vs concurrency + plot"
    )
    parser.add_argument("--plot", default=str(BENCH_DIR / "plot.png"), help="sweep plot path")
    parser.add_argument(
        "--profile",
        nargs="?",
        const="short",
        choices=keys,
        help="py-spy the proxy under a workload (default: short) → bench/profile.{txt,svg}",
    )
    parser.add_argument(
        "--proxy-workers", type=int, default=1, help="run the proxy with --workers N"
    )
    parser.add_argument(
        "--wait-quiet",
        type=float,
        default=0.0,
        metavar="SECONDS",
        help="before each measurement wait up to SECONDS for other processes to go idle",
    )
    parser.add_argument(
        "--upstream-api",
        choices=("chat", "responses", "both"),
        default="chat",
        help="the proxy's upstream dialect (UPSTREAM_API); both: run each and compare CPU",
    )
    parser.add_argument(
        "--rounds",
        type=int,
        default=3,
        help="with --upstream-api both: alternating rounds per workload (the best counts)",
    )
    parser.add_argument("--no-micro", action="store_true", help="skip in-process timings")
    parser.add_argument("--json", help="also write all results to this JSON file")
    parser.add_argument("--report", help="also write the Markdown tables to this file")
    args = parser.parse_args(argv)
    chosen = [] if args.workloads == "none" else args.workloads.split(",")
    unknown = set(chosen) - set(keys)
    if unknown:
        parser.error(f"unknown workloads: {', '.join(sorted(unknown))}")
    args.workloads = chosen
    return args


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    try:
        import uvloop

        run: Any = uvloop.run
    except ImportError:
        run = asyncio.run
    coroutine: Coroutine[Any, Any, dict[str, Any]] = main_async(args)
    report = run(coroutine)
    if args.json:
        Path(args.json).write_bytes(orjson.dumps(report, option=orjson.OPT_INDENT_2))
        print(f"\nresults written to {args.json}")


if __name__ == "__main__":
    main()
