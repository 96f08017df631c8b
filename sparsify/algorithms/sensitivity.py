"""Per-layer sensitivity: what pruning or INT8 of one layer alone costs the model's outputs.

Each prunable layer is pruned by magnitude on its own (at `PRUNE_SPARSITIES`), or its weight
and input fake-quantized to INT8 on its own, and the model's final outputs on calibration
samples are compared with the dense ones: relative MSE (||y - y_dense||^2 / ||y_dense||^2
over every output tensor) and, where the first output is a `(batch, classes)` score matrix,
KL(dense || result) of its softmax. SparseML's magnitude pruning sensitivity works the same
way (one layer at a time, the others dense): a proxy, cheap enough to run before every
one-shot prune, that ranks layers well although the costs of several layers do not add up
exactly.

Used for:
- `allocate_sparsity`: non-uniform per-layer sparsity for an overall target (pruning
  modifiers' `profile: sensitivity`), the exact overall count of zeros kept;
- `fp32_fallback`: the layers INT8 hurts most kept FP32 until the metric drop fits
  (`quantization.max_drop`; NNCF's `quantize_with_accuracy_control` on our quantizer).
"""

from __future__ import annotations

import contextlib
import heapq
import logging
import math
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from sparsify.algorithms.hessian import forward_batch
from sparsify.algorithms.masks import parse_mask_type, structured_magnitude_mask, to_matrix

log = logging.getLogger("sparsify")

PRUNE_SPARSITIES = (0.5, 0.7, 0.9)
# calibration samples the analysis runs on: it costs one forward pass over them per layer and
# sparsity, and a ranking settles on far fewer samples than a Hessian needs
MAX_SAMPLES = 64
# how far a layer's sparsity may move from the target: the costs measured one layer at a time
# stop predicting the whole model's once many layers move far (OWL's layer-wise sparsity
# finds small deviations best), so the allocation is kept within target +/- this
MAX_SHIFT = 0.2
MAX_LAYER_SPARSITY = 0.99
STEP = 0.01  # the allocation moves a layer's sparsity in steps of this fraction of the layer


@dataclass(frozen=True)
class Row:
    """One measurement: `analysis` prune (the layer at `sparsity`) or int8 (the layer INT8),
    or allocation (`sparsity` is what the layer was given, no error)."""

    analysis: str
    layer: str
    params: int
    sparsity: float | None = None
    rel_mse: float | None = None
    kl: float | None = None


def _tensors(output: Any) -> list[torch.Tensor]:
    """The floating-point tensors of a model's output (a tensor, tuple, list, dict or a
    transformers ModelOutput, which is a dict), in order."""
    if isinstance(output, torch.Tensor):
        return [output.detach().float()] if output.is_floating_point() else []
    if isinstance(output, Mapping):
        output = list(output.values())
    if isinstance(output, list | tuple):
        return [t for item in output for t in _tensors(item)]
    return []


@contextlib.contextmanager
def _eval(model: nn.Module) -> Iterator[None]:
    """Eval mode (BatchNorm must not learn from a damaged layer), restored afterwards."""
    modes = {m: m.training for m in model.modules()}
    model.eval()
    try:
        with torch.no_grad():
            yield
    finally:
        for module, mode in modes.items():
            module.train(mode)


def model_outputs(model: nn.Module, batches: Sequence[Any]) -> list[list[torch.Tensor]]:
    """The model's output tensors per batch (call inside `_eval`)."""
    return [_tensors(forward_batch(model, batch)) for batch in batches]


