"""Magnitude pruning masks, layer selection, and BatchNorm re-estimation."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from sparsify.algorithms.batchnorm import batched_inputs, recalibrate_batchnorm
from sparsify.algorithms.pruning import (
    apply_masks,
    layer_sparsity,
    magnitude_masks,
    overall_sparsity,
    select_layers,
)
from sparsify.models.tiny import tinynet


@pytest.mark.parametrize("sparsity", [0.0, 0.4, 0.514286, 0.8])
def test_magnitude_masks_hit_the_target_and_keep_the_largest(sparsity: float) -> None:
    torch.manual_seed(0)
    model = tinynet(5)
    layers = select_layers(model)
    before = {n: m.weight.detach().clone() for n, m in layers.items()}
    masks = magnitude_masks(layers, sparsity)
    apply_masks(layers, masks)
    for name, value in layer_sparsity(layers).items():
        assert abs(value - sparsity) < 1.0 / before[name].numel() + 1e-9
        kept = before[name][masks[name]].abs()
        dropped = before[name][~masks[name]].abs()
        if kept.numel() and dropped.numel():
            assert dropped.max() <= kept.min()
    assert abs(overall_sparsity(layers) - sparsity) < 0.005


def test_select_layers_targets_and_ignore() -> None:
    model = tinynet(5)
    assert set(select_layers(model)) == {
        "features.0.0",
        "features.1.0",
        "features.2.0",
        "features.3.0",
        "classifier",
    }
    assert set(select_layers(model, ["re:features\\.[12]\\.0"])) == {"features.1.0", "features.2.0"}
    assert "classifier" not in select_layers(model, ignore=["classifier"])


def test_batchnorm_recalibration_matches_the_pruned_activations() -> None:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 8, 3), nn.BatchNorm2d(8), nn.ReLU())
    data = torch.randn(64, 3, 8, 8) * 2 + 1
    model.train()
    with torch.no_grad():
        for _ in range(20):
            model(data)
    layers = select_layers(model)
    apply_masks(layers, magnitude_masks(layers, 0.7))
    with torch.no_grad():
        true_mean = model[0](data).mean(dim=(0, 2, 3))
    assert not torch.allclose(model[1].running_mean, true_mean, atol=1e-3)
    feeds = [{"input": data[i : i + 1].numpy()} for i in range(64)]
    assert recalibrate_batchnorm(model, batched_inputs(feeds, batch_size=16)) == 1
    assert torch.allclose(model[1].running_mean, true_mean, atol=1e-4)
    assert model[1].momentum == 0.1  # restored
    assert overall_sparsity(layers) == pytest.approx(0.7, abs=0.01)  # masks untouched


def test_batched_inputs_stacks_in_input_order() -> None:
    feeds = [
        {"a": np.full((1, 2), i, np.float32), "b": np.zeros((1, 3), np.float32)} for i in range(5)
    ]
    batches = batched_inputs(feeds, batch_size=2)
    assert [tuple(t.shape[0] for t in b) for b in batches] == [(2, 2), (2, 2), (1, 1)]
    assert batches[0][0].shape == (2, 2) and batches[0][1].shape == (2, 3)


def test_batched_inputs_keeps_ragged_samples_apart() -> None:
    feeds = [{"ids": np.zeros((1, n), np.int64)} for n in (5, 6, 5)]
    batches = batched_inputs(feeds, batch_size=3)
    assert [b[0].shape for b in batches] == [(1, 5), (1, 6), (1, 5)]


def test_depthwise_token_selects_depthwise_convolutions() -> None:
    from sparsify.algorithms.pruning import DEPTHWISE, select_layers

    model = nn.Sequential(
        nn.Conv2d(4, 8, 1), nn.Conv2d(8, 8, 3, groups=8), nn.Conv2d(8, 8, 3, groups=2)
    )
    assert list(select_layers(model, ignore=[DEPTHWISE])) == ["0", "2"]
    assert list(select_layers(model, targets=[DEPTHWISE])) == ["1"]
