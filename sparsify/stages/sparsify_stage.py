"""sparsify: apply the recipe (prune, then INT8) and export baseline and result to ONNX."""

from __future__ import annotations

import shutil
from typing import Any

from sparsify.algorithms.pruning import (
    apply_masks,
    log_sparsity,
    magnitude_masks,
    overall_sparsity,
    select_layers,
)
from sparsify.algorithms.quantization import quantize_onnx_static
from sparsify.models import get_family
from sparsify.models.image_classifier import save_checkpoint
from sparsify.recipes.recipe import load_recipe
from sparsify.stages.context import RunContext
from sparsify.stages.validate import recipe_variables


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

        recipe = load_recipe(
            str(ctx.cfg.recipe or ctx.cfg.experiment.recipe), recipe_variables(ctx)
        )
        applied = []
        result: dict[str, Any] = {"sparsity": 0.0, "per_layer_sparsity": {}}
        prune = recipe.find("MagnitudePruningModifier")
        if prune and float(prune.kwargs.get("final_sparsity", 0.0)) > 0:
            sparsity = float(prune.kwargs["final_sparsity"])
            layers = select_layers(
                model, prune.kwargs.get("targets", "__ALL_PRUNABLE__"), prune.kwargs.get("ignore")
            )
            ctx.log.info(
                "Magnitude pruning %d layers to %.1f %% sparsity", len(layers), 100 * sparsity
            )
            apply_masks(layers, magnitude_masks(layers, sparsity))
            result["per_layer_sparsity"] = log_sparsity(layers, "After pruning")
            result["sparsity"] = overall_sparsity(layers)
            applied.append(prune)
        classes = ctx.outputs["validate"]["data"]["classes"]
        save_checkpoint(model, out / "model.pth", str(ctx.cfg.model.arch), classes)
        fp32 = family.export(model, out / "model_fp32.onnx", ctx)

        final = out / "model.onnx"
        quant = recipe.find("QuantizationModifier")
        if quant and quant.kwargs.get("enabled", True) and ctx.derived.quantize:
            q = ctx.cfg.quantization
            n = int(ctx.cfg.experiment.calibration_samples)
            ctx.log.info(
                "INT8 post-training quantization (%s) calibrated on %d samples", q.format, n
            )
            result["quantization"] = quantize_onnx_static(
                fp32,
                final,
                family.calibration_feeds(ctx, n),
                fmt=str(q.format),
                per_channel=bool(q.per_channel),
                activation_type=str(q.activation_type),
                weight_type=str(q.weight_type),
                op_types=list(q.ops),
            )
            applied.append(quant)
        else:
            shutil.copyfile(fp32, final)
        recipe.modifiers = applied
        (out / "recipe.yaml").write_text(recipe.to_yaml(), encoding="utf-8")
        result["artifacts"] = [
            ctx.rel(p) for p in (baseline_onnx, out / "model.pth", fp32, final, out / "recipe.yaml")
        ]
        result["baseline_onnx"] = ctx.rel(baseline_onnx)
        result["model_onnx"] = ctx.rel(final)
        result["recipe_applied"] = ctx.rel(out / "recipe.yaml")
        return result
