"""Sparsity mask structures: unstructured, blocks of N input weights, and N:M.

Groups (blocks and N:M groups) run along a layer's input dimension. For a Linear weight
`(out, in)` that is dim 1. For a convolution `(out, in, *kernel)` it is the input channels at
each kernel position: the weight is viewed as the matrix `(out, *kernel, in)` flattened to
`(out, prod(kernel) * in)` (channel-last, the order NHWC implicit-GEMM kernels read), so a
group of M consecutive columns is M consecutive input channels at one kernel position whenever
`in % M == 0`. That is the layout sparse kernels use (SparseML's four-block masks permute the
input channels last; NVIDIA 2:4 tensor cores group along C). Only stems with e.g. 3 input
channels let a group span two kernel positions; a row's last group may then be shorter than M.
`to_matrix` / `from_matrix` convert between the weight and this matrix; SparseGPT's Hessian
uses the same column order.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

import torch
from torch import nn

from sparsify.algorithms.pruning import magnitude_masks
from sparsify.errors import SparsifyError

VALID_FORMS = "'unstructured', 'blockN' (e.g. 'block4'), or 'N:M' with 1 <= N < M (e.g. '2:4')"


@dataclass(frozen=True)
class MaskType:
    """How pruned weights are grouped.

    - `unstructured`: any weight may be pruned on its own.
    - `block` (`blockN`, `group = N`): N consecutive input weights are pruned together.
    - `nm` (`N:M`, `keep = N`, `group = M`): at most N nonzeros in every group of M consecutive
      input weights (the common convention: "2:4" keeps 2 of every 4, i.e. 50 % sparsity;
      "1:4" is 75 %). The sparsity is implied by N:M.
    """

    kind: Literal["unstructured", "block", "nm"] = "unstructured"
    group: int = 1
    keep: int = 0

    @property
    def implied_sparsity(self) -> float | None:
        """The sparsity an N:M pattern fixes (full groups), None for the other kinds."""
        return 1.0 - self.keep / self.group if self.kind == "nm" else None

    def __str__(self) -> str:
        if self.kind == "block":
            return f"block{self.group}"
        if self.kind == "nm":
            return f"{self.keep}:{self.group}"
        return "unstructured"


UNSTRUCTURED = MaskType()


def parse_mask_type(spec: str | MaskType) -> MaskType:
    """'unstructured', 'blockN' or 'N:M' (N nonzeros kept per M) -> MaskType."""
    if isinstance(spec, MaskType):
        return spec
    text = str(spec).strip().lower()
    if text == "unstructured":
        return UNSTRUCTURED
    if match := re.fullmatch(r"block(\d+)", text):
        size = int(match.group(1))
        if size >= 2:
            return MaskType("block", group=size)
    elif match := re.fullmatch(r"(\d+)\s*:\s*(\d+)", text):
        n, m = int(match.group(1)), int(match.group(2))
        if 1 <= n < m:
            return MaskType("nm", group=m, keep=n)
    raise SparsifyError(
        f"unknown sparsity mask type {spec!r}; use {VALID_FORMS}. "
        "N:M keeps at most N nonzeros in every M consecutive input weights"
    )


def to_matrix(weight: torch.Tensor) -> torch.Tensor:
    """Weight -> `(out, in_flat)` with the grouped (input-channel) dimension innermost."""
    if weight.dim() <= 2:
        return weight.reshape(weight.shape[0], -1)
    dims = (0, *range(2, weight.dim()), 1)
    return weight.permute(dims).reshape(weight.shape[0], -1)


def from_matrix(matrix: torch.Tensor, shape: torch.Size | tuple[int, ...]) -> torch.Tensor:
    """Inverse of `to_matrix` for a weight of `shape`."""
    if len(shape) <= 2:
        return matrix.reshape(shape)
    channel_last = (shape[0], *shape[2:], shape[1])
    dims = (0, len(shape) - 1, *range(1, len(shape) - 1))
    return matrix.reshape(channel_last).permute(dims).contiguous()


def _grouped(matrix: torch.Tensor, group: int, fill: float) -> torch.Tensor:
    """`(rows, cols)` -> `(rows, ceil(cols / group), group)`, the last group padded with fill."""
    pad = -matrix.shape[1] % group
    if pad:
        matrix = torch.nn.functional.pad(matrix, (0, pad), value=fill)
    return matrix.reshape(matrix.shape[0], -1, group)


def _ungrouped(grouped: torch.Tensor, cols: int) -> torch.Tensor:
    return grouped.reshape(grouped.shape[0], -1)[:, :cols]


def nm_mask_from_scores(scores: torch.Tensor, keep: int, group: int) -> torch.Tensor:
    """Keep the `keep` highest-scoring entries in every `group` consecutive columns."""
    grouped = _grouped(scores, group, float("-inf"))  # padding is never chosen over real weights
    top = grouped.topk(keep, dim=-1).indices
    mask = torch.zeros_like(grouped, dtype=torch.bool).scatter_(-1, top, True)
    return _ungrouped(mask, scores.shape[1])


def block_scores(scores: torch.Tensor, size: int) -> torch.Tensor:
    """Per-weight scores `(rows, cols)` summed over blocks -> `(rows, ceil(cols / size))`.

    A row's last block may be shorter; its sum is scaled up to `size` entries so short blocks
    are not pruned first merely for being short.
    """
    cols = scores.shape[1]
    counts = torch.full((-(-cols // size),), float(size), dtype=scores.dtype)
    if cols % size:
        counts[-1] = cols % size
    return _grouped(scores, size, 0.0).sum(-1) * (size / counts.to(scores.device))


def expand_blocks(block_mask: torch.Tensor, size: int, cols: int) -> torch.Tensor:
    """`(rows, blocks)` -> `(rows, cols)` with every block's value repeated over its weights."""
    return block_mask.repeat_interleave(size, dim=1)[:, :cols]


