#!/usr/bin/env python3
"""Load test: many concurrent streaming requests through one proxy process.

Starts a mock OpenAI upstream process whose streams are slow (by default 100 chunks 50 ms
apart) and one ``python -m claude_code_proxy`` process in front of it, then opens all the
streaming ``/v1/messages`` requests at once (default 1000).  The upstream holds every stream
until all requests have arrived, so they are all open at the same time.  Every stream is
checked with ``tests/sse_validator.py`` and its text compared with what the upstream sent.

Prints: total, errors (must be 0), garbled streams (must be 0), peak concurrent streams, wall
time, the proxy's RSS before the load and at its peak, VmHWM, and memory per open stream.
Exits 0 only when there were no errors and no garbled streams.  Everything listens on
127.0.0.1 only and the run is bounded (``--timeout``); both child processes are stopped at the
end.  Not a pytest test: run it by hand, ``python scripts/load_test.py``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import importlib.util
import json
import os
import resource
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
SRC = ROOT / "src"
VALIDATOR_PATH = ROOT / "tests" / "sse_validator.py"
HOST = "127.0.0.1"
UPSTREAM_KEY = "sk-load-test"
WARMUP_TEXT = "warmup"
MIB = 1024 * 1024


def load_validator() -> ModuleType:
    """``tests/sse_validator.py``, imported by path."""
    spec = importlib.util.spec_from_file_location("sse_validator", VALIDATOR_PATH)
    if spec is None or spec.loader is None:
        raise SystemExit(f"cannot import {VALIDATOR_PATH}")
    module = importlib.util.module_from_spec(spec)
    sys.modules["sse_validator"] = module
    spec.loader.exec_module(module)
    return module


def use_uvloop() -> None:
    with contextlib.suppress(ImportError):
        import uvloop

        asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        port: int = sock.getsockname()[1]
        return port


def raise_fd_limit(needed: int) -> int:
    """Raise the soft open-files limit (inherited by the child processes)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = needed if hard == resource.RLIM_INFINITY else min(max(soft, needed), hard)
    if target > soft:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
    soft = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    if soft < needed:
        raise SystemExit(f"open-files limit {soft} < {needed} needed (hard limit {hard})")
    return soft


# ------------------------------------------------------------------------------------------
# The mock upstream (runs in its own process: `load_test.py upstream ...`)
# ------------------------------------------------------------------------------------------


def _chunk(delta: dict[str, Any], finish: str | None = None) -> bytes:
    data = {
        "id": "chatcmpl-load",
        "object": "chat.completion.chunk",
        "created": 1766000000,
        "model": "gpt-load",
        "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
    }
    return b"data: " + json.dumps(data).encode() + b"\n\n"


def expected_text(chunks: int) -> str:
    return "".join(f"t{i} " for i in range(chunks))


async def serve_upstream(port: int, expected: int, chunks: int, delay: float, hold: float) -> None:
    """Stream ``chunks`` pieces ``delay`` apart once ``expected`` requests have arrived."""
    from aiohttp import web

    arrived = 0
    everyone_here = asyncio.Event()
    pieces = [_chunk({"content": f"t{i} "}) for i in range(chunks)]
    usage = {"prompt_tokens": 10, "completion_tokens": chunks, "total_tokens": 10 + chunks}
    tail = [
        _chunk({}, "stop"),
        b"data: "
        + json.dumps(
            {
                "id": "chatcmpl-load",
                "object": "chat.completion.chunk",
                "created": 1766000000,
                "model": "gpt-load",
                "choices": [],
                "usage": usage,
            }
        ).encode()
        + b"\n\n",
        b"data: [DONE]\n\n",
    ]

    async def chat(request: web.Request) -> web.StreamResponse:
        nonlocal arrived
        body = await request.json()
        held = body["messages"][-1]["content"] != WARMUP_TEXT
        if held:
            arrived += 1
            if arrived >= expected:
                everyone_here.set()
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await response.prepare(request)
        await response.write(_chunk({"role": "assistant", "content": ""}))
        if held:
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(everyone_here.wait(), hold)
        for piece in pieces:
            if held:  # warm-up requests stream at full speed
                await asyncio.sleep(delay)
            await response.write(piece)
        for piece in tail:
            await response.write(piece)
        await response.write_eof()
        return response

    app = web.Application()
    app.router.add_post("/v1/chat/completions", chat)
    runner = web.AppRunner(app, access_log=None, handler_cancellation=True)
    await runner.setup()
    site = web.TCPSite(runner, HOST, port, backlog=4096)
    await site.start()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    await runner.cleanup()


# ------------------------------------------------------------------------------------------
# Process handling and memory
# ------------------------------------------------------------------------------------------


