"""One-shot SparseGPT pruning with calibration data (Frantar & Alistarh, 2023).

Per layer with weight W and input Hessian H (`hessian.py`), SparseGPT looks for a sparse W'
minimising the output error sum ||(W - W') x||^2: the OBS column sweep (`obs.py`) sets pruned
weights to zero and compensates each with the row's still-free weights. The mask of a block of
`block_size` columns is chosen when the block starts, from the already-updated weights
(adaptive mask selection), by the OBS score w^2 / U_jj^2 (U: the upper Cholesky factor of
H^-1). N:M groups are chosen when each group of M columns starts. Grouped convolutions are
pruned group by group, each with its own Hessian.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from typing import Any, NamedTuple

import torch
from torch import nn

from sparsify.algorithms.hessian import (
    HessianAccumulator,
    group_rows,
    output_energy,
    require_calibration,
    stop_before,
    unsupported_reason,
)
from sparsify.algorithms.layer_inputs import layer_hessians
from sparsify.algorithms.masks import (
    UNSTRUCTURED,
    MaskType,
    block_scores,
    expand_blocks,
    from_matrix,
    lowest,
    nm_mask_from_scores,
    parse_mask_type,
    structured_magnitude_mask,
    to_matrix,
)
from sparsify.algorithms.obs import obs_update_layer
from sparsify.errors import SparsifyError

log = logging.getLogger("sparsify")


def _check_sparsity(sparsity: float, kind: MaskType) -> None:
    if kind.kind != "nm" and not 0.0 <= sparsity < 1.0:
        raise SparsifyError(f"sparsity must be in [0, 1), got {sparsity}; e.g. 0.5 for 50 %")


@torch.no_grad()
def sparsegpt_prune_layer(
    weight: torch.Tensor,
    H: torch.Tensor,
    sparsity: float,
    mask_type: str | MaskType = UNSTRUCTURED,
    block_size: int = 128,
    percdamp: float = 0.01,
) -> tuple[torch.Tensor, torch.Tensor, float]:
    """Prune a `(out, in_flat)` weight with Hessian `H` (in_flat x in_flat).

    Returns the compensated sparse weight (weight's dtype), the bool mask (True = kept) and
    the output error, the mean over calibration vectors of ||(W - W') x||^2 (from undamped H).
    Unstructured masks prune exactly `round(sparsity * numel)` weights, spread over column
    blocks in proportion; blockN masks prune `round(sparsity * blocks)` whole blocks; N:M
    ignores `sparsity`. Inputs that were always zero (diag H = 0) cost nothing to prune and go
    first; where they are kept, their weights are left as they were.
    """
    kind = parse_mask_type(mask_type)
    _check_sparsity(sparsity, kind)
    rows, cols = weight.shape
    live = (H.diagonal() != 0).to(device=weight.device, dtype=torch.float64)
    group = kind.group
    block_size = max(group, block_size // group * group)  # groups never straddle two blocks
    units_per_row = -(-cols // group)
    total_pruned = int(round(sparsity * rows * units_per_row)) if kind.kind != "nm" else 0

    def pruned_before(col: int) -> int:  # cumulative allocation keeps the layer total exact
        return int(round(total_pruned * (-(-col // group)) / units_per_row))

    pruned = torch.zeros(rows, cols, dtype=torch.bool, device=weight.device)

    def rule(W1: torch.Tensor, i1: int, i: int, d: torch.Tensor) -> torch.Tensor:
        i2 = i1 + W1.shape[1]
        pruned1 = pruned[:, i1:i2]  # a view: filled in place
        if kind.kind != "nm" and i == 0:  # adaptive mask: chosen as the block starts
            scores = W1.square() / d.square() * live[i1:i2]
            k = pruned_before(i2) - pruned_before(i1)
            if kind.kind == "block":
                chosen = lowest(block_scores(scores, group), k)
                pruned1.copy_(expand_blocks(chosen, group, i2 - i1))
            else:
                pruned1.copy_(lowest(scores, k))
        if kind.kind == "nm" and i % group == 0:
            j = min(i + group, i2 - i1)
            scores = W1[:, i:j].square() / d[i:j].square() * live[i1 + i : i1 + j]
            pruned1[:, i:j] = ~nm_mask_from_scores(scores, kind.keep, group)
        w = W1[:, i]
        return torch.where(pruned1[:, i], torch.zeros_like(w), w)

    W, error = obs_update_layer(weight, H, rule, block_size, percdamp)
    return W, ~pruned, error


class PruneResult(NamedTuple):
    masks: dict[str, torch.Tensor]  # bool, True = kept, in each weight's own shape
    stats: dict[str, dict[str, Any]]  # per layer: method, sparsity, error, relative_error


def _group_sparsity(
    sparsity: float, kind: MaskType, matrix: torch.Tensor, g: int, groups: int
) -> float:
    """Group g's share of a grouped layer's pruning, so that the layer total is exact."""
    if groups == 1 or kind.kind == "nm":
        return sparsity
    units = matrix.shape[0] * -(-matrix.shape[1] // kind.group)
    total = round(sparsity * units)
    count = round(total * (g + 1) / groups) - round(total * g / groups)
    return count / (units / groups)


@torch.no_grad()
def _prune_one(
    name: str,
    layer: nn.Module,
    acc: HessianAccumulator | None,
    sparsity: float,
    kind: MaskType,
    block_size: int,
    percdamp: float,
) -> tuple[torch.Tensor, dict[str, Any]]:
    reason = unsupported_reason(layer)
    if reason is None and acc is not None and acc.samples == 0:
        reason = "it saw no calibration input (not called in the forward pass)"
    if reason is not None:
        log.warning("SparseGPT skips %s: %s; pruned by magnitude instead", name, reason)
        mask = structured_magnitude_mask(layer.weight, sparsity, kind)
        layer.weight.mul_(mask)
        stats = {"method": "magnitude", "error": None, "relative_error": None}
    else:
        assert acc is not None
        matrix = to_matrix(layer.weight.detach())
        pruned, keep = torch.empty_like(matrix), torch.empty_like(matrix, dtype=torch.bool)
        error = 0.0
        groups = group_rows(layer, matrix.shape[0])
        for g, (rows, H) in enumerate(zip(groups, acc.hessians, strict=True)):
            pruned[rows], keep[rows], part = sparsegpt_prune_layer(
                matrix[rows], H, _group_sparsity(sparsity, kind, matrix, g, len(groups)),
                kind, block_size, percdamp,
            )  # fmt: skip
            error += part
        energy = output_energy(matrix, acc.hessians, groups)
        layer.weight.copy_(from_matrix(pruned, layer.weight.shape))
        mask = from_matrix(keep, layer.weight.shape)
        stats = {
            "method": "sparsegpt",
            "error": error,
            "relative_error": error / energy if energy > 0 else 0.0,
        }
    stats["sparsity"] = float(1.0 - mask.float().mean())
    return mask, stats


def sparsegpt_prune_model(
    model: nn.Module,
    layers: dict[str, nn.Module],
    batches: Sequence[Any],
    sparsity: float,
    mask_type: str | MaskType = UNSTRUCTURED,
    block_size: int = 128,
    percdamp: float = 0.01,
    sequential: bool = True,
    after_layer: Callable[[], Any] | None = None,
    layer_sparsity: Mapping[str, float] | None = None,
) -> PruneResult:
    """Prune `layers` of `model` in place with SparseGPT, using calibration `batches`.

    A batch is a tuple of positional inputs, a dict of keyword inputs, or one tensor.
    `sequential=True` (the default, as in the paper) calibrates each layer on the outputs of
    the already-pruned layers before it, so later layers compensate earlier errors; a layer
    then costs a pass of its own block over cached block inputs where the model is a run of
    blocks (`layer_inputs`), else a forward pass cut at the layer. `sequential=False` collects
    every Hessian in one pass of the dense model. Grouped convolutions get one Hessian per
    group; layers SparseGPT cannot handle (other types, or never called) are pruned by
    magnitude, with a warning. The model's train/eval mode is restored afterwards.
    `after_layer` runs after each layer (e.g. BatchNorm re-estimation); sequentially, its
    forward passes stop at the next layer to prune (`hessian.StopForward`, which
    `batchnorm.recalibrate_batchnorm` expects): that layer's Hessian only needs what runs
    before it. After the last layer they run whole. `layer_sparsity` gives layers their
    own sparsity (e.g. `profile: sensitivity`), `sparsity` the others.
    """
    kind = parse_mask_type(mask_type)
    _check_sparsity(sparsity, kind)
    require_calibration(batches, "SparseGPT")
    masks: dict[str, torch.Tensor] = {}
    stats: dict[str, dict[str, Any]] = {}
    hessians = layer_hessians(model, layers, batches, sequential, desc="SparseGPT layers")
    names = list(layers)
    for index, (name, layer, acc) in enumerate(hessians):
        masks[name], stats[name] = _prune_one(
            name,
            layer,
            acc,
            (layer_sparsity or {}).get(name, sparsity),
            kind,
            block_size,
            percdamp,
        )
        del acc
        if after_layer is not None:  # e.g. BatchNorm re-estimated before the next layer's turn
            later = [layers[n] for n in names[index + 1 :] if unsupported_reason(layers[n]) is None]
            with stop_before(later[0] if sequential and later else None):
                after_layer()
        log.debug(
            "  %-40s %-9s sparsity %6.2f %%  relative output error %s",
            name,
            stats[name]["method"],
            100 * stats[name]["sparsity"],
            "-"
            if stats[name]["relative_error"] is None
            else f"{stats[name]['relative_error']:.4f}",
        )
    total = sum(m.numel() for m in masks.values())
    kept = sum(int(m.sum()) for m in masks.values())
    log.info(
        "SparseGPT pruned %d layers (%s) to %.2f %% sparsity",
        len(masks),
        kind,
        100 * (1 - kept / total) if total else 0.0,
    )
    return PruneResult(masks, stats)
