"""Weight sparsity read from ONNX files, fp32 and INT8 alike."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
from onnx import TensorProto, helper, numpy_helper
from torch import nn

from sparsify.algorithms.quantization import quantize_onnx_static
from sparsify.benchmark.onnx_stats import file_size_mb, onnx_weight_sparsity


def _tiny_pruned_cnn(sparsity: float) -> tuple[nn.Module, float]:
    """The test CNN with its smallest weights zeroed, and the zeroed fraction it ended up with."""
    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Conv2d(3, 16, 3, padding=1),
        nn.BatchNorm2d(16),
        nn.ReLU(),
        nn.Conv2d(16, 32, 3, padding=1),
        nn.BatchNorm2d(32),
        nn.ReLU(),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(32, 10),
    )
    zeros = params = 0
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, (nn.Conv2d, nn.Linear)):
                w = module.weight
                w[w.abs() <= w.abs().flatten().kthvalue(int(w.numel() * sparsity)).values] = 0
                zeros, params = zeros + int((w == 0).sum()), params + w.numel()
            elif isinstance(module, nn.BatchNorm2d):
                module.running_mean.uniform_(-0.1, 0.1)
                module.running_var.uniform_(0.5, 2.0)
    return model.eval(), zeros / params


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict[str, Path], float]:
    """fp32, QDQ and QOperator exports of the pruned CNN, and its true sparsity."""
    root = tmp_path_factory.mktemp("stats")
    model, zeroed = _tiny_pruned_cnn(sparsity=0.5)
    fp32 = root / "model.onnx"
    torch.onnx.export(
        model,
        (torch.randn(1, 3, 16, 16),),
        fp32,
        dynamo=False,
        opset_version=17,
        input_names=["input"],
        output_names=["logits"],
        dynamic_axes={"input": {0: "batch"}, "logits": {0: "batch"}},
    )
    rng = np.random.default_rng(0)
    calib = [{"input": rng.standard_normal((1, 3, 16, 16)).astype(np.float32)} for _ in range(8)]
    paths = {"fp32": fp32}
    for fmt in ("qdq", "qoperator"):
        paths[fmt] = root / f"model.{fmt}.onnx"
        quantize_onnx_static(fp32, paths[fmt], calib, fmt=fmt)
    return paths, zeroed


@pytest.mark.parametrize("which", ["fp32", "qdq", "qoperator"])
def test_sparsity_matches_zeroed_fraction(
    models: tuple[dict[str, Path], float], which: str
) -> None:
    paths, zeroed = models
    stats = onnx_weight_sparsity(paths[which])
    assert abs(stats["sparsity"] - zeroed) <= 0.01
    # two convs + the classifier; biases (1-D) are not counted
    assert len(stats["per_tensor"]) == 3
    assert stats["params"] == 3 * 16 * 9 + 16 * 32 * 9 + 32 * 10
    assert stats["zeros"] == pytest.approx(stats["sparsity"] * stats["params"])
    assert all(abs(s - 0.5) <= 0.02 for s in stats["per_tensor"].values())


def test_int8_model_is_smaller(models: tuple[dict[str, Path], float]) -> None:
    paths, _ = models
    assert 0 < file_size_mb(paths["qoperator"]) < file_size_mb(paths["fp32"])


def test_quantized_zeros_are_values_at_the_zero_point(tmp_path: Path) -> None:
    """A uint8 per-channel weight behind DequantizeLinear: zero means `== zero point`."""
    q = np.array([[128, 5, 128, 128], [100, 100, 7, 9]], dtype=np.uint8)  # 3 + 2 zeros of 8
    graph = helper.make_graph(
        [
            helper.make_node("DequantizeLinear", ["w_q", "w_scale", "w_zp"], ["w"], axis=0),
            helper.make_node("MatMul", ["x", "w"], ["y"]),
        ],
        "dq",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 2])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4])],
        initializer=[
            numpy_helper.from_array(q, "w_q"),
            numpy_helper.from_array(np.array([0.1, 0.2], dtype=np.float32), "w_scale"),
            numpy_helper.from_array(np.array([128, 100], dtype=np.uint8), "w_zp"),
        ],
    )
    path = tmp_path / "dq.onnx"
    onnx.save(helper.make_model(graph), str(path))

    stats = onnx_weight_sparsity(path)
    assert stats == {"sparsity": 5 / 8, "zeros": 5, "params": 8, "per_tensor": {"w_q": 5 / 8}}


def test_int8_ops_are_counted_in_both_formats(cnn_models: dict[str, Path]) -> None:
    """The two convs are quantized (Conv / MatMul op types); the Linear is a Gemm, left float."""
    from sparsify.benchmark.onnx_stats import int8_op_count

    counts = {name: int8_op_count(path) for name, path in cnn_models.items()}
    assert counts == {"fp32": 0, "qoperator": 2, "qoperator_per_channel": 2, "qdq": 2}