def output_error(
    outputs: list[list[torch.Tensor]], reference: list[list[torch.Tensor]]
) -> tuple[float, float | None]:
    """(relative MSE over every output tensor, KL(reference || outputs) of the first output's
    softmax when it is a `(batch, classes)` matrix, else None)."""
    err = energy = kl_sum = 0.0
    rows = 0
    for out, ref in zip(outputs, reference, strict=True):
        for o, r in zip(out, ref, strict=True):
            err += float((o.double() - r.double()).square().sum())
            energy += float(r.double().square().sum())
        if out and out[0].dim() == 2 and out[0].shape[1] > 1:
            p_log = torch.log_softmax(ref[0].double(), dim=1)
            q_log = torch.log_softmax(out[0].double(), dim=1)
            kl_sum += float((p_log.exp() * (p_log - q_log)).sum())
            rows += out[0].shape[0]
    rel = err / energy if energy > 0 else err
    return rel, (kl_sum / rows if rows else None)


def prune_sensitivity(
    model: nn.Module,
    layers: Mapping[str, nn.Module],
    batches: Sequence[Any],
    sparsities: Sequence[float] = PRUNE_SPARSITIES,
    mask_type: str = "unstructured",
) -> list[Row]:
    """Each layer pruned by magnitude alone to each of `sparsities` (restored afterwards)."""
    rows = []
    with _eval(model):
        reference = model_outputs(model, batches)
        for name, layer in layers.items():
            weight = layer.weight
            dense = weight.detach().clone()
            for s in sparsities:
                weight.mul_(structured_magnitude_mask(weight, s, mask_type))
                rel, kl = output_error(model_outputs(model, batches), reference)
                weight.copy_(dense)
                rows.append(Row("prune", name, weight.numel(), float(s), rel, kl))
    return rows


def _fake_quant_weight(weight: torch.Tensor, per_channel: bool) -> torch.Tensor:
    """Symmetric INT8 weights (per output channel or per tensor), as the quantizer stores."""
    flat = weight.reshape(weight.shape[0], -1)
    peak = flat.abs().amax(dim=1, keepdim=True) if per_channel else flat.abs().max()
    scale = torch.clamp(peak / 127.0, min=1e-12)
    return (torch.round(flat / scale).clamp(-127, 127) * scale).reshape(weight.shape)


def _fake_quant_input(x: torch.Tensor, low: float, high: float) -> torch.Tensor:
    """Asymmetric 8-bit activations over the calibrated range (which holds 0, as ONNX
    Runtime's MinMax calibration makes it)."""
    low, high = min(low, 0.0), max(high, 0.0)
    scale = max((high - low) / 255.0, 1e-12)
    zero = round(-low / scale)
    return (torch.round(x / scale) + zero).clamp(0, 255).sub(zero).mul(scale)


def _input_ranges(
    model: nn.Module, layers: Mapping[str, nn.Module], batches: Sequence[Any]
) -> dict[str, tuple[float, float]]:
    """Each layer's input range over the batches (MinMax calibration)."""
    ranges: dict[str, tuple[float, float]] = {}

    def hook(name: str) -> Callable[..., None]:
        def record(_: nn.Module, args: tuple[Any, ...]) -> None:
            x = args[0].detach()
            low, high = ranges.get(name, (math.inf, -math.inf))
            ranges[name] = (min(low, float(x.min())), max(high, float(x.max())))

        return record

    handles = [layer.register_forward_pre_hook(hook(n)) for n, layer in layers.items()]
    try:
        model_outputs(model, batches)
    finally:
        for handle in handles:
            handle.remove()
    return ranges


def _input_quantizer(low: float, high: float) -> Callable[..., tuple[Any, ...]]:
    """A forward pre-hook that fake-quantizes a layer's input over [low, high]."""

    def hook(_: nn.Module, args: tuple[Any, ...]) -> tuple[Any, ...]:
        return (_fake_quant_input(args[0], low, high), *args[1:])

    return hook


