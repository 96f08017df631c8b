"""Accuracy vs latency of one group of runs (one use case and metric), a Pareto front and a
dense star per dense baseline (matplotlib, Agg: no display needed)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from statistics import median
from typing import TYPE_CHECKING

from sparsify.report.collect import RunRow
from sparsify.report.groups import BaselineKey, baseline_key, describe_baseline

if TYPE_CHECKING:
    from matplotlib.axes import Axes

PALETTE = ("tab:blue", "tab:orange", "tab:green", "tab:purple", "tab:brown", "tab:cyan")


def _label(row: RunRow, with_experiment: bool) -> str:
    text = f"{row.level:.2f}" if row.level is not None else "?"
    return f"{text} {row.experiment}" if with_experiment and row.experiment else text


def _plot_baseline(
    ax: Axes, key: BaselineKey, rows: Sequence[RunRow], front: Sequence[RunRow], index: int | None
) -> None:
    """The runs of one dense baseline, its Pareto front and its star (`index`: its colour
    when the plot holds several baselines, None for the plain single-baseline colours)."""
    own = f" ({describe_baseline(key)})" if index is not None else ""
    color = PALETTE[index % len(PALETTE)] if index is not None else None
    others = [r for r in rows if not r.pareto]
    if others:
        ax.scatter(
            [r.latency_ms for r in others],
            [r.accuracy for r in others],
            color=color or "tab:blue",
            alpha=0.6,
            label=f"sparsified{own}",
        )
    ids = {id(r) for r in rows}
    mine = sorted((r for r in front if id(r) in ids), key=lambda r: (r.latency_ms, -r.accuracy))  # type: ignore[arg-type,operator]
    if mine:
        ax.plot(
            [r.latency_ms for r in mine],
            [r.accuracy for r in mine],
            "-o",
            color=color or "tab:red",
            drawstyle="steps-post",
            label=f"Pareto front{own}",
        )
    base = [
        r for r in rows if r.baseline_latency_ms is not None and r.baseline_accuracy is not None
    ]
    if base:
        ax.scatter(
            [median(r.baseline_latency_ms for r in base)],  # type: ignore[type-var]
            [median(r.baseline_accuracy for r in base)],  # type: ignore[type-var]
            marker="*",
            s=180,
            color=color or "black",
            edgecolors="black",
            label=f"dense baseline{own} (median of {len(base)})",
        )


def _plot_budget(ax: Axes, points: Sequence[RunRow]) -> None:
    """A budget search (budget.json at its sweep root): the lowest metric within budget as a
    dashed line, and the chosen trial ringed."""
    from sparsify.budget.results import read_budget

    for root in sorted({Path(r.run_dir).parent for r in points}):
        budget = read_budget(root)
        picked = budget and (budget.get("chosen") or budget.get("closest"))
        if not budget or not picked or picked.get("dense") is None:
            continue
        floor = float(picked["dense"]) - float(budget["max_drop"])
        ax.axhline(
            floor,
            linestyle="--",
            color="tab:red",
            linewidth=1,
            label=f"budget: dense - {float(budget['max_drop']):g} ({budget['metric']})",
        )
        chosen = (budget.get("chosen") or {}).get("run_dir")
        for r in points:
            if chosen and Path(r.run_dir).resolve() == Path(chosen).resolve():
                ax.scatter(
                    [r.latency_ms],
                    [r.accuracy],
                    s=260,
                    facecolors="none",
                    edgecolors="tab:red",
                    linewidths=2,
                    label="chosen (fastest in budget)",
                )


def plot_accuracy_latency(
    rows: Sequence[RunRow], front: Sequence[RunRow], path: Path, title: str | None = None
) -> bool:
    """Write the PNG to `path`; False (and no file) when no run has both numbers.

    `rows` are one group's (one use case, one metric: `title` names it)."""
    # Figure + the Agg canvas directly: no pyplot global state, no GUI backend lookup
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    points = [r for r in rows if r.accuracy is not None and r.latency_ms is not None]
    if not points:
        return False
    fig = Figure(figsize=(7.5, 5), dpi=110)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    # one star and one front per dense baseline: runs on other data (another dense model)
    # are not comparable, and a median over them would be no model at all
    sets: dict[BaselineKey, list[RunRow]] = {}
    for r in points:
        sets.setdefault(baseline_key(r), []).append(r)
    models = {model for _, model in sets}  # named in the legend only when they differ
    for i, (key, members) in enumerate(sets.items()):
        shown = key if len(models) > 1 else (key[0], None)
        _plot_baseline(ax, shown, members, front, i if len(sets) > 1 else None)
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
    ax.set_title(f"{title or ', '.join(metrics) or 'accuracy'} vs latency (up and left is better)")
    _plot_budget(ax, points)
    ax.grid(True, alpha=0.3)
    ax.legend(loc="best", fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, format="png")
    return True
