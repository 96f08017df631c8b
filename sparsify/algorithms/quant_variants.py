"""INT8 graph variants: the other INT8 models the quantizer can write beside the configured one.

Which INT8 graph is fastest depends on the CPU and the engine (YOLOv8 INT8 QDQ: 2.80x dense
ONNX Runtime on a Xeon with AMX, 0.68x on an EPYC without it), so the sparsify stage writes the
variants `quantization.variants` names and the benchmark stage times them all and keeps the
fastest that holds accuracy (`sparsify.benchmark.choice`).

A variant's name is a format (`qoperator`, `qdq`, `dynamic`), everything else as configured
(`quantization.*`), then what it changes: `_fp32_depthwise` (depthwise convs FP32),
`_int8_depthwise` (depthwise convs INT8), `_no_concat` (Concat left float).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from omegaconf import DictConfig

from sparsify.algorithms.quantization import (
    FORMATS,
    FloatNodes,
    quantize_onnx_dynamic,
    quantize_onnx_static,
)
from sparsify.errors import Problem, SparsifyError

log = logging.getLogger("sparsify")

# what a suffix changes: (fp32 depthwise: True / False / None = as configured, ops dropped)
MODIFIERS: dict[str, tuple[bool | None, tuple[str, ...]]] = {
    "fp32_depthwise": (True, ()),
    "int8_depthwise": (False, ()),
    "no_concat": (None, ("Concat",)),
}
# quantization.variants=null: the family's set. Measured on an EPYC without AMX: MobileNetV2
# INT8 0.79x dense ONNX Runtime in QOperator, 0.88x in QDQ, so a classifier tries both formats
# and both depthwise choices (the configured one is among them and written once).
FAMILY_VARIANTS: dict[str, tuple[str, ...]] = {
    "image_classifier": ("qoperator", "qdq_fp32_depthwise", "qdq_int8_depthwise"),
    "transformers": ("qdq", "qoperator", "dynamic"),
    "yolo": ("qdq", "qdq_no_concat"),
}
DEFAULT_VARIANTS: tuple[str, ...] = ("qoperator", "qdq")  # a family not listed above
# candidate names the benchmark stage uses for the models that are not INT8 variants
RESERVED = ("baseline", "fp32", "sparsified")


@dataclass(frozen=True)
class Variant:
    """One INT8 graph: its name, format, whether depthwise convs stay FP32, the ops quantized."""

    name: str
    format: str
    fp32_depthwise: bool
    ops: tuple[str, ...]

    @property
    def key(self) -> tuple[str, bool, tuple[str, ...]]:
        """Two variants with the same key write the same graph: it is written once."""
        return self.format, self.fp32_depthwise, self.ops

    def describe(self) -> dict[str, Any]:
        return {"format": self.format, "fp32_depthwise": self.fp32_depthwise, "ops": list(self.ops)}


def parse_variant(name: str) -> tuple[str, list[str]]:
    """(format, modifiers) of a variant name; an unknown one raises, listing what is known."""
    text = str(name).lower().strip()
    fmt = next((f for f in FORMATS if text == f or text.startswith(f"{f}_")), None)
    rest, modifiers = text[len(fmt or "") :], []
    while fmt and rest:
        mod = next((m for m in MODIFIERS if rest.startswith(f"_{m}")), None)
        if mod is None:
            break
        modifiers.append(mod)
        rest = rest[len(mod) + 1 :]
    if fmt is None or rest:
        raise SparsifyError(
            f"quantization.variants: unknown variant {name!r}; a variant is a format "
            f"({', '.join(FORMATS)}) with optional suffixes "
            f"({', '.join('_' + m for m in MODIFIERS)}), e.g. qdq_fp32_depthwise"
        )
    return fmt, modifiers


def configured_fp32_depthwise(q: DictConfig) -> bool:
    """Depthwise convs stay FP32 in INT8 when weights are per tensor (config, see schema)."""
    return bool(q.fp32_depthwise) and not bool(q.per_channel)


def resolve(name: str, q: DictConfig, family: Any) -> Variant:
    """The variant `name` for the quantization config `q` and model family `family` (its
    `int8_ops(ops, format)` adds the ops the family quantizes in that format)."""
    fmt, modifiers = parse_variant(name)
    depthwise = configured_fp32_depthwise(q)
    dropped: set[str] = set()
    for mod in modifiers:
        forced, drop = MODIFIERS[mod]
        depthwise = depthwise if forced is None else forced
        dropped |= set(drop)
    ops = tuple(o for o in family.int8_ops(list(q.ops), fmt) if o not in dropped)
    return Variant(str(name).lower().strip(), fmt, depthwise, ops)


def configured(q: DictConfig, family: Any) -> Variant:
    """The configured INT8 model (`quantization.format`, as configured), named by its format."""
    return resolve(str(q.format), q, family)


def requested(q: DictConfig, family_name: str) -> list[str]:
    """The variant names asked for: `quantization.variants`, or the family's set when null."""
    names = q.get("variants")
    if names is None:
        return list(FAMILY_VARIANTS.get(family_name, DEFAULT_VARIANTS))
    return [str(n) for n in names]


