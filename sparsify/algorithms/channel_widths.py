"""Thin shapes in checkpoints: a channel-pruned model's channel counts per layer as plain
ints (`layer_widths`), and a dense architecture given those counts before its weights load
(`set_layer_widths`), so a checkpoint stays loadable weights-only."""

from __future__ import annotations

import torch
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm
from torch.nn.modules.conv import _ConvNd

from sparsify.errors import SparsifyError


def layer_widths(model: nn.Module, reference: nn.Module) -> dict[str, list[int]]:
    """Per layer whose width differs from `reference` (the dense architecture): its channel
    counts as plain ints (conv: in, out, groups; linear: in, out; BatchNorm: features)."""
    ref = dict(reference.named_modules())
    out = {}
    for name, module in model.named_modules():
        widths = _widths(module)
        if widths is not None and name in ref and _widths(ref[name]) != widths:
            out[name] = widths
    return out


def _widths(module: nn.Module) -> list[int] | None:
    if isinstance(module, _ConvNd):
        return [module.in_channels, module.out_channels, module.groups]
    if isinstance(module, nn.Linear):
        return [module.in_features, module.out_features]
    if isinstance(module, _BatchNorm):
        return [module.num_features]
    return None


def set_layer_widths(model: nn.Module, widths: dict[str, list[int]]) -> None:
    """Give `model`'s layers the channel counts `layer_widths` recorded. Each layer keeps the
    leading slice of its own (freshly initialised) parameters and statistics, or is
    initialised anew where a count grows: a state dict of those shapes is loaded next, and a
    layer it does not fill (a class head rebuilt for other classes) still holds an init."""
    modules = dict(model.named_modules())
    unknown = [n for n in widths if n not in modules or _widths(modules[n]) is None]
    if unknown:
        raise SparsifyError(
            f"the checkpoint's channel counts name layers this architecture lacks: {unknown[:4]}"
        )
    for name, counts in widths.items():
        module = modules[name]
        if isinstance(module, _ConvNd):
            module.in_channels, module.out_channels, module.groups = counts
            shape = list(module.weight.shape)
            if module.transposed:
                shape[:2] = [counts[0], counts[1] // counts[2]]
            else:
                shape[:2] = [counts[1], counts[0] // counts[2]]
            rows = counts[1]
        elif isinstance(module, nn.Linear):
            module.in_features, module.out_features = counts
            shape, rows = [counts[1], counts[0]], counts[1]
        else:
            module.num_features = rows = counts[0]
            shape = [rows]
        grown = [_resize(module, "weight", shape)]
        grown += [_resize(module, attr, [rows]) for attr in ("bias", "running_mean", "running_var")]
        if any(grown):
            module.reset_parameters()


@torch.no_grad()
def _resize(module: nn.Module, attr: str, shape: list[int]) -> bool:
    """`module.attr` (a parameter or buffer, if it has one) at `shape`: its leading slice,
    or uninitialised where `shape` is larger in some dim (returns True then)."""
    old = getattr(module, attr, None)
    if not isinstance(old, torch.Tensor):
        return False
    grown = len(shape) != old.dim() or any(n > o for n, o in zip(shape, old.shape, strict=True))
    if grown:
        new = torch.empty(shape, dtype=old.dtype, device=old.device)
    else:
        new = old[tuple(slice(0, n) for n in shape)].clone()
    if isinstance(old, nn.Parameter):
        new = nn.Parameter(new, requires_grad=old.requires_grad)
    setattr(module, attr, new)
    return grown
