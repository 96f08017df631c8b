"""validate: config, data and model checked together; one error lists every problem."""

from __future__ import annotations

from sparsify.config.checks import config_problems
from sparsify.context import RunContext, recipe_variables, resolve_data_path
from sparsify.data import DATA_FORMATS
from sparsify.errors import Problem, ProblemCollector, SparsifyError, ValidationError
from sparsify.models import family_available, get_family
from sparsify.outputs import ValidateOutput
from sparsify.recipes.recipe import load_recipe


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
    out_dir = "validate"
    output = ValidateOutput
    # not `stages`: which stages run does not change what validate finds (unknown names are
    # refused before any stage runs), and a `stages=[...]` subset must see validate's
    # results as made with the same inputs
    config_keys = (
        "use_case",
        "experiment",
        "data",
        "model",
        "optim_level",
        "recipe",
        "benchmark",
        "quantization",
        "export",
    )

    def run(self, ctx: RunContext) -> ValidateOutput:
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
        from sparsify.data.image_sizes import settle_image_size  # PIL: for image formats

        # an unset data.image_size, settled once from the images for every later stage (and
        # for a rerun that skips this one): the pipeline applies config_overrides
        image_size = settle_image_size(ctx.cfg, (summary or {}).get("image_sizes") or {})
        return ValidateOutput(
            optim_level=ctx.level,
            derived=recipe_variables(ctx)["derived"],
            data_path=str(data_path),
            data=summary,
            recipe=recipe.source if recipe else None,
            config_overrides={"data.image_size": image_size} if image_size else None,
        )
