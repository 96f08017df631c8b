"""The package's choice among INT8 variants, FP32 pruned and dense, on injected measurements."""

from __future__ import annotations

from typing import Any

import pytest

from sparsify.benchmark.choice import (
    ACCURACY,
    BEATEN,
    CHOSEN,
    DENSE,
    FAILED,
    FP32,
    INT8,
    SLOWER,
    Measured,
    choose,
    choose_all,
    geomean_speedup,
)

RULES = {"engine": "onnxruntime", "max_drop": 1.0, "min_speedup": 1.05, "metric": "top1"}


def _candidates(**int8: tuple[float | None, float | None]) -> list[Measured]:
    """dense (1.0x, 90.0), FP32 pruned (1.10x, 89.8) and the given INT8 (speedup, top1)."""
    return [
        Measured("baseline", DENSE, 1.0, 90.0),
        Measured("fp32", FP32, 1.10, 89.8),
        *(Measured(name, INT8, s, a) for name, (s, a) in int8.items()),
    ]


def test_the_fastest_within_tolerance_wins() -> None:
    choice = choose(
        _candidates(qoperator=(1.4, 89.5), qdq=(1.9, 89.2)), dense_accuracy=90.0, **RULES
    )
    assert (choice.variant, choice.kind, choice.fallback) == ("qdq", INT8, False)
    assert choice.speedup == pytest.approx(1.9)
    assert choice.statuses == {
        "baseline": BEATEN,
        "fp32": BEATEN,
        "qoperator": BEATEN,
        "qdq": CHOSEN,
    }
    assert "1.90x dense on onnxruntime" in choice.reason and "qoperator 1.40x" in choice.reason


def test_a_faster_variant_outside_tolerance_loses() -> None:
    choice = choose(
        _candidates(qdq=(1.5, 89.5), qdq_int8_depthwise=(2.5, 85.0)), dense_accuracy=90.0, **RULES
    )
    assert choice.variant == "qdq"
    assert choice.statuses["qdq_int8_depthwise"] == ACCURACY
    assert "qdq_int8_depthwise top1 -5.00 (beyond max_drop)" in choice.reason


def test_int8_slower_than_the_guard_ships_fp32_with_the_reason() -> None:
    choice = choose(
        _candidates(qoperator=(0.79, 89.9), qdq=(0.88, 89.9)),
        dense_accuracy=90.0,
        host="AMD EPYC 7B13, no AMX",
        **RULES,
    )
    assert (choice.variant, choice.kind, choice.fallback) == ("fp32", FP32, True)
    assert choice.statuses["qoperator"] == choice.statuses["qdq"] == SLOWER
    assert choice.reason == (
        "INT8 (qdq, the fastest) was 0.88x dense on onnxruntime here (AMD EPYC 7B13, no AMX), "
        "below benchmark.min_speedup=1.05: shipping the FP32 pruned model, 1.10x"
    )


def test_just_under_the_guard_is_refused() -> None:
    """1.04x is faster than dense but not by min_speedup: refused."""
    choice = choose(_candidates(qdq=(1.04, 90.0)), dense_accuracy=90.0, **RULES)
    assert choice.fallback and choice.variant == "fp32"


def test_dense_ships_when_fp32_is_not_faster() -> None:
    candidates = [
        Measured("baseline", DENSE, 1.0, 90.0),
        Measured("fp32", FP32, 0.97, 89.8),
        Measured("qdq", INT8, 0.7, 89.9),
    ]
    choice = choose(candidates, dense_accuracy=90.0, **RULES)
    assert (choice.variant, choice.kind, choice.fallback) == ("baseline", DENSE, True)
    assert choice.statuses["fp32"] == SLOWER
    assert choice.reason.endswith("shipping the dense model (the FP32 pruned model was 0.97x)")


def test_no_int8_within_tolerance_says_so() -> None:
    choice = choose(_candidates(qdq=(2.0, 80.0)), dense_accuracy=90.0, **RULES)
    assert choice.variant == "fp32" and choice.statuses["qdq"] == ACCURACY
    assert "no INT8 model kept top1 within benchmark.max_drop=1 points" in choice.reason
    assert "qdq at 2.00x: top1 -10.00 points" in choice.reason


def test_a_failed_variant_is_never_chosen() -> None:
    choice = choose(
        _candidates(qdq=(None, None), qoperator=(1.3, 90.0)), dense_accuracy=90.0, **RULES
    )
    assert choice.variant == "qoperator" and choice.statuses["qdq"] == FAILED


def test_without_accuracy_speed_decides() -> None:
    choice = choose(_candidates(qdq=(1.3, None)), dense_accuracy=None, **RULES)
    assert choice.variant == "qdq"


def _model(throughputs: dict[int, float], top1: float | None) -> dict[str, Any]:
    return {
        "benchmarks": [
            {"batch_size": b, "benchmark_result": {"items_per_sec": t}}
            for b, t in throughputs.items()
        ],
        "accuracy": None if top1 is None else {"top1": top1, "samples": 100},
    }


def test_geomean_speedup_over_the_shared_batch_sizes() -> None:
    dense = _model({1: 100.0, 16: 400.0}, 90.0)
    assert geomean_speedup(_model({1: 200.0, 16: 400.0}, 90.0), dense) == pytest.approx(2**0.5)
    assert geomean_speedup(_model({}, 90.0), dense) is None


def test_choose_all_ships_the_deployment_engines_pick() -> None:
    """ONNX Runtime: INT8 slower than dense -> FP32; OpenVINO: INT8 wins there. What ships
    is the deployment engine's choice; the other engine's is recorded."""
    measured = {
        "onnxruntime": {
            "baseline": _model({1: 100.0, 4: 300.0}, 90.0),
            "fp32": _model({1: 110.0, 4: 330.0}, 89.5),
            "qdq": _model({1: 80.0, 4: 240.0}, 89.6),
        },
        "openvino": {
            "baseline": _model({1: 100.0, 4: 300.0}, 90.0),
            "fp32": _model({1: 100.0, 4: 300.0}, 89.5),
            "qdq": _model({1: 250.0, 4: 750.0}, 89.6),
        },
    }
    kinds = {"baseline": DENSE, "fp32": FP32, "qdq": INT8}
    chosen, variants = choose_all(
        measured,
        kinds,
        deploy_engine="onnxruntime",
        max_drop=1.0,
        min_speedup=1.05,
        metric="top1",
        host="AMD EPYC 7B13, no AMX",
    )
    assert chosen["variant"] == "fp32" and chosen["fallback"] and chosen["engine"] == "onnxruntime"
    assert chosen["by_engine"]["openvino"]["variant"] == "qdq"
    assert "was 0.80x dense on onnxruntime here (AMD EPYC 7B13, no AMX)" in chosen["reason"]
    assert variants["qdq"]["engines"]["openvino"] == {
        "speedup": 2.5,
        "top1": 89.6,
        "accuracy_drop": 0.4,
        "status": CHOSEN,
    }
    assert variants["qdq"]["engines"]["onnxruntime"]["status"] == SLOWER
