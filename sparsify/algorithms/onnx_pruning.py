"""Magnitude pruning applied straight to an ONNX graph's weight initializers.

For models that arrive only as ONNX (the custom use case): the weights of Conv / MatMul /
Gemm nodes with two or more dimensions are pruned layer by layer, as the torch path does.
"""

from __future__ import annotations

import logging
import re

import numpy as np
import onnx
from onnx import numpy_helper

log = logging.getLogger("sparsify")

WEIGHT_OPS = {"Conv": 1, "ConvTranspose": 1, "MatMul": 1, "Gemm": 1}  # op -> weight input index


def weight_initializers(model: onnx.ModelProto, ignore: list[str] | None = None) -> list[str]:
    """Names of prunable weight initializers, in graph order (`re:` patterns in `ignore`)."""
    inits = {i.name: i for i in model.graph.initializer}
    patterns = list(ignore or [])
    names: list[str] = []
    for node in model.graph.node:
        index = WEIGHT_OPS.get(node.op_type)
        if index is None or len(node.input) <= index:
            continue
        name = node.input[index]
        if name not in inits or len(inits[name].dims) < 2 or name in names:
            continue
        if any(name == p or (p.startswith("re:") and re.fullmatch(p[3:], name)) for p in patterns):
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
