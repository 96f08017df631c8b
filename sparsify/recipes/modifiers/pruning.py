"""Unstructured pruning during training: GMP's schedule of masks, and masks held constant.

`GradualFields` are SparseML's gradual-magnitude fields, shared with the one-shot
magnitude pruners (`one_shot.py`). Masks are held by module, not by name, so they survive
the QAT wrappers renaming layers.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from sparsify import distributed
from sparsify.algorithms.masks import (
    UNSTRUCTURED,
    MaskType,
    magnitude_layer_masks,
    parse_mask_type,
)
from sparsify.algorithms.pruning import overall_sparsity, select_layers
from sparsify.algorithms.schedules import sparsity_at, update_epochs
from sparsify.errors import SparsifyError
from sparsify.recipes.modifiers.base import Modifier, register
from sparsify.recipes.modifiers.fields import (
    BOOL,
    END,
    IGNORE,
    INTER_FUNC,
    LOG_TYPES,
    MASK,
    SPARSITY,
    START,
    TARGETS,
    UPDATE_FREQUENCY,
    spec,
    state,
)

if TYPE_CHECKING:
    from sparsify.algorithms.session import RecipeSession


def gradual_sparsity(
    init: float, final: float, inter_func: str, epoch: float, start: float, end: float
) -> float:
    """A gradual modifier's sparsity at `epoch` (init_sparsity -> final_sparsity)."""
    return sparsity_at(epoch, float(init), float(final), start, end, str(inter_func))


@dataclass(kw_only=True)
class ScheduleFields(Modifier):
    """A sparsity schedule: init -> final sparsity between two epochs (GMP-style)."""

    init_sparsity: float = spec(SPARSITY, 0.0)
    final_sparsity: float = spec(SPARSITY, 0.0)
    start_epoch: float | None = spec(START)
    end_epoch: float | None = spec(END)
    update_frequency: float = spec(UPDATE_FREQUENCY, 1.0)
    inter_func: str = spec(INTER_FUNC, "cubic")
    ignore: list[str] = spec(IGNORE, factory=list)
    log_types: str | list[str] | None = spec(LOG_TYPES)


@dataclass(kw_only=True)
class GradualFields(ScheduleFields):
    """SparseML's gradual magnitude pruning fields."""

    group = "pruning_modifiers"
    aliases = {"params": "targets"}

    targets: str | list[str] = spec(TARGETS, "__ALL_PRUNABLE__")
    mask_type: str = spec(MASK, "unstructured")
    leave_enabled: bool = spec(BOOL, True)


def _layer(module: nn.Module) -> nn.Module:
    """The layer itself (a QAT wrapper's wrapped layer)."""
    return getattr(module, "layer", module)


@dataclass(kw_only=True)
class TrainingPruning(Modifier):
    """Masks on the selected layers, re-applied after every optimizer step."""

    group = "pruning_modifiers"
    implies_training = True

    layers: dict[str, nn.Module] = state(dict)
    masks: dict[str, torch.Tensor] = state(dict)
    current_sparsity: float = state(float)
    start: float = state(float)
    end: float = state(float)

    def select(self, session: RecipeSession, targets: Any, ignore: list[str] | None) -> None:
        ignore = [*(ignore or []), *session.default_ignore]
        self.layers = select_layers(session.model, targets, ignore)
        if not self.layers:
            raise SparsifyError(
                f"{self.name}: no prunable layer matches targets={targets!r} "
                f"(ignore={ignore}, the recipe's and the model family's)"
            )
        self.masks, self.current_sparsity = {}, 0.0
        self.start, self.end = session.recipe.window(self)

    @torch.no_grad()
    def apply_masks(self) -> None:
        for name, mask in self.masks.items():
            self.layers[name].weight.mul_(mask)

    def layers_thinned(
        self, rows: dict[int, torch.Tensor], cols: dict[int, torch.Tensor]
    ) -> list[str]:
        """Structured pruning removed rows (output units) or columns of some layers, keeping
        the indices in `rows` / `cols` (by id of the layer): the masks follow. The names of
        this modifier's layers it touched."""
        touched = [
            n for n, m in self.layers.items() if id(_layer(m)) in rows or id(_layer(m)) in cols
        ]
        for name in touched:
            if name not in self.masks:
                continue
            layer = _layer(self.layers[name])
            if id(layer) in rows:
                self.masks[name] = self.masks[name][rows[id(layer)]]
            else:
                self.masks[name] = self.masks[name][:, cols[id(layer)]]
        return touched