def int8_sensitivity(
    model: nn.Module,
    layers: Mapping[str, nn.Module],
    batches: Sequence[Any],
    per_channel: bool = False,
) -> list[Row]:
    """Each layer's weight and input fake-quantized to INT8 alone (restored afterwards)."""
    rows = []
    with _eval(model):
        reference = model_outputs(model, batches)
        ranges = _input_ranges(model, layers, batches)
        for name, layer in layers.items():
            if name not in ranges:  # never called: INT8 cannot change anything through it
                continue
            low, high = ranges[name]
            weight = layer.weight
            dense = weight.detach().clone()
            weight.copy_(_fake_quant_weight(dense, per_channel))

            handle = layer.register_forward_pre_hook(_input_quantizer(low, high))
            try:
                rel, kl = output_error(model_outputs(model, batches), reference)
            finally:
                handle.remove()
                weight.copy_(dense)
            rows.append(Row("int8", name, weight.numel(), None, rel, kl))
    return rows


def ranking(rows: Sequence[Row], analysis: str) -> list[str]:
    """Layers of one analysis, the most sensitive first (mean relative MSE over its points)."""
    by_layer: dict[str, list[float]] = {}
    for r in rows:
        if r.analysis == analysis and r.rel_mse is not None:
            by_layer.setdefault(r.layer, []).append(r.rel_mse)
    return sorted(by_layer, key=lambda n: -sum(by_layer[n]) / len(by_layer[n]))


def _curve(points: Sequence[tuple[float, float]]) -> Callable[[float], float]:
    """Piecewise-linear cost through (0, 0) and the measured points, made non-decreasing
    (a noisy dip would attract zeros for nothing), extended past the last point by its slope."""
    xs, ys = [0.0], [0.0]
    for x, y in sorted(points):
        xs.append(x)
        ys.append(max(ys[-1], y))

    def cost(s: float) -> float:
        for i in range(1, len(xs)):
            if s <= xs[i] or i == len(xs) - 1:
                slope = (ys[i] - ys[i - 1]) / (xs[i] - xs[i - 1]) if xs[i] > xs[i - 1] else 0.0
                return ys[i - 1] + slope * (s - xs[i - 1])
        return 0.0

    return cost


def allocate_sparsity(
    rows: Sequence[Row], sizes: Mapping[str, int], target: float, max_shift: float = MAX_SHIFT
) -> dict[str, float]:
    """Per-layer sparsity whose zeros add up to `round(target * total)` exactly, each layer
    within target +/- `max_shift`, placed where the measured pruning cost per weight is
    lowest (greedy on marginal cost: optimal when each layer's cost is convex in sparsity).

    Each value is a whole number of weights over the layer's size, so a mask that prunes
    `round(sparsity * numel)` weights prunes exactly the count allocated."""
    points: dict[str, list[tuple[float, float]]] = {n: [] for n in sizes}
    for r in rows:
        if r.analysis == "prune" and r.layer in points and r.rel_mse is not None:
            points[r.layer].append((float(r.sparsity or 0.0), r.rel_mse))
    total = sum(sizes.values())
    zeros = round(target * total)
    # rounded: 0.7 - 0.2 is 0.4999999..., whose floor would take a weight below the bound
    low = round(max(0.0, target - max_shift), 9)
    high = round(min(MAX_LAYER_SPARSITY, max(target, target + max_shift)), 9)
    lo = {n: math.floor(low * size) for n, size in sizes.items()}
    hi = {n: min(size, math.ceil(high * size)) for n, size in sizes.items()}
    counts = dict(lo)
    left = zeros - sum(lo.values())
    costs = {n: _curve(points[n]) for n in sizes}
    order = {n: i for i, n in enumerate(sizes)}

    def push(heap: list[tuple[float, int, str, int]], name: str) -> None:
        size, now = sizes[name], counts[name]
        step = min(hi[name] - now, max(1, round(STEP * size)))
        if step <= 0:
            return
        rise = costs[name]((now + step) / size) - costs[name](now / size)
        heapq.heappush(heap, (rise / step, order[name], name, step))

    heap: list[tuple[float, int, str, int]] = []
    for name in sizes:
        push(heap, name)
    while left > 0 and heap:
        _, _, name, step = heapq.heappop(heap)
        taken = min(step, left)
        counts[name] += taken
        left -= taken
        push(heap, name)
    return {n: counts[n] / sizes[n] if sizes[n] else 0.0 for n in sizes}


