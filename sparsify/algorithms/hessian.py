"""Layer-input Hessians H = 2/n sum x x^T: what SparseGPT and GPTQ weigh output errors by.

For a Linear/Conv layer with weight W (out x in, input columns ordered as in
`masks.to_matrix`) and input vectors x, a weight change dW changes the output by dW x, and
1/2 tr(dW H dW^T) is the mean squared output change over the calibration vectors. Grouped
convolutions have one Hessian per input group (each group's output channels see only its input
channels). Hessians are collected with forward pre-hooks while calibration batches run through
the model, optionally one layer at a time on the outputs of layers already changed.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Hashable, Iterator, Mapping, Sequence
from typing import Any, TypeVar

import torch
import torch.nn.functional as F
from torch import nn

from sparsify.algorithms.masks import to_matrix
from sparsify.errors import SparsifyError

log = logging.getLogger("sparsify")

K = TypeVar("K", bound=Hashable)


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


FLUSH_ROWS = 4096  # input vectors gathered before one (rows x in) @ (in x rows) product


class HessianAccumulator:
    """H = 2/n sum x x^T over the n input vectors a layer sees, through a forward pre-hook;
    one per input group (grouped convolutions).

    Input vectors as in `grouped_input_rows`. Use as a context manager around forward passes.
    Vectors are gathered until there are at least as many as columns (or `FLUSH_ROWS`), then
    multiplied in float32 and summed in float64: a batch of 16 images at 1x1 pixels would
    otherwise cost a full (in x in) product, conversion and sum for 16 vectors.
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
        self._pending: list[torch.Tensor] = []
        self._pending_rows = 0
        self.samples = 0
        self._handle: torch.utils.hooks.RemovableHandle | None = None

    @property
    def hessians(self) -> torch.Tensor:
        """(groups, in_flat, in_flat): one Hessian per input group."""
        self._flush()
        return self._sum * (2.0 / max(self.samples, 1))

    @property
    def hessian(self) -> torch.Tensor:
        """The Hessian of an ungrouped layer."""
        if self.groups != 1:
            raise ValueError(f"a layer with {self.groups} input groups has one Hessian each")
        return self.hessians[0]

    def add(self, x: torch.Tensor) -> None:
        rows = grouped_input_rows(self.layer, x.detach()).to(torch.float32)
        self._pending.append(rows)
        self._pending_rows += rows.shape[0]
        self.samples += rows.shape[0]
        if self._pending_rows >= max(self.columns, FLUSH_ROWS):
            self._flush()

    def _flush(self) -> None:
        if not self._pending:
            return
        rows = self._pending[0] if len(self._pending) == 1 else torch.cat(self._pending)
        self._pending, self._pending_rows = [], 0
        if self.groups == 1:
            flat = rows[:, 0]
            self._sum[0] += (flat.T @ flat).to(torch.float64)
        else:
            self._sum += torch.einsum("ngi,ngj->gij", rows, rows).to(torch.float64)

    def _hook(self, module: nn.Module, args: tuple[Any, ...]) -> None:
        self.add(args[0])

    def __enter__(self) -> HessianAccumulator:
        self._handle = self.layer.register_forward_pre_hook(self._hook)
        return self

    def __exit__(self, *exc: object) -> None:
        if self._handle is not None:
            self._handle.remove()
            self._handle = None


class StopForward(Exception):
    """Raised by a hook once the layer being calibrated has seen its input."""


def forward_batch(model: nn.Module, batch: Any) -> Any:
    """Run `model` on a batch: a tuple of positional inputs, a dict of keyword inputs, a tensor."""
    if isinstance(batch, dict):
        return model(**batch)
    if isinstance(batch, list | tuple):
        return model(*batch)
    return model(batch)


def hooked_eval_forward(model: nn.Module, batch: Any, handles: Sequence[Any]) -> Any:
    """One forward pass in eval mode with the hooks of `handles`; the mode is restored and
    the hooks removed afterwards, whatever happens."""
    was_training = model.training
    model.eval()
    try:
        return forward_batch(model, batch)
    finally:
        model.train(was_training)
        for handle in handles:
            handle.remove()


def collect_hessians(
    model: nn.Module, layers: Mapping[K, nn.Module], batches: Sequence[Any]
) -> dict[K, HessianAccumulator]:
    """The Hessians of `layers` (keyed as given) from one forward pass over `batches`."""
    accs = {key: HessianAccumulator(layer) for key, layer in layers.items()}
    with contextlib.ExitStack() as stack:
        for acc in accs.values():
            stack.enter_context(acc)
        for batch in batches:
            forward_batch(model, batch)
    return accs


@contextlib.contextmanager
def stop_before(layer: nn.Module | None) -> Iterator[None]:
    """Forward passes raise `StopForward` as `layer` is reached, once its pre-hooks registered
    before this one have run (nothing when None): later layers are not needed yet."""
    if layer is None:
        yield
        return

    def hook(module: nn.Module, args: tuple[Any, ...]) -> None:
        raise StopForward

    handle = layer.register_forward_pre_hook(hook)
    try:
        yield
    finally:
        handle.remove()


def output_energy(weight: torch.Tensor, hessians: torch.Tensor, groups: list[slice]) -> float:
    """A layer's output energy, sum over input groups of 1/2 tr(W_g H_g W_g^T): what output
    errors are relative to. `weight` is the `(out, in_flat)` matrix, `groups` its rows per
    input group (`group_rows`), `hessians` one per group."""
    W = weight.to(torch.float64)
    total = 0.0
    for rows, H in zip(groups, hessians, strict=True):
        Hd = H.to(device=W.device, dtype=torch.float64)
        total += float(0.5 * (W[rows] @ Hd * W[rows]).sum())
    return total


def require_calibration(batches: Sequence[Any], what: str) -> None:
    """One clear error when an algorithm that needs calibration batches gets none."""
    if not batches:
        raise SparsifyError(
            f"{what} needs calibration data: give at least one batch "
            "(experiment.calibration_samples > 0)"
        )
