"""The field types modifiers are declared with: JSON Schema fragments plus `spec()`.

A modifier writes `final_sparsity: float = spec(SPARSITY, 0.0)`: the fragment validates the
recipe's value, its `description` is what an error quotes as the fix, and the default is what
the modifier does when the recipe leaves the field out. `schema.py` builds each modifier's
JSON Schema from these fields.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import field
from typing import Any

from sparsify.algorithms.schedules import INTER_FUNCS, LR_FUNCS

SCHEMA = "schema"  # the dataclass field metadata key that holds the JSON Schema fragment

# StructuredPruningModifier's structures: transformer feed-forward neurons, BERT-style heads,
# CNN / YOLO channels (sparsify.algorithms.channels)
STRUCTURES = ["ffn_neurons", "attention_heads", "channels"]
# how channel pruning ranks channels (sparsify.algorithms.channels.IMPORTANCES)
IMPORTANCE = {
    "enum": ["magnitude", "bn_scale", "taylor"],
    "description": "magnitude (L2 norm of the channel's weights in every coupled layer), "
    "bn_scale (|BatchNorm scale|) or taylor (|weight x gradient|, first order)",
}
# unstructured | blockN (SparseML's `block` = 4 weights in a row) | N:M (e.g. 2:4)
MASK_PATTERN = r"^(unstructured|block([1-9][0-9]*)?|[1-9][0-9]*:[1-9][0-9]*)$"

TARGETS = {
    "anyOf": [{"type": "string"}, {"type": "array", "items": {"type": "string"}}],
    "description": "a layer/parameter name, 're:<regex>', __ALL_PRUNABLE__ (every Conv/Linear "
    "weight) or __ALL__, or a list of them",
}
IGNORE = {
    "type": "array",
    "items": {"type": "string"},
    "description": "a list of layer names, 're:<regex>' patterns or __DEPTHWISE__ to leave alone",
}
SPARSITY = {
    "type": "number",
    "minimum": 0,
    "exclusiveMaximum": 1,
    "description": "a fraction of zero weights in [0, 1), e.g. 0.8",
}
START = {
    "type": "number",
    "minimum": -1,
    "description": "an epoch number (fractions allowed) >= 0; -1 = from the start of training",
}
END = {
    "type": "number",
    "anyOf": [{"const": -1}, {"minimum": 0}],
    "description": "an epoch number (fractions allowed) >= 0; -1 = the end of training",
}
EPOCH = {"type": "number", "minimum": 0, "description": "an epoch number >= 0"}
MASK = {
    "type": "string",
    "pattern": MASK_PATTERN,
    "description": "unstructured, blockN (e.g. block4) or N:M with N < M (e.g. 2:4)",
}
BOOL = {"type": "boolean", "description": "true or false"}
# one-shot pruning: every layer at the target, or per-layer targets from a sensitivity analysis
# on the calibration data (sparsify.algorithms.sensitivity), the overall sparsity the same
PROFILE = {
    "enum": ["uniform", "sensitivity"],
    "description": "uniform (every layer at the target sparsity) or sensitivity (more "
    "sparsity where pruning costs the outputs least, the overall sparsity unchanged)",
}
LOG_TYPES = {
    "anyOf": [{"type": "string"}, {"type": "array", "items": {"type": "string"}}],
    "description": "__ALL__ or a list of logger names",
}
UPDATE_FREQUENCY = {
    "type": "number",
    "exclusiveMinimum": 0,
    "description": "epochs between mask updates, > 0 (e.g. 0.5)",
}
INTER_FUNC = {"enum": INTER_FUNCS, "description": f"one of {', '.join(INTER_FUNCS)}"}
LR_FUNC = {"enum": LR_FUNCS, "description": f"one of {', '.join(LR_FUNCS)}"}
LEARNING_RATE = {"type": "number", "minimum": 0, "description": "a learning rate >= 0"}


def _qargs(strategies: list[str], what: str) -> dict[str, Any]:
    return {
        "type": "object",
        "properties": {
            "num_bits": {"const": 8, "description": "8 (only INT8 is supported)"},
            "symmetric": BOOL,
            "strategy": {"enum": strategies, "description": f"{what}: {' or '.join(strategies)}"},
        },
        "additionalProperties": False,
        "description": "{num_bits: 8, symmetric: bool, strategy: ...}",
    }


_WEIGHT_ARGS = _qargs(["channel", "tensor"], "weights are quantized per channel or per tensor")
_ACT_ARGS = _qargs(["tensor"], "activations are quantized per tensor")
SCHEME = {
    "type": "object",
    "properties": {
        "weights": _WEIGHT_ARGS,
        "activations": _ACT_ARGS,
        "input_activations": _ACT_ARGS,
        "output_activations": _ACT_ARGS,
    },
    "additionalProperties": False,
    "description": "{weights: {...}, activations: {...}}",
}


def spec(
    schema: dict[str, Any], default: Any = None, *, factory: Callable[[], Any] | None = None
) -> Any:
    """A recipe field: validated by `schema`, `default` (or `factory()`) when left out."""
    if factory is not None:
        return field(default_factory=factory, metadata={SCHEMA: schema})
    return field(default=default, metadata={SCHEMA: schema})


def state(factory: Callable[[], Any] = lambda: None) -> Any:
    """Run-time state a lifecycle hook keeps (masks, layers): not a recipe field, not in
    `kwargs`, equality or repr; set afresh by `initialize`."""
    return field(init=False, default_factory=factory, repr=False, compare=False)