@register
@dataclass(kw_only=True)
class GMPruningModifier(GradualFields, TrainingPruning):
    """Gradual magnitude pruning: masks recomputed from |w| on a schedule (Zhu & Gupta)."""

    updates: list[float] = state(list)  # epochs still to update masks at

    def initialize(self, session: RecipeSession) -> bool:
        self.select(session, self.targets, self.ignore)
        self.updates = update_epochs(self.start, self.end, float(self.update_frequency))
        return True

    def after_step(self, session: RecipeSession, step: int, optimizer: Any | None) -> None:
        epoch = session.epoch_of(step + 1)
        due = [e for e in self.updates if e <= epoch + 1e-9]
        if due:
            self.updates = self.updates[len(due) :]
            self._update_masks(session, epoch)
        if self.masks and (epoch <= self.end + 1e-9 or self.leave_enabled):
            self.apply_masks()

    def finalize(self, session: RecipeSession) -> None:
        if self.updates:  # a capped run: reach the target
            self.updates = []
            self._update_masks(session, self.end)
        if self.masks:
            self.apply_masks()

    def _mask(self) -> MaskType:
        """N:M fixes its own sparsity, unless the recipe gives final_sparsity 0: a level that
        prunes nothing stays dense whatever pruning.mask_type says."""
        mask_type = parse_mask_type(str(self.mask_type))
        if mask_type.kind == "nm" and "final_sparsity" in self._given and self.final_sparsity <= 0:
            return UNSTRUCTURED
        return mask_type

    def layers_thinned(
        self, rows: dict[int, torch.Tensor], cols: dict[int, torch.Tensor]
    ) -> list[str]:
        touched = super().layers_thinned(rows, cols)
        if touched and self.masks:
            # re-chosen on the thinned shapes (block structure along the new columns)
            mask_type = self._mask()
            target = mask_type.implied_sparsity or self.current_sparsity
            fresh = magnitude_layer_masks({n: self.layers[n] for n in touched}, target, mask_type)
            distributed.broadcast_masks(fresh)
            self.masks.update(fresh)
            self.apply_masks()
        return touched

    def _update_masks(self, session: RecipeSession, epoch: float) -> None:
        mask_type = self._mask()
        if mask_type.implied_sparsity is not None:
            target = mask_type.implied_sparsity
        else:
            target = gradual_sparsity(
                self.init_sparsity,
                self.final_sparsity,
                self.inter_func,
                epoch,
                self.start,
                self.end,
            )
        self.masks = magnitude_layer_masks(self.layers, target, mask_type)
        # under torchrun the ranks hold the same weights (DDP), so the same masks; rank 0's
        # are sent anyway, so that a tie broken differently cannot split the ranks
        distributed.broadcast_masks(self.masks)
        self.current_sparsity = target
        session.event(epoch, "masks updated", sparsity=f"{target:.4f}")


@register
@dataclass(kw_only=True)
class ConstantPruningModifier(TrainingPruning):
    """The zeros the model starts training with stay zero (sparse transfer)."""

    aliases = {"params": "targets"}

    targets: str | list[str] = spec(TARGETS, "__ALL_PRUNABLE__")
    ignore: list[str] = spec(IGNORE, factory=list)
    start_epoch: float | None = spec(START)
    end_epoch: float | None = spec(END)
    log_types: str | list[str] | None = spec(LOG_TYPES)

    def initialize(self, session: RecipeSession) -> bool:
        self.select(session, self.targets, self.ignore)
        return True

    def before_step(self, session: RecipeSession, step: int) -> None:
        if step == 0:
            self.masks = {n: m.weight.detach() != 0 for n, m in self.layers.items()}
            distributed.broadcast_masks(self.masks)
            self.current_sparsity = overall_sparsity(self.layers)
            session.event(0.0, "masks held fixed", sparsity=f"{self.current_sparsity:.4f}")

    def after_step(self, session: RecipeSession, step: int, optimizer: Any | None) -> None:
        self.apply_masks()

    def finalize(self, session: RecipeSession) -> None:
        if self.masks:
            self.apply_masks()
