"""Recipe vocabulary: SparseML's modifiers as JSON Schema, plus the rules across fields.

Field names are SparseML's (`params`, `inter_func`, `disable_quantization_observer_epoch`, ...)
with the newer llm-compressor spellings accepted as aliases (`targets`, `dampening_frac`).
Unknown fields are refused. Every property carries a `description`, which an error quotes as
the fix. `modifier_problems` checks one modifier's (already interpolated) fields.
"""

from __future__ import annotations

import difflib
import re
from typing import Any

import jsonschema

from sparsify.errors import Problem

INTER_FUNCS = ["linear", "cubic", "inverse_cubic"]
LR_FUNCS = ["linear", "cosine", "cyclic_linear", "step"]
# unstructured | blockN (SparseML's `block` = 4 weights in a row) | N:M (e.g. 2:4)
# StructuredPruningModifier's structures: transformer feed-forward neurons, BERT-style attention heads
STRUCTURES = ["ffn_neurons", "attention_heads"]
MASK_PATTERN = r"^(unstructured|block([1-9][0-9]*)?|[1-9][0-9]*:[1-9][0-9]*)$"

_TARGETS = {
    "anyOf": [{"type": "string"}, {"type": "array", "items": {"type": "string"}}],
    "description": "a layer/parameter name, 're:<regex>', __ALL_PRUNABLE__ (every Conv/Linear "
    "weight) or __ALL__, or a list of them",
}
_IGNORE = {
    "type": "array",
    "items": {"type": "string"},
    "description": "a list of layer names, 're:<regex>' patterns or __DEPTHWISE__ to leave alone",
}
_SPARSITY = {
    "type": "number",
    "minimum": 0,
    "exclusiveMaximum": 1,
    "description": "a fraction of zero weights in [0, 1), e.g. 0.8",
}
_START = {
    "type": "number",
    "minimum": -1,
    "description": "an epoch number (fractions allowed) >= 0; -1 = from the start of training",
}
_END = {
    "type": "number",
    "anyOf": [{"const": -1}, {"minimum": 0}],
    "description": "an epoch number (fractions allowed) >= 0; -1 = the end of training",
}
_EPOCH = {"type": "number", "minimum": 0, "description": "an epoch number >= 0"}
_MASK = {
    "type": "string",
    "pattern": MASK_PATTERN,
    "description": "unstructured, blockN (e.g. block4) or N:M with N < M (e.g. 2:4)",
}
_BOOL = {"type": "boolean", "description": "true or false"}
_LOG_TYPES = {
    "anyOf": [{"type": "string"}, {"type": "array", "items": {"type": "string"}}],
    "description": "__ALL__ or a list of logger names",
}


def _qargs(strategies: list[str], what: str) -> dict[str, Any]:
    return {
        "type": "object",
        "properties": {
            "num_bits": {"const": 8, "description": "8 (only INT8 is supported)"},
            "symmetric": _BOOL,
            "strategy": {"enum": strategies, "description": f"{what}: {' or '.join(strategies)}"},
        },
        "additionalProperties": False,
        "description": "{num_bits: 8, symmetric: bool, strategy: ...}",
    }


