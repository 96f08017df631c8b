"""package: what deployment/ holds after a real run, and the model card's numbers."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import sparsify
from sparsify.benchmark.table import comparison
from sparsify.deploy import Pipeline
from sparsify.runner import RunResult
from sparsify.stages.package import onnx_io
from tests.conftest import TINY_RUN


@pytest.fixture(scope="module")
def run(tiny_images: Path, tmp_path_factory: pytest.TempPathFactory) -> RunResult:
    run_dir = tmp_path_factory.mktemp("package") / "run"
    result = sparsify.run(
        [f"data.path={tiny_images}", "optim_level=0.5", *TINY_RUN], run_dir=run_dir
    )
    assert result.status == "done", result.error
    return result


def test_deployment_files_and_config(run: RunResult) -> None:
    deploy = run.deployment_dir
    assert sorted(p.name for p in deploy.iterdir()) == [
        "README.md",
        "benchmark.json",
        "config.json",
        "labels.txt",
        "metrics.json",
        "model.onnx",
        "recipe.yaml",
    ]
    config = json.loads((deploy / "config.json").read_text())
    assert config["task"] == "image-classification" and config["use_case"] == "cv-classification"
    assert config["model"] == "model.onnx" and config["format_version"] == 1
    assert config["inputs"] == onnx_io(deploy / "model.onnx")["inputs"]
    assert config["inputs"] == [
        {"name": "input", "shape": ["batch", 3, 16, 16], "dtype": "float32"}
    ]
    assert config["outputs"][0]["shape"] == ["batch", 3]
    assert (
        config["preprocessing"]["type"] == "image" and config["preprocessing"]["image_size"] == 16
    )
    assert config["labels"] == ["a", "b", "c"] == (deploy / "labels.txt").read_text().split()
    assert config["quantized"] is True and 0.5 < config["sparsity"] < 0.53
    assert (deploy / "recipe.yaml").read_text() == (
        run.run_dir / "sparsify" / "recipe.yaml"
    ).read_text()
    assert run.outputs["package"]["task"] == "image-classification"
    assert Pipeline(deploy).task == "image-classification"


def test_model_card_reports_the_measured_numbers(run: RunResult) -> None:
    deploy = run.deployment_dir
    card = (deploy / "README.md").read_text()
    bench = json.loads((deploy / "benchmark.json").read_text())
    rows = {r["model"]: r for r in comparison(bench)}
    for model in ("baseline", "sparsified"):
        row = rows[model]
        for key in ("accuracy", "latency_ms_b1", "items_per_sec_b4", "size_mb"):
            assert str(row[key]) in card, (model, key)
    mine, base = rows["sparsified"], rows["baseline"]
    assert f"{mine['speedup_b4']}x the dense throughput at batch 4" in card
    assert f"top1 {base['accuracy']} (dense) -> {mine['accuracy']} (this model)" in card
    assert "51.4% of its prunable weights are zero, INT8-quantized" in card
    assert "batch sizes [1, 4]" in card
    assert f'Pipeline("{deploy}")' in card and f"sparsify serve {deploy} --port 8000" in card
    assert "curl -F file=@image.jpg" in card and "/predict" in card
    assert "resize the shorter side to 16, center-crop 16" in card
