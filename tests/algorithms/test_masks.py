"""Mask structures: parsing, N:M and block patterns, the channel-last matrix view."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from sparsify.algorithms.masks import (
    MaskType,
    check_nm,
    from_matrix,
    magnitude_layer_masks,
    parse_mask_type,
    structured_magnitude_mask,
    to_matrix,
)
from sparsify.algorithms.pruning import magnitude_masks
from sparsify.errors import SparsifyError


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        ("unstructured", MaskType()),
        (" Unstructured ", MaskType()),
        ("block4", MaskType("block", group=4)),
        ("BLOCK16", MaskType("block", group=16)),
        ("2:4", MaskType("nm", group=4, keep=2)),
        ("1:4", MaskType("nm", group=4, keep=1)),
        ("4 : 8", MaskType("nm", group=8, keep=4)),
    ],
)
def test_parse_mask_type(spec: str, expected: MaskType) -> None:
    parsed = parse_mask_type(spec)
    assert parsed == expected
    assert parse_mask_type(str(parsed)) == parsed
    assert parse_mask_type(parsed) is parsed


def test_nm_convention_is_nonzeros_kept() -> None:
    assert parse_mask_type("2:4").implied_sparsity == 0.5
    assert parse_mask_type("1:4").implied_sparsity == 0.75
    assert parse_mask_type("block4").implied_sparsity is None


@pytest.mark.parametrize(
    "spec", ["", "dense", "block", "block1", "block0", "4:2", "0:4", "2:2", "2:4:8"]
)
def test_parse_mask_type_rejects_with_the_valid_forms(spec: str) -> None:
    with pytest.raises(SparsifyError) as info:
        parse_mask_type(spec)
    message = str(info.value)
    assert repr(spec) in message
    assert "unstructured" in message and "block4" in message and "2:4" in message


@pytest.mark.parametrize("shape", [(6, 10), (4, 3, 3, 3), (8, 5, 3), (2, 4, 2, 3, 3)])
def test_matrix_view_round_trips_with_input_channels_innermost(shape: tuple[int, ...]) -> None:
    weight = torch.randn(shape)
    matrix = to_matrix(weight)
    assert matrix.shape == (shape[0], weight.numel() // shape[0])
    assert torch.equal(from_matrix(matrix, weight.shape), weight)
    if len(shape) == 4:  # consecutive columns = consecutive input channels at one position
        assert torch.equal(matrix[1, : shape[1]], weight[1, :, 0, 0])


def test_unstructured_matches_magnitude_masks() -> None:
    torch.manual_seed(0)
    layer = nn.Linear(30, 7)
    mask = structured_magnitude_mask(layer.weight, 0.6, "unstructured")
    assert torch.equal(mask, magnitude_masks({"l": layer}, 0.6)["l"])
    assert int((~mask).sum()) == round(0.6 * layer.weight.numel())


@pytest.mark.parametrize(
    "weight_shape", [(16, 32), (8, 16, 3, 3), (8, 3, 3, 3), (4, 6, 5)], ids=str
)
@pytest.mark.parametrize(("n", "m"), [(2, 4), (1, 4), (4, 8)])
def test_nm_magnitude_masks_are_valid_and_keep_the_largest(
    weight_shape: tuple[int, ...], n: int, m: int
) -> None:
    torch.manual_seed(1)
    weight = torch.randn(weight_shape)
    mask = structured_magnitude_mask(weight, 0.0, f"{n}:{m}")
    assert mask.shape == weight.shape and mask.dtype == torch.bool
    assert check_nm(mask, n, m)
    assert check_nm(weight * mask, n, m)
    matrix, kept = to_matrix(weight).abs(), to_matrix(mask)
    full = matrix.shape[1] // m * m
    groups = matrix[:, :full].reshape(matrix.shape[0], -1, m)
    kept_groups = kept[:, :full].reshape(matrix.shape[0], -1, m)
    assert (kept_groups.sum(-1) == n).all()  # exactly n kept in every full group
    smallest_kept = torch.where(kept_groups, groups, torch.inf).amin(-1)
    largest_dropped = torch.where(kept_groups, -torch.inf, groups).amax(-1)
    assert (largest_dropped <= smallest_kept).all()


def test_check_nm_rejects_dense_and_three_of_four() -> None:
    assert not check_nm(torch.ones(4, 8, dtype=torch.bool), 2, 4)
    mask = torch.tensor([[1, 1, 1, 0, 1, 1, 0, 0]], dtype=torch.bool)
    assert not check_nm(mask, 2, 4)
    assert check_nm(mask, 3, 4)


@pytest.mark.parametrize("weight_shape", [(16, 32), (8, 16, 3, 3)], ids=str)
@pytest.mark.parametrize("sparsity", [0.3, 0.5, 0.8])
def test_block_masks_zero_whole_blocks(weight_shape: tuple[int, ...], sparsity: float) -> None:
    torch.manual_seed(2)
    weight = torch.randn(weight_shape)
    mask = structured_magnitude_mask(weight, sparsity, "block4")
    blocks = to_matrix(mask).reshape(weight_shape[0], -1, 4)
    assert (blocks.all(-1) | ~blocks.any(-1)).all()
    assert int((~blocks.any(-1)).sum()) == round(sparsity * blocks.shape[0] * blocks.shape[1])
    # the pruned blocks are the ones with the smallest L2 norms
    norms = to_matrix(weight).reshape(weight_shape[0], -1, 4).norm(dim=-1)
    assert norms[~blocks.any(-1)].max() <= norms[blocks.all(-1)].min()


def test_block_masks_handle_a_short_last_block() -> None:
    weight = torch.randn(5, 3, 3, 3)  # 27 inputs: 6 blocks of 4 and one of 3 per row
    mask = structured_magnitude_mask(weight, 0.5, "block4")
    padded = torch.nn.functional.pad(to_matrix(mask), (0, 1), value=True)
    blocks = padded.reshape(5, -1, 4)
    blocks[:, -1, -1] = blocks[:, -1, 0]  # the padding follows its block
    assert (blocks.all(-1) | ~blocks.any(-1)).all()


def test_magnitude_layer_masks_for_every_type() -> None:
    torch.manual_seed(3)
    layers = {"a": nn.Linear(16, 8), "b": nn.Conv2d(8, 8, 3)}
    for spec in ("unstructured", "block4", "2:4"):
        masks = magnitude_layer_masks(layers, 0.5, spec)
        for name, layer in layers.items():
            assert masks[name].shape == layer.weight.shape
            assert abs(float((~masks[name]).float().mean()) - 0.5) < 1e-6
