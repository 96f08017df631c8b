"""JSON Schema for recipes: SparseML's modifier vocabulary, unknown fields refused."""

from __future__ import annotations

from typing import Any

_TARGETS = {"anyOf": [{"type": "string"}, {"type": "array", "items": {"type": "string"}}]}
_SPARSITY = {"type": "number", "minimum": 0, "exclusiveMaximum": 1}

MODIFIERS: dict[str, dict[str, Any]] = {
    "MagnitudePruningModifier": {
        "targets": _TARGETS,
        "params": _TARGETS,
        "ignore": {"type": "array", "items": {"type": "string"}},
        "init_sparsity": _SPARSITY,
        "final_sparsity": _SPARSITY,
        "start_epoch": {"type": "number"},
        "end_epoch": {"type": "number"},
        "update_frequency": {"type": "number"},
        "mask_type": {"type": "string", "enum": ["unstructured"]},
        # re-estimate BatchNorm statistics on calibration data after pruning (one-shot)
        "recalibrate_batchnorm": {"type": "boolean"},
    },
    "QuantizationModifier": {
        "enabled": {"type": "boolean"},
        "ignore": {"type": "array", "items": {"type": "string"}},
        "start_epoch": {"type": "number"},
    },
}


def modifier_schema(name: str) -> dict[str, Any]:
    return {"type": "object", "properties": MODIFIERS[name], "additionalProperties": False}
