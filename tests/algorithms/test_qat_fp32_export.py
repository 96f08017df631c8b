"""The FP32 export of a QAT-trained model computes what QAT trained: the weights it was trained
with (their fake-quantized values), so it agrees with the QDQ export within the activation
quantization error.

Found on MobileNetV2 (channels pruned, digits): QAT top-1 92.2 in torch and as QDQ, but the
FP32 export of the same model 72.2. BatchNorm's statistics (and every later layer) had been
learned on the fake-quantized weights; the FP32 export carried STE's latent weights, up to
half an INT8 step away, which a network with near-constant channels (BN gains ~100) amplifies.
"""

from __future__ import annotations

import copy
import warnings
from pathlib import Path

import numpy as np
import onnxruntime as ort
import torch
import torch.nn.functional as F
from torch import nn

from sparsify.algorithms.qat import (
    QuantWrapper,
    fake_quant_weight,
    fold_weight_quantizers,
    freeze_observers,
    prepare_qat,
    strip_qat,
    wrappers,
)
from sparsify.algorithms.session import RecipeSession
from sparsify.models.classifier.model import export_onnx
from sparsify.recipes.recipe import load_recipe

QAT = """
version: 1.1.0
train_stage:
  training_modifiers:
    EpochRangeModifier: {start_epoch: 0.0, end_epoch: 4.0}
  quantization_modifiers:
    QuantizationModifier: {start_epoch: 1.0, freeze_bn_stats_epoch: 2.0, freeze_observer_epoch: 3.0}
"""
SIZE = 12


def tiny_cnn() -> nn.Module:
    """A MobileNetV2-like stack: conv, depthwise, pointwise, each with BatchNorm."""
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU6(),
        nn.Conv2d(8, 8, 3, padding=1, groups=8), nn.BatchNorm2d(8), nn.ReLU6(),
        nn.Conv2d(8, 16, 1), nn.BatchNorm2d(16), nn.ReLU6(),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(16, 4),
    )  # fmt: skip


def batch(n: int, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    x = torch.rand(n, 3, SIZE, SIZE, generator=generator) * 2 - 1  # normalized pixels
    y = (x[:, 0].mean((1, 2)) > 0).long() + 2 * (x[:, 1].mean((1, 2)) > 0).long()
    return x, y


def train_qat(tmp_path: Path) -> nn.Module:
    """A few AdamW steps under a QAT recipe (observers and BatchNorm frozen near the end), as
    the classifier trainer runs them."""
    path = tmp_path / "qat.yaml"
    path.write_text(QAT)
    model = tiny_cnn()
    session = RecipeSession(load_recipe(str(path), {"derived": {}}), model, steps_per_epoch=15)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2, weight_decay=1e-4)
    generator = torch.Generator().manual_seed(1)
    model.train()
    for step in range(session.total_steps):
        session.before_step(step)
        x, y = batch(32, generator)
        loss = F.cross_entropy(model(x), y)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        session.after_step(step, optimizer)
    assert session.finish()["qat"]
    # a run this short leaves the slow EMA ranges behind the activations the trained net
    # reaches (clipped, they would swamp the comparison): observe them afresh on one batch
    for wrapper in wrappers(model).values():
        wrapper.input_quant.min_val.fill_(float("inf"))
        wrapper.input_quant.observe = True
    with torch.no_grad():
        model.train()(batch(256, generator)[0])  # BatchNorm stays frozen
    freeze_observers(model)
    return model.eval()


def run_onnx(path: Path, x: torch.Tensor) -> np.ndarray:
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return session.run(None, {"input": x.numpy()})[0]


def weights_only_quant(model: nn.Module) -> nn.Module:
    """A copy computing with the fake-quantized weights but float activations."""
    copied = copy.deepcopy(model)
    for wrapper in wrappers(copied).values():
        wrapper.input_quant.min_val.fill_(float("inf"))  # unobserved: passes inputs through
    return copied


def test_fp32_export_matches_what_qat_trained(tmp_path: Path) -> None:
    model = train_qat(tmp_path)
    assert len(wrappers(model)) == 4
    x, _ = batch(64, torch.Generator().manual_seed(2))
    with torch.no_grad():
        qat_out = model(x).numpy()
        trained_fp32 = weights_only_quant(model)(x).numpy()
    latent = {n: w.layer.weight.detach().clone() for n, w in wrappers(model).items()}
    per_channel = {n: w.per_channel for n, w in wrappers(model).items()}

    qdq = tmp_path / "model.onnx"
    with warnings.catch_warnings():  # fake-quant scales are constants by design
        warnings.simplefilter("ignore")
        export_onnx(model, qdq, SIZE, 17)
    fold_weight_quantizers(qdq)
    qdq_out = run_onnx(qdq, x)
    scale = float(np.abs(qat_out).max())
    np.testing.assert_allclose(qdq_out, qat_out, atol=1e-3 * scale)

    strip_qat(model)
    assert not any(isinstance(m, QuantWrapper) for m in model.modules())
    fp32 = export_onnx(model, tmp_path / "model_fp32.onnx", SIZE, 17)
    fp32_out = run_onnx(fp32, x)

    # the stripped layers hold the weights QAT computed with: on their INT8 grids
    modules = dict(model.named_modules())
    moved = 0
    for name, weight in latent.items():
        expected = fake_quant_weight(weight, per_channel[name])
        torch.testing.assert_close(modules[name].weight.detach(), expected, rtol=0, atol=1e-7)
        moved += int((expected != weight).sum())
    assert moved > 0  # training left latent weights off the grid: the test can tell

    # the FP32 export is the trained network without activation fake-quant ...
    np.testing.assert_allclose(fp32_out, trained_fp32, atol=1e-4 * scale)
    # ... so it differs from the QDQ graph by activation rounding only
    assert np.abs(fp32_out - qdq_out).max() < 0.02 * scale
    assert (fp32_out.argmax(1) == qdq_out.argmax(1)).mean() >= 0.95


def test_strip_bakes_per_tensor_weights_on_their_grid() -> None:
    model = tiny_cnn()
    prepare_qat(model, per_channel=False)
    weight = model[0].layer.weight
    latent = weight.detach().clone()
    strip_qat(model)
    assert model[0].weight is weight  # the same Parameter: an optimizer still holds it
    expected = fake_quant_weight(latent, per_channel=False)
    torch.testing.assert_close(model[0].weight.detach(), expected, rtol=0, atol=1e-7)
    steps = model[0].weight.detach() / (latent.abs().max() / 127)
    torch.testing.assert_close(steps, steps.round(), rtol=0, atol=1e-4)
