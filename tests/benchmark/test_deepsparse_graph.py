"""The DeepSparse worker's graph rewrites compute what the original graph computes."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

from sparsify.engines.deepsparse_graph import decompose_layer_norm, for_deepsparse

WIDTH = 24


def layer_norm_model(opset: int, *, bias: bool = True, axis: int = -1, stats: bool = False):
    """x -> LayerNormalization -> y (and, with `stats`, its Mean output as a second output)."""
    rng = np.random.default_rng(opset)
    inits = [numpy_helper.from_array(rng.uniform(0.5, 2, WIDTH).astype(np.float32), "scale")]
    inputs = ["x", "scale"]
    if bias:
        inits.append(numpy_helper.from_array(rng.normal(size=WIDTH).astype(np.float32), "bias"))
        inputs.append("bias")
    outputs = ["y", "mean"] if stats else ["y"]
    node = helper.make_node("LayerNormalization", inputs, outputs, "ln", axis=axis, epsilon=1e-3)
    graph = helper.make_graph(
        [node],
        "ln",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", 5, WIDTH])],
        [
            helper.make_tensor_value_info(o, TensorProto.FLOAT, ["n", 5, WIDTH if o == "y" else 1])
            for o in outputs
        ],
        inits,
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])


def run(model: onnx.ModelProto, x: np.ndarray) -> list[np.ndarray]:
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return session.run(None, {"x": x})


@pytest.mark.parametrize("opset", [17, 18])
@pytest.mark.parametrize("bias", [True, False])
def test_layer_norm_is_spelled_out_with_the_same_result(opset: int, bias: bool) -> None:
    model = layer_norm_model(opset, bias=bias)
    x = np.random.default_rng(0).normal(3.0, 2.0, (4, 5, WIDTH)).astype(np.float32)
    (expected,) = run(model, x)
    assert for_deepsparse(model) == {"layer_norms_decomposed": 1}
    onnx.checker.check_model(model, full_check=True)
    ops = [n.op_type for n in model.graph.node]
    assert "LayerNormalization" not in ops and ops.count("ReduceMean") == 2
    (got,) = run(model, x)
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("kwargs", [{"axis": 1}, {"stats": True}])
def test_layer_norms_it_cannot_spell_out_are_kept(kwargs: dict) -> None:
    """Normalising over more than the last axis, or with Mean / InvStdDev used: left alone."""
    model = layer_norm_model(17, **kwargs)
    assert decompose_layer_norm(model) == 0
    assert [n.op_type for n in model.graph.node] == ["LayerNormalization"]


def test_real_export_decomposes_every_layer_norm(layer_norm_onnx: Path) -> None:
    """A torch export (opset 17) of Linear -> LayerNorm -> GELU -> Linear -> LayerNorm."""
    model = onnx.load(str(layer_norm_onnx))
    x = np.random.default_rng(1).normal(size=(3, 16, 8)).astype(np.float32)
    (expected,) = run(model, x)
    assert decompose_layer_norm(model) == 2
    (got,) = run(model, x)
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-5)
