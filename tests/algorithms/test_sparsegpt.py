"""SparseGPT: Hessians from layer inputs, per-layer reconstruction, sequential model pruning."""

from __future__ import annotations

import copy
import logging

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from sparsify.algorithms.masks import (
    check_nm,
    magnitude_layer_masks,
    structured_magnitude_mask,
)
from sparsify.algorithms.pruning import apply_masks, select_layers
from sparsify.algorithms.sparsegpt import sparsegpt_prune_layer, sparsegpt_prune_model
from sparsify.errors import SparsifyError
from tests.algorithms.test_hessian import hessian_of


def correlated_inputs(n: int, dim: int, seed: int) -> torch.Tensor:
    """X = Z A: features of very different scales, mixed so that they are correlated."""
    gen = torch.Generator().manual_seed(seed)
    z = torch.randn(n, dim, generator=gen) * torch.logspace(0, -2, dim)
    return z @ (torch.randn(dim, dim, generator=gen) / dim**0.5)


def output_error(x: torch.Tensor, dense: torch.Tensor, pruned: torch.Tensor) -> float:
    return float((x.double() @ (dense - pruned).double().T).square().sum(1).mean())


@pytest.mark.parametrize("mask_type", ["unstructured", "2:4", "block4"])
@pytest.mark.parametrize("sparsity", [0.5, 0.7])
def test_sparsegpt_beats_magnitude_on_a_linear_layer(mask_type: str, sparsity: float) -> None:
    torch.manual_seed(0)
    x = correlated_inputs(1024, 128, seed=1)
    weight = torch.randn(64, 128)
    H = hessian_of(nn.Linear(128, 64), x)
    new, kept, error = sparsegpt_prune_layer(weight, H, sparsity, mask_type, block_size=32)
    assert new.dtype == weight.dtype and kept.dtype == torch.bool
    assert (new[~kept] == 0).all()
    if mask_type == "2:4":
        assert check_nm(kept, 2, 4) and check_nm(new, 2, 4)
    elif mask_type == "block4":  # the target in whole blocks
        blocks = kept.reshape(64, -1, 4)
        assert (blocks.all(-1) | ~blocks.any(-1)).all()
        assert int((~blocks.any(-1)).sum()) == round(sparsity * weight.numel() / 4)
    else:
        assert int((~kept).sum()) == round(sparsity * weight.numel())
    magnitude = weight * structured_magnitude_mask(weight, sparsity, mask_type)
    ours = output_error(x, weight, new)
    assert error == pytest.approx(ours, rel=1e-4)  # the reported error is the real one
    assert ours < 0.7 * output_error(x, weight, magnitude)


@pytest.mark.parametrize("mask_type", ["unstructured", "2:4"])
def test_sparsegpt_beats_magnitude_on_a_conv_layer(mask_type: str) -> None:
    torch.manual_seed(0)
    conv = nn.Conv2d(16, 24, 3, padding=1, bias=False)
    # spatially smooth inputs: neighbouring receptive-field entries are correlated
    x = F.avg_pool2d(torch.randn(8, 16, 14, 14), 3, stride=1, padding=1)
    model = nn.Sequential(conv)
    dense = copy.deepcopy(conv)
    result = sparsegpt_prune_model(model, {"0": conv}, [(x,)], 0.6, mask_type)
    assert result.stats["0"]["method"] == "sparsegpt"
    mask = result.masks["0"]
    assert torch.equal(mask, conv.weight != 0)
    if mask_type == "2:4":
        assert check_nm(mask, 2, 4)
    else:
        assert int((~mask).sum()) == round(0.6 * conv.weight.numel())
    magnitude = copy.deepcopy(dense)
    with torch.no_grad():
        magnitude.weight.mul_(structured_magnitude_mask(dense.weight, 0.6, mask_type))
        target = dense(x)
        ours = (conv(x) - target).square().mean()
        theirs = (magnitude(x) - target).square().mean()
    assert ours < 0.7 * theirs


