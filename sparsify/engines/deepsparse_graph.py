"""Graph rewrites the DeepSparse worker applies to its private copy of a model, so that
DeepSparse 1.8 compiles ops it would otherwise run in slow "naive" subgraphs. Each rewrite
computes the same function; the model file on disk (the one deployed, and the one ONNX
Runtime runs) is never changed.

- `LayerNormalization` (ONNX opset 17, what torch exports at opset >= 17) is spelled out as
  ReduceMean / Sub / Pow / ReduceMean / Add / Sqrt / Div / Mul / Add, the form torch emits at
  opset <= 16 and DeepSparse fuses. MiniLM-L6 90 % block4 sparse + INT8: supported ops 0.93 ->
  0.97 (0.99 with the attention scores also float, see TransformersFamily.int8_float_nodes).

Loaded by path (like timing.py) from worker.py, whose interpreter (`.venv-deepsparse`) may not
have sparsify's dependencies: it needs only onnx and numpy.
"""

from __future__ import annotations

from typing import Any

import numpy as np


def _opset(model: Any) -> int:
    return next((o.version for o in model.opset_import if (o.domain or "") in ("", "ai.onnx")), 0)


def _non_float32(model: Any) -> set[str]:
    """Tensors whose declared element type is known and is not float32."""
    from onnx import TensorProto

    graph = model.graph
    declared = {v.name: v.type.tensor_type.elem_type for v in graph.input}
    declared.update({v.name: v.type.tensor_type.elem_type for v in graph.value_info})
    declared.update({t.name: t.data_type for t in graph.initializer})
    return {name for name, kind in declared.items() if kind and kind != TensorProto.FLOAT}


def _mean(source: str, target: str, name: str, axes_input: str | None) -> Any:
    """ReduceMean over the last axis, keeping it; `axes_input` names the axes tensor from
    opset 18 on (an attribute before)."""
    from onnx import helper

    if axes_input is not None:
        return helper.make_node("ReduceMean", [source, axes_input], [target], name, keepdims=1)
    return helper.make_node("ReduceMean", [source], [target], name, axes=[-1], keepdims=1)


def decompose_layer_norm(model: Any) -> int:
    """Replace every last-axis float32 `LayerNormalization` of `model` (an onnx.ModelProto,
    edited in place) whose only output is Y by primitive ops; returns how many were replaced.
    Nodes that normalise over more than the last axis, run in another precision, or whose
    Mean / InvStdDev outputs are used, stay."""
    from onnx import helper, numpy_helper

    graph = model.graph
    other_precision = _non_float32(model)
    reduce_axes_input = _opset(model) >= 18  # ReduceMean's axes became an input in opset 18
    nodes, done = [], 0
    for index, node in enumerate(graph.node):
        attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
        if (
            node.op_type != "LayerNormalization"
            or (node.domain or "") not in ("", "ai.onnx")
            or int(attrs.get("axis", -1)) != -1
            or any(node.output[1:])
            or node.input[0] in other_precision
        ):
            nodes.append(node)
            continue
        prefix = f"{node.name or f'LayerNormalization_{index}'}/decomposed"
        x, scale = node.input[0], node.input[1]
        bias = node.input[2] if len(node.input) > 2 and node.input[2] else None
        eps, two = f"{prefix}/epsilon", f"{prefix}/two"
        axes = f"{prefix}/axes" if reduce_axes_input else None
        graph.initializer.extend(
            [
                numpy_helper.from_array(np.array(attrs.get("epsilon", 1e-5), np.float32), eps),
                numpy_helper.from_array(np.array(2.0, np.float32), two),
            ]
        )
        if axes is not None:
            graph.initializer.append(numpy_helper.from_array(np.array([-1], np.int64), axes))
        t = {k: f"{prefix}/{k}" for k in ("mean", "centered", "squared", "var", "var_eps", "std")}
        normed, scaled = f"{prefix}/normed", node.output[0] if bias is None else f"{prefix}/scaled"
        nodes += [
            _mean(x, t["mean"], f"{prefix}/ReduceMean", axes),
            helper.make_node("Sub", [x, t["mean"]], [t["centered"]], f"{prefix}/Sub"),
            helper.make_node("Pow", [t["centered"], two], [t["squared"]], f"{prefix}/Pow"),
            _mean(t["squared"], t["var"], f"{prefix}/ReduceMean_1", axes),
            helper.make_node("Add", [t["var"], eps], [t["var_eps"]], f"{prefix}/Add"),
            helper.make_node("Sqrt", [t["var_eps"]], [t["std"]], f"{prefix}/Sqrt"),
            helper.make_node("Div", [t["centered"], t["std"]], [normed], f"{prefix}/Div"),
            helper.make_node("Mul", [normed, scale], [scaled], f"{prefix}/Mul"),
        ]
        if bias is not None:
            nodes.append(
                helper.make_node("Add", [scaled, bias], [node.output[0]], f"{prefix}/Bias")
            )
        done += 1
    if done:
        del graph.node[:]
        graph.node.extend(nodes)
    return done


def for_deepsparse(model: Any) -> dict[str, int]:
    """Apply every rewrite to `model` in place; what each changed (logged by the worker)."""
    return {"layer_norms_decomposed": decompose_layer_norm(model)}
