"""The concurrency-sweep plot (matplotlib is optional: without it, no plot)."""

from __future__ import annotations

from pathlib import Path

SweepRow = dict[str, float]


def plot_sweep(rows: list[SweepRow], path: Path, title: str) -> str:
    """Throughput and TTFB p50 vs concurrency, direct and proxy; returns a status message."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return "matplotlib is not installed: plot skipped (pip install matplotlib)"
    levels = [int(r["concurrency"]) for r in rows]
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4.2))
    for mode, marker, color in (("direct", "o", "C0"), ("proxy", "s", "C1")):
        left.plot(levels, [r[f"{mode}_rps"] for r in rows], marker + "-", color=color, label=mode)
        p50 = [r[f"{mode}_ttfb_p50_ms"] for r in rows]
        p99 = [r[f"{mode}_ttfb_p99_ms"] for r in rows]
        right.plot(levels, p50, marker + "-", color=color, label=f"{mode} p50")
        right.plot(levels, p99, marker + "--", color=color, alpha=0.4, label=f"{mode} p99")
    left.set(xscale="log", xlabel="concurrency", ylabel="requests/s", title="Throughput")
    right.set(xscale="log", yscale="log", xlabel="concurrency", ylabel="ms", title="TTFB")
    for axis in (left, right):
        axis.set_xticks(levels, [str(c) for c in levels])
        axis.grid(True, which="both", alpha=0.3)
        axis.legend()
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return f"plot written to {path}"
