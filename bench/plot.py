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
    for mode, style in (("direct", "o-"), ("proxy", "s-")):
        left.plot(levels, [r[f"{mode}_rps"] for r in rows], style, label=mode)
        right.plot(levels, [r[f"{mode}_ttfb_p50_ms"] for r in rows], style, label=f"{mode} p50")
        right.plot(
            levels, [r[f"{mode}_ttfb_p99_ms"] for r in rows], style, alpha=0.35, label=f"{mode} p99"
        )
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
