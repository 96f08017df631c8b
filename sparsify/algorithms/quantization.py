"""Calibrated post-training INT8 quantization of ONNX models with ONNX Runtime."""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import tempfile
from collections import Counter
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import onnx

from sparsify.algorithms.concat_ranges import shared_concat_ranges
from sparsify.algorithms.ort_fusions import FUSED_OP, apply_conv_weight_zero_point, apply_to_file
from sparsify.errors import SparsifyError
from sparsify.fileio import temp_file
from sparsify.matching import match_onnx_nodes
from sparsify.onnx_graph import constant_names, producers_by_output

log = logging.getLogger("sparsify")

STATIC_FORMATS = ("qdq", "qoperator")  # calibrated; "dynamic" computes scales at run time
FORMATS = (*STATIC_FORMATS, "dynamic")
# ops ONNX Runtime's dynamic quantizer turns into integer kernels (MatMulInteger, ConvInteger)
DYNAMIC_OPS = ("MatMul", "Conv")
QUANT_TYPES = ("int8", "uint8")
CALIBRATION_METHODS = ("minmax", "percentile", "entropy")
WEIGHT_ROUNDINGS = ("gptq", "nearest")
QDQ_OPS = frozenset({"QuantizeLinear", "DequantizeLinear"})
# Ops emitted by the QOperator and dynamic formats in place of a float op, and by the qdq
# format's ONNX Runtime fusion (the dynamic format's DynamicQuantizeLinear only converts an
# activation: not counted).
INTEGER_OPS = frozenset({"ConvInteger", "MatMulInteger", FUSED_OP})


def _calibration_reader(calibration: list[dict[str, np.ndarray]]) -> Any:
    """A CalibrationDataReader replaying the given feed dicts once, in order."""
    from onnxruntime.quantization import CalibrationDataReader

    class _ListReader(CalibrationDataReader):
        def __init__(self, feeds: list[dict[str, np.ndarray]]) -> None:
            self._feeds = feeds
            self._it: Iterator[dict[str, np.ndarray]] = iter(feeds)

        def get_next(self) -> dict[str, np.ndarray] | None:
            return next(self._it, None)

        def rewind(self) -> None:
            self._it = iter(self._feeds)

        def __len__(self) -> int:
            return len(self._feeds)

    return _ListReader(calibration)


def _choice(value: str, choices: tuple[str, ...], key: str) -> str:
    normalized = value.lower().strip()
    if normalized not in choices:
        raise SparsifyError(
            f"{key} = {value!r} is not a valid choice; use one of: {', '.join(choices)}"
        )
    return normalized


def _check_calibration(calibration: list[dict[str, np.ndarray]], model: onnx.ModelProto) -> None:
    if not calibration:
        raise SparsifyError(
            "static INT8 quantization needs calibration samples, got none; "
            "give the quantizer at least one batch from the training or validation split"
        )
    initializers = {init.name for init in model.graph.initializer}
    expected = {i.name for i in model.graph.input if i.name not in initializers}
    missing = expected - set(calibration[0])
    if missing:
        raise SparsifyError(
            f"calibration samples lack model input(s) {sorted(missing)}; "
            f"each sample must be a dict with keys {sorted(expected)}"
        )


def _preprocess(fp32_path: Path, out_path: Path) -> Path:
    """Shape inference + graph optimization; on failure the fp32 model is used as-is."""
    from onnxruntime.quantization.shape_inference import quant_pre_process

    try:
        quant_pre_process(str(fp32_path), str(out_path), skip_symbolic_shape=False)
        return out_path
    except Exception as exc:  # the preprocessor chokes on some exotic graphs; it is only an aid
        log.warning(
            "quant_pre_process failed on %s (%s: %s); quantizing the model without it: "
            "the INT8 model is still correct, possibly slower (no graph pre-optimization)",
            fp32_path,
            type(exc).__name__,
            exc,
        )
        return fp32_path


def summarize_quantized_graph(model: onnx.ModelProto, fmt: str = "qdq") -> dict[str, Any]:
    """Counts the nodes that compute in INT8.

    QOperator: the QLinear*/QGemm/*Integer ops. QDQ: the float ops all of whose non-constant
    inputs come from a DequantizeLinear, which ORT fuses into an INT8 kernel. In a QOperator
    graph the float ops after a DequantizeLinear run in float, so that rule applies to QDQ only.
    """
    constants = constant_names(model.graph)
    producers = producers_by_output(model.graph)
    quantized: Counter[str] = Counter()
    qdq = 0
    for node in model.graph.node:
        if node.op_type in QDQ_OPS:
            qdq += 1
        elif node.op_type.startswith("QLinear") or node.op_type in INTEGER_OPS | {"QGemm"}:
            quantized[node.op_type] += 1
        elif fmt == "qdq":
            inputs = [name for name in node.input if name and name not in constants]
            from_dq = [
                getattr(producers.get(n), "op_type", None) == "DequantizeLinear" for n in inputs
            ]
            if from_dq and all(from_dq):
                quantized[node.op_type] += 1
    return {
        "quantized_nodes": sum(quantized.values()),
        "quantized_op_types": dict(sorted(quantized.items())),
        "qdq_nodes": qdq,
    }


