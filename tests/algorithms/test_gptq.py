"""GPTQ rounding onto the INT8 grid, BatchNorm folding, and the grid ONNX Runtime then keeps."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
from onnx import numpy_helper
from torch import nn

from sparsify.algorithms.batchnorm import fold_batchnorm
from sparsify.algorithms.gptq import (
    INT8_LEVELS,
    gptq_round_layer,
    int8_layers,
    int8_scales,
    round_weights_for_int8,
)
from sparsify.algorithms.quantization import quantize_onnx_static
from sparsify.errors import SparsifyError
from tests.algorithms.test_quantization import _export


def _correlated_inputs(n: int, dim: int, seed: int = 0) -> torch.Tensor:
    """Inputs with correlated features, where compensating one rounding by others pays."""
    g = torch.Generator().manual_seed(seed)
    rank = max(2, dim // 8)
    mix = torch.randn(rank, dim, generator=g)
    return torch.randn(n, rank, generator=g) @ mix + 0.05 * torch.randn(n, dim, generator=g)


def _on_grid(weight: torch.Tensor, scales: torch.Tensor) -> bool:
    levels = weight.to(torch.float64) / scales.to(torch.float64).unsqueeze(1)
    return bool(torch.allclose(levels, levels.round(), atol=1e-4))


@pytest.mark.parametrize("per_channel", [False, True])
def test_gptq_rounding_beats_nearest_and_stays_on_the_grid(per_channel: bool) -> None:
    torch.manual_seed(0)
    W = torch.randn(32, 64)
    W[torch.rand_like(W) < 0.5] = 0.0  # a pruned layer: zeros must stay zeros
    x = _correlated_inputs(2048, 64)
    H = 2.0 / len(x) * (x.T @ x).to(torch.float64)
    # one outlier per row makes the grid coarse for the rest, as BN-folded per-tensor grids are
    W[:, 0] = 40.0 * W.abs().max()
    coarse = int8_scales(W, per_channel)
    rounded, error = gptq_round_layer(W, H, coarse, per_channel)
    nearest = torch.clamp(torch.round(W / coarse.unsqueeze(1).float()), -127, 127)
    nearest = nearest * coarse.unsqueeze(1).float()

    def out_error(Q: torch.Tensor) -> float:
        return float(((x @ (W - Q).T) ** 2).sum(1).mean())

    assert out_error(rounded) < 0.7 * out_error(nearest)
    assert error == pytest.approx(out_error(rounded), rel=1e-3)
    assert _on_grid(rounded, coarse)
    assert torch.equal(rounded[W == 0], torch.zeros_like(rounded[W == 0]))
    assert int((rounded.abs() / coarse.unsqueeze(1).float()).round().max()) <= INT8_LEVELS


@pytest.mark.parametrize("per_channel", [False, True])
def test_the_largest_weight_keeps_the_top_level_so_the_scale_survives(per_channel: bool) -> None:
    torch.manual_seed(1)
    W = torch.randn(8, 16)
    x = _correlated_inputs(512, 16, seed=1)
    H = 2.0 / len(x) * (x.T @ x).to(torch.float64)
    scales = int8_scales(W, per_channel)
    rounded, _ = gptq_round_layer(W, H, scales, per_channel)
    assert torch.allclose(int8_scales(rounded, per_channel), scales, rtol=1e-6)


def _cnn_with_bn() -> nn.Module:
    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Conv2d(3, 16, 3, padding=1, bias=False),
        nn.BatchNorm2d(16),
        nn.ReLU(),
        nn.Conv2d(16, 16, 3, padding=1, groups=16),  # depthwise
        nn.BatchNorm2d(16),
        nn.ReLU(),
        nn.Conv2d(16, 32, 1),
        nn.BatchNorm2d(32),
        nn.ReLU(),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(32, 10),
    )
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.uniform_(-0.5, 0.5)
                m.running_var.uniform_(0.2, 3.0)
                m.weight.uniform_(0.1, 2.0)
                m.bias.uniform_(-0.3, 0.3)
    return model.eval()


def test_fold_batchnorm_keeps_the_output_and_leaves_identity_batchnorms() -> None:
    model = _cnn_with_bn()
    x = torch.randn(4, 3, 8, 8)
    with torch.no_grad():
        before = model(x)
    assert fold_batchnorm(model, (x,)) == 3
    with torch.no_grad():
        assert torch.allclose(model(x), before, atol=1e-5)
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            assert torch.all(m.weight == 1) and torch.all(m.running_mean == 0)


class _SharedConvOutput(nn.Module):
    """The conv's output feeds its BatchNorm and a skip connection: folding would change it."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(4, 4, 1)
        self.bn = nn.BatchNorm2d(4)
        with torch.no_grad():
            self.bn.running_var.fill_(4.0)
            self.bn.running_mean.fill_(1.0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.conv(x)
        return self.bn(y) + y


def test_fold_batchnorm_refuses_a_layer_whose_output_is_also_used_elsewhere() -> None:
    with pytest.raises(SparsifyError, match="changed the model's output"):
        fold_batchnorm(_SharedConvOutput().eval(), (torch.randn(2, 4, 5, 5),))


class _Tokens(nn.Module):
    """A Linear on 3-D inputs (exports to MatMul) and one on 2-D inputs (exports to Gemm)."""

    def __init__(self) -> None:
        super().__init__()
        self.proj = nn.Linear(8, 16)
        self.head = nn.Linear(16, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(torch.relu(self.proj(x)).mean(1))


def test_int8_layers_follow_the_onnx_op_each_module_exports_to() -> None:
    model = _cnn_with_bn()
    batch = (torch.randn(2, 3, 8, 8),)
    assert sorted(int8_layers(model, batch, ["Conv", "MatMul"])) == ["0", "3", "6"]
    assert sorted(int8_layers(model, batch, ["Conv", "MatMul"], fp32_grouped=True)) == ["0", "6"]
    assert sorted(int8_layers(model, batch, ["Conv", "Gemm"])) == ["0", "11", "3", "6"]
    assert sorted(int8_layers(model, batch, ["Conv"], ignore=["6", "3"])) == ["0"]
    assert sorted(int8_layers(model, batch, ["Conv"], ignore=["re:^[03]$"])) == ["6"]
    tokens = _Tokens().eval()
    assert sorted(int8_layers(tokens, (torch.randn(2, 5, 8),), ["MatMul"])) == ["proj"]


def _dequantized_weights(path: Path) -> list[np.ndarray]:
    """Every int8 weight initializer times its scale, in the quantized graph."""
    model = onnx.load(str(path))
    inits = {i.name: numpy_helper.to_array(i) for i in model.graph.initializer}
    out = []
    for node in model.graph.node:
        if node.op_type == "QLinearConv":
            w, scale = inits[node.input[3]], inits[node.input[4]]
        elif node.op_type == "DequantizeLinear" and inits.get(node.input[0]) is not None:
            w, scale = inits[node.input[0]], inits[node.input[1]]
            if w.dtype != np.int8:
                continue
        else:
            continue
        shape = (-1,) + (1,) * (w.ndim - 1)
        out.append(w.astype(np.float64) * np.asarray(scale, np.float64).reshape(shape))
    return out


@pytest.mark.parametrize(
    ("fmt", "per_channel", "fp32_depthwise"),
    [
        ("qoperator", False, True),
        ("qoperator", False, False),
        ("qdq", False, False),
        ("qdq", True, False),
    ],
)
def test_onnx_runtime_keeps_the_gptq_grid_exactly(
    tmp_path: Path, fmt: str, per_channel: bool, fp32_depthwise: bool
) -> None:
    """Weights GPTQ left on the grid come out of ORT's quantizer unchanged (no re-rounding)."""
    model = _cnn_with_bn()
    g = torch.Generator().manual_seed(0)
    batches = [(torch.randn(8, 3, 16, 16, generator=g),) for _ in range(4)]
    stats = round_weights_for_int8(
        model, batches, ["Conv"], per_channel=per_channel, fp32_grouped=fp32_depthwise
    )
    convs = [0, 6] if fp32_depthwise else [0, 3, 6]
    assert stats == {"weight_rounding": "gptq", "folded_batchnorm": 3, "rounded_layers": len(convs)}
    fp32 = _export(model, tmp_path / "rounded.onnx")
    int8 = tmp_path / "int8.onnx"
    calibration = [{"input": b[0][:1].numpy()} for b in batches]
    quantize_onnx_static(
        fp32, int8, calibration, fmt=fmt, per_channel=per_channel, op_types=["Conv"],
        fp32_depthwise=fp32_depthwise,
    )  # fmt: skip
    theirs = _dequantized_weights(int8)
    assert len(theirs) == len(convs)
    for index, onnx_weight in zip(convs, theirs, strict=True):
        ours = model[index].weight.detach().double().numpy()
        np.testing.assert_allclose(onnx_weight, ours, atol=1e-6)


def test_no_calibration_batches_is_one_clear_error() -> None:
    with pytest.raises(SparsifyError, match="GPTQ rounding needs calibration data"):
        round_weights_for_int8(_cnn_with_bn(), [], ["Conv"])
