"""sparsify: apply the recipe (prune, then INT8) and export baseline and result to ONNX."""

from __future__ import annotations

import copy
import math
import shutil
import warnings
from functools import cache
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import torch
from torch import nn

from sparsify import distributed
from sparsify.algorithms import int8_budget, quant_variants
from sparsify.algorithms.gptq import round_weights_for_int8
from sparsify.algorithms.one_shot import target_sparsity, torch_batches
from sparsify.algorithms.onnx_pruning import prune_onnx
from sparsify.algorithms.optimizer_state import resume_optimizer
from sparsify.algorithms.ort_fusions import apply_conv_weight_zero_point
from sparsify.algorithms.pruning import PRUNABLE_TYPES, log_sparsity
from sparsify.algorithms.qat import fold_weight_quantizers, strip_qat
from sparsify.algorithms.quant_variants import Variant
from sparsify.algorithms.quantization import apply_ort_fusions
from sparsify.algorithms.session import RecipeSession, has_training
from sparsify.context import RunContext, load_run_recipe
from sparsify.errors import SparsifyError
from sparsify.matching import collect_unmatched
from sparsify.models import get_family
from sparsify.models.base import ModelFamily
from sparsify.outputs import FetchOutput, SparsifyOutput
from sparsify.recipes.modifiers import (
    DistillationModifier,
    MagnitudePruningModifier,
    OneShotPruning,
    QuantizationModifier,
)
from sparsify.recipes.recipe import Modifier, Recipe


