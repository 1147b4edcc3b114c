"""Process accounting from /proc: CPU time, syscalls, peak RSS (summed over a process tree).

With `--workers N` the proxy is a supervisor plus N worker processes, so every reading
covers the process and all its descendants.
"""

from __future__ import annotations

import os
from pathlib import Path

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def tree(pid: int) -> list[int]:
    """`pid` and all its live descendants."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        ppid = int(stat[stat.rindex(")") + 2 :].split()[1])
        children.setdefault(ppid, []).append(int(entry.name))
    found, todo = [], [pid]
    while todo:
        current = todo.pop()
        found.append(current)
        todo.extend(children.get(current, []))
    return found


def _cpu(pid: int) -> float:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return 0.0
    fields = stat[stat.rindex(")") + 2 :].split()
    # Fields after "(comm) ": state is index 0, so utime (14th field) is index 11.
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


def cpu_seconds(pids: list[int]) -> float:
    """User + system CPU time (all threads) of these processes, from /proc/<pid>/stat."""
    return sum(_cpu(pid) for pid in pids)


def _field(path: str, key: str) -> int:
    try:
        for line in Path(path).read_text().splitlines():
            if line.startswith(key + ":"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def syscalls(pids: list[int]) -> tuple[int, int]:
    """(read-type, write-type) syscalls so far, from /proc/<pid>/io (0 where not readable)."""
    reads = sum(_field(f"/proc/{pid}/io", "syscr") for pid in pids)
    writes = sum(_field(f"/proc/{pid}/io", "syscw") for pid in pids)
    return reads, writes


def peak_rss_mb(pids: list[int]) -> float:
    """Sum of VmHWM: the peak RSS of each process since start (or `reset_peak_rss`)."""
    return sum(_field(f"/proc/{pid}/status", "VmHWM") for pid in pids) / 1024


def rss_mb(pids: list[int]) -> float:
    return sum(_field(f"/proc/{pid}/status", "VmRSS") for pid in pids) / 1024


def reset_peak_rss(pids: list[int]) -> bool:
    """Reset VmHWM to the current RSS (Linux `clear_refs` 5); False where not permitted."""
    try:
        for pid in pids:
            Path(f"/proc/{pid}/clear_refs").write_text("5")
    except OSError:
        return False
    return True


def machine_seconds() -> tuple[float, float]:
    """(busy, total) CPU seconds of the whole machine so far (all CPUs), from /proc/stat."""
    values = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:9]]
    idle = values[3] + values[4]  # idle + iowait
    total = sum(values)
    return (total - idle) / CLOCK_TICKS, total / CLOCK_TICKS


def run_queue_seconds(pids: list[int]) -> tuple[float, float]:
    """(on CPU, runnable but waiting for a CPU) seconds, all threads, from schedstat."""
    on_cpu = waiting = 0
    for pid in pids:
        try:
            tasks = list(Path(f"/proc/{pid}/task").iterdir())
        except OSError:
            continue
        for task in tasks:
            try:
                values = (task / "schedstat").read_text().split()
            except OSError:
                continue
            on_cpu += int(values[0])
            waiting += int(values[1])
    return on_cpu / 1e9, waiting / 1e9
