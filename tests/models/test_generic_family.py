"""The custom use case: a generic ONNX / TorchScript model with NPZ calibration data."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch

import sparsify
from sparsify.algorithms.onnx_pruning import prune_onnx, weight_initializers
from sparsify.benchmark.onnx_stats import onnx_weight_sparsity
from sparsify.models.generic.family import output_fidelity
from sparsify.models.tiny import tinynet
from tests.fixtures.npz import make_npz_folder

RUN = [
    "benchmark.time_s=0.1",
    "benchmark.warmup_s=0.02",
    "benchmark.batch_sizes=[1,2]",
    "experiment.calibration_samples=4",
]


def _onnx_model(path: Path) -> Path:
    torch.manual_seed(0)
    model = tinynet(4).eval()
    torch.onnx.export(
        model,
        (torch.randn(1, 3, 8, 8),),
        str(path),
        dynamo=False,
        opset_version=17,
        input_names=["input"],
        output_names=["logits"],
        dynamic_axes={"input": {0: "batch"}, "logits": {0: "batch"}},
    )
    return path


def test_prune_onnx_hits_the_target(tmp_path: Path) -> None:
    model = onnx.load(str(_onnx_model(tmp_path / "m.onnx")))
    names = weight_initializers(model)
    assert len(names) == 5  # 4 convs + the classifier
    per_tensor = prune_onnx(model, 0.6)
    assert set(per_tensor) == set(names)
    onnx.save(model, str(tmp_path / "p.onnx"))
    assert abs(onnx_weight_sparsity(tmp_path / "p.onnx")["sparsity"] - 0.6) < 0.01


def test_output_fidelity() -> None:
    ref = [[np.array([[1.0, 0.0], [0.0, 1.0]])]]
    assert output_fidelity(ref, ref) == {
        "output_cosine": pytest.approx(100.0),
        "top1_agreement": 100.0,
    }
    flipped = [[np.array([[0.0, 1.0], [0.0, 1.0]])]]
    assert output_fidelity(ref, flipped)["top1_agreement"] == 50.0


@pytest.mark.parametrize("kind", ["onnx", "torchscript"])
def test_custom_use_case_one_shot(kind: str, tmp_path: Path) -> None:
    data = make_npz_folder(tmp_path / "npz", n=6, inputs={"input": (3, 8, 8)})
    if kind == "onnx":
        model = _onnx_model(tmp_path / "model.onnx")
    else:
        model = tmp_path / "model.pt"
        torch.jit.save(torch.jit.script(tinynet(4).eval()), str(model))
    result = sparsify.run(
        ["use_case=my-sensor-net", f"data.path={data}", f"model={model}", "optim_level=0.5", *RUN],
        run_dir=tmp_path / "run",
    )
    assert result.status == "done", result.error
    deploy = result.deployment_dir
    config = json.loads((deploy / "config.json").read_text())
    assert config["use_case"] == "my-sensor-net" and config["preprocessing"] == {"type": "none"}
    assert abs(onnx_weight_sparsity(deploy / "model.onnx")["sparsity"] - 0.5143) < 0.01
    fidelity = json.loads((deploy / "metrics.json").read_text())["sparsified"]
    assert 0 < fidelity["output_cosine"] <= 100.0001 and fidelity["samples"] == 6


def test_custom_model_inputs_must_match_the_npz_keys(tmp_path: Path) -> None:
    data = make_npz_folder(tmp_path / "npz", n=2, inputs={"pixels": (3, 8, 8)})
    model = _onnx_model(tmp_path / "model.onnx")
    result = sparsify.run(
        ["use_case=my-sensor-net", f"data.path={data}", f"model={model}"], run_dir=tmp_path / "run"
    )
    assert result.status == "failed"
    assert "['input']" in result.error and "['pixels']" in result.error