@pytest.mark.parametrize("groups", [4, 8], ids=["grouped", "depthwise"])
def test_sparsegpt_prunes_grouped_convs_better_than_magnitude(groups: int) -> None:
    torch.manual_seed(0)
    conv = nn.Conv2d(8, 16, 3, padding=1, groups=groups, bias=False)
    x = F.avg_pool2d(torch.randn(8, 8, 14, 14), 3, stride=1, padding=1)
    dense = copy.deepcopy(conv)
    result = sparsegpt_prune_model(nn.Sequential(conv), {"0": conv}, [(x,)], 0.5)
    assert result.stats["0"]["method"] == "sparsegpt"
    assert result.stats["0"]["sparsity"] == 0.5
    magnitude = copy.deepcopy(dense)
    with torch.no_grad():
        magnitude.weight.mul_(structured_magnitude_mask(dense.weight, 0.5))
        target = dense(x)
        ours = (conv(x) - target).square().mean()
        theirs = (magnitude(x) - target).square().mean()
    assert ours < 0.8 * theirs


@pytest.mark.parametrize("sparsity", [0.13, 0.5, 0.777])
def test_exact_sparsity_with_odd_sizes_and_small_blocks(sparsity: float) -> None:
    x = correlated_inputs(300, 37, seed=2)
    weight = torch.randn(11, 37)
    _, kept, _ = sparsegpt_prune_layer(
        weight, hessian_of(nn.Linear(37, 11), x), sparsity, block_size=8
    )
    assert abs(float((~kept).float().mean()) - sparsity) <= 1 / weight.numel()


def test_dead_inputs_are_pruned_first_and_cause_no_nans() -> None:
    x = correlated_inputs(256, 32, seed=3)
    x[:, ::4] = 0  # a quarter of the inputs never fire
    weight = torch.randn(8, 32)
    new, kept, error = sparsegpt_prune_layer(weight, hessian_of(nn.Linear(32, 8), x), 0.5)
    assert torch.isfinite(new).all() and error == error
    assert not kept[:, ::4].any()  # free to prune, so they go first
    assert int((~kept).sum()) == 128


def test_all_inputs_dead_leaves_kept_weights_unchanged() -> None:
    weight = torch.randn(4, 8)
    new, kept, error = sparsegpt_prune_layer(weight, torch.zeros(8, 8), 0.25)
    assert error == 0.0 and int((~kept).sum()) == 8
    assert torch.equal(new[kept], weight[kept])


def test_invalid_arguments_name_the_fix() -> None:
    with pytest.raises(SparsifyError, match="sparsity must be in"):
        sparsegpt_prune_layer(torch.randn(2, 4), torch.eye(4), 1.2)
    with pytest.raises(SparsifyError, match="N:M"):
        sparsegpt_prune_layer(torch.randn(2, 4), torch.eye(4), 0.5, "3of4")
    with pytest.raises(SparsifyError, match="calibration"):
        model = nn.Linear(4, 2)
        sparsegpt_prune_model(model, {"": model}, [], 0.5)


@pytest.fixture(scope="module")
def digits() -> tuple[torch.Tensor, ...]:
    from sklearn.datasets import load_digits

    data = load_digits()
    x = torch.tensor(data.images, dtype=torch.float32).unsqueeze(1) / 16.0
    y = torch.tensor(data.target)
    order = torch.randperm(len(y), generator=torch.Generator().manual_seed(0))
    x, y = x[order], y[order]
    return x[:1200], y[:1200], x[1200:], y[1200:]


def mlp() -> nn.Module:
    return nn.Sequential(
        nn.Flatten(), nn.Linear(64, 64), nn.ReLU(), nn.Linear(64, 64), nn.ReLU(), nn.Linear(64, 10)
    )


def cnn() -> nn.Module:
    return nn.Sequential(
        nn.Conv2d(1, 16, 3, padding=1),
        nn.ReLU(),
        nn.Conv2d(16, 32, 3, stride=2, padding=1),
        nn.BatchNorm2d(32),
        nn.ReLU(),
        nn.Conv2d(32, 32, 3, padding=1, groups=32),  # depthwise: one Hessian per channel
        nn.Flatten(),
        nn.Linear(32 * 16, 10),
    )


def trained(build, digits: tuple[torch.Tensor, ...]) -> nn.Module:  # noqa: ANN001
    x, y = digits[:2]
    torch.manual_seed(0)
    model = build()
    optimizer = torch.optim.Adam(model.parameters(), 1e-2)
    for _ in range(60):
        idx = torch.randint(0, len(y), (256,))
        loss = F.cross_entropy(model(x[idx]), y[idx])
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return model.eval()


