"""StructuredPruningModifier: whole FFN neurons, attention heads or CNN / YOLO channels
masked on a schedule while training, then removed from the model when its window ends
(`sparsify.algorithms.structured` and `sparsify.algorithms.channels` hold the algorithms).

Channels (`structure: channels`) are ranked by the recipe's `importance` (per group, or in
one `global_pruning` ranking), masked with everything coupled to them at every update and
after every optimizer step, and removed when the window ends: with the optimizer at hand its
state is sliced and fine-tuning goes on with the thin model; otherwise (a trainer that does
not pass it) at the end of training. One-shot channel pruning is `ChannelPruningModifier`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import torch

from sparsify import distributed
from sparsify.algorithms.channels import (
    ChannelGraph,
    channel_report,
    count_macs,
    example_input,
)
from sparsify.algorithms.schedules import update_epochs
from sparsify.algorithms.structured import (
    FFNPair,
    apply_neuron_masks,
    ffn_pairs,
    head_groups,
    neuron_masks,
    start_statistics,
    stop_statistics,
    thin,
)
from sparsify.errors import SparsifyError
from sparsify.matching import DEPTHWISE
from sparsify.recipes.modifiers.base import register
from sparsify.recipes.modifiers.fields import (
    BOOL,
    IMPORTANCE,
    STRUCTURES,
    spec,
    state,
)
from sparsify.recipes.modifiers.pruning import ScheduleFields, gradual_sparsity

if TYPE_CHECKING:
    from sparsify.algorithms.session import RecipeSession

_NOT_FOUND = {
    "attention_heads": (
        "no BERT-style self-attention (query / key / value Linear layers in a module named "
        "....self with attention_head_size, and the sibling output.dense); it applies to "
        "BERT, RoBERTa, MiniLM and other BERT-style encoders"
    ),
    "ffn_neurons": (
        "no transformer feed-forward network (two Linear layers hidden -> width -> hidden "
        "inside blocks named layer.N / layers.N / blocks.N / h.N); it applies to transformer "
        "encoders"
    ),
}


def _pool_statistics(pairs: list[FFNPair]) -> None:
    """Under torchrun each rank saw its own batches: the squared-input sums and their counts
    are summed over the ranks, so that every rank ranks the units alike."""
    if not distributed.active() or not pairs:
        return
    device = pairs[0].down.weight.device
    for pair in pairs:
        if pair.sq_sum is None:
            pair.sq_sum = torch.zeros(pair.width, device=device)
    counts = torch.tensor([float(p.count) for p in pairs], device=device)
    distributed.all_reduce_([*(p.sq_sum for p in pairs), counts])
    for pair, count in zip(pairs, counts.tolist(), strict=True):
        pair.count = int(count)


@register
@dataclass(kw_only=True)
class StructuredPruningModifier(ScheduleFields):
    """Units (FFN neurons or attention heads) masked on a schedule, then removed at its end;
    `width` counts units per block."""

    group = "pruning_modifiers"
    implies_training = True
    hook_order = -1  # removing units reshapes the layers unstructured masks cover

    structure: str = spec(
        {
            "enum": STRUCTURES,
            "description": "ffn_neurons: whole feed-forward neurons of every transformer block; "
            "attention_heads: whole self-attention heads of every BERT-style block; the same "
            "number per block, removed from the model when end_epoch is reached",
        },
        "ffn_neurons",
    )
    importance: str = spec(IMPORTANCE, "magnitude")  # structure: channels only
    global_pruning: bool = spec(BOOL, False)  # structure: channels only

    channels: ChannelGraph | None = state()
    chosen: dict[str, list[int]] = state(dict)
    macs: tuple[int, int] = state(tuple)
    params: tuple[int, int] = state(tuple)

    pairs: list[FFNPair] = state(list)
    start: float = state(float)
    end: float = state(float)
    width: int = state(int)
    updates: list[float] = state(list)
    masks: dict[str, torch.Tensor] = state(dict)
    current_sparsity: float = state(float)
    thinned: bool = state(bool)

    def initialize(self, session: RecipeSession) -> bool:
        structure = str(self.structure)
        if structure not in STRUCTURES:  # the recipe schema refuses it first
            raise SparsifyError(f"{self.name}: unknown structure {structure!r}")
        ignore = [*(self.ignore or []), *session.default_ignore]
        self.start, self.end = session.recipe.window(self)
        self.updates = update_epochs(self.start, self.end, float(self.update_frequency))
        self.masks, self.current_sparsity, self.thinned = {}, 0.0, False
        if structure == "channels":
            return self._init_channels(session, ignore)
        only = [f for f in ("importance", "global_pruning") if f in self._given]
        if only:
            raise SparsifyError(f"{self.name}: {', '.join(only)} apply to structure: channels")
        finder = head_groups if structure == "attention_heads" else ffn_pairs
        self.pairs = finder(session.model, ignore)
        if not self.pairs:
            raise SparsifyError(f"{self.name}: structure {structure} found {_NOT_FOUND[structure]}")
        widths = {(p.units, p.unit) for p in self.pairs}
        if len(widths) != 1:
            raise SparsifyError(
                f"{self.name}: the blocks differ in size ({sorted(widths)} units, unit "
                f"size); {structure} keeps the same number in every block"
            )
        self.width = widths.pop()[0]
        start_statistics(self.pairs)
        return True

    def after_step(self, session: RecipeSession, step: int, optimizer: Any | None) -> None:
        """Masks updated when due; once the window has ended, the masked units are removed,
        slicing `optimizer`'s state (Adam moments) alike; without the optimizer, that waits
        for `finalize`."""
        if self.thinned:
            return
        epoch = session.epoch_of(step + 1)
        due = [e for e in self.updates if e <= epoch + 1e-9]
        if due:
            self.updates = self.updates[len(due) :]
            self._update(session, epoch)
        self._apply_masks()
        if not self.updates and optimizer is not None:
            self._thin(session, epoch, optimizer)

    def finalize(self, session: RecipeSession) -> None:
        if self.thinned:
            return
        if self.updates:  # a capped run: reach the target
            self.updates = []
            self._update(session, self.end)
        self._apply_masks()
        self._thin(session, self.end, None)

    def report(self) -> dict[str, Any]:
        if self.channels is not None:
            groups = self.channels.groups
            width = sum(g.width for g in groups)
            removed = sum(len(v) for v in self.chosen.values())
            return channel_report(len(groups), width, removed, self.macs, self.params)
        kept = self.pairs[0].units
        return {
            "structure": str(self.structure),
            "blocks": len(self.pairs),
            "width": self.width,
            "kept": kept,
            "sparsity": round(1.0 - kept / self.width, 4),
        }

    @property
    def units(self) -> str:
        """What it removes, for its events."""
        if self.channels is not None:
            return "channels"
        return "attention heads" if self.pairs[0].owner is not None else "FFN neurons"

    def _init_channels(self, session: RecipeSession, ignore: list[str]) -> bool:
        model = session.model
        # a depthwise conv follows its input channels: __DEPTHWISE__ is for unstructured masks
        ignore = [e for e in ignore if e != DEPTHWISE]
        example = example_input(model)
        self.channels = ChannelGraph(model, example, ignore)
        if not self.channels.groups:
            raise SparsifyError(
                f"{self.name}: structure channels found no channel group to prune (every "
                f"conv is protected by ignore={ignore} or feeds an output directly)"
            )
        self.width = sum(g.width for g in self.channels.groups)
        macs, params = count_macs(model, example)
        self.macs, self.params = (macs, macs), (params, params)
        self.chosen = {}
        return True

    def _apply_masks(self) -> None:
        if self.channels is not None:
            if self.chosen and not self.channels.removed:
                self.channels.mask(self.chosen)
            return
        apply_neuron_masks(self.pairs, self.masks)

    def _update(self, session: RecipeSession, epoch: float) -> None:
        target = gradual_sparsity(
            self.init_sparsity, self.final_sparsity, self.inter_func, epoch, self.start, self.end
        )
        if self.channels is not None:
            self.current_sparsity = target
            self.chosen = self.channels.choose(
                target, str(self.importance), bool(self.global_pruning)
            )
            self.chosen = distributed.broadcast_object(self.chosen)  # torchrun: rank 0 decides
            self.channels.mask(self.chosen)
            removed = sum(len(v) for v in self.chosen.values())
            session.event(epoch, "channels masked", kept=f"{self.width - removed}/{self.width}")
            return
        _pool_statistics(self.pairs)
        self.masks = neuron_masks(self.pairs, target)
        self.current_sparsity = target
        unit = self.pairs[0].unit
        kept = int(next(iter(self.masks.values())).sum()) // unit
        session.event(epoch, f"{self.units} masked", kept=f"{kept}/{self.width}")

    def _thin(self, session: RecipeSession, epoch: float, optimizer: Any | None) -> None:
        """Remove the masked units; the unstructured masks on the thinned layers follow."""
        stop_statistics(self.pairs)
        self.thinned = True
        if self.channels is not None:
            self._thin_channels(session, epoch, optimizer)
            return
        if not self.masks:
            return
        kept = thin(session.model, self.pairs, self.masks, optimizer)
        rows = {
            id(layer): kept[p.down_name]
            for p in self.pairs
            if p.down_name in kept
            for layer in p.rows
        }
        cols = {id(p.down): kept[p.down_name] for p in self.pairs if p.down_name in kept}
        for pruner in session.pruners:
            pruner.layers_thinned(rows, cols)
        width = self.pairs[0].units
        session.event(epoch, f"{self.units} removed", width=f"{self.width} -> {width}")

    def _thin_channels(self, session: RecipeSession, epoch: float, optimizer: Any | None) -> None:
        assert self.channels is not None
        if not self.chosen:
            return
        kept = self.channels.remove(self.chosen, optimizer)
        rows = {layer: dims[0] for layer, dims in kept.items() if 0 in dims}
        cols = {layer: dims[1] for layer, dims in kept.items() if 1 in dims and 0 not in dims}
        for pruner in session.pruners:
            pruner.layers_thinned(rows, cols)
        macs, params = count_macs(session.model, example_input(session.model))
        self.macs, self.params = (self.macs[0], macs), (self.params[0], params)
        removed = sum(len(v) for v in self.chosen.values())
        session.event(epoch, "channels removed", width=f"{self.width} -> {self.width - removed}")
