"""sensitivity.csv and sensitivity.png in the sparsify stage's folder: the per-layer
measurements of `sensitivity` (pruning at each sparsity, INT8, the allocation made), one
analysis replacing its own earlier rows so pruning and INT8 share one file."""

from __future__ import annotations

import csv
from collections.abc import Sequence
from dataclasses import asdict, fields
from pathlib import Path

from sparsify.algorithms.sensitivity import Row

CSV_NAME = "sensitivity.csv"
PNG_NAME = "sensitivity.png"
COLUMNS = [f.name for f in fields(Row)]


def _number(text: str) -> float | None:
    return float(text) if text not in ("", "None") else None


def read_rows(path: Path) -> list[Row]:
    """The rows of a sensitivity.csv (empty when there is none)."""
    if not path.is_file():
        return []
    with path.open(encoding="utf-8", newline="") as f:
        return [
            Row(
                r["analysis"],
                r["layer"],
                int(r["params"]),
                _number(r["sparsity"]),
                _number(r["rel_mse"]),
                _number(r["kl"]),
            )
            for r in csv.DictReader(f)
        ]


def write_report(out_dir: Path, rows: Sequence[Row]) -> list[Path]:
    """Merge `rows` into out_dir/sensitivity.csv (their analyses replaced) and redraw the
    plot; returns the files written."""
    path = out_dir / CSV_NAME
    analyses = {r.analysis for r in rows}
    merged = [r for r in read_rows(path) if r.analysis not in analyses] + list(rows)
    with path.open("w", encoding="utf-8", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=COLUMNS)
        writer.writeheader()
        for r in merged:
            writer.writerow({k: ("" if v is None else v) for k, v in asdict(r).items()})
    png = out_dir / PNG_NAME
    plot(merged, png)
    return [path, png]


def plot(rows: Sequence[Row], path: Path) -> None:
    """One panel per analysis present: pruning cost per layer (a line per sparsity, the
    allocated sparsity on a second axis), INT8 cost per layer (bars)."""
    # Figure + the Agg canvas directly: no pyplot global state, no GUI backend lookup
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    prune = [r for r in rows if r.analysis == "prune"]
    int8 = [r for r in rows if r.analysis == "int8"]
    panels = [p for p in (prune, int8) if p] or [[]]
    fig = Figure(figsize=(9, 3.6 * len(panels)), dpi=100)
    FigureCanvasAgg(fig)
    for i, panel in enumerate(panels):
        ax = fig.add_subplot(len(panels), 1, i + 1)
        layers = list(dict.fromkeys(r.layer for r in panel))
        x = {name: j for j, name in enumerate(layers)}
        if panel is prune:
            for s in sorted({r.sparsity for r in prune if r.sparsity is not None}):
                own = [r for r in prune if r.sparsity == s]
                ax.plot(
                    [x[r.layer] for r in own],
                    [max(r.rel_mse or 0, 1e-12) for r in own],
                    marker="o",
                    label=f"pruned {s:.0%}",
                )
            allocated = {r.layer: r.sparsity for r in rows if r.analysis == "allocation"}
            if allocated:
                twin = ax.twinx()
                twin.step(
                    [x[n] for n in layers if n in allocated],
                    [allocated[n] for n in layers if n in allocated],
                    where="mid",
                    color="black",
                    linestyle="--",
                    label="allocated",
                )
                twin.set_ylabel("allocated sparsity")
                twin.legend(loc="upper right", fontsize=7)
            ax.set_title("pruning one layer alone: relative output error")
        elif panel:
            ax.bar([x[r.layer] for r in panel], [max(r.rel_mse or 0, 1e-12) for r in panel])
            ax.set_title("INT8 of one layer alone: relative output error")
        if panel:
            ax.set_yscale("log")
            ax.set_xticks(range(len(layers)))
            ax.set_xticklabels(layers, rotation=90, fontsize=6)
            ax.set_ylabel("relative MSE")
            if panel is prune:
                ax.legend(loc="upper left", fontsize=7)
    fig.tight_layout()
    fig.savefig(str(path))
