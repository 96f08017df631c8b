"""QAT fake-quant wrappers: INT8 grid, ONNX QDQ export that ONNX Runtime runs, stripping."""

from __future__ import annotations

import warnings
from collections import Counter
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import torch
from torch import nn

from sparsify.algorithms.qat import (
    ActivationFakeQuant,
    QuantWrapper,
    fake_quant_weight,
    fold_weight_quantizers,
    freeze_batchnorm,
    freeze_observers,
    prepare_qat,
    strip_qat,
    wrappers,
)
from sparsify.benchmark.onnx_stats import onnx_weight_sparsity


def net() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(), nn.Flatten(),
        nn.Linear(8 * 6 * 6, 5),
    )  # fmt: skip


def test_weights_land_on_a_symmetric_int8_grid_per_channel() -> None:
    w = torch.randn(4, 3, 3, 3)
    q = fake_quant_weight(w, per_channel=True)
    scale = w.abs().reshape(4, -1).amax(1) / 127
    steps = q / scale[:, None, None, None]
    assert torch.allclose(steps, steps.round(), atol=1e-4)
    assert steps.abs().max() <= 127 + 1e-4
    assert (q - w).abs().max() <= scale.max() / 2 + 1e-6


def test_activation_observer_tracks_range_and_freezes() -> None:
    fq = ActivationFakeQuant(momentum=1.0).train()
    x = torch.linspace(-1.0, 3.0, 100)
    y = fq(x)
    scale, zero = fq.qparams()
    assert abs(scale - 4.0 / 255) < 1e-6 and zero == round(1.0 / scale)
    assert (y - x).abs().max() <= scale / 2 + 1e-6
    fq.observe = False
    fq(torch.full((3,), 100.0))
    assert float(fq.max_val) == 3.0


def test_prepare_respects_ignore_and_keeps_parameters() -> None:
    model = net()
    params = {id(p) for p in model.parameters()}
    names = prepare_qat(model, ignore=["4"])
    assert names == ["0"] and isinstance(model[0], QuantWrapper)
    assert isinstance(model[4], nn.Linear)
    assert {id(p) for p in model.parameters()} == params  # an existing optimizer still trains


def test_qdq_export_runs_in_onnxruntime_and_matches_torch(tmp_path: Path) -> None:
    model = net()
    prepare_qat(model)
    model.train()
    with torch.no_grad():
        for _ in range(10):
            model(torch.randn(16, 3, 6, 6))
    freeze_observers(model)
    freeze_batchnorm(model)
    model.eval()
    x = torch.randn(4, 3, 6, 6)
    expected = model(x).detach().numpy()
    path = tmp_path / "qat.onnx"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            model, (x,), str(path), dynamo=False, opset_version=17,
            input_names=["input"], dynamic_axes={"input": {0: "batch"}},
        )  # fmt: skip
    assert fold_weight_quantizers(path) == 2
    ops = Counter(n.op_type for n in onnx.load(str(path)).graph.node)
    assert ops["QuantizeLinear"] == 2 and ops["DequantizeLinear"] == 4  # inputs + weights
    ints = [
        i for i in onnx.load(str(path)).graph.initializer if i.data_type == onnx.TensorProto.INT8
    ]
    assert len(ints) == 2
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    got = session.run(None, {"input": x.numpy()})[0]
    np.testing.assert_allclose(got, expected, atol=1e-4 * max(1.0, np.abs(expected).max()))


def test_sparsity_survives_qdq_export(tmp_path: Path) -> None:
    model = net()
    with torch.no_grad():
        for layer in (model[0], model[4]):
            layer.weight[layer.weight.abs() < layer.weight.abs().median()] = 0
    prepare_qat(model)
    model.train()(torch.randn(8, 3, 6, 6))
    model.eval()
    path = tmp_path / "qat.onnx"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(model, (torch.randn(1, 3, 6, 6),), str(path), dynamo=False)
    fold_weight_quantizers(path)
    assert abs(onnx_weight_sparsity(path)["sparsity"] - 0.5) < 0.02


def test_strip_restores_plain_layers_with_trained_weights() -> None:
    model = net()
    prepare_qat(model)
    freeze_batchnorm(model)
    weight = model[0].layer.weight
    ranges = strip_qat(model)
    assert set(ranges) == {"0", "4"} and not wrappers(model)
    assert model[0].weight is weight
    model.train()
    assert model[1].training  # freeze_batchnorm's hold is undone


def test_depthwise_can_be_left_unquantized() -> None:
    model = nn.Sequential(nn.Conv2d(4, 4, 3, groups=4), nn.Conv2d(4, 8, 1))
    assert prepare_qat(model, ignore=["__DEPTHWISE__"]) == ["1"]
