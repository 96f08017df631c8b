"""The benchmark stage with OpenVINO beside ONNX Runtime and DeepSparse: timed, accuracy
measured on it, the host recorded, the model card naming it."""

from __future__ import annotations

import json
from pathlib import Path

import sparsify
from sparsify.benchmark.table import format_table
from tests.openvino_check import skip_without_openvino

skip_without_openvino()


def test_openvino_beside_onnxruntime_and_deepsparse(
    tiny_run: list[str], deepsparse_python: Path
) -> None:
    result = sparsify.run(
        [
            *tiny_run,
            "benchmark.engines=[onnxruntime,openvino,deepsparse]",
            f"benchmark.deepsparse_python={deepsparse_python}",
            "benchmark.num_threads=1",
        ]
    )
    assert result.status == "done", result.error
    bench = json.loads((result.run_dir / "benchmark" / "benchmark.json").read_text())
    assert list(bench["engines"]) == ["onnxruntime", "openvino", "deepsparse"]
    ov = bench["engines"]["openvino"]
    for name in ("baseline", "sparsified"):
        model = ov[name]
        assert model["failures"] == [], model["failures"]
        assert [r["batch_size"] for r in model["benchmarks"]] == [1, 4]
        for run in model["benchmarks"]:
            assert run["engine_version"].startswith("20") and run["num_cores"] == 1
            assert run["host"]["cpu"] and run["host"]["cpus_available"] >= 1
        # OpenVINO's own accuracy of the exported model, same metric as onnxruntime's
        assert model["accuracy_engine"] == "openvino" and model["accuracy"]["samples"] == 12
        ort = bench["engines"]["onnxruntime"][name]["accuracy"]["top1"]
        assert abs(model["accuracy"]["top1"] - ort) <= 100 / 12 + 1e-6  # at most one image
    int8 = ov["sparsified"]
    assert int8["int8_ops"] > 0 and 0.0 <= int8["fraction_int8"] <= 1.0
    rows = {(r["engine"], r["model"]): r for r in result.table}
    assert rows[("openvino", "sparsified")]["vs_ort_dense_b4"] > 0
    assert "openvino" in format_table(result.table)
    card = (result.deployment_dir / "README.md").read_text()
    assert "Measured on " in card and "openvino 20" in card