def _prune(
    model: nn.Module | onnx.ModelProto,
    modifier: OneShotPruning,
    calibration: Any,
    ctx: RunContext,
    default_ignore: list[str],
) -> dict[str, Any]:
    if isinstance(model, onnx.ModelProto):  # a model that only exists as a graph
        sparsity = target_sparsity(modifier.kwargs)
        if not isinstance(modifier, MagnitudePruningModifier):
            ctx.log.info(
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
    return modifier.apply(model, calibration, default_ignore, ctx.stage_dir("sparsify"))


def _fp32_depthwise(q: Any) -> bool:
    """Depthwise convs stay FP32 in INT8 when weights are per tensor (config, see schema)."""
    return quant_variants.configured_fp32_depthwise(q)


def _gptq_applies(model: Any, result: dict[str, Any], ctx: RunContext) -> bool:
    """GPTQ rounding needs a torch model with hooks, and is for post-training INT8 (QAT has
    already trained the weights on their grid)."""
    return (
        str(ctx.cfg.quantization.weight_rounding) == "gptq"
        and not result.get("qat")
        and isinstance(model, nn.Module)
        and not isinstance(model, torch.jit.ScriptModule)
    )


def _quantized_ops(q: Any, family: ModelFamily) -> list[str]:
    # a family may add ops per format, e.g. classifiers' residual Adds in QOperator (INT8 end
    # to end for DeepSparse), YOLO's activations in QDQ (INT8 end to end on ONNX Runtime)
    return family.int8_ops(list(q.ops), str(q.format))


def _round_weights(
    model: nn.Module,
    out: Path,
    calibration: Any,
    ctx: RunContext,
    modifier: Modifier,
    family: ModelFamily,
) -> tuple[Path | None, dict[str, Any]]:
    """GPTQ: a copy of the model with BatchNorm folded and the weights rounded onto the INT8
    grids ONNX Runtime will use, exported for the quantizer (which then rounds nothing).
    None when the model cannot be folded or rounded (the quantizer then rounds to nearest)."""
    q = ctx.cfg.quantization
    rounded = copy.deepcopy(model)
    try:
        stats = round_weights_for_int8(
            rounded,
            torch_batches(calibration()),
            ops=_quantized_ops(q, family),
            ignore=list(modifier.kwargs.get("ignore") or []),
            per_channel=bool(q.per_channel),
            fp32_grouped=_fp32_depthwise(q),
        )
    except SparsifyError as exc:  # an aid to accuracy, not a reason to lose the run
        ctx.log.warning("GPTQ rounding not possible (%s); ONNX Runtime rounds to nearest", exc)
        return None, {"weight_rounding": "nearest", "gptq_failed": str(exc)}
    return family.export(rounded, out / ".model_rounded.onnx", ctx), stats


def _quantize(
    fp32: Path,
    final: Path,
    calibration: Any,
    ctx: RunContext,
    modifier: Modifier,
    family: ModelFamily,
    variant: Variant | None = None,
) -> dict[str, Any]:
    """`fp32` quantized into `final` as `variant` (default: the configured INT8 model)."""
    q = ctx.cfg.quantization
    return quant_variants.quantize_variant(
        variant or quant_variants.configured(q, family),
        fp32,
        final,
        calibration,
        q,
        family,
        list(modifier.kwargs.get("ignore") or []),
    )


def _variants(
    source: Path,
    final: Path,
    calibration: Any,
    ctx: RunContext,
    modifier: Modifier,
    family: ModelFamily,
    configured: Variant,
) -> dict[str, dict[str, Any]] | None:
    """The other INT8 graphs `quantization.variants` asks for, from the same `source` and
    calibration samples, in sparsify/variants/ (None with `[]`: the configured one only)."""
    q = ctx.cfg.quantization
    names = quant_variants.requested(q, family.name)
    if not names:
        return None
    return quant_variants.write_variants(
        quant_variants.unique(names, q, family),
        configured,
        final,
        final.parent / "variants",
        lambda v, path: _quantize(source, path, calibration, ctx, modifier, family, v),
        ctx.rel,
    )


def _quantization(recipe: Recipe, ctx: RunContext) -> Modifier | None:
    """The recipe's QuantizationModifier when this run quantizes, else None.

    The one place that decides: the modifier's `enabled`, which the built-in recipes set to
    `${derived.quantize}` (the optim level's answer, sparsify.recipes.levels.derive); a
    recipe that leaves `enabled` out follows the optim level too.
    """
    quant = recipe.quantization()
    if quant is None or not quant.kwargs.get("enabled", ctx.derived.quantize):
        return None
    return quant


def _teacher(model: nn.Module, recipe: Recipe, family: ModelFamily, ctx: RunContext) -> Any:
    """The distillation teacher `experiment.train.teacher` names: dense (the model as
    training starts), off (none), or a checkpoint of the family; None without a
    DistillationModifier in the recipe."""
    chosen = str(ctx.cfg.experiment.train.get("teacher") or "dense")
    if recipe.distillation() is None:
        if chosen not in ("dense", "off"):
            ctx.log.warning("Teacher %s not used: the recipe has no DistillationModifier", chosen)
        return None
    if chosen == "off":
        ctx.log.info("Distillation off (experiment.train.teacher=off): labels only")
        return None
    if chosen == "dense":
        teacher = copy.deepcopy(model)
    else:
        ctx.log.info("Distilling from the teacher %s", chosen)
        teacher = family.load(Path(chosen).expanduser(), ctx)
    teacher.eval()
    for p in teacher.parameters():
        p.requires_grad_(False)
    return teacher


def schedule_line(source: str, session: RecipeSession) -> str:
    """The recipe's length stated once, in its epochs (the scale every epoch in the log uses:
    modifier events, the trainers' logged `epoch`), with the steps they take and, when
    experiment.train.max_steps squeezes the schedule, the passes over the train data."""
    epochs, total, per_pass = session.epochs, session.total_steps, session.steps_per_epoch
    line = f"Training under recipe {source}: {epochs:.2f} epochs in {total:,} steps"
    if total >= math.ceil(epochs * per_pass):
        return f"{line} ({per_pass:,} steps an epoch, one pass over the train data)"
    return (
        f"{line}: experiment.train.max_steps squeezes them to {total / epochs:.2f} steps an "
        f"epoch, {total / per_pass:.2f} passes over the train data ({per_pass:,} steps a "
        "pass); epochs in the log are the recipe's"
    )


def _train(
    model: nn.Module,
    recipe: Recipe,
    family: ModelFamily,
    ctx: RunContext,
    result: dict[str, Any],
    applied: list[Modifier],
    ignore: list[str],
    final: Path,
    quantize: bool,
) -> tuple[bool, nn.Module]:
    """Training-aware / sparse-transfer: fine-tune under the recipe (masks, QAT, distillation).

    Returns whether the INT8 model was written from the QAT graph itself (format qdq), and the
    trained model: `model` itself, or the one the family's trainer returns under "model" when
    it cannot train in place (Ultralytics with a new head for other classes).
    """
    teacher = _teacher(model, recipe, family, ctx)

    q = ctx.cfg.quantization
    # ONNX Runtime re-quantizes the QAT weights; qdq exports the QAT graph itself, unless the
    # family's QAT graph leaves ops float that post-training QDQ quantizes (transformers)
    export_qat = str(q.format) == "qdq" and family.export_qat_graph
    requantized = not export_qat
    fp32_depthwise = _fp32_depthwise(q)

    def session_for(
        steps_per_epoch: int, live: nn.Module | None = None, qat: bool = True
    ) -> RecipeSession:
        """The recipe session for a trainer; `live` is the model it really trains when the
        trainer makes its own copy (Ultralytics), `qat=False` when it cannot train QAT."""
        session = RecipeSession(
            recipe,
            live if live is not None else model,
            steps_per_epoch,
            quantize=quantize and qat,
            default_ignore=ignore,
            max_steps=ctx.cfg.experiment.train.max_steps,
            # re-quantized by ONNX Runtime: train on the grid it will use
            per_channel=bool(q.per_channel) if requantized else None,
            # layers the deployed INT8 keeps FP32 are not fake-quantized either
            qat_ignore=["__DEPTHWISE__"] if requantized and fp32_depthwise else [],
        )
        if not announced:  # once: Ultralytics asks for a probe session, then its live one
            announced.append(session)
            ctx.log.info("%s", schedule_line(recipe.source, session))
        return session

    announced: list[RecipeSession] = []
    resume = ctx.cfg.experiment.train.get("optimizer")
    with resume_optimizer(Path(str(resume)).expanduser() if resume else None, model):
        stats = family.train_sparse(model, ctx, session_for, teacher)
    model = stats.pop("model", model)
    if distributed.active():  # the ranks part here: rank 0 goes on alone (docs/distributed.md)
        distributed.write_fingerprint(model, ctx.run_dir)
        distributed.barrier()
        if not distributed.is_main():
            return False, model
    result.update(stats)
    applied.extend(
        m
        for m in recipe.modifiers
        if not isinstance(m, QuantizationModifier)
        and not (teacher is None and isinstance(m, DistillationModifier))  # teacher off
    )
    qat_exported = False
    if stats.get("qat") and export_qat:
        with warnings.catch_warnings():  # the fake-quant scales are constants by design
            warnings.simplefilter("ignore", torch.jit.TracerWarning)
            family.export(model, final, ctx)  # fake-quant -> QuantizeLinear/DequantizeLinear
        ctx.log.info("QAT graph: %d weights stored as int8", fold_weight_quantizers(final))
        if ctx.cfg.quantization.ort_fusions:
            result["ort_fusions"] = apply_ort_fusions(final)
        result["conv_zero_point"] = apply_conv_weight_zero_point(
            final, str(ctx.cfg.quantization.conv_weight_zero_point)
        )
        qat_exported = True
    if stats.get("qat"):
        result["qat_input_ranges"] = strip_qat(model)
    log_sparsity(
        {n: m for n, m in model.named_modules() if isinstance(m, PRUNABLE_TYPES)},
        "After training",
    )
    return qat_exported, model


class SparsifyStage:
    name = "sparsify"
    out_dir = "sparsify"
    output = SparsifyOutput
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

    def run(self, ctx: RunContext) -> SparsifyOutput:
        # every `ignore` entry that matched nothing, in pruning, training or INT8, is recorded
        with collect_unmatched() as unmatched:
            produced = self._run(ctx)
        if unmatched:
            produced.ignore_unmatched = list(unmatched)
            recipe = ctx.artifact(str(produced.recipe_applied))
            note = "".join(f"#   {entry}\n" for entry in unmatched)
            text = recipe.read_text(encoding="utf-8")
            recipe.write_text(
                f"# ignore entries that matched no layer (see run.log for close names):\n{note}"
                + text,
                encoding="utf-8",
            )
        return produced

    def _run(self, ctx: RunContext) -> SparsifyOutput:
        family = get_family(str(ctx.cfg.use_case.family))
        out = ctx.stage_dir(self.out_dir)
        fetched = ctx.output(FetchOutput)
        model = family.load(ctx.artifact(fetched.model), ctx)
        baseline_onnx = family.export(model, out / "baseline.onnx", ctx)
        ctx.log.info("Exported the dense baseline to %s", baseline_onnx)
        if fetched.foundation:  # sparse transfer starts from the sparse foundation
            model = family.load_for_transfer(ctx.artifact(fetched.foundation), ctx)

        @cache
        def calibration() -> list[dict[str, np.ndarray]]:
            n = int(ctx.cfg.experiment.calibration_samples)
            ctx.log.info("Reading %d calibration samples from the train split", n)
            feeds = family.calibration_feeds(ctx, n)  # one per sample, at most n
            if len(feeds) < n:  # else "on 17 calibration samples" later reads like a bug
                ctx.log.info(
                    "The train split has only %d samples: calibrating on all %d "
                    "(experiment.calibration_samples=%d)",
                    len(feeds),
                    len(feeds),
                    n,
                )
            return feeds

        recipe = load_run_recipe(ctx)
        applied: list[Modifier] = []
        result: dict[str, Any] = {"sparsity": 0.0, "per_layer_sparsity": {}}
        ignore = list(family.prune_ignore)
        final = out / "model.onnx"
        quant = _quantization(recipe, ctx)
        quantize = quant is not None
        if has_training(recipe):
            qat_exported, model = _train(
                model, recipe, family, ctx, result, applied, ignore, final, quantize
            )
        else:
            qat_exported = False
            for prune in recipe.pruning():
                if not isinstance(prune, OneShotPruning) or target_sparsity(prune.kwargs) <= 0:
                    continue
                result.update(_prune(model, prune, calibration, ctx, ignore))
                applied.append(prune)
        checkpoint = out / family.checkpoint_name
        family.save(model, checkpoint, ctx)
        fp32 = family.export(model, out / "model_fp32.onnx", ctx)

        variants = None
        if qat_exported:
            ctx.log.info("INT8 model: the QAT fake-quant graph exported as QDQ")
            result["quantization"] = {
                "format": "qdq",
                "source": "qat",
                **result.pop("ort_fusions", {"ort_fused_matmuls": 0, "ort_float_inputs": 0}),
                **result.pop("conv_zero_point"),
            }
            qat = quant_variants.resolve("qdq", ctx.cfg.quantization, family)
            variants = _variants(fp32, final, calibration, ctx, quant, family, qat)  # type: ignore[arg-type]
            applied.append(quant)  # type: ignore[arg-type]
        elif quantize:
            how = "of the QAT-trained weights" if result.get("qat") else "post-training"
            ctx.log.info("INT8 %s quantization (%s)", how, ctx.cfg.quantization.format)
            source, rounding = fp32, {"weight_rounding": "nearest"}
            if _gptq_applies(model, result, ctx):
                rounded, rounding = _round_weights(model, out, calibration, ctx, quant, family)  # type: ignore[arg-type]
                source = rounded or fp32
            try:
                result["quantization"] = (
                    int8_budget.quantize_within_budget(  # quantization.max_drop: FP32 fallback
                        lambda m: _quantize(source, final, calibration, ctx, m, family),
                        quant,
                        model,
                        fp32,
                        final,
                        calibration,
                        family,
                        ctx,
                    )
                    | rounding
                )
                configured = quant_variants.configured(ctx.cfg.quantization, family)
                variants = _variants(source, final, calibration, ctx, quant, family, configured)  # type: ignore[arg-type]
            finally:
                if source != fp32:
                    source.unlink(missing_ok=True)
            applied.append(quant)  # type: ignore[arg-type]
        else:
            shutil.copyfile(fp32, final)
        recipe.modifiers = applied
        (out / "recipe.yaml").write_text(recipe.to_yaml(), encoding="utf-8")
        files = (baseline_onnx, checkpoint, fp32, final, out / "recipe.yaml")
        files += tuple(ctx.artifact(v["path"]) for v in (variants or {}).values() if "path" in v)
        files = tuple(dict.fromkeys(files))  # the configured variant is `final`
        # `result` gathered what pruning, training and quantization reported: the typed
        # fields are picked out, the rest (a family's training stats) kept as it is
        produced = SparsifyOutput.from_dict(result)
        produced.artifacts = [ctx.rel(p) for p in files]
        produced.baseline_onnx = ctx.rel(baseline_onnx)
        produced.model_onnx = ctx.rel(final)
        produced.model_fp32_onnx = ctx.rel(fp32)
        produced.variants = variants
        produced.recipe_applied = ctx.rel(out / "recipe.yaml")
        return produced
