"""Shipped recipes load and validate; bad recipes fail with every problem named."""

from __future__ import annotations

from pathlib import Path

import pytest

from sparsify.errors import SparsifyError, ValidationError
from sparsify.recipes.recipe import builtin_recipes, load_recipe

VARS = {"optim_level": 0.5, "derived": {"sparsity": 0.5, "quantize": True}}


@pytest.mark.parametrize("name", builtin_recipes())
def test_every_shipped_recipe_validates(name: str) -> None:
    recipe = load_recipe(name, VARS)
    assert recipe.modifiers


def test_interpolates_run_values() -> None:
    recipe = load_recipe(
        "one_shot", {"optim_level": 0.9, "derived": {"sparsity": 0.74, "quantize": False}}
    )
    assert recipe.find("MagnitudePruningModifier").kwargs["final_sparsity"] == 0.74
    assert recipe.find("QuantizationModifier").kwargs["enabled"] is False


def test_legacy_flat_form(tmp_path: Path) -> None:
    path = tmp_path / "r.yaml"
    path.write_text("modifiers:\n  - !MagnitudePruningModifier\n      final_sparsity: 0.3\n")
    assert (
        load_recipe(str(path), VARS).find("MagnitudePruningModifier").kwargs["final_sparsity"]
        == 0.3
    )


def test_bad_recipe_lists_every_problem(tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(
        "stage:\n"
        "  pruning_modifiers:\n"
        "    MagnitudePruningModifier:\n"
        "      final_sparsity: 1.5\n"
        "      start_epoch: 3\n"
        "      end_epoch: 1\n"
        "      colour: red\n"
        "    FancyModifier: {}\n"
    )
    with pytest.raises(ValidationError) as info:
        load_recipe(str(path), VARS)
    text = str(info.value)
    assert "final_sparsity" in text and "1.5" in text
    assert "colour" in text
    assert "end_epoch" in text
    assert "FancyModifier" in text and "MagnitudePruningModifier" in text  # the valid choices
    assert len(info.value.problems) == 4


def test_unknown_recipe_name_lists_builtins() -> None:
    with pytest.raises(SparsifyError, match="one_shot"):
        load_recipe("nope", VARS)
