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


class SweepReport(Callback):
    """summary.csv, summary.md, report.html and the plot at the sweep root after the sweep."""

    def __init__(self, enabled: bool = True) -> None:
        self.enabled = enabled

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        if not self.enabled:
            return
        root = Path(str(config.hydra.sweep.dir))
        # A report problem must not turn a finished sweep into a failed command: every run
        # is on disk, and `sparsify report` can rebuild the report from there.
        try:
            from sparsify.report import build_report

            report = build_report(root)
        except Exception as exc:
            log.error(
                "Could not write the sweep report for %s: %s: %s. The runs are intact; "
                "rebuild it with: sparsify report %s",
                root,
                type(exc).__name__,
                exc,
                root,
            )
            return
        print(f"\nSweep summary ({len(report.rows)} runs):\n{report.console()}")
        for row in report.rows:
            if row.status != "done":
                print(f"  job {row.job} {row.status}: {' '.join((row.error or '').split())[:300]}")
        print(f"\nSweep report: {report.files['report.html']}")
        print(f"Summary: {report.files['summary.csv']}, {report.files['summary.md']}")
