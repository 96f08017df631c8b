"""Graph rewrites the OpenVINO worker applies to its private copy of a model, so that OpenVINO
runs in INT8 what the graph quantizes. Each rewrite computes the same function; the model file
on disk (the one deployed, and the one ONNX Runtime runs) is never changed.

- Conv weights stored with zero point -1 or +1 (`ort_fusions.offset_conv_weights`, written on
  CPUs with AMX because ONNX Runtime then runs those convs on its AMX GEMM) go back to zero
  point 0, the same numbers. OpenVINO's low-precision transformations take only symmetric
  INT8 weights: with the offset, every such conv ran in FP32. ResNet-50 INT8 QDQ (64 px,
  batch 16, Intel Xeon with AMX): 34 of 53 convs FP32 on OpenVINO, 1.72x dense ONNX Runtime,
  where the QOperator graph of the same model (no offset) ran 6.36x.

Loaded by path (like deepsparse_graph.py) from worker.py: it needs only onnx and numpy.
"""

from __future__ import annotations

from typing import Any

import numpy as np


def symmetric_conv_weights(model: Any) -> int:
    """Rewrite, in place, each DequantizeLinear of an INT8 weight initializer whose zero point
    is -1 or +1 throughout and which feeds only Conv weights, to zero point 0 (every value
    minus the zero point; skipped where a value would leave int8). Returns how many."""
    from onnx import numpy_helper

    graph = model.graph
    inits = {init.name: init for init in graph.initializer}
    readers: dict[str, list[Any]] = {}
    for node in graph.node:
        for name in node.input:
            readers.setdefault(name, []).append(node)
    uses = {name: len(nodes) for name, nodes in readers.items()}
    rewritten = 0
    for node in graph.node:
        if node.op_type != "DequantizeLinear" or len(node.input) < 3:
            continue
        w_name, zp_name = node.input[0], node.input[2]
        if w_name not in inits or zp_name not in inits:
            continue
        weight, zero = numpy_helper.to_array(inits[w_name]), numpy_helper.to_array(inits[zp_name])
        convs = readers.get(node.output[0], [])
        if (
            weight.dtype != np.int8
            or zero.dtype != np.int8
            or zero.size == 0
            or not np.all(zero == zero.flat[0])
            or int(zero.flat[0]) not in (-1, 1)
            or not convs
            or not all(r.op_type == "Conv" and r.input[1] == node.output[0] for r in convs)
        ):
            continue
        moved = weight.astype(np.int16) - int(zero.flat[0])
        if moved.min() < -128 or moved.max() > 127:
            continue
        names = []
        for name, array in ((w_name, moved.astype(np.int8)), (zp_name, np.zeros_like(zero))):
            if uses.get(name, 0) > 1:  # shared with another node: a copy of its own
                name = f"{name}_symmetric_{rewritten}"
                graph.initializer.append(numpy_helper.from_array(array, name))
            else:
                inits[name].CopyFrom(numpy_helper.from_array(array, name))
            names.append(name)
        node.input[0], node.input[2] = names
        rewritten += 1
    return rewritten


def for_openvino(model: Any) -> dict[str, int]:
    """Every rewrite above on `model` (in place): what each changed."""
    return {"symmetric_conv_weights": symmetric_conv_weights(model)}
