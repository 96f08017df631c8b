"""GPTQ-style rounding of weights onto the per-tensor INT8 grid before post-training quantization.

Rounding each weight to its nearest INT8 level (what ONNX Runtime's quantizer does) ignores how
the errors add up in a layer's output; per-tensor grids are coarse for rows with small ranges,
so that error is what per-tensor INT8 loses most of its accuracy to. GPTQ (Frantar et al.,
2023) rounds a layer's input columns one at a time and moves the still-unrounded weights of
each row to compensate, by the same Optimal Brain Surgeon update SparseGPT uses for pruning
(`obs.obs_update_layer`, with a rounding rule in place of a mask choice). Pruned weights
stay exactly zero, which is on the grid.

The grid is the one ONNX Runtime's per-tensor symmetric INT8 weights use: scale =
max|W| / 127, levels -127..127 times scale. Weights left exactly on it are re-quantized by the
ONNX quantizer without any further error, so the compensation survives into the INT8 model.
The weights rounded are those of the exported graph, i.e. with BatchNorm folded in
(`batchnorm.fold_batchnorm`).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from sparsify.algorithms.batchnorm import fold_batchnorm, has_batchnorm
from sparsify.algorithms.hessian import (
    group_rows,
    hooked_eval_forward,
    output_energy,
    require_calibration,
)
from sparsify.algorithms.layer_inputs import layer_hessians
from sparsify.algorithms.masks import from_matrix, to_matrix
from sparsify.algorithms.obs import obs_update_layer
from sparsify.matching import match_modules

log = logging.getLogger("sparsify")

INT8_LEVELS = 127  # symmetric signed INT8: -127..127, as ONNX Runtime's symmetric weights


def int8_scales(weight: torch.Tensor, per_channel: bool = False) -> torch.Tensor:
    """Symmetric INT8 scales of a `(out, in_flat)` weight as ONNX Runtime computes them, one
    per row: max|W| / 127 over the tensor (per-tensor, repeated) or over each row."""
    absmax = weight.detach().abs().to(torch.float64)
    absmax = absmax.amax(dim=1) if per_channel else absmax.max().expand(weight.shape[0])
    return absmax / INT8_LEVELS


@torch.no_grad()
def gptq_round_layer(
    weight: torch.Tensor,
    H: torch.Tensor,
    scales: torch.Tensor,
    per_channel: bool = False,
    block_size: int = 128,
    percdamp: float = 0.01,
    groups: list[slice] | None = None,
) -> tuple[torch.Tensor, float]:
    """Round a `(out, in_flat)` weight onto INT8 grids (`scales`: one per row), compensating
    the output error with Hessian `H`.

    A grouped convolution passes `H` as (groups, in_flat, in_flat) and the rows each group
    feeds (`hessian.group_rows`). Zeros stay zero (pruned weights keep their mask). The
    largest |w| of each grid (the tensor, or each row) ends on +-127 levels, so the scale ONNX
    Runtime derives from the rounded tensor is `scales` again. Returns the rounded weight
    (weight's dtype) and the output error, as `sparsegpt_prune_layer`'s.
    """
    step = scales.to(device=weight.device, dtype=torch.float64)
    safe = torch.where(step > 0, step, torch.ones_like(step))  # all-zero rows stay zero
    rounded = torch.empty_like(weight)
    error = 0.0
    hessians = H if H.dim() == 3 else H.unsqueeze(0)
    for rows, hessian in zip(groups or [slice(None)], hessians, strict=True):
        keep, s, sd = weight[rows] != 0, step[rows], safe[rows]

        def rounding(W1: torch.Tensor, i1: int, i: int, d: torch.Tensor) -> torch.Tensor:
            q = torch.clamp(torch.round(W1[:, i] / sd), -INT8_LEVELS, INT8_LEVELS) * s  # noqa: B023
            return torch.where(keep[:, i1 + i], q, torch.zeros_like(q))  # noqa: B023

        rounded[rows], part = obs_update_layer(
            weight[rows], hessian, rounding, block_size, percdamp
        )
        error += part
    _restore_top_levels(weight, rounded, step, per_channel)
    return rounded, error


def _restore_top_levels(
    original: torch.Tensor, rounded: torch.Tensor, step: torch.Tensor, per_channel: bool
) -> None:
    """Compensation may have pulled a grid's largest weight below the top level; put it back
    so that max|W| / 127 (what the ONNX quantizer derives) is the scale rounded to."""
    for row in range(original.shape[0]) if per_channel else [None]:
        region = original if row is None else original[row : row + 1]
        r, c = divmod(int(region.abs().argmax()), original.shape[1])
        r = r if row is None else row
        level = float(step[r]) * INT8_LEVELS
        target = rounded if row is None else rounded[row]
        if level > 0 and float(target.abs().max()) < level * (1 - 1e-6):
            rounded[r, c] = level if original[r, c] > 0 else -level


def gptq_round_model(
    model: nn.Module,
    layers: dict[str, nn.Module],
    batches: Sequence[Any],
    per_channel: bool = False,
    block_size: int = 128,
    percdamp: float = 0.01,
) -> dict[str, dict[str, float]]:
    """Round `layers`' weights in place onto their INT8 grids, layer by layer.

    Each layer's Hessian comes from the calibration `batches` run through the model with the
    layers before it already rounded (sequential, so later layers absorb earlier errors).
    Returns per layer the largest scale and the relative output error of rounding.
    """
    require_calibration(batches, "GPTQ rounding")
    stats: dict[str, dict[str, float]] = {}
    for name, layer, acc in layer_hessians(model, layers, batches, desc="GPTQ layers"):
        if acc is None or acc.samples == 0:
            log.warning("GPTQ skips %s: no Hessian for it; ONNX Runtime rounds it to nearest", name)
            continue
        matrix = to_matrix(layer.weight.detach())
        scales = int8_scales(matrix, per_channel)
        groups = group_rows(layer, matrix.shape[0])
        rounded, error = gptq_round_layer(
            matrix, acc.hessians, scales, per_channel, block_size, percdamp, groups
        )
        with torch.no_grad():
            layer.weight.copy_(from_matrix(rounded.to(layer.weight.dtype), layer.weight.shape))
        energy = output_energy(matrix, acc.hessians, groups)
        stats[name] = {
            "scale": float(scales.max()),
            "relative_error": error / energy if energy > 0 else 0.0,
        }
        log.debug(
            "  %-40s scale %.3g relative output error %.5f",
            name,
            stats[name]["scale"],
            stats[name]["relative_error"],
        )
    log.info("GPTQ rounded %d layers' weights onto their INT8 grids", len(stats))
    return stats


@torch.no_grad()
def int8_layers(
    model: nn.Module,
    batch: Any,
    ops: list[str],
    ignore: list[str] | None = None,
    fp32_grouped: bool = False,
) -> dict[str, nn.Module]:
    """The Conv/Linear modules whose weights ONNX Runtime will quantize, by the ONNX op they
    export to: Conv -> `Conv`; Linear on 2-D inputs -> `Gemm`, on N-D inputs -> `MatMul`.

    Modules `ignore` covers are left out (`sparsify.matching`'s rule, the one the quantizer
    applies to the exported graph), and with `fp32_grouped` grouped and depthwise convolutions
    (the quantizer keeps them FP32: `quantization.fp32_depthwise`).
    """
    candidates = match_modules(model, ignore, types=(nn.Conv1d, nn.Conv2d, nn.Linear)).selected
    linear_ranks: dict[nn.Module, int] = {}

    def record(module: nn.Module, args: tuple[Any, ...]) -> None:
        if args and isinstance(args[0], torch.Tensor):
            linear_ranks[module] = args[0].dim()

    handles = [
        m.register_forward_pre_hook(record) for m in model.modules() if isinstance(m, nn.Linear)
    ]
    hooked_eval_forward(model, batch, handles)
    out = {}
    for name, module in candidates.items():
        if isinstance(module, nn.Conv1d | nn.Conv2d):
            if "Conv" in ops and not (fp32_grouped and module.groups > 1):
                out[name] = module
        elif isinstance(module, nn.Linear) and module in linear_ranks:
            op = "Gemm" if linear_ranks[module] == 2 else "MatMul"
            if op in ops:
                out[name] = module
    return out


@torch.no_grad()
def round_weights_for_int8(
    model: nn.Module,
    batches: Sequence[Any],
    ops: list[str],
    ignore: list[str] | None = None,
    per_channel: bool = False,
    fp32_grouped: bool = False,
) -> dict[str, Any]:
    """Fold BatchNorm, then GPTQ-round the weights ONNX Runtime will quantize (in place)."""
    require_calibration(batches, "GPTQ rounding")
    folded = fold_batchnorm(model, batches[0]) if has_batchnorm(model) else 0
    layers = int8_layers(model, batches[0], ops, ignore, fp32_grouped)
    log.info(
        "GPTQ rounding %d layers' weights onto their %s INT8 grids on %d calibration batches",
        len(layers),
        "per-channel" if per_channel else "per-tensor",
        len(batches),
    )
    stats = gptq_round_model(model, layers, batches, per_channel)
    return {"weight_rounding": "gptq", "folded_batchnorm": folded, "rounded_layers": len(stats)}
