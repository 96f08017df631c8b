"""Unstructured magnitude pruning of Conv/Linear weights and sparsity measurement."""

from __future__ import annotations

import logging
import re

import torch
from torch import nn

log = logging.getLogger("sparsify")

ALL_PRUNABLE = "__ALL_PRUNABLE__"
PRUNABLE_TYPES = (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.Linear)


DEPTHWISE = "__DEPTHWISE__"


def is_depthwise(module: nn.Module) -> bool:
    """A convolution with one filter group per input channel (MobileNet-style)."""
    groups = getattr(module, "groups", 1)
    return groups > 1 and groups == getattr(module, "in_channels", 0)


def select_layers(
    model: nn.Module, targets: str | list[str] = ALL_PRUNABLE, ignore: list[str] | None = None
) -> dict[str, nn.Module]:
    """Prunable layers by name: `__ALL_PRUNABLE__`, exact names, or `re:` patterns.

    `__DEPTHWISE__` (in `ignore`, usually) stands for every depthwise convolution: with a few
    weights per channel they carry little compute, and pruning them costs much accuracy.
    """
    patterns = [targets] if isinstance(targets, str) else list(targets)
    ignore = list(ignore or [])

    def matches(name: str, module: nn.Module, pats: list[str]) -> bool:
        for pat in pats:
            if pat == ALL_PRUNABLE or pat == name:
                return True
            if pat == DEPTHWISE and is_depthwise(module):
                return True
            if pat.startswith("re:") and re.fullmatch(pat[3:], name):
                return True
        return False

    return {
        name: module
        for name, module in model.named_modules()
        if isinstance(module, PRUNABLE_TYPES)
        and matches(name, module, patterns)
        and not matches(name, module, ignore)
    }


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
