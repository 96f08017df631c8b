"""Runs of several use cases in one report: one table and one plot per (use case, metric).

Entity F1, exact match and mask mAP are not one axis: a report over a tree of runs groups
them by the use case and the metric they were measured by. Within a group, runs on different
data sets (or from different dense models) have different dense baselines, so each baseline
gets its own star and its own Pareto front: a result is only compared with the runs that
share its dense model.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field

from sparsify.report.collect import RunRow
from sparsify.report.summary import mark_pareto

PLOT_STEM = "accuracy_vs_latency"

BaselineKey = tuple[str | None, str | None]  # (data, model)


def baseline_key(row: RunRow) -> BaselineKey:
    """What decides a run's dense baseline: the data it was trained on and the dense model."""
    return (row.data, row.model)


def describe_baseline(key: BaselineKey) -> str:
    data, model = key
    return " / ".join(v for v in (data, model) if v) or "unknown data"


@dataclass
class Group:
    """The runs of one use case measured by one metric: one table and one plot."""

    use_case: str | None
    metric: str | None
    rows: list[RunRow] = field(default_factory=list)
    plot: str | None = None  # the plot's file name once written

    @property
    def title(self) -> str:
        return f"{self.use_case or 'unknown use case'}: {self.metric or 'no metric recorded'}"

    @property
    def slug(self) -> str:
        """A file-name-safe id, unique per (use case, metric)."""
        text = f"{self.use_case or 'unknown'}_{self.metric or 'none'}"
        return re.sub(r"[^A-Za-z0-9.-]+", "_", text)

    def baselines(self) -> dict[BaselineKey, list[RunRow]]:
        """The group's runs per dense baseline, in order of first appearance."""
        sets: dict[BaselineKey, list[RunRow]] = {}
        for row in self.rows:
            sets.setdefault(baseline_key(row), []).append(row)
        return sets


def group_rows(rows: Sequence[RunRow]) -> list[Group]:
    """Rows grouped by (use case, metric), groups in order of first appearance.

    A run that recorded no metric (an old config, a job that died before composing one)
    joins its use case's group when there is exactly one, rather than a table of its own.
    """
    groups: dict[tuple[str | None, str | None], Group] = {}
    for row in rows:
        if row.metric is not None:
            key = (row.use_case, row.metric)
            groups.setdefault(key, Group(row.use_case, row.metric)).rows.append(row)
    for row in rows:
        if row.metric is None:
            same = [g for (uc, _), g in groups.items() if uc == row.use_case and g.metric]
            group = (
                same[0]
                if len(same) == 1
                else groups.setdefault((row.use_case, None), Group(row.use_case, None))
            )
            group.rows.append(row)
    order = {id(r): i for i, r in enumerate(rows)}
    for group in groups.values():
        group.rows.sort(key=lambda r: order[id(r)])
    return sorted(groups.values(), key=lambda g: order[id(g.rows[0])])


def mark_fronts(groups: Sequence[Group]) -> list[RunRow]:
    """Mark the Pareto front of each group's runs per dense baseline; all fronts' rows."""
    front: list[RunRow] = []
    for group in groups:
        for rows in group.baselines().values():
            front += mark_pareto(rows)
    return front


def plot_file(group: Group, several: bool) -> str:
    """A single group keeps the plain name older reports (and links to them) used."""
    return f"{PLOT_STEM}_{group.slug}.png" if several else f"{PLOT_STEM}.png"
