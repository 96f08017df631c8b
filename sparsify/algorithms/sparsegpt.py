"""One-shot SparseGPT / OBS pruning with calibration data (Frantar & Alistarh, 2023).

Per layer with weight W (out x in, input columns ordered as in `masks.to_matrix`) and inputs x,
SparseGPT looks for a sparse W' minimising the output error sum ||(W - W') x||^2 whose Hessian
is H = 2/n sum x x^T. Columns are visited left to right. Pruning w_j when columns j.. are still
free costs w_j^2 / [H_F^-1]_jj (Optimal Brain Surgeon) and is compensated by moving the other
free weights of the row along [H_F^-1]_j,: . With U the upper Cholesky factor of H^-1
(H^-1 = U^T U), [H_F^-1]_jj = U_jj^2 and the update is err_j * U_j,: with err_j = w_j / U_jj, so
one factorisation serves every step. Columns go in blocks of `block_size`: updates inside a
block are applied at once per column, the rest of the matrix gets one matrix product per block
(lazy batch updates), and the mask of a block is chosen when the block starts, from the
already-updated weights (adaptive mask selection), by the OBS score w^2 / U_jj^2. N:M groups
are chosen when each group of M columns starts.

Math runs in float64: the layers here are small (in_flat up to a few thousand), so it costs
little on a CPU, and it keeps the Cholesky of a damped H^-1 from failing on near-singular
Hessians (ReLU inputs, padding-heavy convolutions). Per-batch x^T x is formed in float32 (fast
GEMM) and summed in float64.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable, Iterator, Sequence
from typing import Any, NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

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
from sparsify.errors import SparsifyError
from sparsify.progress import progress

log = logging.getLogger("sparsify")


def unsupported_reason(layer: nn.Module) -> str | None:
    """Why SparseGPT cannot prune `layer` (it is magnitude-pruned instead), or None."""
    if isinstance(layer, nn.Linear | nn.Conv1d | nn.Conv2d):
        return None
    return f"{type(layer).__name__} is not a Linear, Conv1d or Conv2d layer"


def layer_groups(layer: nn.Module) -> int:
    """Independent input groups of a layer: a grouped convolution's `groups`, else 1."""
    return int(getattr(layer, "groups", 1)) if isinstance(layer, nn.Conv1d | nn.Conv2d) else 1


