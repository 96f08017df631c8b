"""Sweep reports: one row per run (dense vs result), Pareto fronts, accuracy-vs-latency plots.

`build_report(root)` reads run directories (one run, a sweep, or a tree of sweeps) and writes
summary.csv (every run), summary.md and report.html (a table per use case and metric) and a
plot per use case and metric (accuracy_vs_latency.png when there is one). The multirun callback
(`sparsify.report.callback.SweepReport`) calls it at the end of every sweep; `sparsify report
DIR` calls it after the fact.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from sparsify.errors import SparsifyError
from sparsify.fileio import atomic_write_text
from sparsify.report.collect import RunRow, collect, row_from_record
from sparsify.report.groups import PLOT_STEM, Group, group_rows, mark_fronts, plot_file
from sparsify.report.html import to_html
from sparsify.report.plot import plot_accuracy_latency
from sparsify.report.summary import to_console, write_tables

PLOT_NAME = f"{PLOT_STEM}.png"


@dataclass
class Report:
    rows: list[RunRow]
    files: dict[str, Path] = field(default_factory=dict)
    groups: list[Group] = field(default_factory=list)

    @property
    def front(self) -> list[RunRow]:
        return [r for r in self.rows if r.pareto]

    def console(self) -> str:
        return to_console(self.groups or group_rows(self.rows))


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
    groups = group_rows(rows)
    front = mark_fronts(groups)
    # plots of an earlier report over other runs would mislead next to this one
    for stale in out_dir.glob(f"{PLOT_STEM}*.png"):
        stale.unlink(missing_ok=True)
    files: dict[str, Path] = {}
    for group in groups:
        name = plot_file(group, several=len(groups) > 1)
        if plot_accuracy_latency(group.rows, front, out_dir / name, group.title):
            group.plot = name
            files["plot" if len(groups) == 1 else f"plot ({group.title})"] = out_dir / name
    write_tables(rows, groups, out_dir, root)
    atomic_write_text(out_dir / "report.html", to_html(groups, root, out_dir))
    files = {name: out_dir / name for name in ("summary.csv", "summary.md", "report.html")} | files
    return Report(rows, files, groups)


__all__ = ["Group", "Report", "RunRow", "build_report", "row_from_record"]
