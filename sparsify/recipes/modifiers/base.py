"""The modifier base class and the registry that finds a modifier class by its name.

A modifier is one class (llm-compressor's `Modifier`): its dataclass fields declared with
`spec()` are its recipe schema, its lifecycle hooks are its behaviour. One-shot pruners add
`apply()`; training modifiers override the hooks a `RecipeSession` calls at every step:

    initialize(session) -> bool      set up; False: nothing to do in this run
    before_step(session, step)       switch things on (QAT, freezes, held masks)
    learning_rate(session, epoch)    the rate for this step, or None
    modify_loss(session, loss, ...)  blend in another loss (distillation)
    after_step(session, step, opt)   update and re-apply masks
    finalize(session)                reach the final state at the end of training

Registering a class (`@register`) is all it takes for recipes to use it.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar, TypeVar

from sparsify.recipes.modifiers.fields import SCHEMA, state
from sparsify.registry import Registry

if TYPE_CHECKING:
    import torch

    from sparsify.algorithms.session import RecipeSession

M = TypeVar("M", bound="type[Modifier]")


@dataclass(kw_only=True)
class Modifier:
    # how to_yaml groups it inside a stage: pruning_ | quantization_ | training_ | distillation_
    group: ClassVar[str] = "modifiers"
    # alias -> canonical field (SparseML's `params` for `targets`, ...); a loaded modifier
    # holds only the canonical field
    aliases: ClassVar[dict[str, str]] = {}
    # whether a recipe holding it trains (training-aware / sparse-transfer)
    implies_training: ClassVar[bool] = False
    # within a step the session calls lower first (structured pruning reshapes layers that
    # unstructured masks cover, so it goes before them)
    hook_order: ClassVar[int] = 0

    stage: str = "default_stage"
    _given: tuple[str, ...] = state(tuple)  # the recipe's fields, in the recipe's order

    @classmethod
    def from_fields(cls, fields: dict[str, Any], stage: str = "default_stage") -> Modifier:
        """The modifier a recipe's (validated, canonical) fields describe."""
        modifier = cls(stage=stage, **fields)
        modifier._given = tuple(fields)
        return modifier

    @classmethod
    def recipe_fields(cls) -> list[dataclasses.Field[Any]]:
        return [f for f in dataclasses.fields(cls) if SCHEMA in f.metadata]

    @classmethod
    def properties(cls) -> dict[str, dict[str, Any]]:
        """JSON Schema properties: every recipe field, and every alias as its canonical."""
        props = {f.name: f.metadata[SCHEMA] for f in cls.recipe_fields()}
        for alias, canonical in cls.aliases.items():
            described = props[canonical].get("description", "")
            props[alias] = {**props[canonical], "description": f"alias of {canonical}: {described}"}
        return props

    @property
    def name(self) -> str:
        """The name recipes use (the registry's key)."""
        return type(self).__name__

    @property
    def kwargs(self) -> dict[str, Any]:
        """The recipe's fields as given (canonical names, in order), then any other field
        set to something other than its default."""
        out = {name: getattr(self, name) for name in self._given}
        for f in self.recipe_fields():
            default = f.default_factory() if callable(f.default_factory) else f.default
            if f.name not in out and getattr(self, f.name) != default:
                out[f.name] = getattr(self, f.name)
        return out

    def fresh(self) -> Modifier:
        """A copy with its run-time state reset, for one training run."""
        copy = dataclasses.replace(self)
        copy._given = self._given
        return copy

    # ------------------------------------------------------------ lifecycle (RecipeSession)
    def initialize(self, session: RecipeSession) -> bool:
        """Set up for a training run; False when this modifier takes no part in it."""
        return False

    def before_step(self, session: RecipeSession, step: int) -> None:
        return None

    def learning_rate(self, session: RecipeSession, epoch: float) -> float | None:
        return None

    def modify_loss(
        self,
        session: RecipeSession,
        loss: torch.Tensor,
        student: torch.Tensor,
        teacher: torch.Tensor,
        step: int | None,
    ) -> torch.Tensor:
        return loss

    def after_step(self, session: RecipeSession, step: int, optimizer: Any | None) -> None:
        return None

    def finalize(self, session: RecipeSession) -> None:
        return None


REGISTRY: Registry[type[Modifier]] = Registry("recipe modifier")


def register(cls: M) -> M:
    """Class decorator: recipes can name `cls` (by its class name) from now on."""
    REGISTRY.register(cls.__name__, cls)
    return cls