def grouped_input_rows(layer: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """A Linear/Conv layer's input -> its (n, groups, in_flat) input vectors per input group,
    columns in `to_matrix` order.

    Linear: every vector along the last dim (tokens count as samples), one group. Conv1d/Conv2d:
    every receptive field (`F.unfold` with the layer's kernel, stride, padding and dilation),
    split into the convolution's groups (group g feeds output channels g*out/groups ...).
    """
    if isinstance(layer, nn.Linear):
        return x.reshape(-1, 1, x.shape[-1])
    mode = "constant" if layer.padding_mode == "zeros" else layer.padding_mode
    # the layer's own padding (also 'same', asymmetric, reflect...) then an unpadded unfold
    x = F.pad(x, layer._reversed_padding_repeated_twice, mode=mode)
    kernel, stride, dilation = layer.kernel_size, layer.stride, layer.dilation
    if isinstance(layer, nn.Conv1d):
        x = x.unsqueeze(2)
        kernel, stride, dilation = (1, *kernel), (1, *stride), (1, *dilation)
    cols = F.unfold(x, kernel, dilation=dilation, stride=stride)  # (N, C*K, L), C outermost
    n, _, positions = cols.shape
    groups = layer.groups
    cols = cols.reshape(n, groups, layer.in_channels // groups, -1, positions)
    cols = cols.permute(0, 4, 1, 3, 2)  # (N, L, groups, K, C / groups): channels innermost
    return cols.reshape(n * positions, groups, -1)


def layer_input_rows(layer: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """A Linear/Conv layer's input -> its (n, in_flat) input vectors (one input group)."""
    return grouped_input_rows(layer, x)[:, 0]


def group_rows(layer: nn.Module, rows: int) -> list[slice]:
    """The weight-matrix rows (output channels) each input group of `layer` feeds."""
    groups = layer_groups(layer)
    per = rows // groups
    return [slice(g * per, (g + 1) * per) for g in range(groups)]


class HessianAccumulator:
    """H = 2/n sum x x^T over the n input vectors a layer sees, through a forward pre-hook;
    one per input group (grouped convolutions).

    Input vectors as in `grouped_input_rows`. Use as a context manager around forward passes.
    """

    def __init__(self, layer: nn.Module) -> None:
        reason = unsupported_reason(layer)
        if reason:
            raise SparsifyError(f"SparseGPT cannot collect a Hessian for this layer: {reason}")
        self.layer = layer
        self.groups = layer_groups(layer)
        self.columns = to_matrix(layer.weight).shape[1]
        self._sum = torch.zeros(
            self.groups,
            self.columns,
            self.columns,
            dtype=torch.float64,
            device=layer.weight.device,
        )
        self.samples = 0
        self._handle: torch.utils.hooks.RemovableHandle | None = None

    @property
    def hessians(self) -> torch.Tensor:
        """(groups, in_flat, in_flat): one Hessian per input group."""
        return self._sum * (2.0 / max(self.samples, 1))

    @property
    def hessian(self) -> torch.Tensor:
        """The Hessian of an ungrouped layer."""
        if self.groups != 1:
            raise ValueError(f"a layer with {self.groups} input groups has one Hessian each")
        return self.hessians[0]

    def add(self, x: torch.Tensor) -> None:
        rows = grouped_input_rows(self.layer, x.detach()).to(torch.float32)
        if self.groups == 1:
            flat = rows[:, 0]
            self._sum[0] += (flat.T @ flat).to(torch.float64)
        else:
            self._sum += torch.einsum("ngi,ngj->gij", rows, rows).to(torch.float64)
        self.samples += rows.shape[0]

    def _hook(self, module: nn.Module, args: tuple[Any, ...]) -> None:
        self.add(args[0])

    def __enter__(self) -> HessianAccumulator:
        self._handle = self.layer.register_forward_pre_hook(self._hook)
        return self

    def __exit__(self, *exc: object) -> None:
        if self._handle is not None:
            self._handle.remove()
            self._handle = None


def _check_sparsity(sparsity: float, kind: MaskType) -> None:
    if kind.kind != "nm" and not 0.0 <= sparsity < 1.0:
        raise SparsifyError(f"sparsity must be in [0, 1), got {sparsity}; e.g. 0.5 for 50 %")


def _damped_cholesky(hessian: torch.Tensor, percdamp: float) -> torch.Tensor:
    """Lower Cholesky factor of H + damp I, with inputs that never fired (diag 0) decoupled.

    damp = percdamp * mean(diag H); it grows tenfold while H is too ill-conditioned.
    """
    H = hessian.clone()
    H.diagonal()[H.diagonal() == 0] = 1.0  # dead inputs: their updates then touch nothing else
    mean_diag = float(H.diagonal().mean())
    damp = percdamp * mean_diag
    eye = torch.eye(H.shape[0], dtype=H.dtype, device=H.device)
    for _ in range(6):
        lower, info = torch.linalg.cholesky_ex(H + damp * eye)
        if int(info) == 0:
            return lower
        new_damp = max(10 * damp, 1e-6 * mean_diag)
        log.warning("Hessian not positive definite at damping %.3g; retrying %.3g", damp, new_damp)
        damp = new_damp
    raise SparsifyError(
        "SparseGPT could not factorise a layer's Hessian even with strong damping; "
        "raise percdamp (e.g. 0.1) or use more calibration samples"
    )


def _inverse_cholesky(hessian: torch.Tensor, percdamp: float) -> torch.Tensor:
    """Upper Cholesky factor U of (H + damp I)^-1 = U^T U."""
    for _ in range(3):
        inverse = torch.cholesky_inverse(_damped_cholesky(hessian, percdamp))
        upper, info = torch.linalg.cholesky_ex(inverse, upper=True)
        if int(info) == 0:
            return upper
        percdamp = max(10 * percdamp, 1e-4)  # only rounding gets here: the inverse is PD
    raise SparsifyError(
        "SparseGPT could not factorise a layer's inverse Hessian; raise percdamp (e.g. 0.1)"
    )


ColumnRule = Callable[[torch.Tensor, int, int, torch.Tensor], torch.Tensor]


@torch.no_grad()
def obs_update_layer(
    weight: torch.Tensor,
    H: torch.Tensor,
    rule: ColumnRule,
    block_size: int = 128,
    percdamp: float = 0.01,
) -> tuple[torch.Tensor, float]:
    """The OBS column sweep shared by SparseGPT (pruning) and GPTQ (rounding).

    Visits the columns of a `(out, in_flat)` weight left to right in blocks; `rule(W1, i1, i,
    d)` gives column `i` of the block starting at column `i1` its final values, from the block
    `W1` as updated so far and the diagonal `d` of the block's inverse-Hessian factor. The
    difference is compensated on the later columns. Returns the new weight (weight's dtype)
    and the output error, the mean over calibration vectors of ||(W - W') x||^2 (undamped H).
    """
    original = weight.detach().to(torch.float64)
    W = original.clone()
    cols = W.shape[1]
    H0 = H.to(device=W.device, dtype=torch.float64)
    if H0.shape != (cols, cols):
        raise ValueError(f"Hessian {tuple(H0.shape)} does not match weight {tuple(W.shape)}")
    Hd = H0.clone()
    Hd.diagonal()[H0.diagonal() == 0] = 1.0  # decouples dead inputs: their updates touch nothing
    U = _inverse_cholesky(Hd, percdamp)
    for i1 in range(0, cols, block_size):
        i2 = min(i1 + block_size, cols)
        W1 = W[:, i1:i2].clone()
        Q1 = torch.zeros_like(W1)
        err1 = torch.zeros_like(W1)
        U1 = U[i1:i2, i1:i2]
        d = U1.diagonal()
        for i in range(i2 - i1):
            w = W1[:, i]
            q = rule(W1, i1, i, d)
            Q1[:, i] = q
            err = (w - q) / d[i]
            W1[:, i:] -= err.unsqueeze(1) * U1[i, i:].unsqueeze(0)
            err1[:, i] = err
        W[:, i1:i2] = Q1
        W[:, i2:] -= err1 @ U[i1:i2, i2:]
    delta = original - W
    error = float(0.5 * (delta @ H0 * delta).sum())
    return W.to(weight.dtype), error


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


class _StopForward(Exception):
    """Raised by a hook once the layer being calibrated has seen its input."""


class PruneResult(NamedTuple):
    masks: dict[str, torch.Tensor]  # bool, True = kept, in each weight's own shape
    stats: dict[str, dict[str, Any]]  # per layer: method, sparsity, error, relative_error


def forward_batch(model: nn.Module, batch: Any) -> Any:
    """Run `model` on a batch: a tuple of positional inputs, a dict of keyword inputs, a tensor."""
    if isinstance(batch, dict):
        return model(**batch)
    if isinstance(batch, list | tuple):
        return model(*batch)
    return model(batch)


@contextlib.contextmanager
def _stop_after(layer: nn.Module) -> Iterator[None]:
    """Cut each forward pass short once `layer` has run: later layers are not needed yet."""

    def hook(module: nn.Module, args: tuple[Any, ...]) -> None:
        raise _StopForward

    handle = layer.register_forward_pre_hook(hook)
    try:
        yield
    finally:
        handle.remove()


def _collect(
    model: nn.Module, layers: dict[str, nn.Module], batches: Sequence[Any], stop: bool
) -> dict[str, HessianAccumulator]:
    """Hessians of `layers` from one pass over `batches` (cut short after them if `stop`)."""
    accs = {name: HessianAccumulator(layer) for name, layer in layers.items()}
    with contextlib.ExitStack() as stack:
        for acc in accs.values():
            stack.enter_context(acc)
        if stop and len(layers) == 1:
            stack.enter_context(_stop_after(next(iter(layers.values()))))
        for batch in batches:
            with contextlib.suppress(_StopForward):
                forward_batch(model, batch)
    return accs


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
        error = energy = 0.0
        groups = group_rows(layer, matrix.shape[0])
        for g, (rows, H) in enumerate(zip(groups, acc.hessians, strict=True)):
            pruned[rows], keep[rows], part = sparsegpt_prune_layer(
                matrix[rows], H, _group_sparsity(sparsity, kind, matrix, g, len(groups)),
                kind, block_size, percdamp,
            )  # fmt: skip
            error += part
            energy += output_energy(matrix[rows], H)
        layer.weight.copy_(from_matrix(pruned, layer.weight.shape))
        mask = from_matrix(keep, layer.weight.shape)
        stats = {
            "method": "sparsegpt",
            "error": error,
            "relative_error": error / energy if energy > 0 else 0.0,
        }
    stats["sparsity"] = float(1.0 - mask.float().mean())
    return mask, stats


def layer_hessians(
    model: nn.Module,
    layers: dict[str, nn.Module],
    batches: Sequence[Any],
    sequential: bool = True,
    desc: str = "layers",
) -> Iterator[tuple[str, nn.Module, HessianAccumulator | None]]:
    """Yield each of `layers` with the Hessian of its inputs on the calibration `batches`.

    `sequential`: each layer's Hessian is collected only when it is its turn, so it sees what
    the caller did to the layers before it (a partial forward pass per layer); otherwise all
    come from one pass first. Layers SparseGPT cannot handle get None. The model runs in eval
    mode (BatchNorm/Dropout must not change while calibrating), restored at the end.
    """
    was_training = model.training
    model.eval()
    supported = {n: m for n, m in layers.items() if unsupported_reason(m) is None}
    try:
        shared = None if sequential else _collect(model, supported, batches, stop=False)
        for name, layer in progress(layers.items(), total=len(layers), desc=desc):
            if name not in supported:
                yield name, layer, None
            elif shared is not None:
                yield name, layer, shared.pop(name)
            else:
                yield name, layer, _collect(model, {name: layer}, batches, stop=True)[name]
    finally:
        model.train(was_training)


def output_energy(weight: torch.Tensor, H: torch.Tensor) -> float:
    """A layer's output energy 1/2 tr(W H W^T), what output errors are relative to."""
    W = weight.to(torch.float64)
    return float(0.5 * (W @ H.to(device=W.device, dtype=torch.float64) * W).sum())


def sparsegpt_prune_model(
    model: nn.Module,
    layers: dict[str, nn.Module],
    batches: Sequence[Any],
    sparsity: float,
    mask_type: str | MaskType = UNSTRUCTURED,
    block_size: int = 128,
    percdamp: float = 0.01,
    sequential: bool = True,
) -> PruneResult:
    """Prune `layers` of `model` in place with SparseGPT, using calibration `batches`.

    A batch is a tuple of positional inputs, a dict of keyword inputs, or one tensor.
    `sequential=True` (the default, as in the paper) calibrates each layer on the outputs of
    the already-pruned layers before it, so later layers compensate earlier errors; every
    layer then costs a (partial) forward pass over the batches. `sequential=False` collects
    every Hessian in one pass of the dense model. Grouped convolutions get one Hessian per
    group; layers SparseGPT cannot handle (other types, or never called) are pruned by
    magnitude, with a warning. The model's train/eval mode is restored afterwards.
    """
    kind = parse_mask_type(mask_type)
    _check_sparsity(sparsity, kind)
    if not batches:
        raise SparsifyError(
            "SparseGPT needs calibration data: give at least one batch "
            "(experiment.calibration_samples > 0)"
        )
    masks: dict[str, torch.Tensor] = {}
    stats: dict[str, dict[str, Any]] = {}
    hessians = layer_hessians(model, layers, batches, sequential, desc="SparseGPT layers")
    for name, layer, acc in hessians:
        masks[name], stats[name] = _prune_one(
            name, layer, acc, sparsity, kind, block_size, percdamp
        )
        del acc
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
