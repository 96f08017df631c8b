"""Recipe validation: each modifier class's JSON Schema, plus the rules across fields.

The schema is generated from the modifier classes (`sparsify.recipes.modifiers`): a class's
recipe fields are its properties, its aliases (SparseML's `params`, llm-compressor's
`dampening_frac`, ...) accepted too, unknown fields refused. Every property carries a
`description`, which an error quotes as the fix. `modifier_problems` checks one modifier's
(already interpolated) fields.
"""

from __future__ import annotations

import difflib
import re
from functools import cache
from typing import Any

import jsonschema

from sparsify.errors import Problem
from sparsify.recipes.modifiers import REGISTRY, Modifier


@cache
def modifier_schema(cls: type[Modifier]) -> dict[str, Any]:
    """The JSON Schema of one modifier's fields, generated from its class."""
    return {"type": "object", "properties": cls.properties(), "additionalProperties": False}


# the built-in modifiers' JSON Schema properties, by name (a class registered later is
# validated from its class all the same)
MODIFIERS: dict[str, dict[str, Any]] = {
    name: modifier_schema(REGISTRY.get(name))["properties"] for name in REGISTRY.names()
}


def number(value: Any) -> float | None:
    """The value as a float when it is a number (bools are not), else None."""
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


def close_match(word: str, choices: list[str]) -> str:
    match = difflib.get_close_matches(word, choices, n=1, cutoff=0.75)
    return f"did you mean {match[0]}? " if match else ""


def modifier_problems(key: str, cls: type[Modifier], kwargs: dict[str, Any]) -> list[Problem]:
    """Every problem with one modifier's fields; `key` names it in the messages."""
    return _schema_problems(key, cls, kwargs) + _cross_field_problems(key, kwargs)


def canonical_fields(
    key: str, cls: type[Modifier], kwargs: dict[str, Any], problems: list[Problem]
) -> dict[str, Any]:
    """The fields with aliases renamed to their canonical name (order kept)."""
    aliases = cls.aliases
    out: dict[str, Any] = {}
    for field, value in kwargs.items():
        canonical = aliases.get(field, field)
        if canonical != field and canonical in kwargs:
            message = f"is an alias of {canonical}, which is also given"
            problems.append(Problem(f"{key}.{field}", value, message, f"keep only {canonical}"))
            continue
        out[canonical] = value
    return out


def _schema_problems(key: str, cls: type[Modifier], kwargs: dict[str, Any]) -> list[Problem]:
    problems: list[Problem] = []
    name = cls.__name__
    validator = jsonschema.Draft202012Validator(modifier_schema(cls))
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
