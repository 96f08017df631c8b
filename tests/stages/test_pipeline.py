"""End to end on tiny data: deployment, sparsity, skipping, partial re-runs, crashes."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest

import sparsify
from sparsify.benchmark.onnx_stats import onnx_weight_sparsity
from sparsify.deploy import Pipeline


def _manifest(run_dir: Path) -> dict:
    return json.loads((run_dir / "manifest.json").read_text())


@pytest.fixture(scope="module")
def finished_run(
    tiny_images: Path, tmp_path_factory: pytest.TempPathFactory
) -> sparsify.runner.RunResult:
    from tests.conftest import TINY_RUN

    run_dir = tmp_path_factory.mktemp("run") / "r"
    result = sparsify.run(
        [f"data.path={tiny_images}", "optim_level=0.5", *TINY_RUN], run_dir=run_dir
    )
    assert result.status == "done", result.error
    return result


def test_deployment_folder_runs_in_onnxruntime(finished_run, tiny_images: Path) -> None:  # noqa: ANN001
    deploy = finished_run.deployment_dir
    for name in (
        "model.onnx",
        "config.json",
        "recipe.yaml",
        "benchmark.json",
        "metrics.json",
        "README.md",
        "labels.txt",
    ):
        assert (deploy / name).is_file(), name
    config = json.loads((deploy / "config.json").read_text())
    assert config["use_case"] == "cv-classification"
    assert config["labels"] == ["a", "b", "c"]
    assert config["inputs"][0]["shape"] == ["batch", 3, 16, 16]
    session = ort.InferenceSession(str(deploy / "model.onnx"), providers=["CPUExecutionProvider"])
    out = session.run(None, {"input": np.zeros((2, 3, 16, 16), np.float32)})[0]
    assert out.shape == (2, 3)
    preds = Pipeline(deploy)(
        [tiny_images / "val" / "a" / "0.png", tiny_images / "val" / "c" / "1.png"]
    )
    assert [p.label in {"a", "b", "c"} for p in preds] == [True, True]
    assert all(0.0 <= p.score <= 1.0 for p in preds)


def test_measured_sparsity_matches_optim_level(finished_run) -> None:  # noqa: ANN001
    # one-shot 0.5 -> 40 % + (0.2 / 0.7) * 40 % = 51.4 %
    expected = 0.4 + (0.5 - 0.3) / 0.7 * 0.4
    measured = onnx_weight_sparsity(finished_run.deployment_dir / "model.onnx")["sparsity"]
    assert abs(measured - expected) < 0.01
    bench = json.loads((finished_run.deployment_dir / "benchmark.json").read_text())
    ort_results = bench["engines"]["onnxruntime"]
    assert abs(ort_results["sparsified"]["sparsity"] - expected) < 0.01
    assert ort_results["baseline"]["sparsity"] < 0.01
    for model in ("baseline", "sparsified"):
        runs = ort_results[model]["benchmarks"]
        assert [r["batch_size"] for r in runs] == [1, 4]
        for r in runs:
            res = r["benchmark_result"]
            assert res["iterations"] >= 3 and res["items_per_sec"] > 0
            assert {"median", "mean", "std", "90.0%", "99.0%", "seconds_ran"} <= set(res)
        assert 0 <= ort_results[model]["accuracy"]["top1"] <= 100
        assert ort_results[model]["accuracy"]["samples"] == 12
    quantized = any(
        n.op_type == "QuantizeLinear"
        for n in __import__("onnx").load(finished_run.deployment_dir / "model.onnx").graph.node
    )
    assert quantized


def test_manifest_records_every_stage(finished_run) -> None:  # noqa: ANN001
    manifest = _manifest(finished_run.run_dir)
    assert list(manifest["stages"]) == ["validate", "fetch", "sparsify", "benchmark", "package"]
    for record in manifest["stages"].values():
        assert record["status"] == "done"
        assert record["fingerprint"] and record["duration_s"] >= 0
        for artifact in record["outputs"]["artifacts"]:
            assert (finished_run.run_dir / artifact).exists()
    assert (finished_run.run_dir / "config.yaml").is_file()
    assert "Stage package: done" in (finished_run.run_dir / "run.log").read_text()


def test_second_run_skips_finished_stages(tiny_run: list[str], tmp_path: Path) -> None:
    run_dir = tmp_path / "again"
    assert sparsify.run(tiny_run, run_dir=run_dir).status == "done"
    before = {k: v["finished_at"] for k, v in _manifest(run_dir)["stages"].items()}
    model_mtime = (run_dir / "sparsify" / "model.onnx").stat().st_mtime_ns
    assert sparsify.run(tiny_run, run_dir=run_dir).status == "done"
    after = {k: v["finished_at"] for k, v in _manifest(run_dir)["stages"].items()}
    assert before == after
    assert (run_dir / "sparsify" / "model.onnx").stat().st_mtime_ns == model_mtime
    assert "finished earlier with the same inputs, skipped" in (run_dir / "run.log").read_text()

    # a changed input re-runs the stages that depend on it, not the ones before
    assert sparsify.run([*tiny_run, "benchmark.batch_sizes=[2]"], run_dir=run_dir).status == "done"
    changed = {k: v["finished_at"] for k, v in _manifest(run_dir)["stages"].items()}
    assert changed["sparsify"] == before["sparsify"]
    bench = json.loads((run_dir / "deployment" / "benchmark.json").read_text())
    assert [r["batch_size"] for r in bench["engines"]["onnxruntime"]["baseline"]["benchmarks"]] == [
        2
    ]


def test_stage_selection_reruns_only_those(tiny_run: list[str], tmp_path: Path) -> None:
    run_dir = tmp_path / "partial"
    assert sparsify.run(tiny_run, run_dir=run_dir).status == "done"
    before = {k: v["finished_at"] for k, v in _manifest(run_dir)["stages"].items()}
    time.sleep(1.1)  # finished_at has one-second resolution
    result = sparsify.run([*tiny_run, "stages=[benchmark,package]"], run_dir=run_dir)
    assert result.status == "done"
    after = {k: v["finished_at"] for k, v in _manifest(run_dir)["stages"].items()}
    assert [k for k in after if after[k] != before[k]] == ["benchmark", "package"]


def test_stage_selection_needs_earlier_results(tiny_run: list[str], tmp_path: Path) -> None:
    result = sparsify.run([*tiny_run, "stages=[benchmark]"], run_dir=tmp_path / "empty")
    assert result.status == "failed"
    assert "has not finished" in result.error and "validate" in result.error


def test_killed_stage_is_redone_and_nothing_earlier_is_lost(
    tiny_run: list[str], tmp_path: Path
) -> None:
    run_dir = tmp_path / "killed"
    # a long benchmark gives time to kill the process in the middle of that stage
    args = [*tiny_run, "benchmark.time_s=30", f"run_dir={run_dir}"]
    proc = subprocess.Popen(
        [sys.executable, "-m", "sparsify", *args],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env={**os.environ},
    )
    deadline = time.time() + 120
    while time.time() < deadline:
        try:
            stages = _manifest(run_dir)["stages"]
        except (FileNotFoundError, json.JSONDecodeError):
            stages = {}
        if stages.get("benchmark", {}).get("status") == "running":
            break
        assert proc.poll() is None, "the run ended before the benchmark stage"
        time.sleep(0.2)
    time.sleep(0.5)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    stages = _manifest(run_dir)["stages"]  # still valid JSON: written atomically
    assert stages["benchmark"]["status"] == "running"
    assert [s for s in stages if stages[s]["status"] == "done"] == ["validate", "fetch", "sparsify"]
    # validate checks benchmark.time_s too, so it re-runs below (cheaply); the stages after it
    # depend on its outputs, which do not change, so they must be kept
    done_before = {k: stages[k]["finished_at"] for k in ("fetch", "sparsify")}

    result = sparsify.run(tiny_run, run_dir=run_dir)  # time_s back to the short default
    assert result.status == "done"
    stages = _manifest(run_dir)["stages"]
    assert {k: stages[k]["finished_at"] for k in done_before} == done_before
    assert stages["benchmark"]["status"] == "done" and stages["package"]["status"] == "done"
    assert (run_dir / "deployment" / "model.onnx").is_file()


def test_interrupt_is_recorded(
    tiny_run: list[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from sparsify.stages import STAGES

    stage = STAGES.get("sparsify")

    def boom(ctx):  # noqa: ANN001, ANN202
        raise KeyboardInterrupt

    monkeypatch.setattr(stage, "run", boom)
    run_dir = tmp_path / "ctrl_c"
    with pytest.raises(KeyboardInterrupt):
        sparsify.run(tiny_run, run_dir=run_dir)
    stages = _manifest(run_dir)["stages"]
    assert stages["sparsify"]["status"] == "interrupted"
    assert stages["fetch"]["status"] == "done"
    monkeypatch.undo()
    assert sparsify.run(tiny_run, run_dir=run_dir).status == "done"
    assert _manifest(run_dir)["stages"]["sparsify"]["status"] == "done"