@torch.no_grad()
def accuracy(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    return float((model(x).argmax(1) == y).float().mean())


@pytest.mark.parametrize("build", [mlp, cnn])
def test_sequential_sparsegpt_keeps_accuracy_better_than_magnitude(
    build,
    digits: tuple[torch.Tensor, ...],
    caplog: pytest.LogCaptureFixture,  # noqa: ANN001
) -> None:
    x_train, _, x_val, y_val = digits
    model = trained(build, digits)
    dense = accuracy(model, x_val, y_val)
    batches = [(x_train[i : i + 64],) for i in range(0, 256, 64)]

    magnitude = copy.deepcopy(model)
    layers = select_layers(magnitude)
    apply_masks(layers, magnitude_layer_masks(layers, 0.8))

    pruned = copy.deepcopy(model).train()
    layers = select_layers(pruned)
    with caplog.at_level(logging.INFO, logger="sparsify"):
        result = sparsegpt_prune_model(pruned, layers, batches, 0.8)
    assert pruned.training  # mode restored
    assert set(result.stats) == set(layers) == set(result.masks)
    for name, layer in layers.items():
        assert abs(result.stats[name]["sparsity"] - 0.8) <= 1 / layer.weight.numel()
        assert torch.equal(result.masks[name], layer.weight != 0)
    # depthwise "5" too, one Hessian per channel
    assert all(s["method"] == "sparsegpt" for s in result.stats.values())
    assert f"SparseGPT pruned {len(layers)} layers" in caplog.text
    ours, theirs = accuracy(pruned.eval(), x_val, y_val), accuracy(magnitude, x_val, y_val)
    assert ours > theirs + 0.05, (dense, ours, theirs)


def test_one_pass_and_sequential_modes_both_prune_every_layer(
    digits: tuple[torch.Tensor, ...],
) -> None:
    model = trained(mlp, digits)
    batches = [(digits[0][:128],)]
    for sequential in (True, False):
        copy_ = copy.deepcopy(model)
        layers = select_layers(copy_)
        result = sparsegpt_prune_model(copy_, layers, batches, 0.5, "2:4", sequential=sequential)
        assert all(check_nm(layer.weight, 2, 4) for layer in layers.values())
        assert all(s["relative_error"] < 0.5 for s in result.stats.values())


def test_after_layer_runs_once_per_layer_between_layers() -> None:
    """The hook one-shot uses to re-estimate BatchNorm before the next layer's Hessian."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(8, 8), nn.ReLU(), nn.Linear(8, 4))
    layers = select_layers(model)
    seen: list[float] = []
    sparsegpt_prune_model(
        model,
        layers,
        [(torch.randn(32, 8),)],
        0.5,
        after_layer=lambda: seen.append(float((model[0].weight == 0).float().mean())),
    )
    assert seen == [0.5, 0.5]  # the first layer was already pruned when the hook first ran


def test_batchnorm_passes_cut_at_the_next_layer_give_the_same_result() -> None:
    """Re-estimating BatchNorm only up to the next layer to prune (what its Hessian needs)
    leaves every Hessian, mask, weight and the final statistics as full passes do."""
    from contextlib import nullcontext
    from unittest import mock

    from sparsify.algorithms import sparsegpt
    from sparsify.algorithms.batchnorm import recalibrate_batchnorm

    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(),
        nn.Conv2d(8, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(),
        nn.Flatten(), nn.Linear(8 * 36, 5),
    )  # fmt: skip
    batches = [(torch.randn(8, 3, 6, 6),) for _ in range(3)]
    results, calls = [], []
    for cut in (True, False):
        copy_ = copy.deepcopy(model)
        seen: list[int] = []
        copy_[4].register_forward_pre_hook(lambda m, a, seen=seen: seen.append(1))
        after = lambda m=copy_: recalibrate_batchnorm(m, batches, quiet=True)  # noqa: E731
        patch = nullcontext() if cut else mock.patch.object(
            sparsegpt, "stop_before", lambda layer: nullcontext()
        )  # fmt: skip
        with patch:
            result = sparsegpt_prune_model(
                copy_, select_layers(copy_), batches, 0.5, after_layer=after
            )
        results.append((copy_.state_dict(), result.stats))
        calls.append(len(seen))
    assert calls[0] < calls[1]  # the cut passes skipped the last BatchNorm until the end
    (cut_state, cut_stats), (full_state, full_stats) = results
    for key, value in full_state.items():
        torch.testing.assert_close(cut_state[key], value, rtol=1e-6, atol=1e-7)
    for name, stats in full_stats.items():
        assert cut_stats[name]["error"] == pytest.approx(stats["error"], rel=1e-6)
