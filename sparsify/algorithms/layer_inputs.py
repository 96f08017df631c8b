"""Each layer's calibration inputs, one layer at a time, without re-running the whole model.

Sequential SparseGPT / GPTQ calibrate every layer on the outputs of the layers already changed
before it. Run naively, that is a forward pass over the calibration set per layer, from the
model's input. Most models are a run of blocks (ResNet stages, transformer layers, a YOLO
backbone) each fed by earlier blocks' outputs and by what the first block was given (an
attention mask): then the first block's inputs are captured once, a layer's inputs come from
running only its own block on the cached inputs, and a finished block's outputs are computed
once and cached for the blocks after it. Layers after the run get forward passes in which
the run's blocks return their cached outputs.

How the run is found: `block_run`. A model without one gets the full forward passes.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator, Sequence
from typing import Any

import torch
from torch import nn

from sparsify.algorithms.block_run import BlockInputs, clone, leaves, plan_block_run
from sparsify.algorithms.hessian import (
    HessianAccumulator,
    StopForward,
    collect_hessians,
    forward_batch,
    stop_before,
    unsupported_reason,
)
from sparsify.progress import logged_progress

log = logging.getLogger("sparsify")


class LayerInputs:
    """Forward passes that show a layer its calibration inputs, given the layers before it
    as they are now; layers must be asked for in the order `layers` gives."""

    def __init__(self, model: nn.Module, layers: dict[str, nn.Module], batches: Sequence[Any]):
        self.model, self.layers, self.batches = model, layers, batches
        self.run, self.shared = plan_block_run(model, layers, batches[0])
        self._inputs: BlockInputs | None = None
        self._next = 0  # the first block whose outputs are not computed yet
        self._suffix = self.run is not None and any(
            name not in self.run.layer_block
            for name in list(layers)[list(layers).index(next(iter(self.run.layer_block))) :]
        )
        if self.run is not None:
            log.info(
                "Sequential calibration: %d of %d layers in a run of %d blocks (%s ... %s), "
                "each run on cached inputs",
                len(self.run.layer_block),
                len(layers),
                len(self.run.blocks),
                self.run.names[0],
                self.run.names[-1],
            )

    @torch.no_grad()
    def run_to(self, name: str, hooks: contextlib.AbstractContextManager[Any]) -> None:
        """Every calibration batch run until layer `name` is called, with `hooks` (e.g. a
        `HessianAccumulator`) entered around exactly those passes; cut short at the layer."""
        layer = self.layers[name]
        run = self.run
        block = None if run is None else run.layer_block.get(name)
        if run is None or (block is None and self._inputs is None):  # before the blocks
            with hooks, stop_before(layer):
                for batch in self.batches:
                    with contextlib.suppress(StopForward):
                        forward_batch(self.model, batch)
            return
        inputs = self._advance(len(run.blocks) if block is None else block)
        if block is not None:
            module = run.blocks[block]
            with hooks, stop_before(layer):
                for index in range(len(self.batches)):
                    args, kwargs = inputs.block_inputs(block, index)
                    with contextlib.suppress(StopForward):
                        module(*args, **kwargs)
            return
        with hooks, stop_before(layer), self._cached_blocks(inputs) as current:
            for index, batch in enumerate(self.batches):
                current[0] = index
                with contextlib.suppress(StopForward):
                    forward_batch(self.model, batch)

    def _advance(self, block: int) -> BlockInputs:
        """The outputs of the (finished) blocks before `block` computed."""
        assert self.run is not None
        if self._inputs is None:
            self._inputs = self._capture_first()
        keep_all = self._suffix  # layers after the run: every block returns its outputs
        while self._next < block:
            self._inputs.compute(self._next)
            if not keep_all:
                self._inputs.drop_unused(self._next)
            self._next += 1
        return self._inputs

    def _capture_first(self) -> BlockInputs:
        assert self.run is not None
        captured: list[list[torch.Tensor]] = []
        template: list[Any] = []

        def hook(module: nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
            captured.append(leaves(clone((args, kwargs))))
            template[:] = [(args, kwargs)]
            raise StopForward

        handle = self.run.blocks[0].register_forward_pre_hook(hook, with_kwargs=True)
        try:
            for batch in self.batches:
                with contextlib.suppress(StopForward):
                    forward_batch(self.model, batch)
        finally:
            handle.remove()
        return BlockInputs(self.run, captured, template[0])

    @contextlib.contextmanager
    def _cached_blocks(self, inputs: BlockInputs) -> Iterator[list[int]]:
        """The run's blocks return their cached outputs (for the batch `current[0]`)."""
        assert self.run is not None
        current = [0]
        saved = []
        for b, module in enumerate(self.run.blocks):

            def cached(*args: Any, b: int = b, **kwargs: Any) -> Any:
                return clone(inputs.outputs[b][current[0]])

            saved.append((module, module.__dict__.get("forward")))
            module.forward = cached  # type: ignore[method-assign]
        try:
            yield current
        finally:
            for module, forward in saved:
                if forward is None:
                    del module.forward
                else:
                    module.forward = forward


def _same_rows(a: nn.Module, b: nn.Module) -> bool:
    """Whether two layers turn the same input into the same Hessian rows."""
    if type(a) is not type(b):
        return False
    if isinstance(a, nn.Linear):
        return a.in_features == b.in_features
    keys = ("in_channels", "kernel_size", "stride", "padding", "dilation", "groups")
    return all(getattr(a, k) == getattr(b, k) for k in (*keys, "padding_mode"))


def layer_hessians(
    model: nn.Module,
    layers: dict[str, nn.Module],
    batches: Sequence[Any],
    sequential: bool = True,
    desc: str = "layers",
) -> Iterator[tuple[str, nn.Module, HessianAccumulator | None]]:
    """Yield each of `layers` with the Hessian of its inputs on the calibration `batches`.

    `sequential`: each layer's Hessian is collected only when it is its turn, so it sees what
    the caller did to the layers before it (`LayerInputs`: its block run on cached inputs
    where the model allows, else a forward pass cut at the layer); layers reading the same
    input tensor as the layer before them share its Hessian. Otherwise all come from one pass
    first. Layers SparseGPT cannot handle get None. The model runs in eval mode
    (BatchNorm/Dropout must not change while calibrating), restored at the end.
    """
    was_training = model.training
    model.eval()
    supported = {n: m for n, m in layers.items() if unsupported_reason(m) is None}
    try:
        together = (
            None if sequential or not supported else collect_hessians(model, supported, batches)
        )
        inputs = LayerInputs(model, supported, batches) if sequential and supported else None
        group: tuple[str, HessianAccumulator] | None = None  # the last Hessian and its layer
        for name, layer in logged_progress(layers.items(), len(layers), desc, log):
            if name not in supported:
                yield name, layer, None
            elif together is not None:
                yield name, layer, together.pop(name)
            else:
                assert inputs is not None
                source = inputs.shared.get(name)
                if group is None or source != group[0] or not _same_rows(layer, group[1].layer):
                    acc = HessianAccumulator(layer)
                    inputs.run_to(name, acc)
                    group = (name, acc)
                yield name, layer, group[1]
    finally:
        model.train(was_training)
