"""Magnitude pruning applied straight to an ONNX graph's weight initializers.

For models that arrive only as ONNX (the custom use case): the weights of Conv / MatMul /
Gemm nodes with two or more dimensions are pruned layer by layer, as the torch path does.
"""

from __future__ import annotations

import logging

import numpy as np
import onnx
from onnx import numpy_helper

from sparsify.matching import match_onnx_nodes

log = logging.getLogger("sparsify")

WEIGHT_OPS = {"Conv": 1, "ConvTranspose": 1, "MatMul": 1, "Gemm": 1}  # op -> weight input index


def weight_initializers(model: onnx.ModelProto, ignore: list[str] | None = None) -> list[str]:
    """Names of prunable weight initializers, in graph order. `ignore` covers nodes under the
    one rule of `sparsify.matching` (module paths, `re:` patterns, node and weight names); a
    weight read by an ignored node stays dense."""
    inits = {i.name: i for i in model.graph.initializer}
    match = match_onnx_nodes(model, ignore)
    # a weight shared by several nodes stays dense if any of them is ignored
    kept_dense = {i for node in match.ignored for i in node.input if i in inits}
    names: list[str] = []
    for node in model.graph.node:
        index = WEIGHT_OPS.get(node.op_type)
        if index is None or len(node.input) <= index:
            continue
        name = node.input[index]
        if name not in inits or len(inits[name].dims) < 2 or name in names or name in kept_dense:
            continue
        names.append(name)
    return names


def prune_onnx(
    model: onnx.ModelProto, sparsity: float, ignore: list[str] | None = None
) -> dict[str, float]:
    """Zero the smallest-magnitude `sparsity` fraction of each weight; returns per-tensor sparsity."""
    names = set(weight_initializers(model, ignore))
    result: dict[str, float] = {}
    for init in model.graph.initializer:
        if init.name not in names:
            continue
        weight = numpy_helper.to_array(init).copy()
        flat = weight.reshape(-1)
        k = int(round(sparsity * flat.size))
        if k > 0:
            order = np.argsort(np.abs(flat), kind="stable")
            flat[order[:k]] = 0
        init.CopyFrom(numpy_helper.from_array(weight, init.name))
        result[init.name] = float((weight == 0).mean())
    log.info("Pruned %d ONNX weight tensors to %.1f %% sparsity", len(result), 100 * sparsity)
    return result
