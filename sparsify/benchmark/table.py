"""The dense-vs-result comparison printed at the end of a run, one block of rows per engine."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sparsify.baseline import small_val_note

REFERENCE_ENGINE = "onnxruntime"  # the deployment default: other engines are also compared to it


def _result(model: dict[str, Any], batch: int) -> dict[str, Any] | None:
    for run in model.get("benchmarks") or []:
        if run["batch_size"] == batch:
            return run["benchmark_result"]
    return None


def _value(model: dict[str, Any], batch: int, key: str) -> float | None:
    result = _result(model, batch)
    return None if result is None else float(result[key])


def _round(value: float | None, digits: int) -> float | None:
    return None if value is None else round(value, digits)


def _ratio(mine: float | None, base: float | None) -> float | None:
    return round(mine / base, 3) if mine and base else None


def _batches(models: dict[str, Any]) -> list[int]:
    batches = {r["batch_size"] for m in models.values() for r in m.get("benchmarks") or []}
    batches |= {
        int(f["step"].rsplit(" ", 1)[1])
        for m in models.values()
        for f in m.get("failures") or []
        if f.get("step", "").startswith("benchmark batch ")
    }
    return sorted(batches) or [1]


# a result that keeps less than this fraction of the dense model's metric gets a note
ACCURACY_KEPT_WARNING = 0.95


def _metric(model: dict[str, Any], wanted: str | None = None) -> tuple[str | None, float | None]:
    """The use case's metric (`wanted`, e.g. f1 for QA) when measured, else the first one."""
    acc = model.get("accuracy") or {}
    metric = wanted if wanted in acc else next((k for k in acc if k != "samples"), None)
    return metric, (float(acc[metric]) if metric and acc[metric] is not None else None)


def other_metrics(model: dict[str, Any], headline: str | None) -> dict[str, float]:
    """What else was measured beside the headline metric (exact match beside F1, ...)."""
    acc = model.get("accuracy") or {}
    return {k: float(v) for k, v in acc.items() if k not in ("samples", headline) and v is not None}


def val_items(report: dict[str, Any]) -> int | None:
    """How many val items the accuracies were measured on (the most any model was)."""
    counts = [
        int((m.get("accuracy") or {}).get("samples") or 0)
        for models in report.get("engines", {}).values()
        for m in models.values()
        if isinstance(m, dict)
    ]
    return max(counts) if counts and max(counts) else None


def footnotes(report: dict[str, Any], task: str | None = None) -> list[str]:
    """Lines under the table: the accuracy column cannot resolve a 1-point change when val
    is small (one item is worth 100/N points)."""
    items = val_items(report)
    note = small_val_note(items, str(task or "")) if items else None
    notes = [f"{report.get('metric') or 'accuracy'}: {note}"] if note else []
    test = report.get("test")
    if test:  # which split each number is from
        notes.append(
            f"accuracy: val split (what pruning and the choices looked at); test_accuracy: "
            f"test split, {test.get('samples')} items, measured on {test['engine']}"
        )
    chosen = report.get("chosen")
    if chosen:  # quantization.variants: why the result is the model it is
        notes.append(
            f"result = {chosen['variant']} (chosen on {chosen['engine']}): {chosen['reason']}"
        )
    return notes


def _accuracy_note(value: float | None, dense: float | None) -> str | None:
    """Every metric here is higher-is-better (top-1, accuracy, F1, mAP, exact match)."""
    if value is None or not dense or value >= ACCURACY_KEPT_WARNING * dense:
        return None
    return (
        f"keeps {value / dense:.0%} of the dense {dense:g}: lower optim_level, or train "
        "longer (training_aware / sparse_transfer)"
    )


def _notes(model: dict[str, Any], accuracy_note: str | None = None) -> str:
    notes = [accuracy_note] if accuracy_note else []
    fraction = model.get("fraction_of_supported_ops")
    if "no_supported_ops" in (model.get("flags") or []):
        notes.append("0% ops supported: runs on DeepSparse's ONNX Runtime fallback, no speedup")
    elif fraction is not None and fraction < 0.9:
        notes.append(f"only {fraction:.0%} of ops supported")
    int8 = model.get("fraction_int8")
    if int8 is not None and int8 < 0.9:  # OpenVINO ran part of an INT8 graph in float
        notes.append(f"only {int8:.0%} of the INT8 ops ran in INT8")
    for failure in model.get("failures") or []:
        how = failure.get("signal") or failure.get("kind")
        notes.append(f"{failure.get('step')} failed ({how}){_last_words(failure)}")
    return "; ".join(notes)


