"""What one-shot pruning works with: calibration feeds as model batches, the target a
pruning modifier's fields ask for, global magnitude masks. The modifiers themselves
(magnitude, global magnitude, SparseGPT) are classes in `sparsify.recipes.modifiers.one_shot`.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import nn

from sparsify.algorithms.batchnorm import batched_inputs
from sparsify.algorithms.masks import parse_mask_type

Feeds = list[dict[str, np.ndarray]]


def torch_batches(feeds: Feeds, batch_size: int = 16) -> list[Any]:
    """Calibration feed dicts -> model inputs: a tuple for one input, a dict of named inputs
    (the ONNX input names are the forward's keyword names) for several."""
    if not feeds:
        return []
    names = list(feeds[0])
    if "attention_mask" in names:
        feeds = length_batches(feeds, batch_size)
    tuples = batched_inputs(feeds, batch_size)
    if len(names) == 1:
        return tuples
    return [dict(zip(names, batch, strict=True)) for batch in tuples]


def length_batches(feeds: Feeds, batch_size: int) -> Feeds:
    """Text feeds (one sample each, of any length, padded or not) -> the same samples sorted
    by length, each group of `batch_size` brought to the group's longest attended length: cut
    after it, or padded up to it with zeros (attention mask 0, so no real token's output
    changes). Batched like that, SparseGPT's and GPTQ's forward passes cost what the text
    costs, neither one sample at a time nor at max_length, and their Hessians hold few rows
    of padding. Inputs whose second axis is the sequence (ids, masks, token types) are
    brought to length; others are kept whole."""

    def length(feed: dict[str, np.ndarray]) -> int:
        mask = np.asarray(feed["attention_mask"])
        attended = np.flatnonzero(mask.reshape(mask.shape[0], -1).any(axis=0))
        return int(attended[-1]) + 1 if attended.size else 1

    def fit(value: np.ndarray, seq: int, size: int) -> np.ndarray:
        if value.ndim < 2 or value.shape[1] != seq:
            return value
        if seq >= size:
            return value[:, :size]
        pad = [(0, 0)] * value.ndim
        pad[1] = (0, size - seq)
        return np.pad(value, pad)

    lengths = [length(f) for f in feeds]
    order = sorted(range(len(feeds)), key=lambda i: lengths[i])
    out = []
    for start in range(0, len(order), batch_size):
        group = order[start : start + batch_size]
        size = max(lengths[i] for i in group)
        for i in group:
            seq = feeds[i]["attention_mask"].shape[1]
            out.append({k: fit(v, seq, size) for k, v in feeds[i].items()})
    return out


def target_sparsity(kwargs: dict[str, Any]) -> float:
    """What a one-shot pruning modifier asks for (N:M masks imply their own, except where the
    recipe gives 0: a level that prunes nothing stays dense whatever pruning.mask_type says)."""
    mask = parse_mask_type(kwargs.get("mask_structure") or kwargs.get("mask_type", "unstructured"))
    given = kwargs.get("sparsity", kwargs.get("final_sparsity"))
    if mask.implied_sparsity is not None and (given is None or float(given) > 0):
        return mask.implied_sparsity
    return float(given or 0.0)


@torch.no_grad()
def global_magnitude_masks(
    layers: dict[str, nn.Module], sparsity: float
) -> dict[str, torch.Tensor]:
    """Keep the largest (1 - sparsity) fraction of |w| over all layers together."""
    flat = torch.cat([m.weight.detach().abs().flatten() for m in layers.values()])
    k = int(round(sparsity * flat.numel()))
    keep = torch.ones(flat.numel(), dtype=torch.bool)
    if k > 0:
        keep[flat.argsort(stable=True)[:k]] = False
    masks, start = {}, 0
    for name, layer in layers.items():
        n = layer.weight.numel()
        masks[name] = keep[start : start + n].reshape(layer.weight.shape)
        start += n
    return masks
