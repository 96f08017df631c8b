"""sparsify: apply the recipe (prune, then INT8) and export baseline and result to ONNX."""

from __future__ import annotations

import shutil
from functools import cache
from pathlib import Path
from typing import Any

import numpy as np
import onnx
from torch import nn

from sparsify.algorithms.one_shot import ONE_SHOT_PRUNERS, prune_one_shot, target_sparsity
from sparsify.algorithms.onnx_pruning import prune_onnx
from sparsify.algorithms.quantization import quantize_onnx_static
from sparsify.context import RunContext
from sparsify.models import get_family
from sparsify.recipes.recipe import Modifier, load_recipe
from sparsify.stages.validate import recipe_variables


def _prune(
    model: nn.Module | onnx.ModelProto,
    modifier: Modifier,
    calibration: Any,
    ctx: RunContext,
    default_ignore: list[str],
) -> dict[str, Any]:
    if isinstance(model, onnx.ModelProto):  # a model that only exists as a graph
        sparsity = target_sparsity(modifier.kwargs)
        if modifier.name != "MagnitudePruningModifier":
            ctx.log.warning(
                "%s needs a torch model; this ONNX-only model is pruned by magnitude instead",
                modifier.name,
            )
        per_layer = prune_onnx(model, sparsity, modifier.kwargs.get("ignore"))
        sizes = {
            i.name: int(np.prod(i.dims)) for i in model.graph.initializer if i.name in per_layer
        }
        total = sum(sizes.values())
        overall = sum(per_layer[n] * sizes[n] for n in per_layer) / total if total else 0.0
        return {"per_layer_sparsity": per_layer, "sparsity": overall}
    return prune_one_shot(model, modifier.name, modifier.kwargs, calibration, default_ignore)


def _quantize(fp32: Path, final: Path, calibration: Any, ctx: RunContext) -> dict[str, Any]:
    q = ctx.cfg.quantization
    return quantize_onnx_static(
        fp32,
        final,
        calibration(),
        fmt=str(q.format),
        per_channel=bool(q.per_channel),
        activation_type=str(q.activation_type),
        weight_type=str(q.weight_type),
        op_types=list(q.ops),
    )


class SparsifyStage:
    name = "sparsify"
    config_keys = (
        "use_case",
        "experiment",
        "optim_level",
        "recipe",
        "quantization",
        "export",
        "data",
        "seed",
    )

    def run(self, ctx: RunContext) -> dict[str, Any]:
        family = get_family(str(ctx.cfg.use_case.family))
        out = ctx.stage_dir(self.name)
        model = family.load(ctx.artifact(ctx.outputs["fetch"]["artifacts"][0]), ctx)
        baseline_onnx = family.export(model, out / "baseline.onnx", ctx)
        ctx.log.info("Exported the dense baseline to %s", baseline_onnx)

        @cache
        def calibration() -> list[dict[str, np.ndarray]]:
            n = int(ctx.cfg.experiment.calibration_samples)
            ctx.log.info("Reading %d calibration samples from the train split", n)
            return family.calibration_feeds(ctx, n)

        recipe = load_recipe(
            str(ctx.cfg.recipe or ctx.cfg.experiment.recipe), recipe_variables(ctx)
        )
        applied: list[Modifier] = []
        result: dict[str, Any] = {"sparsity": 0.0, "per_layer_sparsity": {}}
        ignore = list(getattr(family, "prune_ignore", []))
        for prune in recipe.pruning():
            if prune.name not in ONE_SHOT_PRUNERS or target_sparsity(prune.kwargs) <= 0:
                continue
            result.update(_prune(model, prune, calibration, ctx, ignore))
            applied.append(prune)
        family.save(model, out / "model.pth", ctx)
        fp32 = family.export(model, out / "model_fp32.onnx", ctx)

        final = out / "model.onnx"
        quant = recipe.find("QuantizationModifier")
        if quant and quant.kwargs.get("enabled", True) and ctx.derived.quantize:
            ctx.log.info("INT8 post-training quantization (%s)", ctx.cfg.quantization.format)
            result["quantization"] = _quantize(fp32, final, calibration, ctx)
            applied.append(quant)
        else:
            shutil.copyfile(fp32, final)
        recipe.modifiers = applied
        (out / "recipe.yaml").write_text(recipe.to_yaml(), encoding="utf-8")
        files = (baseline_onnx, out / "model.pth", fp32, final, out / "recipe.yaml")
        result["artifacts"] = [ctx.rel(p) for p in files]
        result["baseline_onnx"] = ctx.rel(baseline_onnx)
        result["model_onnx"] = ctx.rel(final)
        result["recipe_applied"] = ctx.rel(out / "recipe.yaml")
        return result
