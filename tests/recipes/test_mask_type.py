"""pruning.mask_type: composed, checked, and read by every shipped pruning recipe."""

from __future__ import annotations

from pathlib import Path

import pytest

from sparsify.algorithms.one_shot import target_sparsity
from sparsify.config import compose_config
from sparsify.config.checks import config_problems
from sparsify.context import RunContext, load_run_recipe, recipe_variables
from sparsify.recipes.recipe import load_recipe

# the shipped recipes that prune with a mask, and the field that names it
MASKED = {
    "one_shot": ("MagnitudePruningModifier", "mask_type"),
    "one_shot_channels": ("MagnitudePruningModifier", "mask_type"),
    "one_shot_sparsegpt": ("SparseGPTModifier", "mask_structure"),
    "training_aware": ("GMPruningModifier", "mask_type"),
    "training_aware_channels": ("GMPruningModifier", "mask_type"),
    "training_aware_structured": ("GMPruningModifier", "mask_type"),
}


def _ctx(*overrides: str) -> RunContext:
    cfg = compose_config(["data=digits", *overrides])
    return RunContext(cfg=cfg, run_dir=Path("."))


def test_default_is_unstructured() -> None:
    assert compose_config(["data=digits"]).pruning.mask_type == "unstructured"


@pytest.mark.parametrize("mask", ["unstructured", "block4", "2:4", "1:8"])
def test_valid_mask_types_compose_and_pass_the_check(mask: str) -> None:
    cfg = compose_config(["data=digits", f"pruning.mask_type={mask}"])
    assert cfg.pruning.mask_type == mask
    assert not [p for p in config_problems(cfg) if p.key == "pruning.mask_type"]


@pytest.mark.parametrize("mask", ["structured", "block", "block1", "4:2", "Block4", "2:4:8"])
def test_bad_mask_type_is_refused_with_the_forms(mask: str) -> None:
    cfg = compose_config(["data=digits", f"pruning.mask_type='{mask}'"])
    [problem] = [p for p in config_problems(cfg) if p.key == "pruning.mask_type"]
    assert problem.value == mask
    assert all(form in problem.fix for form in ("unstructured", "blockN", "N:M", "2:4"))


@pytest.mark.parametrize("recipe", sorted(MASKED))
@pytest.mark.parametrize("mask", ["block4", "2:4"])
def test_mask_type_reaches_the_applied_recipe(recipe: str, mask: str) -> None:
    experiment = "one_shot" if recipe.startswith("one_shot") else "training_aware"
    ctx = _ctx(f"experiment={experiment}", f"recipe={recipe}", f"pruning.mask_type={mask}")
    name, field = MASKED[recipe]
    applied = load_run_recipe(ctx)
    assert applied.find(name).kwargs[field] == mask  # type: ignore[union-attr]
    assert f"{field}: {mask}" in applied.to_yaml() or f"{field}: '{mask}'" in applied.to_yaml()


@pytest.mark.parametrize("recipe", sorted(MASKED))
def test_default_applied_recipe_is_unchanged(recipe: str) -> None:
    """The default key gives the applied recipe the recipes wrote before it existed."""
    experiment = "one_shot" if recipe.startswith("one_shot") else "training_aware"
    ctx = _ctx(f"experiment={experiment}", f"recipe={recipe}")
    variables = recipe_variables(ctx)
    assert variables["pruning"] == {"mask_type": "unstructured"}
    without_key = {k: v for k, v in variables.items() if k != "pruning"}
    applied = load_run_recipe(ctx).to_yaml()
    assert applied == load_recipe(recipe, without_key).to_yaml()
    name, field = MASKED[recipe]
    assert f"{field}: unstructured" in applied


@pytest.mark.parametrize("recipe", ["one_shot", "one_shot_sparsegpt"])
def test_n_m_prunes_only_where_the_level_prunes(recipe: str) -> None:
    def target(level: float) -> float:
        ctx = _ctx(f"recipe={recipe}", f"optim_level={level}", "pruning.mask_type=2:4")
        [prune] = load_run_recipe(ctx).pruning()
        return target_sparsity(prune.kwargs)

    assert target(0.9) == 0.5  # N:M implies its own sparsity over the level's (80 %) ...
    assert target(0.2) == 0.0  # ... but a level that prunes nothing (INT8 only) stays dense
    # a recipe that names no sparsity keeps N:M's own
    assert target_sparsity({"mask_structure": "2:4"}) == 0.5
    assert target_sparsity({"sparsity": 0.1, "mask_structure": "1:4"}) == 0.75


def test_gmp_keeps_a_level_that_prunes_nothing_dense() -> None:
    def gmp_mask(level: float) -> str:
        ctx = _ctx("experiment=training_aware", f"optim_level={level}", "pruning.mask_type=2:4")
        gmp = load_run_recipe(ctx).find("GMPruningModifier")
        return str(gmp._mask())  # type: ignore[union-attr]  # the mask its updates choose

    assert gmp_mask(0.9) == "2:4"
    assert gmp_mask(0.2) == "unstructured"  # final_sparsity 0: nothing pruned
