"""What the budget search leaves at the sweep root: trials.csv, budget.json, best/, and the
closing message; and `budget.keep`, which frees the heavy files of the trials not kept."""

from __future__ import annotations

import csv
import io
import json
import shutil
from pathlib import Path
from typing import Any

from sparsify.budget.trials import DONE, Selection, TrialResult
from sparsify.fileio import atomic_write_text
from sparsify.run_record import RunRecord

TRIALS_CSV = "trials.csv"
BUDGET_JSON = "budget.json"  # read by the sweep report's plot (sparsify/report/plot.py)
BEST = "best"
# what a trial run dir keeps when it is not among the best `budget.keep`: the manifest, config,
# logs, benchmark/ and deployment/ are small; these hold every ONNX file and checkpoint
HEAVY = ("sparsify", "fetch")


def trials_csv(results: list[TrialResult], selection: Selection, max_drop: float) -> str:
    keys = sorted({k for r in results for k in r.params})
    engines = sorted({e for r in results for e in r.speedups})
    columns = ["trial", "status", *keys, "metric", "value", "dense", "drop", "fits", "speedup"]
    columns += ["overshoot"]
    columns += [f"speedup_{e}" for e in engines]
    columns += ["latency_ms", "dense_latency_ms", "chosen", "run_dir", "error"]
    chosen = selection.chosen.number if selection.chosen else None
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=columns, lineterminator="\n")
    writer.writeheader()
    for r in sorted(results, key=lambda r: r.number):
        row: dict[str, Any] = {"trial": r.number, "status": r.status, **r.params}
        row.update(metric=r.metric, value=r.value, dense=r.dense, drop=r.drop)
        row["overshoot"] = r.overshoot
        row.update(speedup=r.speedup, latency_ms=r.latency_ms, dense_latency_ms=r.dense_latency_ms)
        row.update({f"speedup_{e}": v for e, v in r.speedups.items()})
        row.update(fits="yes" if r.fits(max_drop) else ("no" if r.status == DONE else ""))
        row.update(chosen="yes" if r.number == chosen else "", run_dir=r.run_dir)
        row["error"] = " ".join((r.error or "").split())[:300]
        writer.writerow({k: "" if v is None else v for k, v in row.items()})
    return buf.getvalue()


def copy_best(sweep_dir: Path, chosen: TrialResult | None) -> Path | None:
    """best/: a copy of the chosen run's deployment folder (a copy, not a link: it outlives
    `budget.keep` and a moved sweep dir). Removed when nothing was chosen."""
    best = sweep_dir / BEST
    if best.is_symlink() or best.is_file():
        best.unlink()
    elif best.exists():
        shutil.rmtree(best)
    if chosen is None or not chosen.run_dir:
        return None
    package = RunRecord.load(chosen.run_dir).outputs.get("package") or {}
    source = Path(package.get("deployment_dir") or Path(chosen.run_dir) / "deployment")
    if not source.is_dir():
        return None
    shutil.copytree(source, best)
    return best


def free_trials(results: list[TrialResult], selection: Selection, keep: int | None) -> list[str]:
    """Delete the ONNX files and checkpoints of every finished trial but the `keep` best (the
    chosen one first, then by speedup among those in budget, then by drop). Returns the run
    dirs freed. Their manifest, benchmark and deployment stay, so the report still reads them."""
    if keep is None:
        return []
    done = [r for r in results if r.status == DONE and r.run_dir]
    chosen = selection.chosen.number if selection.chosen else None
    ranked = sorted(
        done,
        key=lambda r: (r.number != chosen, r.drop is None, -(r.speedup or 0.0), r.drop or 0.0),
    )
    freed = []
    for r in ranked[max(0, keep) :]:
        for name in HEAVY:
            heavy = Path(str(r.run_dir)) / name
            if heavy.is_dir():
                shutil.rmtree(heavy, ignore_errors=True)
                freed.append(str(r.run_dir))
    return sorted(set(freed))


def _trial(r: TrialResult | None) -> dict[str, Any] | None:
    if r is None:
        return None
    return {
        "trial": r.number,
        "run_dir": r.run_dir,
        "params": r.params,
        "value": r.value,
        "dense": r.dense,
        "drop": r.drop,
        "speedup": r.speedup,
        "latency_ms": r.latency_ms,
    }


def write_budget_json(
    sweep_dir: Path, settings: dict[str, Any], selection: Selection, ran: int, test: Any
) -> dict[str, Any]:
    data = {
        **settings,
        "trials_ran": ran,
        "finished": selection.finished,
        "within_budget": selection.feasible,
        "chosen": _trial(selection.chosen),
        "closest": _trial(selection.closest),
        "test": test,
    }
    atomic_write_text(sweep_dir / BUDGET_JSON, json.dumps(data, indent=2, default=str) + "\n")
    return data


def message(data: dict[str, Any]) -> str:
    """The end-of-search lines: the chosen package, its drop and speedup, the trials run."""
    metric, engine, budget = data["metric"], data["engine"], data["max_drop"]
    counts = (
        f"{data['trials_ran']} trial(s) ran, {data['finished']} finished, "
        f"{data['within_budget']} within {budget:g} point(s) of {metric}"
    )
    chosen = data["chosen"]
    if chosen is None:
        closest = data["closest"]
        if closest is None:
            return f"Budget search: no trial finished ({counts})."
        return (
            f"Budget search: no trial fits the budget of {budget:g} point(s) of {metric} "
            f"({counts}). Closest: trial {closest['trial']} ({closest['run_dir']}), drop "
            f"{closest['drop']:g}, speedup {closest['speedup']:g}x on {engine}; "
            "raise budget.max_drop or budget.trials, or narrow budget.space"
        )
    lines = [
        f"Budget search: trial {chosen['trial']} is the fastest within {budget:g} point(s) "
        f"of {metric}: {chosen['value']:g} vs dense {chosen['dense']:g} on val "
        f"(drop {chosen['drop']:g}), {chosen['speedup']:g}x dense on {engine} ({counts}).",
        f"  settings: {', '.join(f'{k}={v}' for k, v in chosen['params'].items())}",
        f"  run: {chosen['run_dir']}",
    ]
    test = data.get("test") or {}
    if test.get("value") is not None:
        lines.append(
            f"  on test: {test['value']:g} vs dense {test['dense']:g} (drop {test['drop']:g}, "
            f"{test['samples']} items)"
        )
    elif test.get("note"):
        lines.append(f"  on test: {test['note']}")
    return "\n".join(lines)


def read_budget(sweep_dir: Path) -> dict[str, Any] | None:
    """budget.json of a budget search's sweep dir; None when there is none (a plain sweep)."""
    try:
        data = json.loads((sweep_dir / BUDGET_JSON).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None
