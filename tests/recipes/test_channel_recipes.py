"""The channel-pruning recipes: optim level -> channel fraction, and the fields' rules."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from sparsify.errors import SparsifyError
from sparsify.recipes.recipe import load_recipe


def _variables(level: float) -> dict[str, Any]:
    return {
        "optim_level": level,
        "derived": {"sparsity": 0.5, "quantize": level >= 0.1, "tier": None, "variant": None},
        "experiment": {"train": {"epochs": 10, "lr": 1e-3}},
    }


@pytest.mark.parametrize(
    ("name", "modifier", "field", "top"),
    [
        ("one_shot_channels", "ChannelPruningModifier", "sparsity", 0.5),
        ("training_aware_channels", "StructuredPruningModifier", "final_sparsity", 0.7),
    ],
)
def test_optim_level_maps_to_channel_fraction(
    name: str, modifier: str, field: str, top: float
) -> None:
    def fraction(level: float) -> float:
        recipe = load_recipe(name, _variables(level))
        names = [m.name for m in recipe.modifiers]
        # thin first, then sparse, then INT8: the recipe's order
        assert names.index(modifier) < names.index("QuantizationModifier")
        return next(m for m in recipe.modifiers if m.name == modifier).kwargs[field]

    assert fraction(0.2) == 0.0  # INT8 only below 0.3, as the one-shot experiment does
    assert fraction(0.65) == pytest.approx(top / 2)
    assert fraction(1.0) == pytest.approx(top)


def test_channel_fields_are_refused_for_other_structures(tmp_path: Path) -> None:
    from torch import nn

    from sparsify.algorithms.session import RecipeSession

    path = tmp_path / "ffn.yaml"
    path.write_text(
        "version: 1.1.0\nstage:\n  training_modifiers:\n    EpochRangeModifier: "
        "{start_epoch: 0.0, end_epoch: 1.0}\n  pruning_modifiers:\n"
        "    StructuredPruningModifier: {structure: ffn_neurons, importance: taylor, "
        "final_sparsity: 0.5, start_epoch: 0.0, end_epoch: 1.0}\n"
    )
    with pytest.raises(SparsifyError, match="importance apply to structure: channels"):
        RecipeSession(load_recipe(str(path), {}), nn.Linear(4, 4), steps_per_epoch=1)


def test_unknown_importance_fails_schema_validation(tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(
        "version: 1.1.0\noneshot_stage:\n  pruning_modifiers:\n"
        "    ChannelPruningModifier: {sparsity: 0.3, importance: random}\n"
    )
    with pytest.raises(SparsifyError, match="magnitude"):
        load_recipe(str(path), {})


def test_training_aware_channels_distils_from_the_dense_model() -> None:
    recipe = load_recipe("training_aware_channels", _variables(1.0))
    distil = recipe.distillation()
    assert distil is not None and distil.kwargs["hardness"] == 0.5
    assert "DistillationModifier" not in [
        m.name for m in load_recipe("one_shot_channels", _variables(1.0)).modifiers
    ]
