"""Layer-input Hessians: linear, convolutions (strided, dilated, padded, 1-D) and grouped."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

from sparsify.algorithms.hessian import HessianAccumulator, group_rows
from sparsify.algorithms.masks import to_matrix
from sparsify.errors import SparsifyError


def hessian_of(layer: nn.Module, *inputs: torch.Tensor) -> torch.Tensor:
    acc = HessianAccumulator(layer)
    with acc, torch.no_grad():
        for x in inputs:
            layer(x)
    return acc.hessian


def test_linear_hessian_is_two_over_n_xtx_across_batches() -> None:
    x = torch.randn(3, 5, 8)  # leading dims are flattened: 15 vectors
    layer = nn.Linear(8, 4)
    H = hessian_of(layer, x[:1], x[1:])
    flat = x.reshape(-1, 8).double()
    torch.testing.assert_close(H, 2 / 15 * flat.T @ flat)


@pytest.mark.parametrize(
    "conv",
    [
        nn.Conv2d(3, 5, 3, stride=2, padding=1, dilation=1, bias=False),
        nn.Conv2d(4, 6, (3, 2), stride=1, padding=2, dilation=2, bias=False),
        nn.Conv2d(3, 4, 3, padding="same", padding_mode="reflect", bias=False),
        nn.Conv1d(3, 4, 3, stride=2, padding=1, bias=False),
    ],
    ids=["strided", "dilated", "same-reflect", "conv1d"],
)
def test_conv_hessian_gives_the_output_error_of_any_weight_change(conv: nn.Module) -> None:
    """1/2 tr(dW H dW^T) must equal the mean squared output change per output position."""
    torch.manual_seed(0)
    x = torch.randn(2, conv.in_channels, *([9, 8] if isinstance(conv, nn.Conv2d) else [11]))
    H = hessian_of(conv, x)
    delta = torch.randn_like(conv.weight)
    with torch.no_grad():
        changed = copy.deepcopy(conv)
        changed.weight.copy_(delta)
        out = changed(x).double()
    positions = out.numel() // out.shape[1]
    expected = out.square().sum() / positions
    dm = to_matrix(delta).double()
    torch.testing.assert_close(0.5 * (dm @ H * dm).sum(), expected)


@pytest.mark.parametrize("groups", [2, 6], ids=["grouped", "depthwise"])
def test_grouped_conv_hessians_give_each_groups_output_error(groups: int) -> None:
    """One Hessian per input group: 1/2 sum_g tr(dW_g H_g dW_g^T) is the output change."""
    torch.manual_seed(0)
    conv = nn.Conv2d(6, 12, 3, stride=2, padding=1, groups=groups, bias=False)
    x = torch.randn(2, 6, 9, 8)
    acc = HessianAccumulator(conv)
    with acc, torch.no_grad():
        conv(x)
    assert acc.hessians.shape == (groups, 9 * 6 // groups, 9 * 6 // groups)
    delta = torch.randn_like(conv.weight)
    with torch.no_grad():
        changed = copy.deepcopy(conv)
        changed.weight.copy_(delta)
        out = changed(x).double()
    expected = out.square().sum() / (out.numel() // out.shape[1])
    dm = to_matrix(delta).double()
    rows = group_rows(conv, dm.shape[0])
    got = sum(0.5 * (dm[r] @ H * dm[r]).sum() for r, H in zip(rows, acc.hessians, strict=True))
    torch.testing.assert_close(got, expected)
    with pytest.raises(ValueError, match="input groups"):
        _ = acc.hessian


def test_layers_other_than_linear_and_conv_are_not_supported() -> None:
    with pytest.raises(SparsifyError, match="not a Linear, Conv1d or Conv2d"):
        HessianAccumulator(nn.Conv3d(2, 2, 1))
