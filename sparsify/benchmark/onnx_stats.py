"""Static measurements of an exported ONNX model: weight sparsity, INT8 ops and file size."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import onnx

from sparsify.onnx_graph import constant_values, producers_by_output

# op type -> (weight input index, its zero-point input index or None) for each input that may
# hold a weight; activations are skipped because they are not initializers.
WEIGHT_INPUTS: dict[str, tuple[tuple[int, int | None], ...]] = {
    "Conv": ((1, None),),
    "ConvTranspose": ((1, None),),
    "MatMul": ((0, None), (1, None)),
    "Gemm": ((0, None), (1, None)),
    "ConvInteger": ((1, 3),),
    "MatMulInteger": ((0, 2), (1, 3)),
    "QLinearConv": ((3, 5),),
    "QLinearMatMul": ((0, 2), (3, 5)),
    "QGemm": ((0, 2), (3, 5)),
    "MatMulIntegerToFloat": ((0, 4), (1, 5)),
}
# ops that compute in integers themselves (QOperator format); in the QDQ format an INT8 op is a
# Conv / MatMul / Gemm whose weight comes from a DequantizeLinear
INTEGER_OPS = set(WEIGHT_INPUTS) - {"Conv", "ConvTranspose", "MatMul", "Gemm"}


def file_size_mb(path: Path) -> float:
    """Size on disk in MiB, including an external-data file saved beside the model."""
    path = Path(path)
    size = path.stat().st_size
    data = path.with_name(path.name + ".data")
    if data.is_file():
        size += data.stat().st_size
    return size / 2**20


def _zero_point_like(zp: np.ndarray | None, weight: np.ndarray, axis: int) -> np.ndarray | int:
    """Broadcast a per-tensor or per-channel zero point against `weight`."""
    if zp is None or zp.size == 1:
        return 0 if zp is None else zp.reshape(()).item()
    axis = axis % weight.ndim
    if weight.shape[axis] != zp.size:
        # the declared axis does not fit (e.g. QLinear ops carry no axis); find one that does
        axis = next((i for i, n in enumerate(weight.shape) if n == zp.size), None)
        if axis is None:
            return 0
    shape = [1] * weight.ndim
    shape[axis] = zp.size
    return zp.reshape(shape)


def _weight_axis(node: onnx.NodeProto) -> int:
    """The axis a per-channel zero point of `node`'s weight runs along (output channels)."""
    if node.op_type in ("QLinearConv", "ConvInteger"):
        return 0
    if node.op_type == "QGemm":
        trans_b = next((a.i for a in node.attribute if a.name == "transB"), 0)
        return 0 if trans_b else -1
    return -1


def _resolve_weight(
    name: str,
    zp_name: str | None,
    node: onnx.NodeProto,
    consts: dict[str, np.ndarray],
    producers: dict[str, onnx.NodeProto],
) -> tuple[str, np.ndarray, np.ndarray | None, int] | None:
    """The initializer behind a weight input (directly or via DequantizeLinear), zero point, axis."""
    if name in consts:
        zp = consts.get(zp_name) if zp_name else None
        return name, consts[name], zp, _weight_axis(node)
    dq = producers.get(name)
    if dq is not None and dq.op_type == "DequantizeLinear" and dq.input[0] in consts:
        zp = consts.get(dq.input[2]) if len(dq.input) > 2 and dq.input[2] else None
        axis = next((a.i for a in dq.attribute if a.name == "axis"), 1)
        return dq.input[0], consts[dq.input[0]], zp, axis
    return None


def onnx_weight_sparsity(path: Path) -> dict[str, Any]:
    """Fraction of zero weights over the Conv / MatMul / Gemm (and quantized variants) weights.

    A quantized weight counts as zero where it equals its zero point, i.e. dequantizes to 0.
    """
    graph = onnx.load(str(path)).graph
    consts = constant_values(graph)
    producers = producers_by_output(graph)
    per_tensor: dict[str, float] = {}
    zeros = params = 0
    for node in graph.node:
        for idx, zp_idx in WEIGHT_INPUTS.get(node.op_type, ()):
            if idx >= len(node.input) or not node.input[idx]:
                continue
            zp_name = (
                node.input[zp_idx] if zp_idx is not None and zp_idx < len(node.input) else None
            )
            found = _resolve_weight(node.input[idx], zp_name, node, consts, producers)
            if found is None:
                continue
            name, weight, zp, axis = found
            # 1-D tensors are biases/scales, not prunable weights; count shared weights once
            if weight.ndim < 2 or name in per_tensor:
                continue
            n_zero = int(np.count_nonzero(weight == _zero_point_like(zp, weight, axis)))
            per_tensor[name] = n_zero / weight.size
            zeros += n_zero
            params += weight.size
    return {
        "sparsity": zeros / params if params else 0.0,
        "zeros": zeros,
        "params": params,
        "per_tensor": per_tensor,
    }


def int8_op_count(path: Path) -> int:
    """How many Conv / MatMul / Gemm ops of the graph are INT8: QOperator ops, or (QDQ) ops whose
    weight comes from a DequantizeLinear of a constant. Read from names only (no weights)."""
    graph = onnx.load(str(path), load_external_data=False).graph
    constants = {i.name for i in graph.initializer}
    constants |= {n.output[0] for n in graph.node if n.op_type == "Constant"}
    producers = producers_by_output(graph)

    def dequantized_weight(name: str) -> bool:
        dq = producers.get(name)
        return dq is not None and dq.op_type == "DequantizeLinear" and dq.input[0] in constants

    return sum(
        node.op_type in INTEGER_OPS
        or any(
            idx < len(node.input) and dequantized_weight(node.input[idx])
            for idx, _ in WEIGHT_INPUTS.get(node.op_type, ())
        )
        for node in graph.node
    )
