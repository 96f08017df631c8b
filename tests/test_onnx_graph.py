"""sparsify.onnx_graph.decompose_layer_norms: the same outputs from primitive ops."""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

from sparsify.onnx_graph import decompose_layer_norms


def _layer_norm_model(
    opset: int, axis: int, bias: bool, read_mean: bool = False
) -> onnx.ModelProto:
    """x (2, 3, 8) -> LayerNormalization over `axis`.. -> Relu; optionally its Mean returned."""
    normalized = (2, 3, 8)[axis:]
    rng = np.random.default_rng(0)
    inits = [numpy_helper.from_array(rng.normal(size=normalized).astype(np.float32), "scale")]
    inputs = ["x", "scale"]
    if bias:
        inits.append(numpy_helper.from_array(rng.normal(size=normalized).astype(np.float32), "b"))
        inputs.append("b")
    outputs = ["ln", "mean"] if read_mean else ["ln"]
    nodes = [
        helper.make_node(
            "LayerNormalization", inputs, outputs, name="ln0", axis=axis, epsilon=1e-3
        ),
        helper.make_node("Relu", ["ln"], ["y"]),
    ]
    graph_outputs = [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2, 3, 8])]
    if read_mean:
        graph_outputs.append(helper.make_tensor_value_info("mean", TensorProto.FLOAT, [2, 3, 1]))
    graph = helper.make_graph(
        nodes,
        "ln",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 3, 8])],
        graph_outputs,
        inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model


def _run(model: onnx.ModelProto, x: np.ndarray) -> np.ndarray:
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL  # no re-fusion
    session = ort.InferenceSession(model.SerializeToString(), options)
    return session.run(["y"], {"x": x})[0]


@pytest.mark.parametrize("opset", [17, 18])
@pytest.mark.parametrize("axis", [-1, 1, -2])
@pytest.mark.parametrize("bias", [True, False])
def test_same_outputs_without_layer_norm(opset: int, axis: int, bias: bool) -> None:
    model = _layer_norm_model(opset, axis, bias)
    x = np.random.default_rng(1).normal(3.0, 2.0, size=(2, 3, 8)).astype(np.float32)
    expected = _run(model, x)
    assert decompose_layer_norms(model) == 1
    onnx.checker.check_model(model, full_check=True)
    ops = [n.op_type for n in model.graph.node]
    assert "LayerNormalization" not in ops
    assert ops.count("ReduceMean") == 2 and ops.count("Sqrt") == 1
    assert ops.count("Add") == (2 if bias else 1)
    got = _run(model, x)
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-5)
    assert decompose_layer_norms(model) == 0  # nothing left to rewrite


def test_layer_norm_whose_mean_is_read_stays() -> None:
    model = _layer_norm_model(17, -1, True, read_mean=True)
    assert decompose_layer_norms(model) == 0
    assert [n.op_type for n in model.graph.node] == ["LayerNormalization", "Relu"]
