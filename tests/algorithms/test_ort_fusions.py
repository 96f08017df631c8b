"""ONNX Runtime's MatMul+bias INT8 kernel written into QDQ graphs: same outputs, fewer ops."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

from sparsify.algorithms.ort_fusions import (
    FUSED_OP,
    apply_to_file,
    float_for_float_ops,
    fuse_matmul_bias,
)
from sparsify.benchmark.onnx_stats import onnx_weight_sparsity

K, N = 16, 8


def _qdq_linear(
    *,
    n: int = N,
    per_column: bool = False,
    bias_shape: tuple[int, ...] | None = None,
    also_output: bool = False,
    weight_zeros: int = 0,
    transposed: bool = False,
) -> onnx.ModelProto:
    """x (float, [batch, 3, K]) -> Q -> DQ -> MatMul(DQ(int8 W)) -> Add(bias) -> y.

    `transposed`: W stored [N, K] (per-channel along its rows) -> DQ -> Transpose, as torch's
    QAT export writes a Linear."""
    rng = np.random.default_rng(0)
    w = rng.integers(-127, 128, (K, n)).astype(np.int8)
    w.flat[:weight_zeros] = 0
    w_scale = (
        rng.uniform(0.001, 0.01, n).astype(np.float32)
        if per_column
        else np.array(0.004, np.float32)
    )
    w_zp = np.zeros(w_scale.shape, np.int8)
    inits = [
        numpy_helper.from_array(w, "w_q"),
        numpy_helper.from_array(w_scale, "w_scale"),
        numpy_helper.from_array(w_zp, "w_zp"),
        numpy_helper.from_array(np.array(0.02, np.float32), "x_scale"),
        numpy_helper.from_array(np.array(128, np.uint8), "x_zp"),
        numpy_helper.from_array(rng.standard_normal(bias_shape or (n,)).astype(np.float32), "bias"),
    ]
    nodes = [
        helper.make_node("QuantizeLinear", ["x", "x_scale", "x_zp"], ["x_q"]),
        helper.make_node("DequantizeLinear", ["x_q", "x_scale", "x_zp"], ["x_dq"]),
        helper.make_node("DequantizeLinear", ["w_q", "w_scale", "w_zp"], ["w_dq"], axis=1),
        helper.make_node("MatMul", ["x_dq", "w_dq"], ["mm"], name="linear/MatMul"),
        helper.make_node("Add", ["bias", "mm"], ["y"], name="linear/Add"),
    ]
    if transposed:
        inits[0] = numpy_helper.from_array(np.ascontiguousarray(w.T), "w_q")
        nodes[2] = helper.make_node("DequantizeLinear", ["w_q", "w_scale", "w_zp"], ["w_t"], axis=0)
        nodes.insert(3, helper.make_node("Transpose", ["w_t"], ["w_dq"], perm=[1, 0]))
    outputs = [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 3, n])]
    if also_output:
        outputs.append(helper.make_tensor_value_info("mm", TensorProto.FLOAT, ["batch", 3, n]))
    graph = helper.make_graph(
        nodes,
        "qdq_linear",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 3, K])],
        outputs,
        inits,
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def _run(model: onnx.ModelProto, x: np.ndarray) -> list[np.ndarray]:
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return session.run(None, {"x": x})


@pytest.mark.parametrize("per_column", [False, True])
@pytest.mark.parametrize("transposed", [False, True])
def test_fused_kernel_computes_what_the_qdq_graph_did(per_column: bool, transposed: bool) -> None:
    model = _qdq_linear(per_column=per_column, transposed=transposed)
    x = np.random.default_rng(1).standard_normal((4, 3, K)).astype(np.float32)
    expected = _run(model, x)[0]

    assert fuse_matmul_bias(model) == 1
    ops = [(n.domain, n.op_type) for n in model.graph.node]
    # the MatMul, the Add and the activation/weight DequantizeLinears are all gone
    assert ops == [("", "QuantizeLinear"), ("com.microsoft", FUSED_OP)]
    weight = "w_q_transposed" if transposed else "w_q"
    assert list(model.graph.node[1].input) == [
        "x_q", weight, "x_scale", "w_scale", "x_zp", "w_zp", "bias",
    ]  # fmt: skip
    # the stored weight is the one the kernel reads, (K, N); nothing else is left behind
    assert {i.name: tuple(i.dims) for i in model.graph.initializer}[weight] == (K, N)
    assert "w_q" not in {i.name for i in model.graph.initializer} or not transposed
    onnx.checker.check_model(model)
    np.testing.assert_allclose(_run(model, x)[0], expected, rtol=1e-5, atol=1e-5)


def test_a_matmul_whose_float_output_is_used_elsewhere_is_left_alone() -> None:
    model = _qdq_linear(also_output=True)
    assert fuse_matmul_bias(model) == 0
    assert "MatMul" in [n.op_type for n in model.graph.node]


def test_a_bias_that_is_not_one_value_per_column_is_left_alone() -> None:
    model = _qdq_linear(bias_shape=(3, N))  # broadcast over tokens too: not a column bias
    assert fuse_matmul_bias(model) == 0
    assert len(model.opset_import) == 1  # no contrib domain added for nothing


def test_activation_times_activation_is_left_alone() -> None:
    """The attention scores' MatMul has no INT8 weight: it stays for ORT's own rules."""
    model = _qdq_linear()
    graph = model.graph
    mm = next(n for n in graph.node if n.op_type == "MatMul")
    mm.input[1] = "x_dq_t"  # (x . x^T) reads a transposed activation, not a weight
    graph.node.insert(2, helper.make_node("Transpose", ["x_dq"], ["x_dq_t"], perm=[0, 2, 1]))
    assert fuse_matmul_bias(model) == 0


def test_weight_sparsity_reads_the_fused_kernel(tmp_path: Path) -> None:
    """The benchmark's sparsity counts the fused kernel's INT8 weight like the QDQ one."""
    path = tmp_path / "m.onnx"
    onnx.save(_qdq_linear(weight_zeros=K * N // 2), str(path))
    before = onnx_weight_sparsity(path)
    assert apply_to_file(path) == {"ort_fused_matmuls": 1, "ort_float_inputs": 0}
    after = onnx_weight_sparsity(path)
    assert FUSED_OP in {n.op_type for n in onnx.load(str(path)).graph.node}
    assert (after["params"], after["sparsity"]) == (before["params"], before["sparsity"])
    assert after["sparsity"] >= 0.5


def _with_residual(both_dequantized: bool) -> onnx.ModelProto:
    """A square QDQ Linear plus `out = y + x_dq` (a residual reading the dequantized input;
    with `both_dequantized` it reads a quantized y too) and `shape = Shape(x_dq)`."""
    model = _qdq_linear(n=K)
    graph, y = model.graph, "y"
    if both_dequantized:
        graph.node.extend(
            [
                helper.make_node("QuantizeLinear", ["y", "x_scale", "x_zp"], ["y_q"]),
                helper.make_node("DequantizeLinear", ["y_q", "x_scale", "x_zp"], ["y_dq"]),
            ]
        )
        y = "y_dq"
    graph.node.extend(
        [
            helper.make_node("Add", [y, "x_dq"], ["out"], name="residual"),
            helper.make_node("Shape", ["x_dq"], ["shape"], name="shape"),
        ]
    )
    del graph.output[:]
    graph.output.extend(
        [
            helper.make_tensor_value_info("out", TensorProto.FLOAT, ["batch", 3, K]),
            helper.make_tensor_value_info("shape", TensorProto.INT64, [3]),
        ]
    )
    return model


def test_float_ops_read_the_float_source_of_a_quantized_tensor() -> None:
    """The residual Add (its other input float) and the Shape read x, not DQ(Q(x)): no
    dequantized copy is left, and the residual adds x exactly where it added its rounding."""
    x = np.random.default_rng(1).standard_normal((4, 3, K)).astype(np.float32)
    model = _with_residual(both_dequantized=False)
    before = _run(model, x)
    assert fuse_matmul_bias(model) == 1
    assert float_for_float_ops(model) == 2
    ops = [n.op_type for n in model.graph.node]
    assert "DequantizeLinear" not in ops and ops.count("QuantizeLinear") == 1
    after = _run(model, x)
    round_trip = (np.clip(np.round(x / 0.02) + 128, 0, 255) - 128) * np.float32(0.02)
    np.testing.assert_allclose(after[0] - before[0], x - round_trip, atol=1e-4)
    np.testing.assert_array_equal(after[1], before[1])


def test_an_add_of_two_dequantized_tensors_stays_for_the_int8_kernel() -> None:
    """ONNX Runtime runs DQ, DQ -> Add as QLinearAdd (YOLO's residuals in QDQ): untouched;
    only the Shape reads the float."""
    model = _with_residual(both_dequantized=True)
    assert float_for_float_ops(model) == 1
    residual = next(n for n in model.graph.node if n.name == "residual")
    assert list(residual.input) == ["y_dq", "x_dq"]
