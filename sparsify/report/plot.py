"""Accuracy vs latency of a sweep, Pareto front marked (matplotlib, Agg: no display needed)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from statistics import median

from sparsify.report.collect import RunRow


def _label(row: RunRow, with_experiment: bool) -> str:
    text = f"{row.level:.2f}" if row.level is not None else "?"
    return f"{text} {row.experiment}" if with_experiment and row.experiment else text


def plot_accuracy_latency(rows: Sequence[RunRow], front: Sequence[RunRow], path: Path) -> bool:
    """Write the PNG to `path`; False (and no file) when no run has both numbers."""
    # Figure + the Agg canvas directly: no pyplot global state, no GUI backend lookup
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    points = [r for r in rows if r.accuracy is not None and r.latency_ms is not None]
    if not points:
        return False
    fig = Figure(figsize=(7.5, 5), dpi=110)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    others = [r for r in points if not r.pareto]
    if others:
        ax.scatter(
            [r.latency_ms for r in others],
            [r.accuracy for r in others],
            color="tab:blue",
            alpha=0.6,
            label="sparsified",
        )
    if front:
        ax.plot(
            [r.latency_ms for r in front],
            [r.accuracy for r in front],
            "-o",
            color="tab:red",
            drawstyle="steps-post",
            label="Pareto front",
        )
    base = [
        r for r in points if r.baseline_latency_ms is not None and r.baseline_accuracy is not None
    ]
    if base:
        ax.scatter(
            [median(r.baseline_latency_ms for r in base)],  # type: ignore[type-var]
            [median(r.baseline_accuracy for r in base)],  # type: ignore[type-var]
            marker="*",
            s=180,
            color="black",
            label=f"dense baseline (median of {len(base)})",
        )
    several = len({r.experiment for r in points}) > 1
    for r in points:
        ax.annotate(
            _label(r, several),
            (r.latency_ms, r.accuracy),
            textcoords="offset points",
            xytext=(5, 4),
            fontsize=8,
        )
    batch = next((r.latency_batch for r in points if r.latency_batch), None)
    metrics = sorted({r.metric for r in points if r.metric})
    ax.set_xlabel(f"median latency, ms (batch {batch})" if batch else "median latency, ms")
    ax.set_ylabel(", ".join(metrics) or "accuracy")
    ax.set_title("accuracy vs latency (up and left is better)")
    ax.grid(True, alpha=0.3)
    ax.legend(loc="best", fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, format="png")
    return True