def excluded_nodes(
    model: onnx.ModelProto, ignore: list[str] | None, classes: Mapping[str, str] | None = None
) -> list[str]:
    """ONNX node names that an `ignore` list covers, under the one rule of `sparsify.matching`
    (the torch paths use it too): a module path covers every node torch's exporter scoped
    under it (`classifier` -> `/classifier/classifier.1/Gemm`), `re:` patterns fully match
    module paths, exact node names match; class names with `classes`
    (`matching.module_classes(model)`)."""
    return match_onnx_nodes(model, ignore, classes=classes).ignored_names


def grouped_convs(model: onnx.ModelProto) -> list[str]:
    """Names of Conv nodes with group > 1 (depthwise and grouped convolutions)."""
    return [
        n.name
        for n in model.graph.node
        if n.op_type == "Conv" and any(a.name == "group" and a.i > 1 for a in n.attribute)
    ]


@contextlib.contextmanager
def _staging(out_path: Path) -> Iterator[Path]:
    """A temp file beside `out_path` to quantize into, removed afterwards unless moved onto
    `out_path`; ORT's shape inference and calibrator drop debug/temp files into the working
    directory, so the block runs in a scratch folder beside the output (never the user's
    current directory), removed too."""
    out_path.parent.mkdir(parents=True, exist_ok=True)
    # the umask's mode, not mkstemp's 0600: this file is renamed onto model.onnx
    fd, tmp = temp_file(out_path.parent, prefix=f".{out_path.stem}.", suffix=".tmp.onnx")
    os.close(fd)
    scratch = Path(tempfile.mkdtemp(prefix=".quant-", dir=out_path.parent))
    try:
        with contextlib.chdir(scratch):
            yield tmp
    finally:
        tmp.unlink(missing_ok=True)
        shutil.rmtree(scratch, ignore_errors=True)


FloatNodes = Callable[[onnx.ModelProto], list[str]]


def _kept_fp32(
    graph: onnx.ModelProto,
    ignore: list[str] | None,
    depthwise: bool,
    keep_float: FloatNodes | None = None,
    classes: Mapping[str, str] | None = None,
) -> list[str]:
    """Node names quantization leaves FP32: `ignore`d ones, those `keep_float(graph)` names
    (a model family's, e.g. YOLO's box decode), and grouped convs if `depthwise`."""
    excluded = excluded_nodes(graph, ignore, classes)
    if ignore:
        log.info("Kept FP32 (ignore %s): %d nodes", ignore, len(excluded))
    if keep_float is not None:
        chosen = keep_float(graph)
        excluded += [n for n in chosen if n not in excluded]
        if chosen:
            log.info("Kept FP32 by the model family: %d nodes", len(chosen))
    if depthwise:
        grouped = grouped_convs(graph)
        excluded += [n for n in grouped if n not in excluded]
        log.info("Depthwise convolutions kept FP32: %d", len(grouped))
    return excluded


def apply_ort_fusions(path: Path) -> dict[str, int]:
    """ONNX Runtime's fused MatMul+bias INT8 kernel, and float inputs for the ops that stay
    float, written into the QDQ file at `path` (`ort_fusions.apply_to_file`)."""
    counts = apply_to_file(path)
    log.info(
        "ONNX Runtime fusions: %d MatMul+bias pairs -> MatMulIntegerToFloat, %d float-op "
        "inputs read before their QuantizeLinear",
        counts["ort_fused_matmuls"],
        counts["ort_float_inputs"],
    )
    return counts


def _publish(tmp: Path, out_path: Path, fp32_path: Path, fmt: str) -> dict[str, Any]:
    """Move the quantized `tmp` onto `out_path`; its INT8 summary, logged."""
    summary = summarize_quantized_graph(onnx.load(str(tmp), load_external_data=False), fmt)
    os.replace(tmp, out_path)
    if summary["quantized_nodes"] == 0:
        log.warning("Quantization of %s produced no INT8 nodes; check op_types", fp32_path)
    log.info(
        "Wrote %s: %d quantized nodes %s",
        out_path,
        summary["quantized_nodes"],
        summary["quantized_op_types"],
    )
    return summary


