"""StructuredPruningModifier: whole FFN neurons or attention heads masked on a schedule
while training, then removed from the model when its window ends
(`sparsify.algorithms.structured` holds the algorithms)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import torch

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
from sparsify.recipes.modifiers.base import register
from sparsify.recipes.modifiers.fields import (
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
        self.start, self.end = session.recipe.window(self)
        self.width = widths.pop()[0]
        self.updates = update_epochs(self.start, self.end, float(self.update_frequency))
        self.masks, self.current_sparsity, self.thinned = {}, 0.0, False
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
        apply_neuron_masks(self.pairs, self.masks)
        if not self.updates and optimizer is not None:
            self._thin(session, epoch, optimizer)

    def finalize(self, session: RecipeSession) -> None:
        if self.thinned:
            return
        if self.updates:  # a capped run: reach the target
            self.updates = []
            self._update(session, self.end)
        apply_neuron_masks(self.pairs, self.masks)
        self._thin(session, self.end, None)

    def report(self) -> dict[str, Any]:
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
        return "attention heads" if self.pairs[0].owner is not None else "FFN neurons"

    def _update(self, session: RecipeSession, epoch: float) -> None:
        target = gradual_sparsity(
            self.init_sparsity, self.final_sparsity, self.inter_func, epoch, self.start, self.end
        )
        self.masks = neuron_masks(self.pairs, target)
        self.current_sparsity = target
        unit = self.pairs[0].unit
        kept = int(next(iter(self.masks.values())).sum()) // unit
        session.event(epoch, f"{self.units} masked", kept=f"{kept}/{self.width}")

    def _thin(self, session: RecipeSession, epoch: float, optimizer: Any | None) -> None:
        """Remove the masked units; the unstructured masks on the thinned layers follow."""
        stop_statistics(self.pairs)
        self.thinned = True
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