def variant_problems(cfg: DictConfig) -> list[Problem]:
    """quantization.variants, benchmark.max_drop and benchmark.min_speedup, checked up front."""
    problems = []
    names = cfg.quantization.get("variants")
    for name in names or []:
        try:
            parse_variant(str(name))
        except SparsifyError:
            problems.append(
                Problem(
                    "quantization.variants",
                    name,
                    "is not a variant",
                    f"use a format ({', '.join(FORMATS)}) with optional suffixes "
                    f"({', '.join('_' + m for m in MODIFIERS)}), e.g. [qdq, qdq_fp32_depthwise]; "
                    "[] for the configured format only",
                )
            )
    if float(cfg.benchmark.get("max_drop", 0.0)) < 0:
        problems.append(
            Problem(
                "benchmark.max_drop",
                cfg.benchmark.max_drop,
                "must be >= 0 (points of the use case's metric)",
                "e.g. benchmark.max_drop=1.0",
            )
        )
    if float(cfg.benchmark.get("min_speedup", 1.0)) <= 0:
        problems.append(
            Problem(
                "benchmark.min_speedup",
                cfg.benchmark.min_speedup,
                "must be > 0 (throughput over dense)",
                "e.g. benchmark.min_speedup=1.05",
            )
        )
    return problems


def unique(names: Sequence[str], q: DictConfig, family: Any) -> list[Variant]:
    """The requested variants in order, a name given twice kept once."""
    seen: dict[str, Variant] = {}
    for name in names:
        variant = resolve(name, q, family)
        seen.setdefault(variant.name, variant)
    return list(seen.values())


Quantize = Callable[[Variant, Path], dict[str, Any]]


def write_variants(
    variants: Sequence[Variant],
    configured: Variant,
    configured_path: Path,
    out_dir: Path,
    quantize: Quantize,
    rel: Callable[[Path], str] = str,
) -> dict[str, dict[str, Any]]:
    """Each variant's graph as `out_dir/<name>.onnx` (`quantize(variant, path)` writes it),
    the configured one first (already at `configured_path`, never written again), a variant
    that writes the same graph as an earlier one recorded `same_as` it. A variant that fails
    is recorded with why: the configured model stands, the run goes on."""
    written: dict[tuple[str, bool, tuple[str, ...]], str] = {configured.key: configured.name}
    records: dict[str, dict[str, Any]] = {
        configured.name: {"path": rel(configured_path), "configured": True, **configured.describe()}
    }
    for variant in variants:
        if variant.name in records:
            continue
        if variant.key in written:
            same = written[variant.key]
            records[variant.name] = {**records[same], "same_as": same, "configured": False}
            continue
        path = out_dir / f"{variant.name}.onnx"
        log.info("INT8 variant %s: %s", variant.name, variant.describe())
        try:
            summary = quantize(variant, path)
        except Exception as exc:  # noqa: BLE001 - an extra candidate, not a reason to lose the run
            log.warning(
                "INT8 variant %s could not be written (%s: %s)",
                variant.name,
                type(exc).__name__,
                exc,
            )
            records[variant.name] = {"failed": f"{type(exc).__name__}: {exc}", **variant.describe()}
            continue
        written[variant.key] = variant.name
        records[variant.name] = {
            "path": rel(path),
            "configured": False,
            **variant.describe(),
            "quantized_nodes": summary.get("quantized_nodes"),
        }
    return records


def _float_nodes(family: Any, fmt: str) -> FloatNodes:
    """The family's choice of ONNX nodes `fmt` leaves float, made by the quantizer on the
    graph it quantizes."""
    return lambda graph: family.int8_float_nodes(graph, fmt)


def quantize_variant(
    variant: Variant,
    fp32: Path,
    out: Path,
    calibration: Callable[[], list[dict[str, Any]]],
    q: DictConfig,
    family: Any,
    ignore: list[str],
) -> dict[str, Any]:
    """`fp32` quantized into `out` as `variant`, the rest of `quantization.*` (`q`) as
    configured; `calibration()` gives the (cached) samples, read only for a static format."""
    if variant.format == "dynamic":  # nothing to calibrate: activation scales come per batch
        return quantize_onnx_dynamic(
            fp32,
            out,
            per_channel=bool(q.per_channel),
            weight_type=str(q.weight_type),
            op_types=list(variant.ops),
            ignore=ignore,
            fp32_depthwise=variant.fp32_depthwise,
            keep_float=_float_nodes(family, "dynamic"),
        )
    return quantize_onnx_static(
        fp32,
        out,
        calibration(),
        fmt=variant.format,
        per_channel=bool(q.per_channel),
        activation_type=str(q.activation_type),
        weight_type=str(q.weight_type),
        op_types=list(variant.ops),
        ignore=ignore,
        fp32_depthwise=variant.fp32_depthwise,
        calibration_method=str(q.calibration),
        percentile=float(q.percentile),
        keep_float=_float_nodes(family, variant.format),
        ort_fusions=bool(q.ort_fusions),
        conv_weight_zero_point=str(q.conv_weight_zero_point),
    )
