"""The end-of-run table: per engine, speedups against the right baseline, flags in the notes."""

from __future__ import annotations

from typing import Any

from sparsify.benchmark.table import comparison, format_table


def _model(tp: dict[int, float], **extra: Any) -> dict[str, Any]:
    runs = [
        {"batch_size": b, "benchmark_result": {"items_per_sec": v, "median": 1000 * b / v}}
        for b, v in tp.items()
    ]
    return {
        "size_mb": 1.0,
        "sparsity": 0.5,
        "benchmarks": runs,
        "failures": [],
        "flags": [],
        **extra,
    }


def _report() -> dict[str, Any]:
    return {
        "engines": {
            "onnxruntime": {
                "baseline": _model({1: 100.0, 16: 200.0}, accuracy={"top1": 90.0, "samples": 8}),
                "sparsified": _model({1: 200.0, 16: 500.0}, accuracy={"top1": 89.0, "samples": 8}),
            },
            "deepsparse": {
                "baseline": _model({1: 100.0, 16: 400.0}, fraction_of_supported_ops=1.0),
                "sparsified": _model({1: 300.0, 16: 2000.0}, fraction_of_supported_ops=0.97),
            },
        }
    }


def test_speedups_per_engine_and_against_dense_onnxruntime() -> None:
    rows = {(r["engine"], r["model"]): r for r in comparison(_report())}
    ort, ds = rows[("onnxruntime", "sparsified")], rows[("deepsparse", "sparsified")]
    assert ort["speedup_b16"] == 2.5 and ort["vs_ort_dense_b16"] == 2.5
    assert ds["speedup_b16"] == 5.0  # over dense on DeepSparse
    assert ds["vs_ort_dense_b16"] == 10.0  # over dense on ONNX Runtime
    assert ds["supported_ops"] == 0.97 and "supported_ops" not in ort
    assert ort["latency_ms_b1"] == 5.0 and ort["accuracy"] == 89.0 and ort["metric"] == "top1"
    assert ds["accuracy"] is None and ds["notes"] == ""


def test_a_result_that_lost_accuracy_is_flagged() -> None:
    report = _report()
    ort = report["engines"]["onnxruntime"]
    rows = {(r["engine"], r["model"]): r for r in comparison(report)}
    assert rows[("onnxruntime", "sparsified")]["notes"] == ""  # 89 of 90: kept
    ort["sparsified"]["accuracy"] = {"top1": 10.0, "samples": 8}
    rows = {(r["engine"], r["model"]): r for r in comparison(report)}
    note = rows[("onnxruntime", "sparsified")]["notes"]
    assert note.startswith("keeps 11% of the dense 90:") and "optim_level" in note
    assert rows[("onnxruntime", "baseline")]["notes"] == ""


def test_no_supported_ops_and_failures_are_notes_not_numbers() -> None:
    report = _report()
    ds = report["engines"]["deepsparse"]
    ds["sparsified"].update(fraction_of_supported_ops=0.0, flags=["no_supported_ops"])
    ds["baseline"]["benchmarks"] = ds["baseline"]["benchmarks"][:1]
    ds["baseline"]["failures"] = [
        {"step": "benchmark batch 16", "kind": "crash", "signal": "SIGABRT"},
        {"step": "accuracy", "kind": "timeout"},
    ]
    rows = {(r["engine"], r["model"]): r for r in comparison(report)}
    base, mine = rows[("deepsparse", "baseline")], rows[("deepsparse", "sparsified")]
    assert base["items_per_sec_b16"] is None and base["latency_ms_b1"] == 10.0
    assert base["notes"] == "benchmark batch 16 failed (SIGABRT); accuracy failed (timeout)"
    assert mine["speedup_b16"] is None and mine["vs_ort_dense_b16"] is None
    assert "0% ops supported" in mine["notes"]
    text = format_table(list(rows.values()))
    header = text.splitlines()[0].split()
    assert header[-1] == "notes" and "supported_ops" in header
    assert len(text.splitlines()) == 2 + 4


def test_single_engine_keeps_the_columns_others_read() -> None:
    report = _report()
    del report["engines"]["deepsparse"]
    row = comparison(report)[1]
    assert list(row) == [
        "engine", "model", "accuracy", "metric", "latency_ms_b1", "items_per_sec_b16",
        "speedup_b16", "size_mb", "sparsity", "notes",
    ]  # fmt: skip
