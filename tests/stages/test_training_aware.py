"""Training-aware runs end to end: GMP to the level's sparsity, QAT, INT8 export that keeps it."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import yaml

import sparsify
from sparsify.benchmark.onnx_stats import onnx_weight_sparsity


@pytest.mark.slow
@pytest.mark.parametrize("fmt", ["qoperator", "qdq", "dynamic"])
def test_training_aware_classifier(tiny_run: list[str], fmt: str) -> None:
    result = sparsify.run(
        [
            *tiny_run,
            "experiment=training_aware",
            "optim_level=0.5",
            f"quantization.format={fmt}",
            "experiment.train.max_steps=12",
        ]
    )
    assert result.status == "done", result.error
    produced = result.outputs["sparsify"]
    # training-aware level 0.5 -> 60 + (0.5 - 0.3) / 0.7 * 35 = 70 % sparsity
    target = 0.7
    assert abs(produced["sparsity"] - target) < 0.005
    assert produced["qat"] is True
    events = [e["event"] for e in produced["events"]]
    assert "masks updated" in events and "QAT started" in events
    for name in ("model_fp32.onnx", "model.onnx"):
        exported = onnx_weight_sparsity(result.run_dir / "sparsify" / name)["sparsity"]
        assert abs(exported - target) < 0.005, (name, exported)
    deploy = result.deployment_dir
    int8_ops = {"qoperator": "QLinearConv", "qdq": "DequantizeLinear", "dynamic": "ConvInteger"}
    graph = onnx.load(str(deploy / "model.onnx")).graph
    assert int8_ops[fmt] in {n.op_type for n in graph.node}
    session = ort.InferenceSession(str(deploy / "model.onnx"), providers=["CPUExecutionProvider"])
    out = session.run(None, {"input": np.zeros((2, 3, 16, 16), np.float32)})[0]
    assert out.shape == (2, 3)
    applied = yaml.safe_load((deploy / "recipe.yaml").read_text())["train_stage"]
    assert "GMPruningModifier" in applied["pruning_modifiers"]
    assert "QuantizationModifier" in applied["quantization_modifiers"]
    assert "DistillationModifier" in applied["distillation_modifiers"]
    events = list((result.run_dir / "sparsify" / "tensorboard").glob("events.out.tfevents.*"))
    assert events and events[0].stat().st_size > 0
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    accumulated = EventAccumulator(str(events[0].parent)).Reload()
    sparsity = [e.value for e in accumulated.Scalars("train/sparsity")]
    assert len(sparsity) == 12 and sparsity[0] < sparsity[-1] == pytest.approx(0.7)
    table = {row["model"]: row for row in result.table}
    assert table["sparsified"]["accuracy"] is not None


def test_level_below_point_three_trains_int8_only(tiny_run: list[str], tmp_path: Path) -> None:
    result = sparsify.run(
        [*tiny_run, "experiment=training_aware", "optim_level=0.2", "experiment.train.max_steps=4"]
    )
    assert result.status == "done", result.error
    produced = result.outputs["sparsify"]
    assert produced["sparsity"] < 0.01 and produced["qat"] is True
