"""The Hydra callback that writes the sweep report when a multirun ends.

Registered in conf/config.yaml under `hydra.callbacks.sweep_report`. Hydra imports this
module before it builds the sweeper and launcher, which is also what registers the
`sparsify_*` resolvers the launcher presets use. Kept light: matplotlib is imported only
when a report is written.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig

from sparsify.report.resources import register_resolvers

log = logging.getLogger("sparsify.report")
register_resolvers()

# How the last sweep in this process ended, for the `sparsify` command's exit status: Hydra
# returns nothing from a multirun, and only this callback sees every job's outcome (jobs of
# the joblib / ray / slurm launchers run in other processes).
_last_sweep: dict[str, str | None] = {"failed": None}


def failed_sweep_jobs() -> str | None:
    """A line naming the failed jobs of the sweep that just ended (None when all finished,
    or when no sweep ran); reading it clears it."""
    failed, _last_sweep["failed"] = _last_sweep["failed"], None
    return failed


def _record_outcome(root: Path, rows: list[Any]) -> None:
    failed = [r for r in rows if r.status != "done"]
    if failed:
        jobs = ", ".join(f"{r.run or r.run_dir} ({r.status})" for r in failed)
        _last_sweep["failed"] = (
            f"{len(failed)} of {len(rows)} sweep job(s) did not finish: {jobs}. "
            f"Their errors are in the sweep report under {root} and in each job's run.log"
        )


class SweepReport(Callback):
    """summary.csv, summary.md, report.html and the plot at the sweep root after the sweep."""

    def __init__(self, enabled: bool = True) -> None:
        self.enabled = enabled

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        _last_sweep["failed"] = None

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        root = Path(str(config.hydra.sweep.dir))
        if not self.enabled:
            _record_outcome(root, _rows(root))
            return
        # A report problem must not turn a finished sweep into a failed command: every run
        # is on disk, and `sparsify report` can rebuild the report from there.
        try:
            from sparsify.report import build_report

            report = build_report(root)
        except Exception as exc:
            _record_outcome(root, _rows(root))
            log.error(
                "Could not write the sweep report for %s: %s: %s. The runs are intact; "
                "rebuild it with: sparsify report %s",
                root,
                type(exc).__name__,
                exc,
                root,
            )
            return
        _record_outcome(root, report.rows)
        print(f"\nSweep summary ({len(report.rows)} runs):\n{report.console()}")
        for row in report.rows:
            if row.status != "done":
                print(f"  {row.run} {row.status}: {' '.join((row.error or '').split())[:300]}")
        print(f"\nSweep report: {report.files['report.html']}")
        print(f"Summary: {report.files['summary.csv']}, {report.files['summary.md']}")


def _rows(root: Path) -> list[Any]:
    """The sweep's rows without a report; none when even they cannot be read (the error is
    logged: the exit status then says nothing about the jobs)."""
    try:
        from sparsify.report.collect import collect

        return collect(root)
    except Exception as exc:
        log.error("Could not read the sweep's runs under %s: %s: %s", root, type(exc).__name__, exc)
        return []
