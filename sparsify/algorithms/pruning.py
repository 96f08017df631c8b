"""Unstructured magnitude pruning of Conv/Linear weights and sparsity measurement."""

from __future__ import annotations

import logging

import torch
from torch import nn

# the tokens live with the one matcher; re-exported for the modules that import them from here
from sparsify.matching import ALL_PRUNABLE, match_modules
from sparsify.matching import DEPTHWISE as DEPTHWISE
from sparsify.matching import is_depthwise as is_depthwise

log = logging.getLogger("sparsify")

PRUNABLE_TYPES = (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.Linear)


def select_layers(
    model: nn.Module, targets: str | list[str] = ALL_PRUNABLE, ignore: list[str] | None = None
) -> dict[str, nn.Module]:
    """Prunable (Conv/Linear) layers by name that `targets` name and `ignore` does not, under
    the one rule of `sparsify.matching` (module paths and what is inside them, `re:` full
    matches, class names, `__ALL_PRUNABLE__`).

    `__DEPTHWISE__` (in `ignore`, usually) stands for every depthwise convolution: with a few
    weights per channel they carry little compute, and pruning them costs much accuracy.
    """
    return match_modules(model, ignore, targets, types=PRUNABLE_TYPES).selected


@torch.no_grad()
def magnitude_masks(layers: dict[str, nn.Module], sparsity: float) -> dict[str, torch.Tensor]:
    """Per layer, keep the largest-magnitude (1 - sparsity) fraction of weights."""
    masks = {}
    for name, layer in layers.items():
        weight = layer.weight
        k = int(round(sparsity * weight.numel()))
        mask = torch.ones_like(weight, dtype=torch.bool)
        if k > 0:
            # ties broken by position so the count is exact
            order = weight.abs().flatten().argsort(stable=True)
            mask.view(-1)[order[:k]] = False
        masks[name] = mask
    return masks


@torch.no_grad()
def apply_masks(layers: dict[str, nn.Module], masks: dict[str, torch.Tensor]) -> None:
    for name, mask in masks.items():
        layers[name].weight.mul_(mask)


@torch.no_grad()
def layer_sparsity(layers: dict[str, nn.Module]) -> dict[str, float]:
    return {name: float((m.weight == 0).float().mean()) for name, m in layers.items()}


@torch.no_grad()
def overall_sparsity(layers: dict[str, nn.Module]) -> float:
    zeros = sum(int((m.weight == 0).sum()) for m in layers.values())
    total = sum(m.weight.numel() for m in layers.values())
    return zeros / total if total else 0.0


def log_sparsity(layers: dict[str, nn.Module], title: str) -> dict[str, float]:
    per_layer = layer_sparsity(layers)
    log.info(
        "%s: %.2f %% of %d prunable layers' weights are zero",
        title,
        100 * overall_sparsity(layers),
        len(layers),
    )
    for name, value in per_layer.items():
        log.debug("  %-40s %6.2f %%", name, 100 * value)
    return per_layer
