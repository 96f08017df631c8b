"""Small lookups over an ONNX graph shared by the passes that read or rewrite it."""

from __future__ import annotations

from collections import defaultdict

import numpy as np
import onnx
from onnx import numpy_helper


def inferred_tensor_types(model: onnx.ModelProto) -> dict[str, onnx.TypeProto.Tensor]:
    """Name -> tensor type (element type and shape) of every graph input, intermediate and
    output that ONNX shape inference types; empty when shape inference fails."""
    try:
        inferred = onnx.shape_inference.infer_shapes(model)
    except Exception:  # noqa: BLE001 - callers treat an untyped graph as "nothing known"
        return {}
    graph = inferred.graph
    return {i.name: i.type.tensor_type for i in [*graph.input, *graph.value_info, *graph.output]}


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
