"""The shipped search spaces (conf/hydra/sweeper/sparsify_budget.yaml): per experiment, model
family and recipe, each dimension a key a run accepts and a value it composes."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest
from hydra import compose, initialize_config_module
from omegaconf import OmegaConf

from sparsify.budget.space import to_overrides
from sparsify.budget.sweeper import BudgetSweeper
from sparsify.config.checks import config_problems
from sparsify.config.compose import CONFIG_MODULE, register_configs, register_resolvers
from sparsify.config.overrides import normalize_overrides
from sparsify.context import RunContext, load_run_recipe

SWEEPER_YAML = Path(__file__).parents[2] / "conf" / "hydra" / "sweeper" / "sparsify_budget.yaml"


def _dimensions(experiment: str, family: str, recipe: str | None) -> dict[str, Any]:
    """{key: choices or (low, high)} the shipped defaults give this run."""
    shipped = OmegaConf.load(SWEEPER_YAML)
    sweeper = BudgetSweeper(
        spaces=shipped.spaces,
        family_spaces=shipped.family_spaces,
        recipe_spaces=shipped.recipe_spaces,
    )
    sweeper.config = OmegaConf.create(
        {
            "experiment": {"name": experiment, "recipe": experiment},
            "use_case": {"family": family},
            "recipe": recipe,
        }
    )
    dims = sweeper._dimensions({"space": {}})
    return {d.key: d.choices if d.choices is not None else (d.low, d.high) for d in dims}


def _compose(overrides: list[str], trial: Sequence[str] = ()) -> RunContext:
    """The command line's `overrides` (normalized, as `sparsify` does), then a trial's as the
    launcher passes them to Hydra: as they are."""
    register_configs()
    register_resolvers()
    with initialize_config_module(version_base="1.3", config_module=CONFIG_MODULE):
        fixed = normalize_overrides(["data=digits", *overrides])
        cfg = compose(config_name="config", overrides=[*fixed, *trial])
    OmegaConf.set_readonly(cfg, False)
    assert not config_problems(cfg)
    return RunContext(cfg=cfg, run_dir=Path("."))


def test_one_shot_searches_the_mask_type() -> None:
    dims = _dimensions("one_shot", "image_classifier", None)
    assert dims["pruning.mask_type"] == ("unstructured", "block4", "2:4")
    assert dims["optim_level"] == (0.0, 1.0)
    assert "pruning.mask_type" not in _dimensions("training_aware", "image_classifier", None)
    for mask in dims["pruning.mask_type"]:  # a trial's override reaches the applied recipe
        overrides = to_overrides({"optim_level": 0.7, "pruning.mask_type": mask})
        assert overrides[1] == (
            "pruning.mask_type='2:4'" if mask == "2:4" else f"pruning.mask_type={mask}"
        )
        ctx = _compose(["recipe=one_shot"], overrides)
        assert load_run_recipe(ctx).find("MagnitudePruningModifier").kwargs["mask_type"] == mask  # type: ignore[union-attr]


def test_structured_recipe_searches_ffn_and_head_fractions() -> None:
    dims = _dimensions("training_aware", "transformers", "training_aware_structured")
    assert dims["recipe_args.ffn_fraction"] == (0.0, 0.5)
    assert dims["recipe_args.head_fraction"] == (0.0, 0.5)
    assert dims["quantization.format"] == ("qoperator", "qdq", "dynamic")
    assert "optim_level" in dims  # the level still sets the unstructured sparsity and INT8
    assert "recipe_args.ffn_fraction" not in _dimensions("training_aware", "transformers", None)
    overrides = to_overrides({"recipe_args.ffn_fraction": 0.3, "recipe_args.head_fraction": 0.25})
    ctx = _compose(["experiment=training_aware", "recipe=training_aware_structured"], overrides)
    ffn, _, heads = load_run_recipe(ctx).pruning()
    assert (ffn.kwargs["final_sparsity"], heads.kwargs["final_sparsity"]) == (0.3, 0.25)


@pytest.mark.parametrize(
    ("experiment", "recipe", "high"),
    [("one_shot", "one_shot_channels", 0.5), ("training_aware", "training_aware_channels", 0.7)],
)
def test_channel_recipes_search_the_channel_fraction(
    experiment: str, recipe: str, high: float
) -> None:
    dims = _dimensions(experiment, "image_classifier", recipe)
    assert dims["recipe_args.channel_fraction"] == (0.0, high)
    # the fraction is searched directly; the thin model stays dense, so no mask type either
    assert "optim_level" not in dims and "pruning.mask_type" not in dims
    trial = to_overrides({"recipe_args.channel_fraction": 0.25})
    ctx = _compose([f"experiment={experiment}", f"recipe={recipe}"], trial)
    fractions = [
        m.kwargs.get("sparsity", m.kwargs.get("final_sparsity"))
        for m in load_run_recipe(ctx).pruning()
    ]
    assert fractions[0] == 0.25
