"""Cross-field checks of a composed config; every problem is returned, none raised."""

from __future__ import annotations

import re
from pathlib import Path

from omegaconf import DictConfig

from sparsify.config.options import option_problems
from sparsify.config.schema import STAGE_NAMES
from sparsify.engines.registry import ENGINE_NAMES, engine_name
from sparsify.errors import Problem, SparsifyError, ValidationError
from sparsify.recipes.levels import normalize_level
from sparsify.use_cases import known_use_cases

# experiments this version runs end to end, per model family

IMPLEMENTED = {
    "image_classifier": {"one_shot", "training_aware", "sparse_transfer"},
    "transformers": {"one_shot", "training_aware", "sparse_transfer"},
    "generic": {"one_shot"},
    "yolo": {"one_shot", "training_aware", "sparse_transfer"},
}


def config_problems(cfg: DictConfig) -> list[Problem]:
    problems: list[Problem] = []
    _, level_problem = normalize_level(cfg.optim_level)
    if level_problem:
        problems.append(level_problem)
    use_case, experiment = cfg.use_case, str(cfg.experiment.name)
    if use_case.custom and experiment != "one_shot":
        problems.append(
            Problem(
                "use_case",
                str(use_case.name),
                f"is not a known use case, and custom use cases run only with experiment=one_shot "
                f"(this is {experiment})",
                f"use one of: {', '.join(known_use_cases())}; or experiment=one_shot",
            )
        )
    if str(cfg.data.format) not in list(use_case.data_formats):
        problems.append(
            Problem(
                "data",
                str(cfg.data.format),
                f"is not a data format of use case {use_case.name}",
                f"use data={list(use_case.data_formats)[0]}",
            )
        )
    if not cfg.data.path and not cfg.data.demo:
        problems.append(
            Problem(
                "data.path",
                None,
                "no dataset given",
                "set data.path=<your dataset folder> (or data=digits for the demo)",
            )
        )
    unknown = [s for s in cfg.stages if s not in STAGE_NAMES]
    if unknown:
        problems.append(
            Problem(
                "stages",
                list(cfg.stages),
                f"unknown stage(s) {unknown}",
                f"choose from {STAGE_NAMES}",
            )
        )
    if any(int(b) < 1 for b in cfg.benchmark.batch_sizes):
        problems.append(
            Problem(
                "benchmark.batch_sizes",
                list(cfg.benchmark.batch_sizes),
                "batch sizes must be >= 1",
                "e.g. benchmark.batch_sizes=[1,16]",
            )
        )
    engines = [str(e) for e in cfg.benchmark.engines]
    unknown_engines = [e for e in engines if engine_name(e) is None]
    if unknown_engines or not engines:
        problems.append(
            Problem(
                "benchmark.engines",
                engines,
                f"unknown engine(s) {unknown_engines}" if engines else "no engine given",
                f"choose from {', '.join(ENGINE_NAMES)}, e.g. benchmark.engines=[onnxruntime,"
                "deepsparse] (deepsparse after `make deepsparse`)",
            )
        )
    if float(cfg.benchmark.timeout_s) <= 0:
        problems.append(
            Problem(
                "benchmark.timeout_s",
                cfg.benchmark.timeout_s,
                "must be > 0",
                "e.g. benchmark.timeout_s=600",
            )
        )
    if float(cfg.benchmark.time_s) <= 0:
        problems.append(
            Problem(
                "benchmark.time_s", cfg.benchmark.time_s, "must be > 0", "e.g. benchmark.time_s=3"
            )
        )
    if int(cfg.benchmark.rounds) < 1:
        problems.append(
            Problem(
                "benchmark.rounds", cfg.benchmark.rounds, "must be >= 1", "e.g. benchmark.rounds=3"
            )
        )
    problems.extend(_quantization_problems(cfg.quantization))
    problems.extend(_mask_type_problems(cfg))
    from sparsify.algorithms.quant_variants import variant_problems  # onnx: imported when used

    problems.extend(
        variant_problems(cfg)
    )  # quantization.variants, benchmark.max_drop / min_speedup
    problems.extend(option_problems(cfg))  # the original CLI's options (docs/legacy_cli.md)
    problems.extend(_calibration_problems(cfg))
    family = str(use_case.family)
    done = IMPLEMENTED.get(family, set())
    if not use_case.custom and experiment not in done:  # custom: reported above
        problems.append(
            Problem(
                "experiment",
                experiment,
                f"use case {use_case.name} (model family {family}) with experiment {experiment} "
                "is not implemented in this version yet",
                f"use experiment={sorted(done)[0]}"
                if done
                else "use use_case=cv-classification experiment=one_shot",
            )
        )
    return problems