def _last_words(failure: dict[str, Any], limit: int = 160) -> str:
    """': <the last non-empty line the engine wrote to stderr>' (e.g. DeepSparse's assertion)."""
    lines = [ln.strip() for ln in str(failure.get("stderr_tail") or "").splitlines()]
    last = next((ln for ln in reversed(lines) if ln), "")
    return f": {last[: limit - 1]}…" if len(last) > limit else (f": {last}" if last else "")


def comparison(report: dict[str, Any], metric: str | None = None) -> list[dict[str, Any]]:
    """One row per engine and model: accuracy, latency, throughput, speedup, size, sparsity.

    speedup_b<N> is throughput over the dense baseline on the same engine; with several engines,
    vs_ort_dense_b<N> is throughput over the dense baseline on ONNX Runtime. A model DeepSparse
    runs with 0 % supported ops gets no speedup (it ran on the fallback), only a note.
    `metric` (default: the report's, the use case's) is the accuracy column's metric.
    """
    metric = metric or report.get("metric")
    engines = report["engines"]
    reference = (engines.get(REFERENCE_ENGINE) or {}).get("baseline")
    rows = []
    for engine, models in engines.items():
        base = models["baseline"]
        batches = _batches(models)
        small, large = batches[0], batches[-1]
        base_tp = _value(base, large, "items_per_sec")
        ref_tp = _value(reference, large, "items_per_sec") if reference else None
        dense_value = _metric(base, metric)[1]
        for name, model in models.items():
            shown, value = _metric(model, metric)
            tp = _value(model, large, "items_per_sec")
            unsupported = "no_supported_ops" in (model.get("flags") or [])
            row: dict[str, Any] = {
                "engine": engine,
                "model": name,
                "accuracy": round(value, 3) if value is not None else None,
                "metric": shown,
                f"latency_ms_b{small}": _round(_value(model, small, "median"), 3),
                f"items_per_sec_b{large}": _round(tp, 1),
                f"speedup_b{large}": None if unsupported else _ratio(tp, base_tp),
            }
            test = report.get("test")
            if test:  # the final dense-vs-result scores on the held-out test split too
                row["split"] = "val"
                scores = test["models"].get(name) if engine == test["engine"] else None
                row["test_accuracy"] = _round(_metric({"accuracy": scores}, metric)[1], 3)
            if name == "sparsified" and report.get("chosen"):
                row["variant"] = report["chosen"]["variant"]
            if len(engines) > 1:
                row[f"vs_ort_dense_b{large}"] = None if unsupported else _ratio(tp, ref_tp)
            row["size_mb"] = model.get("size_mb")
            row["sparsity"] = _round(model.get("sparsity"), 4)
            if engine != REFERENCE_ENGINE:
                row["supported_ops"] = model.get("fraction_of_supported_ops")
            drop = _accuracy_note(value, dense_value) if name != "baseline" else None
            row["notes"] = _notes(model, drop)
            rows.append(row)
    return rows


def variant_rows(report: dict[str, Any]) -> list[dict[str, Any]]:
    """Every candidate quantization.variants put up, per engine (fastest first): its speedup
    over dense (geometric mean over the batch sizes), metric, drop and status."""
    metric = (report.get("chosen") or {}).get("metric") or "accuracy"
    rows: list[dict[str, Any]] = []
    for name, variant in (report.get("variants") or {}).items():
        for engine, m in (variant.get("engines") or {}).items():
            rows.append(
                {
                    "engine": engine,
                    "candidate": name,
                    "kind": variant.get("kind"),
                    "speedup": m.get("speedup"),
                    metric: None if m.get(metric) is None else round(float(m[metric]), 3),
                    "drop": m.get("accuracy_drop"),
                    "status": m.get("status"),
                }
            )
        if "same_as" in variant or "failed" in variant:
            why = f"same graph as {variant['same_as']}" if "same_as" in variant else "not written"
            rows.append({"engine": "", "candidate": name, "status": why})
    return sorted(rows, key=lambda r: (r["engine"], -(r.get("speedup") or 0.0)))


def format_table(rows: list[dict[str, Any]], notes: Sequence[str] = ()) -> str:
    """The rows as aligned text; `notes` (`footnotes`) go under it, marked with *."""
    if not rows:
        return "(no benchmark results)"
    headers: list[str] = []
    for row in rows:
        headers += [h for h in row if h not in headers]
    if "notes" in headers:  # the free text goes last, whichever engine added columns
        headers = [h for h in headers if h != "notes"] + ["notes"]
    cells = [[("" if r.get(h) is None else str(r.get(h))) for h in headers] for r in rows]
    widths = [max(len(h), *(len(c[i]) for c in cells)) for i, h in enumerate(headers)]
    lines = [headers, ["-" * w for w in widths], *cells]
    text = "\n".join(
        "  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip() for row in lines
    )
    return text + "".join(f"\n* {note}" for note in notes)
