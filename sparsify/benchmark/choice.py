"""Which candidate to package: the fastest that holds accuracy, never one slower than dense.

The benchmark stage times every candidate (the INT8 variants, the FP32 pruned model, the dense
baseline) on each engine side by side and scores each on val. Per engine, the INT8 variant
with the best speedup whose metric is within `max_drop` points of dense wins if it beats dense
by `min_speedup` (the latency guard); else the FP32 pruned model if it is faster than dense
and holds accuracy, else dense. Pure: measurements in, a `Choice` with its reason out.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

INT8, FP32, DENSE = "int8", "fp32", "dense"
# a candidate's status on one engine
CHOSEN = "chosen"
BEATEN = "beaten"  # holds accuracy and the guard, but another candidate is faster
SLOWER = "slower"  # below min_speedup (INT8) or not faster than dense (FP32 pruned)
ACCURACY = "accuracy"  # loses more than max_drop points
NO_ACCURACY = "no_accuracy"  # dense was scored, this one could not be
FAILED = "failed"  # not timed on this engine (its step failed)


@dataclass(frozen=True)
class Measured:
    """One candidate on one engine: its throughput over dense there (None: not timed) and
    its metric on val (None: not scored)."""

    name: str
    kind: str  # INT8 | FP32 | DENSE
    speedup: float | None
    accuracy: float | None


@dataclass
class Choice:
    engine: str
    variant: str
    kind: str
    speedup: float
    fallback: bool  # the guard (or accuracy) refused every INT8 variant
    reason: str
    statuses: dict[str, str] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "engine": self.engine,
            "variant": self.variant,
            "kind": self.kind,
            "speedup": round(self.speedup, 3),
            "fallback": self.fallback,
            "reason": self.reason,
            "statuses": self.statuses,
        }


def geomean_speedup(model: dict[str, Any], dense: dict[str, Any]) -> float | None:
    """Throughput over dense, the geometric mean over the batch sizes both were timed at
    (benchmark.json MODEL records); None when they share none."""
    mine = _throughputs(model)
    base = _throughputs(dense)
    ratios = [mine[b] / base[b] for b in mine if b in base and base[b] > 0 and mine[b] > 0]
    if not ratios:
        return None
    return math.exp(sum(math.log(r) for r in ratios) / len(ratios))


def _throughputs(model: dict[str, Any]) -> dict[int, float]:
    return {
        int(run["batch_size"]): float(run["benchmark_result"]["items_per_sec"])
        for run in model.get("benchmarks") or []
    }


def _drop(c: Measured, dense_accuracy: float | None) -> float | None:
    if dense_accuracy is None or c.accuracy is None:
        return None
    return dense_accuracy - c.accuracy


def _status(
    c: Measured, dense_accuracy: float | None, max_drop: float, min_speedup: float
) -> str | None:
    """Why `c` cannot ship (None: it may)."""
    if c.speedup is None:
        return FAILED
    if dense_accuracy is not None and c.kind != DENSE:
        if c.accuracy is None:
            return NO_ACCURACY
        if dense_accuracy - c.accuracy > max_drop + 1e-9:
            return ACCURACY
    if c.kind == INT8 and c.speedup < min_speedup:
        return SLOWER
    if c.kind == FP32 and c.speedup <= 1.0:
        return SLOWER
    return None


def choose(
    candidates: list[Measured],
    *,
    engine: str,
    dense_accuracy: float | None,
    max_drop: float,
    min_speedup: float,
    metric: str = "accuracy",
    host: str = "",
) -> Choice:
    """The candidate to package for `engine` (see the module docstring), every candidate's
    status, and the reason in words. `dense_accuracy` None: accuracy was not measured and is
    not checked. `host` ('AMD EPYC 7B13, no AMX') goes into a fallback's reason."""
    statuses = {c.name: _status(c, dense_accuracy, max_drop, min_speedup) for c in candidates}
    ok = [c for c in candidates if statuses[c.name] is None]
    int8 = [c for c in candidates if c.kind == INT8]
    winners = sorted((c for c in ok if c.kind == INT8), key=lambda c: -(c.speedup or 0.0))
    here = f" here ({host})" if host else ""
    if winners:
        chosen, fallback = winners[0], False
        drop = _drop(chosen, dense_accuracy)
        reason = (
            f"INT8 {chosen.name}: {chosen.speedup:.2f}x dense on {engine}"
            + (f", {metric} {-drop:+.2f} points" if drop is not None else "")
            + _others(int8, statuses, chosen.name, dense_accuracy, metric)
        )
    else:
        fp32 = next((c for c in ok if c.kind == FP32), None)
        dense = next((c for c in candidates if c.kind == DENSE), None)
        chosen = fp32 or dense or Measured("baseline", DENSE, 1.0, dense_accuracy)
        fallback = True
        shipped = (
            f"shipping the FP32 pruned model, {fp32.speedup:.2f}x"  # type: ignore[union-attr]
            if fp32
            else "shipping the dense model" + _fp32_note(candidates, statuses)
        )
        reason = f"{_int8_refused(int8, statuses, engine, here, max_drop, min_speedup, metric, dense_accuracy)}: {shipped}"
    named = {name: status or BEATEN for name, status in statuses.items()}
    named[chosen.name] = CHOSEN
    return Choice(engine, chosen.name, chosen.kind, chosen.speedup or 1.0, fallback, reason, named)


