"""Recipe modifiers: one class each, found by name in `REGISTRY`.

Importing this package registers every built-in modifier; a class decorated with
`@register` anywhere else becomes usable in recipes the same way.
"""

from sparsify.recipes.modifiers.base import REGISTRY, Modifier, register
from sparsify.recipes.modifiers.distillation import DistillationModifier
from sparsify.recipes.modifiers.one_shot import (
    GlobalMagnitudePruningModifier,
    MagnitudePruningModifier,
    OneShotPruning,
    SparseGPTModifier,
    one_shot_modifier,
    prune_one_shot,
)
from sparsify.recipes.modifiers.pruning import (
    ConstantPruningModifier,
    GMPruningModifier,
    TrainingPruning,
)
from sparsify.recipes.modifiers.quantization import QuantizationModifier
from sparsify.recipes.modifiers.structured import StructuredPruningModifier
from sparsify.recipes.modifiers.training import EpochRangeModifier, LearningRateFunctionModifier

__all__ = [
    "REGISTRY",
    "ConstantPruningModifier",
    "DistillationModifier",
    "EpochRangeModifier",
    "GMPruningModifier",
    "GlobalMagnitudePruningModifier",
    "LearningRateFunctionModifier",
    "MagnitudePruningModifier",
    "Modifier",
    "OneShotPruning",
    "QuantizationModifier",
    "SparseGPTModifier",
    "StructuredPruningModifier",
    "TrainingPruning",
    "one_shot_modifier",
    "prune_one_shot",
    "register",
]
