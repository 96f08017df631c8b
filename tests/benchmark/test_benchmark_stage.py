"""The benchmark stage end to end on the tiny image run: several engines, and failures recorded."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import sparsify
from sparsify.benchmark.table import format_table


def _bench(result) -> dict:  # noqa: ANN001
    assert result.status == "done", result.error
    return json.loads((result.run_dir / "benchmark" / "benchmark.json").read_text())


def test_deepsparse_beside_onnxruntime(tiny_run: list[str], deepsparse_python: Path) -> None:
    result = sparsify.run(
        [
            *tiny_run,
            "benchmark.engines=[onnxruntime,deepsparse]",
            f"benchmark.deepsparse_python={deepsparse_python}",
            "benchmark.num_threads=1",
        ]
    )
    bench = _bench(result)
    assert list(bench["engines"]) == ["onnxruntime", "deepsparse"]
    ds = bench["engines"]["deepsparse"]
    for name in ("baseline", "sparsified"):
        model = ds[name]
        assert model["failures"] == [], model["failures"]
        assert [r["batch_size"] for r in model["benchmarks"]] == [1, 4]
        for run in model["benchmarks"]:
            assert run["engine_version"] == "1.8.0" and run["num_cores"] == 1
            assert {"items_per_sec", "median", "99.0%"} <= set(run["benchmark_result"])
        # the default quantization (QOperator, per-tensor, Conv+MatMul) runs natively
        assert model["fraction_of_supported_ops"] >= 0.9
        # DeepSparse's own accuracy of the exported model, same metric as onnxruntime's
        assert model["accuracy_engine"] == "deepsparse"
        assert model["accuracy"]["samples"] == 12
        ort = bench["engines"]["onnxruntime"][name]["accuracy"]["top1"]
        assert abs(model["accuracy"]["top1"] - ort) <= 100 / 12 + 1e-6  # at most one image
    rows = {(r["engine"], r["model"]): r for r in result.table}
    assert rows[("deepsparse", "sparsified")]["supported_ops"] >= 0.9
    assert rows[("deepsparse", "sparsified")]["vs_ort_dense_b4"] > 0
    assert "deepsparse" in format_table(result.table)


def test_engine_crash_is_recorded_and_the_run_goes_on(
    tiny_run: list[str], abort_on_benchmark_python: Path
) -> None:
    """An engine that aborts (as DeepSparse does on some graphs) costs only its own numbers."""
    result = sparsify.run(
        [
            *tiny_run,
            "benchmark.engines=[onnxruntime,deepsparse]",
            f"benchmark.deepsparse_python={abort_on_benchmark_python}",
        ]
    )
    bench = _bench(result)
    ort = bench["engines"]["onnxruntime"]
    assert all(len(ort[m]["benchmarks"]) == 2 and not ort[m]["failures"] for m in ort)
    for model in bench["engines"]["deepsparse"].values():
        assert model["benchmarks"] == []
        assert [f["step"] for f in model["failures"]] == ["benchmark batch 1", "benchmark batch 4"]
        for failure in model["failures"]:
            assert failure["kind"] == "crash" and failure["signal"] == "SIGABRT"
            assert "died (SIGABRT)" in failure["message"]
        assert "failed" in model["flags"]
        # a fresh worker after the crash still measured accuracy
        assert model["accuracy"]["samples"] == 12
    row = next(r for r in result.table if r["engine"] == "deepsparse")
    assert row["latency_ms_b1"] is None and row["speedup_b4"] is None
    assert "benchmark batch 1 failed (SIGABRT)" in row["notes"]
    assert "SIGABRT" in format_table(result.table)
    metrics = json.loads((result.run_dir / "benchmark" / "metrics.json").read_text())
    assert metrics["sparsified_engine"] == "onnxruntime"


def test_missing_deepsparse_fails_early_naming_the_make_target(
    tiny_run: list[str], tmp_path: Path
) -> None:
    result = sparsify.run(
        [
            *tiny_run,
            "benchmark.engines=[onnxruntime,deepsparse]",
            f"benchmark.deepsparse_python={tmp_path / 'no-venv' / 'python'}",
        ]
    )
    assert result.status == "failed"
    assert "make deepsparse" in str(result.error)


def test_unknown_engine_lists_the_known_ones(tiny_run: list[str]) -> None:
    result = sparsify.run([*tiny_run, "benchmark.engines=[tensorrt]"])
    assert result.status == "failed"
    assert "onnxruntime, deepsparse" in str(result.error)


@pytest.mark.parametrize("threads", [1])
def test_engines_share_threads_and_inputs(tiny_run: list[str], threads: int) -> None:
    bench = _bench(sparsify.run([*tiny_run, f"benchmark.num_threads={threads}"]))
    runs = [r for m in bench["engines"]["onnxruntime"].values() for r in m["benchmarks"]]
    assert {r["num_cores"] for r in runs} == {threads}
    assert {tuple(map(tuple, r["input_shapes"])) for r in runs if r["batch_size"] == 4} == {
        ((4, 3, 16, 16),)
    }


def test_transformer_runs_whole_on_deepsparse(tmp_path: Path, deepsparse_python: Path) -> None:
    """A tiny BERT's INT8 package on DeepSparse: LayerNormalization spelled out by the worker
    and the attention scores float, so every op but the embeddings' Gathers runs compiled;
    DeepSparse's accuracy and the deployed Pipeline agree with ONNX Runtime's."""
    pytest.importorskip("transformers")
    from sparsify.deploy import Pipeline
    from tests.fixtures.hf_models import make_tiny_bert
    from tests.fixtures.text import make_text_classification
    from tests.models.test_transformers_family import NLP_RUN

    data = make_text_classification(tmp_path / "data")
    encoder = make_tiny_bert(tmp_path / "bert")
    result = sparsify.run(
        [
            "use_case=sentiment", f"data.path={data}", f"model={encoder}", "optim_level=0.2",
            *NLP_RUN, "benchmark.engines=[onnxruntime,deepsparse]",
            f"benchmark.deepsparse_python={deepsparse_python}", "benchmark.num_threads=1",
        ],
        run_dir=tmp_path / "run",
    )  # fmt: skip
    bench = _bench(result)["engines"]
    for name in ("baseline", "sparsified"):
        ds = bench["deepsparse"][name]
        assert ds["failures"] == [] and ds["fraction_of_supported_ops"] >= 0.95, ds
        accuracy = ds["accuracy"]["accuracy"]
        assert abs(accuracy - bench["onnxruntime"][name]["accuracy"]["accuracy"]) <= 5.0
    texts = ["the movie was great", "an awful boring film", "it was fine"]
    on_ds = Pipeline(result.deployment_dir, engine="deepsparse", num_threads=1)
    on_ort = Pipeline(result.deployment_dir)
    for got, expected in zip(on_ds(texts), on_ort(texts), strict=True):
        assert got.label == expected.label and abs(got.score - expected.score) < 0.05