def _others(
    int8: list[Measured],
    statuses: dict[str, str | None],
    chosen: str,
    dense_accuracy: float | None,
    metric: str,
) -> str:
    """'; qoperator 1.40x, qdq_int8_depthwise top1 -4.20 (beyond max_drop)'."""
    parts = []
    for c in int8:
        if c.name == chosen:
            continue
        if statuses[c.name] == ACCURACY:
            parts.append(
                f"{c.name} {metric} {-(_drop(c, dense_accuracy) or 0):+.2f} (beyond max_drop)"
            )
        elif statuses[c.name] == FAILED:
            parts.append(f"{c.name} failed")
        elif c.speedup is not None:
            parts.append(f"{c.name} {c.speedup:.2f}x")
    return f" (also measured: {', '.join(parts)})" if parts else ""


def _int8_refused(
    int8: list[Measured],
    statuses: dict[str, str | None],
    engine: str,
    here: str,
    max_drop: float,
    min_speedup: float,
    metric: str,
    dense_accuracy: float | None,
) -> str:
    """Why no INT8 variant ships, in one clause."""
    timed = [c for c in int8 if c.speedup is not None]
    if not timed:
        return f"no INT8 model could be timed on {engine}{here}"
    held = [c for c in timed if statuses[c.name] not in (ACCURACY, NO_ACCURACY)]
    if held:
        best = max(held, key=lambda c: c.speedup or 0.0)
        return (
            f"INT8 ({best.name}, the fastest) was {best.speedup:.2f}x dense on {engine}{here}, "
            f"below benchmark.min_speedup={min_speedup:g}"
        )
    best = max(timed, key=lambda c: c.speedup or 0.0)
    drop = _drop(best, dense_accuracy)
    lost = f"{metric} {-drop:+.2f} points" if drop is not None else f"{metric} not measured"
    return (
        f"no INT8 model kept {metric} within benchmark.max_drop={max_drop:g} points of dense on "
        f"{engine}{here} (fastest, {best.name} at {best.speedup:.2f}x: {lost})"
    )


def _fp32_note(candidates: list[Measured], statuses: dict[str, str | None]) -> str:
    fp32 = next((c for c in candidates if c.kind == FP32), None)
    if fp32 is None or fp32.speedup is None:
        return ""
    if statuses[fp32.name] == ACCURACY:
        return " (the FP32 pruned model lost too much accuracy)"
    return f" (the FP32 pruned model was {fp32.speedup:.2f}x)"


def short_host(host: dict[str, Any] | None) -> str:
    """'AMD EPYC 7B13, no AMX' / 'Intel Xeon Platinum 8480+, AMX': the CPU and the flag INT8
    speed turns on most (benchmark.json's host record)."""
    if not host:
        return ""
    flags = host.get("cpu_flags") or []
    amx = "AMX" if "AMX-INT8" in flags else "no AMX"
    vnni = ", VNNI" if any("VNNI" in f for f in flags) else ""
    return f"{host.get('cpu') or 'unknown CPU'}{vnni}, {amx}"


def _metric_value(model: dict[str, Any], metric: str) -> float | None:
    """`metric` of a MODEL record's accuracy, else its first metric (None: not scored)."""
    acc = model.get("accuracy") or {}
    key = metric if metric in acc else next((k for k in acc if k not in ("samples", "kl")), None)
    value = acc.get(key) if key else None
    return None if value is None else float(value)


def choose_all(
    measured: dict[str, dict[str, dict[str, Any]]],
    kinds: dict[str, str],
    *,
    deploy_engine: str,
    max_drop: float,
    min_speedup: float,
    metric: str,
    host: str = "",
) -> tuple[dict[str, Any], dict[str, dict[str, Any]]]:
    """`chosen` and `variants` for benchmark.json from `measure_models`' report (engine ->
    candidate -> MODEL, the dense one named "baseline") and each candidate's kind: the
    deployment engine's choice (what ships), each engine's own, and per candidate and engine
    its speedup, metric and status."""
    by_engine: dict[str, Choice] = {}
    per_candidate: dict[str, dict[str, Any]] = {name: {} for name in kinds}
    for engine, models in measured.items():
        dense = models["baseline"]
        dense_accuracy = _metric_value(dense, metric)
        rows = []
        for name, kind in kinds.items():
            model = models[name]
            timed = bool(model.get("benchmarks"))
            speedup = 1.0 if kind == DENSE else geomean_speedup(model, dense) if timed else None
            rows.append(Measured(name, kind, speedup, _metric_value(model, metric)))
        choice = choose(
            rows,
            engine=engine,
            dense_accuracy=dense_accuracy,
            max_drop=max_drop,
            min_speedup=min_speedup,
            metric=metric,
            host=host if engine == deploy_engine else "",
        )
        by_engine[engine] = choice
        for row in rows:
            drop = _drop(row, dense_accuracy)
            per_candidate[row.name][engine] = {
                "speedup": None if row.speedup is None else round(row.speedup, 3),
                metric: row.accuracy,
                "accuracy_drop": None if drop is None else round(drop, 4),
                "status": choice.statuses[row.name],
            }
    shipped = by_engine[deploy_engine]
    chosen = {
        **shipped.to_dict(),
        "metric": metric,
        "max_drop": max_drop,
        "min_speedup": min_speedup,
        "by_engine": {
            e: {"variant": c.variant, "speedup": round(c.speedup, 3), "reason": c.reason}
            for e, c in by_engine.items()
        },
    }
    variants = {name: {"kind": kinds[name], "engines": per_candidate[name]} for name in kinds}
    return chosen, variants
