"""Sampling the proxy with py-spy while a workload runs, and summarising where CPU goes."""

from __future__ import annotations

import re
import shutil
import signal
import subprocess
import sys
from collections import Counter
from pathlib import Path

_FRAME = re.compile(r"^(?P<func>.*?) \((?P<file>[^:]*)(?::\d+)?\)$")


def py_spy() -> str | None:
    """The py-spy executable (next to this Python first), or None."""
    local = Path(sys.executable).with_name("py-spy")
    return str(local) if local.exists() else shutil.which("py-spy")


def start(
    pid: int, output: Path, fmt: str, *, subprocesses: bool = False, rate: int = 200
) -> subprocess.Popen[bytes] | None:
    """Start `py-spy record` on `pid`; stop it with `stop()` after the workload."""
    exe = py_spy()
    if exe is None:
        return None
    command = [exe, "record", "--pid", str(pid), "--rate", str(rate)]
    command += ["--format", fmt, "--output", str(output)]
    if subprocesses:
        command.append("--subprocesses")
    return subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def stop(process: subprocess.Popen[bytes]) -> str:
    """Interrupt py-spy so it writes its output; returns its stderr on failure."""
    process.send_signal(signal.SIGINT)
    try:
        _, err = process.communicate(timeout=60)
    except subprocess.TimeoutExpired:
        process.kill()
        return "py-spy did not stop"
    return "" if process.returncode == 0 else err.decode(errors="replace")


def _short(frame: str) -> str:
    match = _FRAME.match(frame)
    if not match:
        return frame
    path = match["file"]
    for marker in ("site-packages/", "src/", "lib/python3"):
        if marker in path:
            path = path.split(marker, 1)[1]
            break
    return f"{match['func']} ({path})"


CATEGORIES = (
    ("claude_code_proxy/translate", "proxy: translation"),
    ("claude_code_proxy", "proxy: app/asgi/upstream glue"),
    ("uvicorn", "uvicorn (HTTP server)"),
    ("starlette", "starlette"),
    ("aiohttp", "aiohttp (upstream client)"),
    ("asyncio", "asyncio"),
    ("uvloop", "uvloop"),
)


def _category(frame: str) -> str:
    for needle, name in CATEGORIES:
        if needle in frame:
            return name
    return "other"


def summarise(raw: Path, top: int = 25) -> str:
    """Self and inclusive percentages per function, and self time per component."""
    self_time: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    by_category: Counter[str] = Counter()
    total = 0
    for line in raw.read_text().splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        frames = [_short(f) for f in stack.split(";")]
        frames = [f for f in frames if not f.startswith(("process ", "thread "))] or ["?"]
        total += count
        self_time[frames[-1]] += count
        by_category[_category(frames[-1])] += count
        for frame in set(frames):
            inclusive[frame] += count
    if not total:
        return "no samples"
    lines = [f"{total} samples (non-idle)", "", "self time by component:"]
    lines += [f"  {n / total:6.1%}  {name}" for name, n in by_category.most_common()]
    lines += ["", f"top {top} functions by self time:"]
    lines += [f"  {n / total:6.1%}  {name}" for name, n in self_time.most_common(top)]
    lines += ["", f"top {top} functions by inclusive time (entry points above 95% left out):"]
    below = [(name, n) for name, n in inclusive.most_common() if n < 0.95 * total]
    lines += [f"  {n / total:6.1%}  {name}" for name, n in below[:top]]
    return "\n".join(lines)
