"""Modifiers are classes: fields are the schema, hooks the behaviour, the registry the names."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import jsonschema
import pytest
import torch
from torch import nn

from sparsify.algorithms.session import RecipeSession, has_training
from sparsify.errors import Problem, SparsifyError, ValidationError
from sparsify.recipes.modifiers import (
    REGISTRY,
    GMPruningModifier,
    MagnitudePruningModifier,
    Modifier,
    OneShotPruning,
    one_shot_modifier,
)
from sparsify.recipes.modifiers.fields import EPOCH, SCHEMA, SPARSITY, TARGETS, spec, state
from sparsify.recipes.modifiers.one_shot import Pruned, PruneJob
from sparsify.recipes.recipe import load_recipe
from sparsify.recipes.schema import MODIFIERS, modifier_schema
from sparsify.registry import canonical_key

SHIPPED = sorted((Path(__file__).resolve().parents[2] / "recipes").glob("*.yaml"))
VARS = {"optim_level": 0.5, "derived": {"sparsity": 0.5, "quantize": True}}


def write(tmp_path: Path, text: str) -> str:
    path = tmp_path / "recipe.yaml"
    path.write_text(text, encoding="utf-8")
    return str(path)


def problems_of(tmp_path: Path, text: str) -> list[Problem]:
    with pytest.raises(ValidationError) as info:
        load_recipe(write(tmp_path, text), VARS)
    return info.value.problems


@pytest.fixture
def registered(monkeypatch: pytest.MonkeyPatch) -> Callable[[type[Modifier]], type[Modifier]]:
    """Registers a modifier class for one test: entered in the registry's tables through
    monkeypatch, which takes it out again afterwards."""

    def add(cls: type[Modifier]) -> type[Modifier]:
        monkeypatch.setitem(REGISTRY._items, cls.__name__, cls)
        monkeypatch.setitem(REGISTRY._aliases, canonical_key(cls.__name__), cls.__name__)
        return cls

    return add


# --- the schema is the classes' fields ---------------------------------------------------------


@pytest.mark.parametrize("name", REGISTRY.names())
def test_generated_schema_is_the_class_fields_and_aliases(name: str) -> None:
    cls = REGISTRY.get(name)
    fields = {f.name: f.metadata[SCHEMA] for f in dataclasses.fields(cls) if SCHEMA in f.metadata}
    properties = modifier_schema(cls)["properties"]
    assert set(properties) == set(fields) | set(cls.aliases)
    for field, schema in fields.items():
        assert properties[field] is schema
    for alias, canonical in cls.aliases.items():
        assert canonical in fields
        assert properties[alias]["description"].startswith(f"alias of {canonical}")
    assert all(p.get("description") for p in properties.values())
    assert MODIFIERS[name] == properties
    jsonschema.Draft202012Validator.check_schema(modifier_schema(cls))


@pytest.mark.parametrize("path", SHIPPED, ids=lambda p: p.name)
def test_every_shipped_recipe_loads_into_registered_classes(path: Path) -> None:
    recipe = load_recipe(str(path), VARS)
    assert recipe.modifiers
    for modifier in recipe.modifiers:
        assert type(modifier) is REGISTRY.get(modifier.name)
        jsonschema.validate(modifier.kwargs, modifier_schema(type(modifier)))


def test_unknown_modifier_lists_every_registered_one(tmp_path: Path) -> None:
    [p] = problems_of(tmp_path, "s:\n  pruning_modifiers:\n    OBSPruningModifier: {}\n")
    assert p.key.endswith("s.OBSPruningModifier") and p.message == "is not a supported modifier"
    assert p.fix.endswith("use one of " + ", ".join(REGISTRY.names()))


@pytest.mark.parametrize("name", REGISTRY.names())
def test_unknown_field_lists_the_class_fields(tmp_path: Path, name: str) -> None:
    [p] = problems_of(tmp_path, f"s:\n  pruning_modifiers:\n    {name}: {{colour: red}}\n")
    assert p.key.endswith(f"s.{name}.colour") and p.message == f"is not a field of {name}"
    assert p.fix == "valid fields: " + ", ".join(
        sorted(modifier_schema(REGISTRY.get(name))["properties"])
    )


# --- objects: fields, kwargs, state ------------------------------------------------------------


def test_kwargs_are_the_given_fields_in_recipe_order(tmp_path: Path) -> None:
    text = (
        "s:\n  pruning_modifiers:\n    GMPruningModifier:\n"
        "      final_sparsity: 0.8\n      params: ['re:fc']\n      inter_func: cubic\n"
    )
    [gmp] = load_recipe(write(tmp_path, text), VARS).modifiers
    assert isinstance(gmp, GMPruningModifier) and gmp.stage == "s"
    assert list(gmp.kwargs.items()) == [
        ("final_sparsity", 0.8),
        ("targets", ["re:fc"]),
        ("inter_func", "cubic"),  # given, though the default
    ]
    assert (gmp.update_frequency, gmp.leave_enabled) == (1.0, True)  # defaults
    built = MagnitudePruningModifier(final_sparsity=0.6, mask_type="2:4")
    assert built.kwargs == {"final_sparsity": 0.6, "mask_type": "2:4"}
    assert built.target_sparsity == 0.5  # N:M implies its own


# --- dispatch goes through the class: a new class is all a recipe needs -------------------------


@dataclass(kw_only=True)
class LossScaleModifier(Modifier):
    """A training modifier no other file knows about."""

    group = "training_modifiers"
    implies_training = True

    factor: float = spec({"type": "number", "exclusiveMinimum": 0, "description": "> 0"}, 1.0)
    end_epoch: float | None = spec(EPOCH)
    steps: list[int] = state(list)

    def initialize(self, session: RecipeSession) -> bool:
        self.steps = []
        return True

    def before_step(self, session: RecipeSession, step: int) -> None:
        self.steps.append(step)

    def modify_loss(
        self,
        session: RecipeSession,
        loss: torch.Tensor,
        student: torch.Tensor,
        teacher: torch.Tensor,
        step: int | None,
    ) -> torch.Tensor:
        return loss * self.factor


@dataclass(kw_only=True)
class FirstLayerPruningModifier(OneShotPruning):
    """A one-shot pruner no other file knows about: zeroes the first selected layer."""

    final_sparsity: float = spec(SPARSITY, 0.0)
    targets: str | list[str] = spec(TARGETS, "__ALL_PRUNABLE__")

    def prune(self, job: PruneJob) -> Pruned:
        with torch.no_grad():
            next(iter(job.layers.values())).weight.zero_()
        return Pruned(self.name, {}, False)


def test_a_registered_training_modifier_runs_in_the_session(
    tmp_path: Path, registered: Callable[[type[Modifier]], type[Modifier]]
) -> None:
    text = "s:\n  training_modifiers:\n    LossScaleModifier: {factor: 3.0, end_epoch: 2}\n"
    assert "LossScaleModifier" not in REGISTRY
    with pytest.raises(ValidationError, match="is not a supported modifier"):
        load_recipe(write(tmp_path, text), VARS)
    registered(LossScaleModifier)
    recipe = load_recipe(write(tmp_path, text), VARS)
    [scale] = recipe.modifiers
    assert isinstance(scale, LossScaleModifier) and has_training(recipe)
    assert recipe.epochs() == 2.0
    session = RecipeSession(recipe, nn.Linear(2, 2), steps_per_epoch=3)
    for step in range(session.total_steps):
        assert session.before_step(step) is None  # it sets no learning rate
        loss = session.loss(torch.tensor(1.0), torch.zeros(1, 2), torch.zeros(1, 2), step)
        assert loss.item() == 3.0
    [running] = session.modifiers
    assert running.steps == list(range(6)) and scale.steps == []  # the session's own copy
    assert load_recipe(write(tmp_path, recipe.to_yaml()), VARS).modifiers == recipe.modifiers
    [p] = problems_of(tmp_path, text.replace("3.0", "0"))
    assert p.key.endswith("LossScaleModifier.factor") and p.fix == "factor: > 0"


def test_a_registered_one_shot_modifier_prunes(
    tmp_path: Path, registered: Callable[[type[Modifier]], type[Modifier]]
) -> None:
    registered(FirstLayerPruningModifier)
    text = "s:\n  pruning_modifiers:\n    FirstLayerPruningModifier: {final_sparsity: 0.5}\n"
    recipe = load_recipe(write(tmp_path, text), VARS)
    [prune] = recipe.pruning()
    assert isinstance(prune, OneShotPruning) and not has_training(recipe)
    model = nn.Sequential(nn.Linear(4, 4), nn.ReLU(), nn.Linear(4, 4))
    result = prune.apply(model, lambda: [])
    assert result["method"] == "FirstLayerPruningModifier" and result["sparsity"] == 0.5
    assert bool((model[0].weight == 0).all()) and bool((model[2].weight != 0).all())
    assert isinstance(one_shot_modifier("FirstLayerPruningModifier", {}), OneShotPruning)
    with pytest.raises(SparsifyError, match="FirstLayerPruningModifier, GlobalMagnitude"):
        one_shot_modifier("GMPruningModifier", {})