def _mask_type_problems(cfg: DictConfig) -> list[Problem]:
    """pruning.mask_type, parsed as the pruners parse it: a typo must not wait for the recipe."""
    from sparsify.algorithms.masks import VALID_FORMS, parse_mask_type  # torch: when used
    from sparsify.recipes.modifiers.fields import MASK_PATTERN

    value = cfg.get("pruning", {}).get("mask_type", "unstructured")
    try:
        parse_mask_type(str(value))
        # the recipe schema's spelling too (lower case, no spaces), so the recipe takes it
        if not re.fullmatch(MASK_PATTERN, str(value)):
            raise SparsifyError(str(value))
    except SparsifyError:
        return [
            Problem(
                "pruning.mask_type",
                value,
                "is not a sparsity mask type",
                f"use {VALID_FORMS}; e.g. pruning.mask_type=block4",
            )
        ]
    return []


def _quantization_problems(q: DictConfig) -> list[Problem]:
    """The quantizer's choices, checked now: a typo must not wait for the end of training."""
    from sparsify.algorithms.ort_fusions import CONV_WEIGHT_ZERO_POINTS
    from sparsify.algorithms.quantization import (
        CALIBRATION_METHODS,
        FORMATS,
        QUANT_TYPES,
        WEIGHT_ROUNDINGS,
    )

    problems = []
    for key, choices in (
        ("format", FORMATS),
        ("activation_type", QUANT_TYPES),
        ("weight_type", QUANT_TYPES),
        ("calibration", CALIBRATION_METHODS),
        ("weight_rounding", WEIGHT_ROUNDINGS),
        ("conv_weight_zero_point", CONV_WEIGHT_ZERO_POINTS),
    ):
        value = str(q[key])
        if value.lower().strip() not in choices:
            problems.append(
                Problem(
                    f"quantization.{key}",
                    value,
                    "is not a valid choice",
                    f"use one of: {', '.join(choices)}",
                )
            )
    if str(q.format).lower().strip() == "dynamic" and str(q.activation_type) != "uint8":
        problems.append(
            Problem(
                "quantization.activation_type",
                q.activation_type,
                "cannot be used with quantization.format=dynamic (ONNX Runtime quantizes "
                "activations to uint8 at run time)",
                "quantization.activation_type=uint8, or format=qoperator / qdq",
            )
        )
    if not 0 < float(q.percentile) <= 100:
        problems.append(
            Problem(
                "quantization.percentile",
                q.percentile,
                "must be in (0, 100]",
                "e.g. quantization.percentile=99.99",
            )
        )
    return problems


def calibration_uses(cfg: DictConfig) -> list[str]:
    """What this run would read calibration samples for, as the sparsify stage decides:
    one-shot pruning by SparseGPT or with BatchNorm re-estimation, GPTQ weight rounding and
    static INT8. Empty when the level or the recipe is wrong (reported on their own)."""
    from sparsify.algorithms.session import has_training
    from sparsify.context import RunContext, load_run_recipe
    from sparsify.recipes.modifiers import OneShotPruning, SparseGPTModifier
    from sparsify.stages.sparsify_stage import _quantization

    level, problem = normalize_level(cfg.optim_level)
    if problem is not None:
        return []
    settled = cfg.copy()  # the level as the run will read it (config_problems may come first)
    settled.optim_level = float(level)  # type: ignore[arg-type]
    ctx = RunContext(cfg=settled, run_dir=Path("."))
    try:
        recipe = load_run_recipe(ctx)
    except SparsifyError:
        return []
    uses: list[str] = []
    training = has_training(recipe)
    if not training:
        for prune in recipe.pruning():
            if not isinstance(prune, OneShotPruning) or prune.target_sparsity <= 0:
                continue
            if isinstance(prune, SparseGPTModifier):
                uses.append("SparseGPT pruning")
            if prune.recalibrates():
                uses.append("BatchNorm re-estimation after pruning")
    if _quantization(recipe, ctx) is not None:
        fmt = str(cfg.quantization.format).lower().strip()
        if training and fmt == "qdq":
            pass  # the QAT graph may be the INT8 model itself: nothing calibrated
        elif fmt != "dynamic":
            uses.append("static INT8 calibration")
        elif str(cfg.quantization.weight_rounding) == "gptq" and not training:
            uses.append("GPTQ weight rounding")
    return list(dict.fromkeys(uses))


def _calibration_problems(cfg: DictConfig) -> list[Problem]:
    """A sample count that cannot be read (negative), or 0 where the run calibrates: refused
    now, not after the dense baseline was trained."""
    n = cfg.experiment.calibration_samples
    fix = "e.g. experiment.calibration_samples=128"
    if int(n) < 0:
        return [Problem("experiment.calibration_samples", n, "must not be negative", fix)]
    if int(n) > 0:
        return []
    uses = calibration_uses(cfg)
    if not uses:
        return []
    return [
        Problem(
            "experiment.calibration_samples",
            n,
            f"must be >= 1: this run reads calibration samples for {', '.join(uses)}",
            f"{fix} (0 works only where nothing is calibrated, e.g. optim_level=0.0)",
        )
    ]


def check_config(cfg: DictConfig) -> None:
    """Raise one ValidationError listing every config problem."""
    problems = config_problems(cfg)
    if problems:
        raise ValidationError(problems, "the config")