def quantize_onnx_dynamic(
    fp32_path: Path,
    out_path: Path,
    *,
    per_channel: bool = False,
    weight_type: str = "int8",
    op_types: list[str] | None = None,
    ignore: list[str] | None = None,
    fp32_depthwise: bool = False,
    keep_float: FloatNodes | None = None,
    module_classes: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """Quantize `fp32_path` with ONNX Runtime's dynamic quantizer and write it to `out_path`.

    Weights are stored INT8 (symmetric, per tensor unless `per_channel`, the grid static
    quantization uses); each activation is quantized to uint8 at run time with a scale taken
    from that batch, so nothing is calibrated. ONNX Runtime fuses the result into
    DynamicQuantizeMatMul / MatMulIntegerToFloat kernels. Only `DYNAMIC_OPS` are quantized
    (the others in `op_types`, e.g. Gemm, stay FP32); `ignore`, `fp32_depthwise`,
    `keep_float` and `module_classes` as in `quantize_onnx_static`.
    """
    from onnxruntime.quantization import QuantType, quantize_dynamic

    fp32_path, out_path = Path(fp32_path).resolve(), Path(out_path).resolve()
    wgt = _choice(weight_type, QUANT_TYPES, "weight_type")
    if not fp32_path.is_file():
        raise SparsifyError(f"cannot quantize {fp32_path}: no such file; export the model first")
    ops = [o for o in (op_types or DYNAMIC_OPS) if o in DYNAMIC_OPS]
    if not ops:
        raise SparsifyError(
            f"dynamic quantization covers {', '.join(DYNAMIC_OPS)} only, not {op_types}; add one "
            "to quantization.ops or use quantization.format=qoperator / qdq"
        )
    log.info(
        "Quantizing %s -> %s (INT8 dynamic, per_channel=%s, weights %s, op types %s)",
        fp32_path,
        out_path,
        per_channel,
        wgt,
        ops,
    )
    with _staging(out_path) as tmp:
        graph = onnx.load(str(fp32_path), load_external_data=False)
        depthwise = fp32_depthwise and "Conv" in ops
        excluded = _kept_fp32(graph, ignore, depthwise, keep_float, module_classes)
        quantize_dynamic(
            str(fp32_path),
            str(tmp),
            op_types_to_quantize=ops,
            nodes_to_exclude=excluded,
            per_channel=per_channel,
            weight_type={"int8": QuantType.QInt8, "uint8": QuantType.QUInt8}[wgt],
            # a graph ORT's shape inference cannot type (custom domains) is still float
            extra_options={"DefaultTensorType": onnx.TensorProto.FLOAT},
        )
        summary = _publish(tmp, out_path, fp32_path, "qoperator")
    return {
        "method": "dynamic",
        "format": "dynamic",
        "per_channel": per_channel,
        "activation_type": "uint8",
        "weight_type": wgt,
        "op_types": ops,
        "ignored_nodes": excluded,
        "fp32_depthwise": fp32_depthwise,
        **summary,
    }


def quantize_onnx_static(
    fp32_path: Path,
    out_path: Path,
    calibration: list[dict[str, np.ndarray]],
    *,
    fmt: str = "qdq",
    per_channel: bool = True,
    activation_type: str = "uint8",
    weight_type: str = "int8",
    op_types: list[str] | None = None,
    ignore: list[str] | None = None,
    fp32_depthwise: bool = False,
    calibration_method: str = "minmax",
    percentile: float = 99.99,
    keep_float: FloatNodes | None = None,
    ort_fusions: bool = False,
    share_concat_ranges: bool = True,
    conv_weight_zero_point: str = "zero",
    module_classes: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """Quantize `fp32_path` to INT8 with MinMax calibration and write it to `out_path`.

    `ignore` keeps layers FP32 under the rule every path shares (`sparsify.matching`): torch
    module paths (`classifier`: every node the exporter scoped under it), `re:` patterns fully
    matching module paths, ONNX node names, and class names when `module_classes`
    (`matching.module_classes(model)`) is given. `fp32_depthwise`
    also keeps depthwise (grouped) convolutions FP32, and `keep_float(model)` the node names it
    returns for the model actually quantized (after pre-processing). `calibration_method`:
    minmax, or percentile (activation ranges clipped at `percentile` of the observed values),
    or entropy. `ort_fusions` (qdq only) writes ONNX Runtime's MatMul+bias INT8 kernel into
    the graph (`ort_fusions.fuse_matmul_bias`); the file then needs ONNX Runtime.
    `share_concat_ranges` (minmax calibration, Concat quantized) gives each Concat's inputs
    its output's range, so ONNX Runtime copies their bytes (`concat_ranges`).
    `conv_weight_zero_point` (qdq only): offset stores conv weights with zero point -1, the
    same numbers, so ONNX Runtime runs them on its INT8 GEMM (AMX where the CPU has it;
    `ort_fusions.offset_conv_weights`); auto does so on a CPU with AMX; zero leaves them.

    Returns a description of what was applied, suitable for the run's metrics/manifest.
    """
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static

    # absolute: ORT's helpers run in a scratch working directory below
    fp32_path, out_path = Path(fp32_path).resolve(), Path(out_path).resolve()
    fmt = _choice(fmt, STATIC_FORMATS, "static quantization format")
    act = _choice(activation_type, QUANT_TYPES, "activation_type")
    wgt = _choice(weight_type, QUANT_TYPES, "weight_type")
    if not fp32_path.is_file():
        raise SparsifyError(f"cannot quantize {fp32_path}: no such file; export the model first")
    _check_calibration(calibration, onnx.load(str(fp32_path), load_external_data=False))

    quant_format = {"qdq": QuantFormat.QDQ, "qoperator": QuantFormat.QOperator}[fmt]
    calibration_method = _choice(calibration_method, CALIBRATION_METHODS, "calibration method")
    shapes = {tuple((k, v.shape) for k, v in sorted(f.items())) for f in calibration}
    if calibration_method != "minmax" and len(shapes) > 1:
        # ORT's histogram calibrators stack every sample's tensors: one shape only
        log.info(
            "Calibration samples differ in shape (e.g. text lengths): %s calibration needs one "
            "shape, using minmax",
            calibration_method,
        )
        calibration_method = "minmax"
    method = {
        "minmax": CalibrationMethod.MinMax,
        "percentile": CalibrationMethod.Percentile,
        "entropy": CalibrationMethod.Entropy,
    }[calibration_method]
    extra: dict[str, Any] = (
        {"CalibPercentile": float(percentile)} if calibration_method == "percentile" else {}
    )
    if fmt == "qdq":
        # MatMul outputs stay float: ONNX Runtime then runs DQ -> MatMul as one
        # MatMulIntegerToFloat (static scales) instead of QLinearMatMul + DequantizeLinear.
        # MiniLM-L6 INT8, batch 16, 2 cores: 181 -> 157 ms/batch, and closer to FP32.
        extra["OpTypesToExcludeOutputQuantization"] = ["MatMul"]
    qtype = {"int8": QuantType.QInt8, "uint8": QuantType.QUInt8}
    log.info(
        "Quantizing %s -> %s (INT8 %s, per_channel=%s, activations %s, weights %s, "
        "op types %s, %s calibration on %d samples)",
        fp32_path,
        out_path,
        fmt,
        per_channel,
        act,
        wgt,
        op_types or "all supported",
        calibration_method,
        len(calibration),
    )
    with _staging(out_path) as tmp:
        pre = tmp.with_name(tmp.name.replace(".tmp.onnx", ".pre.onnx"))
        try:
            source = _preprocess(fp32_path, pre)
            graph = onnx.load(str(source), load_external_data=False)
            excluded = _kept_fp32(graph, ignore, fp32_depthwise, keep_float, module_classes)
            overrides = (
                shared_concat_ranges(source, calibration, Path.cwd(), excluded, op_types)
                if share_concat_ranges and calibration_method == "minmax"
                else {}
            )
            if overrides:
                extra["TensorQuantOverrides"] = overrides
            quantize_static(
                str(source),
                str(tmp),
                _calibration_reader(calibration),
                quant_format=quant_format,
                op_types_to_quantize=op_types,
                nodes_to_exclude=excluded,
                per_channel=per_channel,
                activation_type=qtype[act],
                weight_type=qtype[wgt],
                calibrate_method=method,
                extra_options=extra,
            )
            fused = apply_ort_fusions(tmp) if ort_fusions and fmt == "qdq" else {}
            offset = apply_conv_weight_zero_point(
                tmp, conv_weight_zero_point if fmt == "qdq" else "zero"
            )
            summary = _publish(tmp, out_path, fp32_path, fmt)
        finally:
            pre.unlink(missing_ok=True)
    return {
        "method": "static",
        "format": fmt,
        "per_channel": per_channel,
        "activation_type": act,
        "weight_type": wgt,
        "op_types": list(op_types) if op_types else None,
        "calibration_method": calibration_method,
        "ignored_nodes": excluded,
        "fp32_depthwise": fp32_depthwise,
        "calibration_samples": len(calibration),
        "shared_concat_ranges": len(overrides),
        "preprocessed": source == pre,
        "ort_fused_matmuls": fused.get("ort_fused_matmuls", 0),
        "ort_float_inputs": fused.get("ort_float_inputs", 0),
        **offset,
        **summary,
    }
