"""`quantization.max_drop`: post-training INT8 that keeps the layers it hurts most in FP32
until the use case's metric on val drops by at most max_drop points from the FP32 model.

The algorithm of NNCF's `quantize_with_accuracy_control`, on our quantizer: NNCF 3.4 installs
beside our pins and its ONNX output runs on ONNX Runtime, but it writes QDQ only (our default,
QOperator, is what DeepSparse runs) with its own weight / activation scheme, so the INT8 graph
would no longer be the one `quantization.*` configures (ops, formats, ORT fusions, GPTQ grids,
variants). The layers are ranked by `sensitivity.int8_sensitivity` (each layer's weight and
input fake-quantized alone, in torch), then `sensitivity.fp32_fallback` adds them one by one
to the QuantizationModifier's `ignore` (the one matching rule: module paths name their ONNX
nodes), re-quantizing and re-evaluating each time.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

import onnx
import torch
from torch import nn

from sparsify.algorithms import quant_variants
from sparsify.algorithms.one_shot import Feeds, torch_batches
from sparsify.algorithms.pruning import PRUNABLE_TYPES
from sparsify.algorithms.sensitivity import (
    MAX_SAMPLES,
    fp32_fallback,
    int8_sensitivity,
    ranking,
)
from sparsify.algorithms.sensitivity_report import write_report
from sparsify.config.metrics import KL, resolve_metric
from sparsify.errors import SparsifyError
from sparsify.matching import describe_module, describe_onnx_node, entry_matches, is_depthwise

log = logging.getLogger("sparsify")

# layers kept FP32 at most: each step re-quantizes and re-evaluates on val, and past a handful
# of layers the INT8 model is losing the speed it was made for
MAX_FP32_LAYERS = 10


def _quantized_layers(
    model: nn.Module,
    graph: onnx.ModelProto,
    ops: tuple[str, ...],
    ignore: list[str],
    fp32_depthwise: bool,
) -> dict[str, nn.Module]:
    """The Conv / Linear modules whose ONNX nodes the quantizer turns INT8: an op it
    quantizes, not already kept FP32 by `ignore` or the depthwise rule."""
    inits = {i.name: i for i in graph.graph.initializer}
    nodes = [describe_onnx_node(n, inits) for n in graph.graph.node if n.op_type in ops]
    layers = {}
    for name, module in model.named_modules():
        if not isinstance(module, PRUNABLE_TYPES) or (fp32_depthwise and is_depthwise(module)):
            continue
        if any(entry_matches(e, describe_module(name, module)) for e in ignore):
            continue
        if any(entry_matches(name, node) for node in nodes):
            layers[name] = module
    return layers


def _scorer(family: Any, ctx: Any) -> tuple[str, Callable[[Path], float]]:
    """(the metric, a function giving an ONNX model's value of it on val)."""
    from sparsify.engines.ort import OnnxRuntimeEngine

    use_case = ctx.cfg.use_case
    metric, _ = resolve_metric(
        ctx.cfg.benchmark.get("metric"),
        str(use_case.name),
        str(use_case.family),
        str(use_case.metric),
    )
    if metric == KL:  # a divergence between two models: the budget is on the use case's own
        metric = str(use_case.metric)

    def score(path: Path) -> float:
        engine = OnnxRuntimeEngine(path, ctx.cfg.benchmark.get("num_threads"))
        try:
            scores = family.evaluate_onnx(engine, ctx)
        finally:
            engine.close()
        if scores.get(metric) is None:
            raise SparsifyError(
                f"quantization.max_drop needs the metric {metric} on val, and the {family.name} "
                f"evaluation reported {sorted(scores)}; set benchmark.metric to one of them, or "
                "quantization.max_drop=null"
            )
        return float(scores[metric])

    return metric, score


def quantize_within_budget(
    quantize: Callable[[Any], dict[str, Any]],
    modifier: Any,
    model: Any,
    reference: Path,
    final: Path,
    calibration: Callable[[], Feeds],
    family: Any,
    ctx: Any,
) -> dict[str, Any]:
    """`quantize(modifier)` (it writes `final`), with the FP32 fallback when
    `quantization.max_drop` is set: then the layers kept FP32 are added to the
    QuantizationModifier's `ignore` in place, so the INT8 variants and the applied recipe
    keep them too, and the summary records each step under `fp32_fallback`."""
    q = ctx.cfg.quantization
    max_drop = q.get("max_drop")
    if max_drop is None:
        return quantize(modifier)
    max_drop = float(max_drop)
    if max_drop < 0:
        raise SparsifyError(
            f"quantization.max_drop={max_drop} must be >= 0 (points of the use case's metric); "
            "e.g. quantization.max_drop=1.0, or null for no fallback"
        )
    if not isinstance(model, nn.Module) or isinstance(model, torch.jit.ScriptModule):
        reason = "it ranks layers with hooks on a torch model, which this model is not"
        log.warning("quantization.max_drop: no FP32 fallback (%s); quantizing as usual", reason)
        return quantize(modifier) | {"fp32_fallback": {"max_drop": max_drop, "skipped": reason}}
    variant = quant_variants.configured(q, family)
    base = list(modifier.ignore or [])
    graph = onnx.load(str(reference), load_external_data=False)
    layers = _quantized_layers(model, graph, variant.ops, base, variant.fp32_depthwise)
    rows = int8_sensitivity(
        model, layers, torch_batches(calibration()[:MAX_SAMPLES]), per_channel=bool(q.per_channel)
    )
    write_report(final.parent, rows)
    ranked = ranking(rows, "int8")
    metric, score = _scorer(family, ctx)
    dense = score(reference)
    log.info(
        "INT8 within %.3f points of %s (FP32 %.3f); %d layers ranked by INT8 sensitivity",
        max_drop,
        metric,
        dense,
        len(ranked),
    )

    def quantize_keeping(kept: list[str]) -> dict[str, Any]:
        trial = modifier.fresh()
        trial.ignore = [*base, *kept]
        return quantize(trial)

    done = fp32_fallback(
        quantize_keeping,
        lambda: dense - score(final),
        ranked,
        max_drop,
        min(MAX_FP32_LAYERS, len(ranked)),
    )
    modifier.ignore = [*base, *done.kept]
    return done.summary | {
        "fp32_fallback": {**done.record(max_drop), "metric": metric, "fp32_metric": dense}
    }