_WEIGHT_ARGS = _qargs(["channel", "tensor"], "weights are quantized per channel or per tensor")
_ACT_ARGS = _qargs(["tensor"], "activations are quantized per tensor")
_SCHEME = {
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

_GRADUAL = {
    "targets": _TARGETS,
    "params": _TARGETS,
    "ignore": _IGNORE,
    "init_sparsity": _SPARSITY,
    "final_sparsity": _SPARSITY,
    "start_epoch": _START,
    "end_epoch": _END,
    "update_frequency": {
        "type": "number",
        "exclusiveMinimum": 0,
        "description": "epochs between mask updates, > 0 (e.g. 0.5)",
    },
    "inter_func": {"enum": INTER_FUNCS, "description": f"one of {', '.join(INTER_FUNCS)}"},
    "mask_type": _MASK,
    "leave_enabled": _BOOL,
    "log_types": _LOG_TYPES,
}

MODIFIERS: dict[str, dict[str, Any]] = {
    "MagnitudePruningModifier": {
        **_GRADUAL,
        # re-estimate BatchNorm statistics on calibration data after pruning (one-shot)
        "recalibrate_batchnorm": _BOOL,
    },
    "GMPruningModifier": dict(_GRADUAL),
    "GlobalMagnitudePruningModifier": dict(_GRADUAL),
    "SparseGPTModifier": {
        "sparsity": _SPARSITY,
        "block_size": {
            "type": "integer",
            "minimum": 1,
            "description": "columns pruned per OBS block, an integer >= 1 (e.g. 128)",
        },
        "percdamp": {
            "type": "number",
            "exclusiveMinimum": 0,
            "maximum": 1,
            "description": "Hessian dampening as a fraction of its mean diagonal, in (0, 1]",
        },
        "dampening_frac": {
            "type": "number",
            "exclusiveMinimum": 0,
            "maximum": 1,
            "description": "alias of percdamp, in (0, 1]",
        },
        "mask_structure": _MASK,
        "targets": _TARGETS,
        "ignore": _IGNORE,
        "recalibrate_batchnorm": _BOOL,
        # true: each layer calibrated on the outputs of the already-pruned layers before it
        # (one partial forward pass per layer); false: every Hessian from one dense pass
        "sequential_update": _BOOL,
    },
    "StructuredPruningModifier": {
        "structure": {
            "enum": STRUCTURES,
            "description": "ffn_neurons: whole feed-forward neurons of every transformer block; "
            "attention_heads: whole self-attention heads of every BERT-style block; the same "
            "number per block, removed from the model when end_epoch is reached",
        },
        "init_sparsity": _SPARSITY,
        "final_sparsity": _SPARSITY,
        "start_epoch": _START,
        "end_epoch": _END,
        "update_frequency": _GRADUAL["update_frequency"],
        "inter_func": _GRADUAL["inter_func"],
        "ignore": _IGNORE,
        "log_types": _LOG_TYPES,
    },
    "ConstantPruningModifier": {
        "targets": _TARGETS,
        "params": _TARGETS,
        "ignore": _IGNORE,
        "start_epoch": _START,
        "end_epoch": _END,
        "log_types": _LOG_TYPES,
    },
    "QuantizationModifier": {
        "enabled": _BOOL,
        "ignore": _IGNORE,
        "start_epoch": _START,
        "end_epoch": _END,
        "freeze_observer_epoch": _EPOCH,
        "disable_quantization_observer_epoch": _EPOCH,
        "freeze_bn_stats_epoch": _EPOCH,
        "scheme": _SCHEME,
    },
    "LearningRateFunctionModifier": {
        "lr_func": {"enum": LR_FUNCS, "description": f"one of {', '.join(LR_FUNCS)}"},
        "init_lr": {"type": "number", "minimum": 0, "description": "a learning rate >= 0"},
        "final_lr": {"type": "number", "minimum": 0, "description": "a learning rate >= 0"},
        "start_epoch": _START,
        "end_epoch": _END,
        "cycle_epochs": {
            "type": "number",
            "exclusiveMinimum": 0,
            "description": "epochs per cycle (cyclic_linear) or per step (step), > 0",
        },
    },
    "EpochRangeModifier": {"start_epoch": _EPOCH, "end_epoch": _EPOCH},
    "DistillationModifier": {
        "hardness": {
            "type": "number",
            "minimum": 0,
            "maximum": 1,
            "description": "weight of the teacher's loss in [0, 1] (0 = labels only)",
        },
        "temperature": {
            "type": "number",
            "exclusiveMinimum": 0,
            "description": "softmax temperature > 0 (e.g. 2.0)",
        },
        "start_epoch": _START,
        "end_epoch": _END,
        "distill_output_keys": {
            "type": "array",
            "items": {"type": ["string", "integer"]},
            "description": "a list of model output names or indices to distill",
        },
    },
}

# how to_yaml groups modifiers inside a stage
GROUPS: dict[str, str] = {
    "MagnitudePruningModifier": "pruning_modifiers",
    "GMPruningModifier": "pruning_modifiers",
    "GlobalMagnitudePruningModifier": "pruning_modifiers",
    "SparseGPTModifier": "pruning_modifiers",
    "ConstantPruningModifier": "pruning_modifiers",
    "StructuredPruningModifier": "pruning_modifiers",
    "QuantizationModifier": "quantization_modifiers",
    "LearningRateFunctionModifier": "training_modifiers",
    "EpochRangeModifier": "training_modifiers",
    "DistillationModifier": "distillation_modifiers",
}

# alias -> canonical field; a loaded recipe holds only the canonical name
ALIASES: dict[str, dict[str, str]] = {
    **{
        name: {"params": "targets"}
        for name in (
            "MagnitudePruningModifier",
            "GMPruningModifier",
            "GlobalMagnitudePruningModifier",
            "ConstantPruningModifier",
        )
    },
    "SparseGPTModifier": {"dampening_frac": "percdamp"},
    "QuantizationModifier": {"disable_quantization_observer_epoch": "freeze_observer_epoch"},
}


def modifier_schema(name: str) -> dict[str, Any]:
    return {"type": "object", "properties": MODIFIERS[name], "additionalProperties": False}


def number(value: Any) -> float | None:
    """The value as a float when it is a number (bools are not), else None."""
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


def close_match(word: str, choices: list[str]) -> str:
    match = difflib.get_close_matches(word, choices, n=1, cutoff=0.75)
    return f"did you mean {match[0]}? " if match else ""


def modifier_problems(key: str, name: str, kwargs: dict[str, Any]) -> list[Problem]:
    """Every problem with one modifier's fields; `key` names it in the messages."""
    return _schema_problems(key, name, kwargs) + _cross_field_problems(key, kwargs)


def canonical_fields(
    key: str, name: str, kwargs: dict[str, Any], problems: list[Problem]
) -> dict[str, Any]:
    """The fields with aliases renamed to their canonical name (order kept)."""
    aliases = ALIASES.get(name, {})
    out: dict[str, Any] = {}
    for field, value in kwargs.items():
        canonical = aliases.get(field, field)
        if canonical != field and canonical in kwargs:
            message = f"is an alias of {canonical}, which is also given"
            problems.append(Problem(f"{key}.{field}", value, message, f"keep only {canonical}"))
            continue
        out[canonical] = value
    return out


def _schema_problems(key: str, name: str, kwargs: dict[str, Any]) -> list[Problem]:
    problems: list[Problem] = []
    validator = jsonschema.Draft202012Validator(modifier_schema(name))
    errors = sorted(validator.iter_errors(kwargs), key=lambda e: (str(list(e.path)), str(e)))
    for err in errors:
        path = ".".join(str(p) for p in err.absolute_path)
        where = f"{key}.{path}" if path else key
        if err.validator == "additionalProperties":
            valid = sorted(err.schema.get("properties", {}))
            for extra in sorted(set(err.instance) - set(valid)):
                fix = f"{close_match(str(extra), valid)}valid fields: {', '.join(valid)}"
                message = f"is not a field of {path or name}"
                problems.append(Problem(f"{where}.{extra}", err.instance[extra], message, fix))
            continue
        description = err.schema.get("description", "see recipes/ for examples")
        problems.append(Problem(where, err.instance, err.message, f"{path or name}: {description}"))
    return problems


def _cross_field_problems(key: str, kw: dict[str, Any]) -> list[Problem]:
    out: list[Problem] = []

    def bad(field: str, value: Any, message: str, fix: str) -> None:
        out.append(Problem(f"{key}.{field}", value, message, fix))

    start, end = number(kw.get("start_epoch")), number(kw.get("end_epoch"))
    if start is not None and end is not None and 0 <= end < start:
        fix = "make end_epoch >= start_epoch, or -1 for the end of training"
        bad("end_epoch", kw["end_epoch"], f"ends before start_epoch ({start:g})", fix)
    for field in ("freeze_observer_epoch", "freeze_bn_stats_epoch"):
        value = number(kw.get(field))
        if value is not None and start is not None and value < start:
            message = f"is before start_epoch ({start:g})"
            bad(field, kw[field], message, f"make {field} >= start_epoch")
    init, final = number(kw.get("init_sparsity")), number(kw.get("final_sparsity"))
    if init is not None and final is not None and init > final:
        fix = "make init_sparsity <= final_sparsity (e.g. 0.05)"
        bad("init_sparsity", kw["init_sparsity"], f"is above final_sparsity ({final:g})", fix)
    for field in ("mask_type", "mask_structure"):
        value = kw.get(field)
        if isinstance(value, str) and re.fullmatch(r"\d+:\d+", value):
            n, m = (int(x) for x in value.split(":"))
            if n >= m:
                bad(field, value, "N:M needs N < M (N zeros in every M weights)", "e.g. 2:4")
    lr_func = kw.get("lr_func")
    if lr_func in ("cyclic_linear", "step") and "cycle_epochs" not in kw:
        bad("cycle_epochs", None, f"is required by lr_func {lr_func}", "add cycle_epochs: <epochs>")
    if lr_func == "step":
        for field in ("init_lr", "final_lr"):
            if (value := number(kw.get(field))) is not None and value <= 0:
                bad(field, value, "must be > 0 for lr_func step", "give a positive learning rate")
    for field in ("targets", "params", "ignore"):
        values = kw.get(field)
        for target in values if isinstance(values, list) else [values]:
            if isinstance(target, str) and target.startswith("re:"):
                try:
                    re.compile(target[3:])
                except re.error as exc:
                    bad(field, target, f"is not a valid regex ({exc})", "fix the pattern after re:")
    return out
