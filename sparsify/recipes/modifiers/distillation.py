"""DistillationModifier: the teacher's softened outputs blended into the training loss."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F

from sparsify.recipes.modifiers.base import Modifier, register
from sparsify.recipes.modifiers.fields import END, START, spec

if TYPE_CHECKING:
    from sparsify.algorithms.session import RecipeSession


@register
@dataclass(kw_only=True)
class DistillationModifier(Modifier):
    group = "distillation_modifiers"

    hardness: float = spec(
        {
            "type": "number",
            "minimum": 0,
            "maximum": 1,
            "description": "weight of the teacher's loss in [0, 1] (0 = labels only)",
        },
        0.5,
    )
    temperature: float = spec(
        {
            "type": "number",
            "exclusiveMinimum": 0,
            "description": "softmax temperature > 0 (e.g. 2.0)",
        },
        2.0,
    )
    start_epoch: float | None = spec(START)
    end_epoch: float | None = spec(END)
    distill_output_keys: list[str | int] | None = spec(
        {
            "type": "array",
            "items": {"type": ["string", "integer"]},
            "description": "a list of model output names or indices to distill",
        }
    )

    def initialize(self, session: RecipeSession) -> bool:
        return True

    def modify_loss(
        self,
        session: RecipeSession,
        loss: torch.Tensor,
        student: torch.Tensor,
        teacher: torch.Tensor,
        step: int | None,
    ) -> torch.Tensor:
        """(1 - h) * loss + h * T^2 * KL(teacher_T || student_T) (Hinton et al.), over the
        last dimension of the logits, inside the modifier's epochs."""
        if step is not None:
            start, end = session.recipe.window(self)
            if not start <= session.epoch_of(step) <= end:
                return loss
        hardness, temperature = float(self.hardness), float(self.temperature)
        soft = F.kl_div(
            F.log_softmax(student / temperature, dim=-1),
            F.softmax(teacher.detach() / temperature, dim=-1),
            reduction="batchmean",
        ) * (temperature**2)
        return (1.0 - hardness) * loss + hardness * soft