def lowest(scores: torch.Tensor, k: int) -> torch.Tensor:
    """Bool mask, same shape as scores, True for the k lowest (ties broken by position)."""
    chosen = torch.zeros(scores.numel(), dtype=torch.bool, device=scores.device)
    if k > 0:
        chosen[scores.flatten().argsort(stable=True)[:k]] = True
    return chosen.reshape(scores.shape)


@torch.no_grad()
def structured_magnitude_mask(
    weight: torch.Tensor, sparsity: float, mask_type: str | MaskType = UNSTRUCTURED
) -> torch.Tensor:
    """Bool mask (True = kept) of `weight`'s shape by magnitude under `mask_type`.

    Unstructured: the `round(sparsity * numel)` smallest |w| are pruned (`magnitude_masks`).
    blockN: the `round(sparsity * blocks)` blocks of smallest L2 norm are pruned, so sparsity is
    met in whole blocks. N:M: the N largest |w| of every group of M are kept; `sparsity` is
    ignored.
    """
    kind = parse_mask_type(mask_type)
    if kind.kind == "unstructured":
        holder = nn.Module()
        holder.weight = weight  # magnitude_masks reads only `.weight`
        return magnitude_masks({"w": holder}, sparsity)["w"]
    matrix = to_matrix(weight.detach()).float()
    if kind.kind == "nm":
        mask = nm_mask_from_scores(matrix.abs(), kind.keep, kind.group)
    else:
        norms = block_scores(matrix.square(), kind.group)
        pruned = lowest(norms, int(round(sparsity * norms.numel())))
        mask = expand_blocks(~pruned, kind.group, matrix.shape[1])
    return from_matrix(mask, weight.shape)


def magnitude_layer_masks(
    layers: dict[str, nn.Module], sparsity: float, mask_type: str | MaskType = UNSTRUCTURED
) -> dict[str, torch.Tensor]:
    """`structured_magnitude_mask` for every layer (not applied)."""
    kind = parse_mask_type(mask_type)
    if kind.kind == "unstructured":
        return magnitude_masks(layers, sparsity)
    return {
        name: structured_magnitude_mask(layer.weight, sparsity, kind)
        for name, layer in layers.items()
    }


def check_nm(mask: torch.Tensor, n: int, m: int) -> bool:
    """Whether every group of m consecutive input weights holds at most n nonzeros.

    `mask` may be a bool mask or a weight (nonzero = kept), in the weight's own shape.
    """
    kept = _grouped(to_matrix(mask != 0).to(torch.int32), m, 0)
    return bool((kept.sum(-1) <= n).all())
