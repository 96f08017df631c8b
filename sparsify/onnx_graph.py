"""Small lookups over an ONNX graph shared by the passes that read or rewrite it."""

from __future__ import annotations

from collections import defaultdict

import numpy as np
import onnx
from onnx import numpy_helper


def constant_names(graph: onnx.GraphProto) -> set[str]:
    """Names of the tensors of `graph` that are constants: initializers and Constant outputs."""
    names = {init.name for init in graph.initializer}
    return names | {o for node in graph.node if node.op_type == "Constant" for o in node.output}


def constant_values(graph: onnx.GraphProto) -> dict[str, np.ndarray]:
    """Initializers and Constant-node outputs of `graph`, by name, as arrays."""
    values = {init.name: numpy_helper.to_array(init) for init in graph.initializer}
    for node in graph.node:
        if node.op_type == "Constant":
            for attr in node.attribute:
                if attr.name == "value":
                    values[node.output[0]] = numpy_helper.to_array(attr.t)
    return values


def producers_by_output(graph: onnx.GraphProto) -> dict[str, onnx.NodeProto]:
    """Tensor name -> the node writing it (graph inputs and initializers have none)."""
    return {out: node for node in graph.node for out in node.output}


def consumers(graph: onnx.GraphProto) -> dict[str, list[onnx.NodeProto]]:
    """Tensor name -> the nodes reading it (a defaultdict: unread names give [])."""
    readers: dict[str, list[onnx.NodeProto]] = defaultdict(list)
    for node in graph.node:
        for name in node.input:
            if name:
                readers[name].append(node)
    return readers


def drop_unused_initializers(graph: onnx.GraphProto, among: set[str] | None = None) -> None:
    """Remove the initializers (of `among`, else any) that no node reads nor the graph returns."""
    used = {name for node in graph.node for name in node.input}
    used |= {o.name for o in graph.output}
    for init in [
        i for i in graph.initializer if i.name not in used and (among is None or i.name in among)
    ]:
        graph.initializer.remove(init)


def decompose_layer_norms(model: onnx.ModelProto) -> int:
    """Rewrite each LayerNormalization node as the primitive ops it stands for, in place.

    `(x - mean(x)) / sqrt(mean((x - mean(x))^2) + eps) * scale + bias` over the node's axis and
    every later one: ReduceMean, Sub, Pow, ReduceMean, Add, Sqrt, Div, Mul, Add, the pattern
    older exporters wrote (opset < 17 has no LayerNormalization). DeepSparse 1.8 compiles that
    pattern into its kernels but runs the opset-17 op in a naive subgraph; ONNX Runtime fuses
    the pattern back into its LayerNormalization kernel. A node whose Mean / InvStdDev outputs
    are read is left alone. Returns how many were rewritten.
    """
    graph = model.graph
    opset = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), 17)
    readers = consumers(graph)
    returned = {o.name for o in graph.output}
    rank = {
        v.name: len(v.type.tensor_type.shape.dim)
        for v in [*graph.input, *graph.value_info, *graph.output]
        if v.type.tensor_type.HasField("shape")
    }
    nodes: list[onnx.NodeProto] = []
    done = 0
    for node in graph.node:
        extra_read = any(readers.get(o) or o in returned for o in node.output[1:] if o)
        if node.op_type != "LayerNormalization" or node.domain not in ("", "ai.onnx") or extra_read:
            nodes.append(node)
            continue
        attrs = {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}
        axis, eps = int(attrs.get("axis", -1)), float(attrs.get("epsilon", 1e-5))
        x, scale = node.input[0], node.input[1]
        bias = node.input[2] if len(node.input) > 2 and node.input[2] else None
        if axis < 0:
            axes = list(range(axis, 0))
        elif x in rank:
            axes = list(range(axis, rank[x]))
        else:  # a non-negative axis needs the input's rank
            nodes.append(node)
            continue
        prefix = f"{node.name or node.output[0]}/decomposed"

        def name(part: str, prefix: str = prefix) -> str:
            return f"{prefix}/{part}"

        graph.initializer.extend(
            [
                numpy_helper.from_array(np.array(2.0, np.float32), name("two")),
                numpy_helper.from_array(np.array(eps, np.float32), name("epsilon")),
            ]
        )
        if opset >= 18:  # ReduceMean's axes became an input
            graph.initializer.append(
                numpy_helper.from_array(np.array(axes, np.int64), name("axes"))
            )

        def mean(src: str, dst: str, axes: list[int] = axes) -> onnx.NodeProto:
            if opset >= 18:
                return onnx.helper.make_node("ReduceMean", [src, name("axes")], [dst], keepdims=1)
            return onnx.helper.make_node("ReduceMean", [src], [dst], axes=axes, keepdims=1)

        normed = name("normalized")
        scaled = node.output[0] if bias is None else name("scaled")
        nodes += [
            mean(x, name("mean")),
            onnx.helper.make_node("Sub", [x, name("mean")], [name("centered")]),
            onnx.helper.make_node("Pow", [name("centered"), name("two")], [name("squared")]),
            mean(name("squared"), name("variance")),
            onnx.helper.make_node("Add", [name("variance"), name("epsilon")], [name("var_eps")]),
            onnx.helper.make_node("Sqrt", [name("var_eps")], [name("std")]),
            onnx.helper.make_node("Div", [name("centered"), name("std")], [normed]),
            onnx.helper.make_node("Mul", [normed, scale], [scaled]),
        ]
        if bias is not None:
            nodes.append(onnx.helper.make_node("Add", [scaled, bias], [node.output[0]]))
        done += 1
    if done:
        del graph.node[:]
        graph.node.extend(nodes)
    return done
