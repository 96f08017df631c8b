"""ONNX Runtime kernels written into a QDQ graph where its session optimizer leaves them out.

ONNX Runtime runs `DequantizeLinear -> MatMul` (static activation scale, INT8 weight) as one
MatMulIntegerToFloat, but adds the bias afterwards as a separate float Add over the whole
output: its QDQ rules do not take the Add in, although the kernel has a bias input (its
dynamic-quantization fusion does use it). `fuse_matmul_bias` writes the fused node itself:
`com.microsoft.MatMulIntegerToFloat(A_q, W_q, a_scale, w_scale, a_zp, w_zp, bias)`, the same
arithmetic. Measured on the trained MiniLM-L6 QDQ package (batch 16, 2 threads): 155 ->
131 ms/batch (medians of 4 interleaved rounds of 3 s; dense FP32 321 ms in the same run).

`float_for_float_ops` then lets the ops that stay float read a quantized tensor's float
source instead of its DequantizeLinear: the residual Add beside an INT8 MatMul, and the Shape
ops of the attention's head split, which ONNX Runtime otherwise feeds a full dequantized copy
(MiniLM-L6: 24 DequantizeLinear over 16 x 128 x 384 floats per batch, none needed).

The result needs ONNX Runtime (DeepSparse runs it through its ONNX Runtime fallback, as it
does every QDQ graph); `quantization.ort_fusions=false` keeps a pure-ONNX QDQ graph.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import onnx
from onnx import helper, numpy_helper

from sparsify.errors import SparsifyError
from sparsify.onnx_graph import (
    constant_names,
    constant_values,
    consumers,
    drop_unused_initializers,
    inferred_tensor_types,
    producers_by_output,
)

MS_DOMAIN = "com.microsoft"
FUSED_OP = "MatMulIntegerToFloat"


def _vector_size(values: dict[str, np.ndarray], name: str) -> int | None:
    """Element count of a scale / zero point that is a scalar or a 1-D constant, else None."""
    if not name:
        return 1
    value = values.get(name)
    if value is None or value.ndim > 1:
        return None
    return int(value.size)


def _dq_parts(dq: onnx.NodeProto) -> tuple[str, str, str]:
    """(quantized input, scale, zero point or '') of a DequantizeLinear."""
    return dq.input[0], dq.input[1], dq.input[2] if len(dq.input) > 2 else ""


def _transposes_2d(node: onnx.NodeProto) -> bool:
    perm = next((list(a.ints) for a in node.attribute if a.name == "perm"), [1, 0])
    return node.op_type == "Transpose" and perm == [1, 0]


def _weight(
    name: str, producers: dict[str, onnx.NodeProto], values: dict[str, np.ndarray]
) -> tuple[onnx.NodeProto, bool] | None:
    """The DequantizeLinear of a constant 2-D INT8 weight behind a MatMul's B input, and
    whether a Transpose sits between (torch's QAT export: DQ(W [out, in]) -> Transpose)."""
    node = producers.get(name)
    transposed = node is not None and _transposes_2d(node)
    if transposed:
        node = producers.get(node.input[0])  # type: ignore[union-attr]
    if node is None or node.op_type != "DequantizeLinear":
        return None
    weight = values.get(node.input[0])
    if weight is None or weight.ndim != 2 or weight.dtype not in (np.int8, np.uint8):
        return None
    return node, transposed


def _fits(
    a_dq: onnx.NodeProto,
    w_dq: onnx.NodeProto,
    transposed: bool,
    bias: str,
    values: dict[str, np.ndarray],
) -> bool:
    """The kernel takes a per-tensor activation, a 2-D weight quantized per tensor or per
    output column, and a 1-D float bias over the output columns."""
    b = values.get(bias)
    columns = values[w_dq.input[0]].shape[0 if transposed else 1]
    if b is None or b.ndim != 1 or b.size != columns or b.dtype != np.float32:
        return False
    _, a_scale, a_zp = _dq_parts(a_dq)
    if _vector_size(values, a_scale) != 1 or _vector_size(values, a_zp) != 1:
        return False
    _, w_scale, w_zp = _dq_parts(w_dq)
    w_sizes = {_vector_size(values, w_scale), _vector_size(values, w_zp)}
    if not w_sizes <= {1, columns}:
        return False
    axis = next((a.i for a in w_dq.attribute if a.name == "axis"), 1) % 2
    return columns == 1 or max(w_sizes) == 1 or axis == (0 if transposed else 1)


_DEAD_OPS = frozenset({"QuantizeLinear", "DequantizeLinear", "Transpose"})


def _drop_dead(graph: onnx.GraphProto, weights: set[str]) -> None:
    """Remove the (de)quantizers / Transposes and the `weights` nothing reads now."""
    outputs = {o.name for o in graph.output}
    while True:
        used = {name for n in graph.node for name in n.input} | outputs
        dead = [n for n in graph.node if n.op_type in _DEAD_OPS and n.output[0] not in used]
        if not dead:
            break
        for n in dead:
            graph.node.remove(n)
    drop_unused_initializers(graph, among=weights)


def fuse_matmul_bias(model: onnx.ModelProto) -> int:
    """Rewrite `DQ(activation), DQ(INT8 weight) [-> Transpose] -> MatMul -> Add(bias)` into
    ONNX Runtime's MatMulIntegerToFloat with the bias inside, in place. Returns how many
    were fused.

    Only MatMuls whose output feeds nothing but that Add are fused, so no float output is
    lost; a transposed weight is stored transposed. Nodes left without consumers are removed.
    """
    graph = model.graph
    values = constant_values(graph)
    producers = producers_by_output(graph)
    readers = consumers(graph)
    graph_outputs = {o.name for o in graph.output}

    # id(Add) -> fused node, written where the Add was (all its inputs are defined by then)
    fused: dict[int, onnx.NodeProto] = {}
    dropped: set[int] = set()  # ids of the MatMuls taken in
    weights: set[str] = set()  # the weights read before, maybe unused now
    for node in graph.node:
        if node.op_type != "MatMul" or node.domain not in ("", "ai.onnx"):
            continue
        a_dq, found = producers.get(node.input[0]), _weight(node.input[1], producers, values)
        if a_dq is None or a_dq.op_type != "DequantizeLinear" or found is None:
            continue
        w_dq, transposed = found
        users = readers[node.output[0]]
        if node.output[0] in graph_outputs or len(users) != 1 or users[0].op_type != "Add":
            continue
        add = users[0]
        bias = next((name for name in add.input if name != node.output[0]), "")
        if not _fits(a_dq, w_dq, transposed, bias, values):
            continue
        a_q, a_scale, a_zp = _dq_parts(a_dq)
        w_q, w_scale, w_zp = _dq_parts(w_dq)
        weights.add(w_q)
        if transposed:
            stored = f"{w_q}_transposed"
            if stored not in values:
                values[stored] = np.ascontiguousarray(values[w_q].T)
                graph.initializer.append(numpy_helper.from_array(values[stored], stored))
            w_q = stored
        fused[id(add)] = helper.make_node(
            FUSED_OP,
            [a_q, w_q, a_scale, w_scale, a_zp, w_zp, bias],
            [add.output[0]],
            name=f"{node.name or node.output[0]}_with_bias",
            domain=MS_DOMAIN,
        )
        dropped.add(id(node))
    if not fused:
        return 0

    nodes = [fused.get(id(n), n) for n in graph.node if id(n) not in dropped]
    del graph.node[:]
    graph.node.extend(nodes)
    _drop_dead(graph, weights)
    if not any(op.domain == MS_DOMAIN for op in model.opset_import):
        model.opset_import.append(helper.make_opsetid(MS_DOMAIN, 1))
    return len(fused)


# elementwise ops ONNX Runtime runs in INT8 (QLinearAdd, ...) only when every input is
# dequantized; with a float input beside the dequantized one they run in float
_ELEMENTWISE = frozenset({"Add", "Sub", "Mul", "Div"})


def float_for_float_ops(model: onnx.ModelProto) -> int:
    """Point the float consumers of `DequantizeLinear(QuantizeLinear(x))` at `x` itself, in
    place: Shape ops, and elementwise ops whose other inputs are not dequantized (so no INT8
    kernel takes them). They then read the exact float instead of its INT8 round trip, and
    DequantizeLinear nodes left without consumers are removed. Returns the inputs rewired."""
    graph = model.graph
    producers = producers_by_output(graph)
    constants = constant_names(graph)
    rewired = 0
    for node in graph.node:
        is_shape = node.op_type == "Shape"
        if not is_shape and node.op_type not in _ELEMENTWISE:
            continue
        sources = [producers.get(name) for name in node.input]
        dequantized = [
            getattr(p, "op_type", None) == "DequantizeLinear" and name not in constants
            for p, name in zip(sources, node.input, strict=True)
        ]
        variable = [name not in constants for name in node.input]
        if not is_shape and all(d for d, v in zip(dequantized, variable, strict=True) if v):
            continue  # every activation input dequantized: ONNX Runtime may run it in INT8
        for k, (dq, is_dq) in enumerate(zip(sources, dequantized, strict=True)):
            q = producers.get(dq.input[0]) if is_dq and dq is not None else None
            if q is None or q.op_type != "QuantizeLinear" or q.input[0] in constants:
                continue
            node.input[k] = q.input[0]
            rewired += 1
    if rewired:
        _drop_dead(graph, set())
    return rewired


def apply_to_file(path: Path) -> dict[str, int]:
    """`fuse_matmul_bias`, then `float_for_float_ops`, on an ONNX file, rewritten in place
    when anything changed; how many MatMuls were fused and inputs rewired."""
    model = onnx.load(str(path))
    counts = {
        "ort_fused_matmuls": fuse_matmul_bias(model),
        "ort_float_inputs": float_for_float_ops(model),
    }
    if any(counts.values()):
        onnx.save(model, str(path))
    return counts


CONV_WEIGHT_ZERO_POINTS = ("auto", "zero", "offset")


def cpu_has_amx() -> bool:
    """Whether this CPU has Intel AMX INT8 tiles (the one reader: sparsify.engines.host)."""
    from sparsify.engines.host import cpu_has_amx as has_amx

    return has_amx()


# ONNX Runtime's INT8 GEMM beats its symmetric-conv kernels on an AMX CPU only for convs deep
# enough (input channels x kernel area) and with enough output pixels per image; measured on
# YOLOv8s (160 px) and ResNet-50 (64 px), batch 16, 2 threads. ResNet-50's 3x3 512-channel
# convs at 2 x 2 pixels ran 0.6 -> 1.3 ms on the GEMM, its 1x1 convs from 64 channels 0.16 ->
# 0.37 ms, the 3-channel stems slower too; the deeper convs with >= 4 x 4 pixels all gained.
# Whole models: ResNet-50 15.6 -> 14.9 ms with this rule (19.1 with every conv moved), YOLOv8s
# 39.4 -> 35.3 ms (36.6 with every conv moved).
GEMM_MIN_DEPTH = 256
GEMM_MIN_PIXELS = 16


def _output_pixels(model: onnx.ModelProto) -> dict[str, int]:
    """Spatial size (product of the dims after N, C) of every tensor whose shape inference
    knows it."""
    out: dict[str, int] = {}
    for name, tensor in inferred_tensor_types(model).items():
        dims = tensor.shape.dim[2:]
        if dims and all(d.HasField("dim_value") for d in dims):
            out[name] = int(np.prod([d.dim_value for d in dims]))
    return out


def offset_conv_weights(
    model: onnx.ModelProto,
    min_depth: int = GEMM_MIN_DEPTH,
    min_pixels: int = GEMM_MIN_PIXELS,
) -> int:
    """Store symmetric INT8 conv weights with zero point -1 (every value minus 1; +1 and plus
    1 where a value is -128): the same dequantized numbers, so the same model.

    Why: ONNX Runtime runs a QLinearConv whose weight zero point is 0 with its direct
    "symmetric conv" kernels (AVX-512 VNNI), and any other with im2col + its INT8 GEMM, which
    uses AMX tiles where the CPU has them. On an Intel Xeon with AMX, batch 16, 2 threads, a
    3x3 128 -> 128 conv at 40x40 ran 8.1 -> 5.2 ms with identical output. Only convs at least
    `min_depth` deep (input channels x kernel area) whose outputs have at least `min_pixels`
    pixels per image (known from shape inference) are moved: the GEMM loses on shallow or
    tiny ones (`GEMM_MIN_DEPTH`). Returns how many weights were rewritten; weights that use the
    whole -128..127 range, or feed anything but Conv, are left alone."""
    graph = model.graph
    values = constant_values(graph)
    inits = {init.name: init for init in graph.initializer}
    readers = consumers(graph)
    pixels = _output_pixels(model) if min_pixels > 0 else {}
    touched: set[str] = set()
    rewritten = 0
    for node in graph.node:
        if node.op_type != "DequantizeLinear" or len(node.input) < 3:
            continue
        weight, zero = values.get(node.input[0]), values.get(node.input[2])
        convs = readers[node.output[0]]
        if (
            weight is None
            or zero is None
            or weight.dtype != np.int8
            or weight.ndim < 3
            or np.any(zero != 0)
            or node.input[0] not in inits
            or not all(r.op_type == "Conv" and r.input[1] == node.output[0] for r in convs)
            or int(np.prod(weight.shape[1:])) < min_depth
            or any(pixels.get(r.output[0], 0) < min_pixels for r in convs)
        ):
            continue
        if weight.min() > -128:
            shift = -1
        elif weight.max() < 127:
            shift = 1
        else:
            continue
        shifted = (weight.astype(np.int16) + shift).astype(np.int8)
        names = []
        for name, array in ((node.input[0], shifted), (node.input[2], np.full_like(zero, shift))):
            new = f"{name}_zp{shift:+d}_{node.name or rewritten}"
            graph.initializer.append(numpy_helper.from_array(array, new))
            names.append(new)
            touched.add(name)
        node.input[0], node.input[2] = names
        rewritten += 1
    drop_unused_initializers(graph, touched)
    return rewritten


def apply_conv_weight_zero_point(path: Path, mode: str) -> dict[str, Any]:
    """`offset_conv_weights` on the QDQ file at `path` when `mode` is offset, or auto on a CPU
    with AMX (`cpu_has_amx`); zero leaves the file as it is."""
    if mode not in CONV_WEIGHT_ZERO_POINTS:
        raise SparsifyError(
            f"quantization.conv_weight_zero_point = {mode!r} is not a valid choice; use one of: "
            f"{', '.join(CONV_WEIGHT_ZERO_POINTS)}"
        )
    chosen = "offset" if mode == "offset" or (mode == "auto" and cpu_has_amx()) else "zero"
    count = 0
    if chosen == "offset":
        model = onnx.load(str(path))
        count = offset_conv_weights(model)
        if count:
            onnx.save(model, str(path))
    return {"conv_weight_zero_point": chosen, "offset_conv_weights": count}