def proc_status(pid: int) -> dict[str, int]:
    """Numeric ``/proc/<pid>/status`` fields in kB (VmRSS, VmHWM, ...)."""
    out = {}
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            name, _, value = line.partition(":")
            parts = value.split()
            if parts and parts[0].isdigit():
                out[name] = int(parts[0])
    return out


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of ``pid`` so far."""
    with open(f"/proc/{pid}/stat") as stat:
        fields = stat.read().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def open_fds(pid: int) -> int:
    try:
        return len(os.listdir(f"/proc/{pid}/fd"))
    except OSError:
        return -1


def wait_port(port: int, proc: subprocess.Popen[bytes], what: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while True:
        if proc.poll() is not None:
            raise SystemExit(f"{what} exited with status {proc.returncode} at start")
        with contextlib.suppress(OSError), socket.create_connection((HOST, port), timeout=1):
            return
        if time.monotonic() > deadline:
            raise SystemExit(f"{what} did not listen on {HOST}:{port} within {timeout}s")
        time.sleep(0.05)


@contextlib.contextmanager
def child(args: list[str], env: dict[str, str], cwd: str, log: Path) -> Iterator[Any]:
    """A child process, terminated (then killed) on the way out; output in ``log``."""
    with log.open("wb") as out:
        proc = subprocess.Popen(args, env=env, cwd=cwd, stdout=out, stderr=subprocess.STDOUT)
    try:
        yield proc
    finally:
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=10)


# ------------------------------------------------------------------------------------------
# The client side
# ------------------------------------------------------------------------------------------


@dataclass
class Results:
    total: int = 0
    completed: int = 0
    errors: list[str] = field(default_factory=list)
    garbled: list[str] = field(default_factory=list)
    open_now: int = 0
    peak_open: int = 0
    rss_at_peak_open_kb: int = 0
    started: float = 0.0
    all_open_after: float | None = None
    max_rss_kb: int = 0
    max_fds: int = 0


def request_body(text: str) -> dict[str, Any]:
    return {
        "model": "claude-sonnet-4-5",
        "max_tokens": 1024,
        "stream": True,
        "messages": [{"role": "user", "content": text}],
    }


async def one_stream(
    session: Any,
    url: str,
    results: Results,
    validate: Callable[..., Any],
    chunks: int,
    sample: Callable[[], dict[str, int]],
    expected_streams: int,
) -> None:
    results.total += 1
    opened = False
    try:
        async with session.post(url, json=request_body("load")) as response:
            if response.status != 200:
                text = (await response.read())[:200]
                results.errors.append(f"HTTP {response.status}: {text!r}")
                return
            data = bytearray()
            async for piece in response.content.iter_any():
                if not opened:
                    opened = True
                    results.open_now += 1
                    if results.open_now > results.peak_open:
                        results.peak_open = results.open_now
                        if results.peak_open % 100 == 0 or results.peak_open == results.total:
                            results.rss_at_peak_open_kb = sample().get("VmRSS", 0)
                        if results.peak_open == expected_streams:
                            results.all_open_after = time.perf_counter() - results.started
                data += piece
    except Exception as exc:
        results.errors.append(f"{type(exc).__name__}: {exc}")
        return
    finally:
        if opened:
            results.open_now -= 1
    try:
        stream = validate(bytes(data), expect_error=False)
        text = "".join(b.get("text", "") for b in stream.message["content"])
        if text != expected_text(chunks):
            raise AssertionError(f"text differs: {text[:80]!r}…")
    except AssertionError as exc:
        results.garbled.append(str(exc)[:300])
        return
    results.completed += 1


async def sample_memory(pid: int, results: Results, stop: asyncio.Event) -> None:
    while not stop.is_set():
        with contextlib.suppress(OSError):
            results.max_rss_kb = max(results.max_rss_kb, proc_status(pid).get("VmRSS", 0))
            results.max_fds = max(results.max_fds, open_fds(pid))
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(stop.wait(), 0.05)


async def drive(args: argparse.Namespace, proxy_port: int, proxy_pid: int) -> dict[str, Any]:
    import aiohttp

    validate = load_validator().validate_anthropic_stream
    url = f"http://{HOST}:{proxy_port}/v1/messages"
    connector = aiohttp.TCPConnector(limit=0)
    timeout = aiohttp.ClientTimeout(total=args.timeout, sock_connect=30)
    headers = {"x-api-key": "load-client", "anthropic-version": "2023-06-01"}
    async with aiohttp.ClientSession(
        connector=connector, timeout=timeout, headers=headers
    ) as session:
        for _ in range(5):  # warm up: imports, tokenizer, upstream pool
            async with session.post(url, json=request_body(WARMUP_TEXT)) as response:
                await response.read()
        await asyncio.sleep(0.5)
        before = proc_status(proxy_pid)
        cpu_before = cpu_seconds(proxy_pid)
        results = Results()
        stop = asyncio.Event()
        sampler = asyncio.ensure_future(sample_memory(proxy_pid, results, stop))
        started = results.started = time.perf_counter()
        tasks = [
            one_stream(
                session,
                url,
                results,
                validate,
                args.chunks,
                lambda: proc_status(proxy_pid),
                args.streams,
            )
            for _ in range(args.streams)
        ]
        try:
            await asyncio.wait_for(asyncio.gather(*tasks), args.timeout)
        except asyncio.TimeoutError:
            results.errors.append(f"run did not finish within {args.timeout}s")
        wall = time.perf_counter() - started
        stop.set()
        await sampler
        after = proc_status(proxy_pid)
        cpu = cpu_seconds(proxy_pid) - cpu_before
    return {"results": results, "wall": wall, "before": before, "after": after, "cpu": cpu}


def report(args: argparse.Namespace, run: dict[str, Any], pid: int) -> bool:
    results: Results = run["results"]
    before_kb = run["before"].get("VmRSS", 0)
    peak_kb = max(results.max_rss_kb, results.rss_at_peak_open_kb)
    hwm_kb = run["after"].get("VmHWM", 0)
    open_streams = max(results.peak_open, 1)
    per_stream_kib = (peak_kb - before_kb) / open_streams
    lines = [
        f"load test: {args.streams} concurrent streams x {args.chunks} chunks "
        f"{args.delay * 1000:g} ms apart, one proxy process (pid {pid})",
        f"  total                       {results.total}",
        f"  completed                   {results.completed}",
        f"  errors                      {len(results.errors)}",
        f"  garbled streams             {len(results.garbled)}",
        f"  peak concurrent streams     {results.peak_open}",
        f"  wall time                   {run['wall']:.1f} s",
        "  all streams open after      "
        + (f"{results.all_open_after:.1f} s" if results.all_open_after is not None else "never"),
        f"  proxy RSS before            {before_kb / 1024:.1f} MiB",
        f"  proxy RSS at peak           {peak_kb / 1024:.1f} MiB",
        f"  proxy peak RSS (VmHWM)      {hwm_kb / 1024:.1f} MiB",
        f"  memory per open stream      {per_stream_kib:.1f} KiB",
        f"  proxy open fds (peak)       {results.max_fds}",
        f"  proxy CPU time during run   {run['cpu']:.1f} s",
    ]
    print("\n".join(lines))
    for title, items in (("errors", results.errors), ("garbled", results.garbled)):
        for item in items[:5]:
            print(f"  {title[:-1] if title.endswith('s') else title}: {item}")
    return not results.errors and not results.garbled and results.completed == args.streams


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--streams", type=int, default=1000)
    parser.add_argument("--chunks", type=int, default=100)
    parser.add_argument("--delay", type=float, default=0.05, help="seconds between chunks")
    parser.add_argument("--timeout", type=float, default=300, help="bound for the whole run")
    parser.add_argument("--upstream-port", type=int, help=argparse.SUPPRESS)
    parser.add_argument("role", nargs="?", default="run", choices=["run", "upstream"])
    args = parser.parse_args()
    use_uvloop()
    if args.role == "upstream":
        hold = min(60.0, args.timeout)
        asyncio.run(serve_upstream(args.upstream_port, args.streams, args.chunks, args.delay, hold))
        return 0

    raise_fd_limit(4 * args.streams + 1024)
    upstream_port, proxy_port = free_port(), free_port()
    with tempfile.TemporaryDirectory(prefix="ccp-load-") as workdir:
        base_env = {k: v for k, v in os.environ.items() if k in ("PATH", "HOME", "LANG", "TMPDIR")}
        upstream_args = [
            sys.executable,
            str(Path(__file__).resolve()),
            "upstream",
            f"--upstream-port={upstream_port}",
            f"--streams={args.streams}",
            f"--chunks={args.chunks}",
            f"--delay={args.delay}",
            f"--timeout={args.timeout}",
        ]
        proxy_env = {
            **base_env,
            "PYTHONPATH": str(SRC),
            "HOST": HOST,
            "PORT": str(proxy_port),
            "OPENAI_BASE_URL": f"http://{HOST}:{upstream_port}/v1",
            "OPENAI_API_KEY": UPSTREAM_KEY,
            "LOG_LEVEL": "WARNING",
            "REQUEST_TIMEOUT": "120",
        }
        upstream_log, proxy_log = Path(workdir, "upstream.log"), Path(workdir, "proxy.log")
        with (
            child(upstream_args, base_env, workdir, upstream_log) as upstream,
            child(
                [sys.executable, "-m", "claude_code_proxy"], proxy_env, workdir, proxy_log
            ) as proxy,
        ):
            wait_port(upstream_port, upstream, "mock upstream")
            wait_port(proxy_port, proxy, "proxy")
            run = asyncio.run(drive(args, proxy_port, proxy.pid))
            ok = report(args, run, proxy.pid)
            if proxy.poll() is not None:
                print(f"  proxy exited during the run (status {proxy.returncode})")
                ok = False
        log = proxy_log.read_text(errors="replace").splitlines()
        noise = [line for line in log if "Traceback" in line or "ERROR" in line]
        print(f"  proxy log lines with Traceback/ERROR: {len(noise)}")
        for line in noise[:5]:
            print(f"    {line}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
