"""What the transformers family finds in its exported ONNX graphs."""

from __future__ import annotations

from collections import defaultdict
from typing import Any

from sparsify.algorithms.quantization import constant_names

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
    constants = constant_names(model)
    consumers: dict[str, list[Any]] = defaultdict(list)
    for node in graph.node:
        for name in node.input:
            consumers[name].append(node)
    found = []
    for node in graph.node:
        if node.op_type != "MatMul" or not node.name or any(i in constants for i in node.input):
            continue
        tensor = node.output[0]
        for _ in range(_MAX_HOPS + 1):
            users = consumers.get(tensor, [])
            if len(users) != 1:
                break
            if users[0].op_type == "Softmax":
                found.append(node.name)
                break
            if users[0].op_type not in _SCORE_PATH_OPS:
                break
            tensor = users[0].output[0]
    return found