@dataclass
class Fallback:
    """What `fp32_fallback` did: the layers kept FP32, each step's drop, whether it fits."""

    kept: list[str] = field(default_factory=list)
    steps: list[dict[str, Any]] = field(default_factory=list)
    fits: bool = False
    summary: Any = None  # what `quantize` returned for the model left on disk

    def record(self, max_drop: float) -> dict[str, Any]:
        return {
            "max_drop": max_drop,
            "fits": self.fits,
            "fp32_layers": list(self.kept),
            "steps": list(self.steps),
        }


def fp32_fallback(
    quantize: Callable[[list[str]], Any],
    evaluate: Callable[[], float],
    ranking: Sequence[str],
    max_drop: float,
    max_layers: int,
) -> Fallback:
    """Quantize with every layer INT8, then keep the next most sensitive layer of `ranking`
    FP32 and quantize again while the drop exceeds `max_drop`, at most `max_layers` of them.

    `quantize(kept)` writes the INT8 model with the layers `kept` FP32 and returns its
    summary; `evaluate()` is the metric drop (points) of the model last written. When no step
    fits, the model with the smallest drop is the one left on disk."""
    result = Fallback()
    kept: list[str] = []
    best: tuple[float, int] | None = None
    for step in range(min(max_layers, len(ranking)) + 1):
        if step:
            kept = [*kept, ranking[step - 1]]
        result.summary = quantize(kept)
        drop = float(evaluate())
        log.info(
            "FP32 fallback step %d: %d layers FP32 (%s), drop %.3f (max_drop %.3f)",
            step,
            len(kept),
            kept[-1] if kept else "-",
            drop,
            max_drop,
        )
        result.steps.append(
            {
                "step": step,
                "added": kept[-1] if kept else None,
                "fp32_layers": len(kept),
                "drop": drop,
            }
        )
        if best is None or drop < best[0]:
            best = (drop, step)
        if drop <= max_drop + 1e-9:
            result.kept, result.fits = kept, True
            return result
    assert best is not None
    result.kept = list(ranking[: best[1]])
    log.warning(
        "FP32 fallback: no step kept the drop within %.3f (best %.3f with %d FP32 layers)",
        max_drop,
        best[0],
        best[1],
    )
    if best[1] != len(kept):  # the smallest drop came earlier: write that model again
        result.summary = quantize(result.kept)
    return result


def sensitivity_profile(
    model: nn.Module,
    layers: Mapping[str, nn.Module],
    batches: Sequence[Any],
    target: float,
    mask_type: str = "unstructured",
) -> tuple[dict[str, float], list[Row]]:
    """(per-layer sparsity for the overall `target`, the measurements and the allocation)."""
    kind = parse_mask_type(mask_type)
    log.info(
        "Pruning sensitivity of %d layers at %s (%s, one layer at a time)",
        len(layers),
        ", ".join(f"{s:.0%}" for s in PRUNE_SPARSITIES),
        kind,
    )
    rows = prune_sensitivity(model, layers, batches, PRUNE_SPARSITIES, str(kind))
    sizes = {n: m.weight.numel() for n, m in layers.items()}
    if kind.kind == "block":  # counted in whole blocks: a layer's size is its block count
        shapes = {n: to_matrix(m.weight).shape for n, m in layers.items()}
        sizes = {n: out * -(-cols // kind.group) for n, (out, cols) in shapes.items()}
    allocated = allocate_sparsity(rows, sizes, target)
    for name in ranking(rows, "prune")[:5]:
        log.info(
            "  sensitive: %-40s -> %.1f %% (target %.1f %%)",
            name,
            100 * allocated[name],
            100 * target,
        )
    rows += [Row("allocation", n, layers[n].weight.numel(), s) for n, s in allocated.items()]
    return allocated, rows
