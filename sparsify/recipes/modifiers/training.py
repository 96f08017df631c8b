"""The training run itself: its length (EpochRangeModifier) and learning rate."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from sparsify.algorithms.schedules import lr_at
from sparsify.recipes.modifiers.base import Modifier, register
from sparsify.recipes.modifiers.fields import END, EPOCH, LEARNING_RATE, LR_FUNC, START, spec

if TYPE_CHECKING:
    from sparsify.algorithms.session import RecipeSession


@register
@dataclass(kw_only=True)
class EpochRangeModifier(Modifier):
    """How long the recipe trains; its presence makes a recipe a training one."""

    group = "training_modifiers"
    implies_training = True

    start_epoch: float | None = spec(EPOCH)
    end_epoch: float | None = spec(EPOCH)


@register
@dataclass(kw_only=True)
class LearningRateFunctionModifier(Modifier):
    group = "training_modifiers"

    lr_func: str = spec(LR_FUNC, "linear")
    init_lr: float = spec(LEARNING_RATE, 1e-3)
    final_lr: float = spec(LEARNING_RATE, 0.0)
    start_epoch: float | None = spec(START)
    end_epoch: float | None = spec(END)
    cycle_epochs: float | None = spec(
        {
            "type": "number",
            "exclusiveMinimum": 0,
            "description": "epochs per cycle (cyclic_linear) or per step (step), > 0",
        }
    )

    def initialize(self, session: RecipeSession) -> bool:
        return True

    def learning_rate(self, session: RecipeSession, epoch: float) -> float | None:
        start, end = session.recipe.window(self)
        return lr_at(
            epoch,
            str(self.lr_func),
            float(self.init_lr),
            float(self.final_lr),
            start,
            end,
            self.cycle_epochs,
        )
