"""A recipe applied during training: what every trainer calls at each step.

`RecipeSession` turns a training recipe (GMP / constant / structured pruning, QAT, learning
rate, distillation) into four calls a training loop makes, whatever the loop is (ours for
image classifiers, a `transformers.Trainer` callback, an Ultralytics callback):

    session = RecipeSession(recipe, model, steps_per_epoch)
    for step in range(session.total_steps):
        lr = session.before_step(step)      # learning rate; QAT/freezes switch on
        loss = session.loss(loss, student_logits, teacher_logits)   # distillation
        ...backward, optimizer.step()...
        session.after_step(step)           # mask updates; masks re-applied
    report = session.finish()

Each call runs the matching lifecycle hook of every modifier in the recipe
(`sparsify.recipes.modifiers`): the session knows no modifier by name. Epochs are fractional
(`step / steps_per_epoch`).
"""

from __future__ import annotations

import logging
import math
from typing import Any

import torch
from torch import nn

from sparsify import distributed
from sparsify.algorithms.pruning import layer_sparsity, overall_sparsity
from sparsify.algorithms.qat import sync_observers
from sparsify.errors import SparsifyError
from sparsify.recipes.modifiers import StructuredPruningModifier, TrainingPruning
from sparsify.recipes.recipe import Recipe

log = logging.getLogger("sparsify")


def has_training(recipe: Recipe) -> bool:
    """Whether a recipe asks for training (training-aware or sparse-transfer)."""
    return any(m.implies_training for m in recipe.modifiers)


class RecipeSession:
    def __init__(
        self,
        recipe: Recipe,
        model: nn.Module,
        steps_per_epoch: int,
        quantize: bool = True,
        default_ignore: list[str] | None = None,
        max_steps: int | None = None,
        per_channel: bool | None = None,
        qat_ignore: list[str] | None = None,
    ) -> None:
        """`per_channel` overrides the recipe's QAT weight strategy: QAT should train for the
        INT8 format that will be deployed."""
        if steps_per_epoch < 1:
            raise SparsifyError("training needs at least one batch per epoch; add training data")
        self.recipe = recipe
        self.model = model
        self.steps_per_epoch = steps_per_epoch
        self.epochs = recipe.epochs()
        if self.epochs <= 0:
            raise SparsifyError(
                f"recipe {recipe.source} trains for 0 epochs; give EpochRangeModifier an end_epoch"
            )
        total = max(1, math.ceil(self.epochs * steps_per_epoch))
        # a capped run (tests) squeezes the whole schedule into its steps
        self.total_steps = min(total, max_steps) if max_steps else total
        self._epoch_per_step = self.epochs / self.total_steps
        # what the modifiers' hooks read
        self.quantize = quantize
        self.default_ignore = list(default_ignore or [])
        self.per_channel = per_channel
        self.qat_ignore = list(qat_ignore or [])
        self.qat_started = False  # the model holds QAT wrappers
        self.events: list[dict[str, Any]] = []
        # each session runs its own copies (the hooks keep their state on the modifier), in
        # the order the classes ask for, recipe order among equals
        ordered = sorted(recipe.modifiers, key=lambda m: m.hook_order)
        self.modifiers = [m for m in (m.fresh() for m in ordered) if m.initialize(self)]
        self.pruners = [m for m in self.modifiers if isinstance(m, TrainingPruning)]
        self.structured = [m for m in self.modifiers if isinstance(m, StructuredPruningModifier)]

    @property
    def sparsity(self) -> float:
        """The pruning target in force now (the largest over the pruning modifiers)."""
        return max((p.current_sparsity for p in self.pruners), default=0.0)

    def epoch_of(self, step: int) -> float:
        return step * self._epoch_per_step

    def event(self, epoch: float, what: str, **extra: Any) -> None:
        """Record (and log) something a modifier did, for the run's outputs."""
        self.events.append({"epoch": round(epoch, 4), "event": what, **extra})
        log.info("epoch %.2f: %s %s", epoch, what, " ".join(f"{k}={v}" for k, v in extra.items()))

    # ----------------------------------------------------------------- the four calls
    def before_step(self, step: int) -> float | None:
        """Switch on QAT / freezes whose epoch has come; the learning rate for this step
        (None when the recipe sets none; the first modifier that sets one rules)."""
        for modifier in self.modifiers:
            modifier.before_step(self, step)
        epoch = self.epoch_of(step)
        for modifier in self.modifiers:
            lr = modifier.learning_rate(self, epoch)
            if lr is not None:
                return lr
        return None

    def loss(
        self,
        loss: torch.Tensor,
        student: torch.Tensor | None = None,
        teacher: torch.Tensor | None = None,
        step: int | None = None,
    ) -> torch.Tensor:
        """The training loss with what the modifiers blend in (distillation) when the
        trainer has the student's and teacher's outputs."""
        if student is None or teacher is None:
            return loss
        for modifier in self.modifiers:
            loss = modifier.modify_loss(self, loss, student, teacher, step)
        return loss

    @torch.no_grad()
    def after_step(self, step: int, optimizer: Any | None = None) -> None:
        """Recompute masks whose update epoch has passed, then re-apply every mask (the
        optimizer step may have moved pruned weights). A structured pruner whose window has
        ended removes its neurons, slicing `optimizer`'s state (Adam moments) alike; without
        the optimizer, that waits for `finish`.

        Across processes (torchrun), removal always waits for `finish`: DDP has bucketed the
        parameters as they were, so the masked units stay (zeroed) until training ends; and
        the QAT observers take every rank's batch into their ranges, so all ranks agree."""
        if distributed.active():
            optimizer = None
        for modifier in self.modifiers:
            modifier.after_step(self, step, optimizer)
        if self.qat_started and distributed.active():
            sync_observers(self.model)

    @torch.no_grad()
    def finish(self) -> dict[str, Any]:
        """Final masks applied, masked neurons removed; what the session did, for the run's
        outputs."""
        for modifier in self.modifiers:
            modifier.finalize(self)
        layers = {n: m for p in self.pruners for n, m in p.layers.items()}
        return {
            "sparsity": overall_sparsity(layers),
            "per_layer_sparsity": layer_sparsity(layers),
            "qat": self.qat_started,
            **({"structured": [s.report() for s in self.structured]} if self.structured else {}),
            "events": self.events,
            "steps": self.total_steps,
            "epochs": self.epochs,
        }
