"""validate: config, data and model checked together; one error lists every problem."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from omegaconf import OmegaConf

from sparsify.config.checks import config_problems
from sparsify.context import RunContext
from sparsify.data import DATA_FORMATS
from sparsify.data.demo import materialize_demo
from sparsify.errors import Problem, ProblemCollector, SparsifyError, ValidationError
from sparsify.models import family_available, get_family
from sparsify.recipes.recipe import load_recipe


def resolve_data_path(ctx: RunContext) -> Path | None:
    data = ctx.cfg.data
    if data.path:
        return Path(str(data.path)).expanduser().resolve()
    if data.demo:
        return materialize_demo(str(data.demo), ctx.cache_dir)
    return None


def recipe_variables(ctx: RunContext) -> dict[str, Any]:
    derived = ctx.derived
    return {
        "optim_level": ctx.level,
        "derived": {
            "sparsity": derived.sparsity,
            "quantize": derived.quantize,
            "tier": derived.tier,
            "variant": derived.variant,
        },
        "experiment": OmegaConf.to_container(ctx.cfg.experiment, resolve=True),
    }


def _model_problems(ctx: RunContext, summary: dict | None, has_problems: bool) -> list[Problem]:
    family = get_family(str(ctx.cfg.use_case.family))
    problems = family.arch_problems(str(ctx.cfg.model.arch))
    try:
        source = family.resolve_source(ctx)
    except SparsifyError as exc:
        return [
            *problems,
            Problem("model.path", ctx.cfg.model.path, str(exc), "point model.path at your model"),
        ]
    if source is None:
        return problems
    if not source.exists():
        return [
            *problems,
            Problem(
                "model.path",
                str(ctx.cfg.model.path),
                "does not exist",
                "give the path of your trained model, or leave model.path empty "
                "to train a dense baseline",
            ),
        ]
    if summary is not None and not problems and not has_problems:
        problems.extend(family.checkpoint_problems(source, ctx, summary))
    return problems


class ValidateStage:
    name = "validate"
    config_keys = (
        "use_case",
        "experiment",
        "data",
        "model",
        "optim_level",
        "recipe",
        "stages",
        "benchmark",
        "quantization",
        "export",
    )

    def run(self, ctx: RunContext) -> dict[str, Any]:
        problems = ProblemCollector()
        problems.extend(config_problems(ctx.cfg))
        if problems:  # the rest depends on a sane config
            problems.raise_if_any("the config")
        data_path = resolve_data_path(ctx)
        summary = None
        fmt = str(ctx.cfg.data.format)
        if fmt not in DATA_FORMATS:
            problems.add(
                "data",
                fmt,
                "this data format is not implemented in this version yet",
                f"use one of: {', '.join(DATA_FORMATS.names())}",
            )
        elif data_path is not None:
            summary, data_problems = DATA_FORMATS.get(fmt)(data_path, ctx.cfg)
            problems.extend(data_problems)
        if family_available(str(ctx.cfg.use_case.family)):
            problems.extend(_model_problems(ctx, summary, has_problems=bool(problems)))
        recipe_name = str(ctx.cfg.recipe or ctx.cfg.experiment.recipe)
        try:
            recipe = load_recipe(recipe_name, recipe_variables(ctx))
        except ValidationError as exc:
            problems.extend(exc.problems)
            recipe = None
        except SparsifyError as exc:
            problems.add(
                "recipe", recipe_name, str(exc), "give a built-in recipe name or a YAML path"
            )
            recipe = None
        problems.raise_if_any("the config, data and model")
        ctx.log.info(
            "Optim level %.2f (%s): %s", ctx.level, ctx.cfg.experiment.name, ctx.derived.describe()
        )
        return {
            "optim_level": ctx.level,
            "derived": recipe_variables(ctx)["derived"],
            "data_path": str(data_path),
            "data": summary,
            "recipe": recipe.source if recipe else None,
        }
