"""One trial's outcome, read back from its run directory, and the choice among trials.

Trials are read through `RunRecord` (the one reader of a run dir) whichever launcher ran
them, so a job on Ray or Slurm is judged from the same files as a local one.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sparsify.benchmark.choice import ACCURACY, DENSE
from sparsify.benchmark.table import comparison
from sparsify.run_record import RunRecord

DONE, FAILED, RUNNING = "done", "failed", "running"


@dataclass
class TrialResult:
    number: int
    params: dict[str, Any]
    run_dir: str | None = None
    status: str = RUNNING  # done | failed | running (not finished: a crash or Ctrl-C)
    metric: str | None = None
    value: float | None = None  # the result's metric on val, on the budget engine
    dense: float | None = None  # the dense baseline's, same engine, same run
    speedup: float | None = None  # throughput over dense on the budget engine
    speedups: dict[str, float | None] = field(default_factory=dict)  # every engine measured
    latency_ms: float | None = None  # the result's median latency at the smallest batch
    dense_latency_ms: float | None = None
    # the guard shipped dense because every package of the trial lost more than its max_drop:
    # their smallest drop. The dense model fits any budget at 1x; the search learns from this
    # that the trial went too far (study.tell), the selection still sees the dense package
    overshoot: float | None = None
    error: str | None = None

    @property
    def drop(self) -> float | None:
        """Points lost against dense (negative: the result scored higher)."""
        if self.value is None or self.dense is None:
            return None
        return round(self.dense - self.value, 4)

    def fits(self, max_drop: float) -> bool:
        return self.status == DONE and self.drop is not None and self.drop <= max_drop

    def to_attrs(self) -> dict[str, Any]:
        """What the study stores with the trial (Optuna user attrs), for resume and trials.csv."""
        keys = ("run_dir", "status", "metric", "value", "dense", "speedup", "speedups")
        attrs = {k: getattr(self, k) for k in keys}
        attrs.update(latency_ms=self.latency_ms, dense_latency_ms=self.dense_latency_ms)
        attrs.update(drop=self.drop, overshoot=self.overshoot, error=self.error)
        return attrs

    @classmethod
    def from_attrs(cls, number: int, params: dict[str, Any], attrs: dict[str, Any]) -> TrialResult:
        known = {k: attrs[k] for k in cls.__dataclass_fields__ if k in attrs}
        return cls(number=number, params=dict(params), **known)


def _first(rows: list[dict[str, Any]], prefix: str) -> float | None:
    for key, value in rows[0].items() if rows else ():
        if key.startswith(prefix) and key[len(prefix) :].isdigit():
            return None if value is None else float(value)
    return None


def read_trial(
    number: int, params: dict[str, Any], run_dir: Path, engine: str, metric: str
) -> TrialResult:
    """The trial's metric, its dense baseline's and the speedup on `engine`, from its run dir;
    status failed (with why) when the run failed or did not measure what the budget needs."""
    result = TrialResult(number=number, params=params, run_dir=str(run_dir), metric=metric)
    record = RunRecord.load(run_dir)
    if record.failed_marker is not None or record.status != DONE:
        result.status = FAILED
        result.error = record.error() or f"did not finish (status {record.status})"
        return result
    report = record.benchmark()
    if not report or not report.get("engines"):
        return _failed(result, "no benchmark.json: the benchmark stage did not run")
    rows = comparison(report, metric)
    by = {(r["engine"], r["model"]): r for r in rows}
    result.speedups = {
        r["engine"]: _first([r], "speedup_b") for r in rows if r["model"] == "sparsified"
    }
    base, mine = by.get((engine, "baseline")), by.get((engine, "sparsified"))
    if base is None or mine is None:
        measured = ", ".join(sorted({r["engine"] for r in rows})) or "none"
        return _failed(result, f"not benchmarked on {engine} (engines measured: {measured})")
    if mine.get("metric") != metric or mine.get("accuracy") is None:
        got = sorted((report["engines"][engine].get("sparsified") or {}).get("accuracy") or {})
        got = [k for k in got if k != "samples"]
        return _failed(
            result, f"{metric} not measured on {engine} (measured: {', '.join(got) or 'none'})"
        )
    result.value, result.dense = float(mine["accuracy"]), base.get("accuracy")
    result.dense = None if result.dense is None else float(result.dense)
    result.speedup = result.speedups.get(engine)
    result.latency_ms = _first([mine], "latency_ms_b")
    result.dense_latency_ms = _first([base], "latency_ms_b")
    if result.dense is None or result.speedup is None:
        return _failed(result, f"no dense {metric} or no speedup on {engine}: {mine.get('notes')}")
    result.overshoot = _overshoot(report, engine, metric, result.dense)
    result.status = DONE
    return result


def _overshoot(report: dict[str, Any], engine: str, metric: str, dense: float) -> float | None:
    """The smallest drop among the trial's own packages when the guard shipped the dense model
    because each of them lost too much accuracy (benchmark.json's `chosen` and `variants`);
    None when one of them was refused for speed only, or the trial shipped one."""
    if (report.get("chosen") or {}).get("kind") != DENSE:
        return None
    drops = []
    for variant in (report.get("variants") or {}).values():
        measured = (variant.get("engines") or {}).get(engine)
        if variant.get("kind") == DENSE or not measured:
            continue  # the baseline itself, or a variant that is another's file (same_as)
        if measured.get("status") != ACCURACY or measured.get(metric) is None:
            return None
        drops.append(round(dense - float(measured[metric]), 4))
    return min(drops) if drops else None


def _failed(result: TrialResult, why: str) -> TrialResult:
    result.status, result.error = FAILED, why
    return result


@dataclass
class Selection:
    chosen: TrialResult | None  # the fastest trial within the budget
    closest: TrialResult | None  # when none fits: the finished trial with the smallest drop
    finished: int  # trials that ran to the end
    feasible: int  # of those, within the budget


def select(results: list[TrialResult], max_drop: float) -> Selection:
    """The fastest trial within `max_drop` (ties: the smaller drop, then the earlier trial)."""
    finished = [r for r in results if r.status == DONE and r.drop is not None]
    feasible = [r for r in finished if r.fits(max_drop)]
    chosen = min(feasible, key=lambda r: (-(r.speedup or 0.0), r.drop, r.number), default=None)
    closest = None
    if chosen is None:
        closest = min(finished, key=lambda r: (r.drop, -(r.speedup or 0.0), r.number), default=None)
    return Selection(chosen, closest, len(finished), len(feasible))
