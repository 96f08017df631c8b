"""Checks of the keys the original CLI's options map onto (docs/legacy_cli.md): subsets of
the splits, the headline metric, the distillation teacher, a resumed optimizer state, the
deployment target and the recipe's variables. Every problem is returned, none raised."""

from __future__ import annotations

from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from sparsify.config.metrics import KL, resolve_metric
from sparsify.engines.registry import ENGINE_NAMES, engine_name
from sparsify.errors import Problem, SparsifyError

TEACHER_KEYWORDS = ("dense", "off")
SCENARIOS = ("sync", "async", "elastic")
# engines with more than one scheduler: DeepSparse's multi-stream and elastic modes
SCENARIO_ENGINES = {"async": ("deepsparse",), "elastic": ("deepsparse",)}
# families whose datasets data.train_samples / data.val_samples cut (the one place each
# builds its splits); YOLO hands whole folders to Ultralytics, NPZ sets have no splits
SUBSET_FAMILIES = ("image_classifier", "transformers")
# families whose fine-tuning loop runs in-process on the model's own parameters
OPTIMIZER_FAMILIES = ("image_classifier", "transformers")


def option_problems(cfg: DictConfig) -> list[Problem]:
    return [
        *_sample_problems(cfg),
        *_metric_problems(cfg),
        *_teacher_problems(cfg),
        *_optimizer_problems(cfg),
        *_deploy_problems(cfg),
        *_recipe_args_problems(cfg),
    ]


def _sample_problems(cfg: DictConfig) -> list[Problem]:
    problems = []
    family = str(cfg.use_case.family)
    for key in ("train_samples", "val_samples"):
        n = cfg.data.get(key)
        if n is None:
            continue
        if int(n) < 1:
            problems.append(Problem(f"data.{key}", n, "must be >= 1", f"e.g. data.{key}=500"))
        elif family not in SUBSET_FAMILIES:
            problems.append(
                Problem(
                    f"data.{key}",
                    n,
                    f"cannot cut the data of model family {family} in this version (it works "
                    f"for {', '.join(SUBSET_FAMILIES)})",
                    f"leave data.{key} unset, or give a smaller dataset folder",
                )
            )
    return problems


def _metric_problems(cfg: DictConfig) -> list[Problem]:
    wanted = cfg.benchmark.get("metric")
    use_case = cfg.use_case
    metric, problem = resolve_metric(
        wanted, str(use_case.name), str(use_case.family), str(use_case.metric)
    )
    if problem is not None:
        return [problem]
    if metric == KL and str(cfg.experiment.name) == "training_aware":
        return [
            Problem(
                "benchmark.metric",
                wanted,
                "kl cannot judge a training_aware run: training on the labels moves the model "
                "away from the dense one on purpose (the original Sparsify refused it too)",
                f"use the labels' metric (benchmark.metric=null: {use_case.metric}), or kl "
                "with experiment=one_shot",
            )
        ]
    return []


def _teacher_problems(cfg: DictConfig) -> list[Problem]:
    teacher = str(cfg.experiment.train.get("teacher") or "dense")
    if teacher in TEACHER_KEYWORDS:
        return []
    if str(cfg.experiment.name) == "one_shot":
        return [
            Problem(
                "experiment.train.teacher",
                teacher,
                "one_shot does not train, so no teacher is used",
                "leave the teacher out, or use experiment=training_aware / sparse_transfer",
            )
        ]
    if not Path(teacher).expanduser().exists():
        return [
            Problem(
                "experiment.train.teacher",
                teacher,
                "does not exist",
                "give a checkpoint of the same model family and classes, or dense / off",
            )
        ]
    return []


def _optimizer_problems(cfg: DictConfig) -> list[Problem]:
    path = cfg.experiment.train.get("optimizer")
    if not path:
        return []
    key, family = "experiment.train.optimizer", str(cfg.use_case.family)
    if str(cfg.experiment.name) == "one_shot":
        return [
            Problem(
                key,
                path,
                "one_shot does not train: there is no optimizer to resume",
                "leave it out, or use experiment=training_aware / sparse_transfer",
            )
        ]
    if family not in OPTIMIZER_FAMILIES:
        return [
            Problem(
                key,
                path,
                f"cannot be resumed for model family {family} (its trainer builds its own "
                "optimizer on a copy of the model)",
                f"leave it out; it works for {', '.join(OPTIMIZER_FAMILIES)}",
            )
        ]
    if not Path(str(path)).expanduser().is_file():
        return [
            Problem(key, path, "does not exist", "give a torch.save(optimizer.state_dict()) file")
        ]
    return []


def _deploy_problems(cfg: DictConfig) -> list[Problem]:
    deploy = cfg.get("deploy")
    if deploy is None:
        return []
    problems = []
    engine = engine_name(str(deploy.engine)) if deploy.engine else None
    if deploy.engine and engine is None:
        problems.append(
            Problem(
                "deploy.engine",
                deploy.engine,
                "is not a known engine",
                f"use one of: {', '.join(ENGINE_NAMES)}",
            )
        )
    scenario = str(deploy.scenario).strip().lower()
    if scenario not in SCENARIOS:
        problems.append(
            Problem(
                "deploy.scenario",
                deploy.scenario,
                "is not a scenario",
                f"use one of: {', '.join(SCENARIOS)}",
            )
        )
    elif scenario in SCENARIO_ENGINES and engine not in SCENARIO_ENGINES[scenario]:
        problems.append(
            Problem(
                "deploy.scenario",
                deploy.scenario,
                f"needs an engine with scheduler modes ({', '.join(SCENARIO_ENGINES[scenario])});"
                f" deploy.engine is {engine or 'not set'}",
                f"deploy.scenario=sync, or deploy.engine={SCENARIO_ENGINES[scenario][0]}",
            )
        )
    return problems


def _recipe_args_problems(cfg: DictConfig) -> list[Problem]:
    args = cfg.get("recipe_args")
    if not args:
        return []
    from sparsify.recipes.recipe import check_recipe_args  # the modifiers import torch

    try:
        return check_recipe_args(
            str(cfg.recipe or cfg.experiment.recipe),
            OmegaConf.to_container(args),  # type: ignore[arg-type]
        )
    except SparsifyError:
        return []  # an unknown recipe is reported on its own, by the validate stage
