"""What the transformers family finds in its exported ONNX graphs."""

from __future__ import annotations

from typing import Any

import numpy as np
from onnx import numpy_helper

from sparsify.onnx_graph import (
    constant_names,
    constant_values,
    consumers,
    drop_unused_initializers,
    producers_by_output,
)

# elementwise ops that may sit between the Q.K^T MatMul and its Softmax: the 1/sqrt(d) scale,
# the additive mask (or masked_fill's Where), a dtype Cast
_SCORE_PATH_OPS = {"Mul", "Div", "Add", "Sub", "Where", "Cast"}
_MAX_HOPS = 4


def attention_score_matmuls(model: Any) -> list[str]:
    """Names of the MatMul nodes of `model` (an onnx.ModelProto) that compute attention scores
    (Q.K^T): both inputs are activations, and the output reaches a Softmax through only the
    elementwise ops above, each its only consumer. The MatMul after the Softmax (probs.V)
    does not qualify."""
    graph = model.graph
    constants = constant_names(graph)
    readers = consumers(graph)
    found = []
    for node in graph.node:
        if node.op_type != "MatMul" or not node.name or any(i in constants for i in node.input):
            continue
        tensor = node.output[0]
        for _ in range(_MAX_HOPS + 1):
            users = readers.get(tensor, [])
            if len(users) != 1:
                break
            if users[0].op_type == "Softmax":
                found.append(node.name)
                break
            if users[0].op_type not in _SCORE_PATH_OPS:
                break
            tensor = users[0].output[0]
    return found


# shape-only ops between a projection's bias Add and the attention scores' MatMul
_HEAD_SPLIT_OPS = {"Reshape", "Transpose"}


def _scalar(values: dict[str, np.ndarray], name: str) -> float | None:
    value = values.get(name)
    return float(value.reshape(())) if value is not None and value.size == 1 else None


def _scale_of(node: Any, values: dict[str, np.ndarray], data: str) -> float | None:
    """The factor a Mul / Div by a constant scalar applies to its input `data`, else None."""
    if node.op_type not in ("Mul", "Div") or len(node.input) != 2 or data not in node.input:
        return None
    other = node.input[1] if node.input[0] == data else node.input[0]
    if node.op_type == "Div" and node.input[0] != data:
        return None
    value = _scalar(values, other)
    if value is None or value == 0.0:
        return None
    return value if node.op_type == "Mul" else 1.0 / value


def _constant(name: str, producers: dict[str, Any], values: dict) -> np.ndarray | None:
    """The value of a constant input, also through Identity nodes (torch's exporter shares
    equal initializers through them)."""
    while name not in values and (node := producers.get(name)) is not None:
        if node.op_type != "Identity":
            return None
        name = node.input[0]
    return values.get(name)


def _projection(
    name: str, producers: dict[str, Any], readers: dict[str, list[Any]], values: dict
) -> list[tuple[Any, int]] | None:
    """[(MatMul, weight input index), (Add, bias input index)] of the `x @ W + b` whose
    head-split output `name` is, when each tensor on the way has that one consumer."""
    node = producers.get(name)
    while node is not None and node.op_type in _HEAD_SPLIT_OPS:
        if len(readers[node.output[0]]) != 1:
            return None
        node = producers.get(node.input[0])
    if node is None or node.op_type != "Add" or len(readers[node.output[0]]) != 1:
        return None
    for k in (0, 1):
        bias, matmul = _constant(node.input[k], producers, values), producers.get(node.input[1 - k])
        if bias is None or bias.ndim != 1 or matmul is None or matmul.op_type != "MatMul":
            continue
        weight = _constant(matmul.input[1], producers, values)
        if weight is None or weight.ndim != 2 or len(readers[matmul.output[0]]) != 1:
            return None
        return [(matmul, 1), (node, k)]
    return None


def _score_scales(
    matmul: Any, readers: dict[str, list[Any]], producers: dict[str, Any], values: dict
) -> list[tuple[Any, float, str, str]]:
    """(Mul/Div node, factor, the projection output it scales, the tensor replacing its
    output) for the constant scales around one Q.K^T: torch writes `(Q.K^T) * c` with an
    attention mask, `(Q * sqrt(c)).(K^T * sqrt(c))` without."""
    found = []
    users = readers[matmul.output[0]]
    if len(users) == 1 and (c := _scale_of(users[0], values, matmul.output[0])) is not None:
        found.append((users[0], c, matmul.input[0], matmul.output[0]))
    for side in matmul.input:
        node = producers.get(side)
        if node is None or len(readers[side]) != 1:
            continue
        data = next((i for i in node.input if _scalar(values, i) is None), "")
        if (c := _scale_of(node, values, data)) is not None:
            found.append((node, c, data, data))
    return found


def fold_attention_scale(model: Any) -> int:
    """Fold each attention's score scale into its query / key projections, in place.

    torch exports the 1/sqrt(d) of `softmax(Q.K^T / sqrt(d) + mask)` as a Mul over every
    (batch, head, query, key) score (or over Q and K when there is no mask), with
    Q = x @ W_q + b_q. Scaling W_q and b_q instead gives the same scores without that Mul,
    which ONNX Runtime fuses into its float MatMul but not into an INT8 one (MiniLM-L6,
    batch 16, sequence 128: 6 Muls over 3.1 M floats each). Returns how many were folded.
    """
    graph = model.graph
    values = constant_values(graph)
    producers = producers_by_output(graph)
    readers = consumers(graph)
    by_name = {node.name: node for node in graph.node}
    folded = 0
    for score_name in attention_score_matmuls(model):
        for mul, scale, side, replacement in _score_scales(
            by_name[score_name], readers, producers, values
        ):
            found = _projection(side, producers, readers, values)
            if found is None:
                continue
            for node, k in found:  # a scaled copy: the original may be shared
                value = _constant(node.input[k], producers, values)
                name = f"{node.input[k]}_scaled_{folded}"
                graph.initializer.append(
                    numpy_helper.from_array((value * np.float32(scale)).astype(value.dtype), name)
                )
                node.input[k] = name
            for user in readers[mul.output[0]]:
                user.input[:] = [replacement if i == mul.output[0] else i for i in user.input]
                readers[replacement].append(user)
            graph.node.remove(mul)
            folded += 1
    if folded:
        drop_unused_initializers(graph)
    return folded
