"""Sweep reports: one row per run (dense vs result), Pareto front, accuracy-vs-latency plot.

`build_report(root)` reads run directories (one run, a sweep, or a tree of sweeps) and writes
summary.csv, summary.md, report.html and accuracy_vs_latency.png. The multirun callback
(`sparsify.report.callback.SweepReport`) calls it at the end of every sweep; `sparsify report
DIR` calls it after the fact.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from sparsify.errors import SparsifyError
from sparsify.fileio import atomic_write_text
from sparsify.report.collect import RunRow, collect
from sparsify.report.html import to_html
from sparsify.report.plot import plot_accuracy_latency
from sparsify.report.summary import mark_pareto, to_console, write_tables

PLOT_NAME = "accuracy_vs_latency.png"


@dataclass
class Report:
    rows: list[RunRow]
    files: dict[str, Path] = field(default_factory=dict)

    @property
    def front(self) -> list[RunRow]:
        return [r for r in self.rows if r.pareto]

    def console(self) -> str:
        return to_console(self.rows)


def build_report(root: str | Path, out: str | Path | None = None) -> Report:
    """Collect the runs under `root` and write the report files into `out` (default `root`)."""
    root = Path(root).expanduser().resolve()
    if not root.is_dir():
        raise SparsifyError(f"{root} is not a directory; give a run directory or a sweep root")
    rows = collect(root)
    if not rows:
        raise SparsifyError(
            f"no run directories under {root} (a run holds manifest.json, config.yaml or "
            "FAILED); give the sweep root (sparsify_runs/multirun/<time>) or a run directory"
        )
    out_dir = Path(out).expanduser().resolve() if out is not None else root
    out_dir.mkdir(parents=True, exist_ok=True)
    front = mark_pareto(rows)
    plot = out_dir / PLOT_NAME
    has_plot = plot_accuracy_latency(rows, front, plot)
    if not has_plot:
        plot.unlink(missing_ok=True)  # a stale plot from an earlier report would mislead
    write_tables(rows, out_dir, root, PLOT_NAME if has_plot else None)
    atomic_write_text(out_dir / "report.html", to_html(rows, root, plot if has_plot else None))
    files = {name: out_dir / name for name in ("summary.csv", "summary.md", "report.html")}
    if has_plot:
        files["plot"] = plot
    return Report(rows, files)


__all__ = ["Report", "RunRow", "build_report"]
