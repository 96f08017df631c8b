"""One-shot pruning of a torch model by a recipe's pruning modifier, with calibration data.

- `MagnitudePruningModifier`: each layer to `final_sparsity` by |w| (unstructured, blockN
  or N:M masks).
- `GlobalMagnitudePruningModifier`: one |w| threshold across all selected layers, so layers
  with many small weights give more (unstructured only).
- `SparseGPTModifier`: layer-wise OBS reconstruction on the calibration inputs
  (`sparsegpt.sparsegpt_prune_model`).

`recalibrate_batchnorm: true` re-estimates BatchNorm statistics on the calibration data
afterwards.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from torch import nn

from sparsify.algorithms.batchnorm import batched_inputs, has_batchnorm, recalibrate_batchnorm
from sparsify.algorithms.masks import magnitude_layer_masks, parse_mask_type
from sparsify.algorithms.pruning import apply_masks, log_sparsity, overall_sparsity, select_layers
from sparsify.algorithms.sparsegpt import sparsegpt_prune_model
from sparsify.errors import SparsifyError

log = logging.getLogger("sparsify")

ONE_SHOT_PRUNERS = (
    "MagnitudePruningModifier",
    "GlobalMagnitudePruningModifier",
    "SparseGPTModifier",
)

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
    """What a one-shot pruning modifier asks for (N:M masks imply their own)."""
    mask = parse_mask_type(kwargs.get("mask_structure") or kwargs.get("mask_type", "unstructured"))
    if mask.implied_sparsity is not None:
        return mask.implied_sparsity
    return float(kwargs.get("sparsity", kwargs.get("final_sparsity", 0.0)))


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


def prune_one_shot(
    model: nn.Module,
    name: str,
    kwargs: dict[str, Any],
    calibration: Callable[[], Feeds],
    default_ignore: list[str] | None = None,
) -> dict[str, Any]:
    """Apply one one-shot pruning modifier to `model` in place; returns what it did."""
    if name not in ONE_SHOT_PRUNERS:
        raise SparsifyError(
            f"{name} is not a one-shot pruning modifier; use one of {', '.join(ONE_SHOT_PRUNERS)}"
        )
    ignore = [*(kwargs.get("ignore") or []), *(default_ignore or [])]
    layers = select_layers(model, kwargs.get("targets", "__ALL_PRUNABLE__"), ignore)
    if not layers:
        raise SparsifyError(
            f"{name}: no prunable layer matches targets={kwargs.get('targets')!r} "
            f"(ignore={ignore}); use __ALL_PRUNABLE__ or `re:` patterns of layer names"
        )
    sparsity = target_sparsity(kwargs)
    recalibrate = bool(kwargs.get("recalibrate_batchnorm", False)) and has_batchnorm(model)
    after_layer = None  # set when SparseGPT re-estimates BatchNorm after every layer
    mask_type = str(kwargs.get("mask_structure") or kwargs.get("mask_type", "unstructured"))
    stats: dict[str, Any] = {}
    if name == "SparseGPTModifier" and isinstance(model, torch.jit.ScriptModule):
        log.info("SparseGPT needs forward hooks, which TorchScript lacks: pruning by magnitude")
        name = "MagnitudePruningModifier"
    if name == "SparseGPTModifier":
        feeds = calibration()
        log.info(
            "SparseGPT pruning %d layers to %.1f %% (%s) on %d calibration samples",
            len(layers),
            100 * sparsity,
            mask_type,
            len(feeds),
        )
        sequential = bool(kwargs.get("sequential_update", True))
        if sequential and recalibrate:
            # each layer is then reconstructed under the statistics the pruned model will have
            bn_batches = batched_inputs(feeds)
            after_layer = lambda: recalibrate_batchnorm(model, bn_batches, quiet=True)  # noqa: E731
        result = sparsegpt_prune_model(
            model,
            layers,
            torch_batches(feeds),
            sparsity,
            mask_type,
            block_size=int(kwargs.get("block_size", 128)),
            percdamp=float(kwargs.get("percdamp", 0.01)),
            sequential=sequential,
            after_layer=after_layer,
        )
        stats = result.stats
    elif name == "GlobalMagnitudePruningModifier":
        if parse_mask_type(mask_type).kind != "unstructured":
            raise SparsifyError(
                "GlobalMagnitudePruningModifier prunes unstructured only; "
                "use MagnitudePruningModifier or SparseGPTModifier for blockN / N:M masks"
            )
        log.info("Global magnitude pruning %d layers to %.1f %%", len(layers), 100 * sparsity)
        apply_masks(layers, global_magnitude_masks(layers, sparsity))
    else:
        log.info(
            "Magnitude pruning %d layers to %.1f %% (%s)", len(layers), 100 * sparsity, mask_type
        )
        apply_masks(layers, magnitude_layer_masks(layers, sparsity, mask_type))
    if recalibrate and after_layer is None:
        recalibrate_batchnorm(model, batched_inputs(calibration()))  # restores the mode
    elif recalibrate:  # the last layer's re-estimation already gave the final statistics
        log.info("Re-estimated BatchNorm statistics after each of %d pruned layers", len(layers))
    per_layer = log_sparsity(layers, "After pruning")
    return {
        "method": name,
        "mask_type": mask_type,
        "target_sparsity": sparsity,
        "per_layer_sparsity": per_layer,
        "sparsity": overall_sparsity(layers),
        "layer_stats": {n: {k: v for k, v in s.items() if k != "error"} for n, s in stats.items()},
    }
