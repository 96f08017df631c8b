"""The search space of the budget search: config keys and the values a trial may give them.

`budget.space` (and the sweeper config's per-experiment `spaces`) is a nested mapping that
mirrors the run config; a leaf is a list of choices or a `{low, high[, step]}` range:

    optim_level: {low: 0.0, high: 1.0}
    quantization: {format: [qoperator, qdq]}
    recipe_args: {unstructured_sparsity: {low: 0.0, high: 0.5}}

A trial's values become ordinary overrides (`optim_level=0.62`), so every launcher runs them.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from sparsify.config.overrides import in_free_dict
from sparsify.errors import Problem, ValidationError

# Keys a trial may not change: the drop is measured against one dense baseline, which the fetch
# stage caches by data, model, training settings and seed; a trial changing them would
# retrain it and compare against another model.
SHARED = (
    "data",
    "model",
    "experiment",
    "experiment.train",
    "baseline",
    "seed",
    "use_case",
    "benchmark",
    "budget",
    "run_dir",
    "working_dir",
    "cache_dir",
)


@dataclass(frozen=True)
class Dimension:
    key: str  # dotted config key, as overridden on the command line
    choices: tuple[Any, ...] | None = None
    low: float | None = None
    high: float | None = None
    step: float | None = None

    def describe(self) -> str:
        if self.choices is not None:
            return f"{self.key} in {list(self.choices)}"
        step = f" step {self.step:g}" if self.step else ""
        return f"{self.key} in [{self.low:g}, {self.high:g}]{step}"


def _is_range(node: Any) -> bool:
    return isinstance(node, Mapping) and "low" in node and "high" in node


def flatten(space: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """Nested space -> {dotted key: leaf}; a null leaf stays (it removes a default)."""
    out: dict[str, Any] = {}
    for name, node in space.items():
        key = f"{prefix}{name}"
        if isinstance(node, Mapping) and not _is_range(node):
            out.update(flatten(node, f"{key}."))
        else:
            out[key] = node
    return out


def merge_spaces(*spaces: Mapping[str, Any] | None) -> dict[str, Any]:
    """Later spaces override earlier ones key by key; a null leaf drops the dimension."""
    merged: dict[str, Any] = {}
    for space in spaces:
        merged.update(flatten(space or {}))
    return {k: v for k, v in merged.items() if v is not None}


def _number(value: Any) -> float | None:
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


def parse_space(flat: Mapping[str, Any]) -> list[Dimension]:
    """Validate every dimension; one error lists every problem with its fix."""
    problems: list[Problem] = []
    dims: list[Dimension] = []
    for key, leaf in flat.items():
        where = f"budget.space.{key}"
        if any(key == k or (k != "experiment" and key.startswith(f"{k}.")) for k in SHARED):
            problems.append(
                Problem(
                    where,
                    leaf,
                    "would change the dense baseline or the measurement every trial is "
                    "compared with",
                    "set it once for the whole search (a plain override), not in budget.space",
                )
            )
            continue
        if isinstance(leaf, list | tuple):
            if not leaf:
                problems.append(Problem(where, leaf, "has no choices", "list at least one value"))
            else:
                dims.append(Dimension(key, choices=tuple(leaf)))
            continue
        if _is_range(leaf):
            low, high = _number(leaf["low"]), _number(leaf["high"])
            step = _number(leaf.get("step")) if leaf.get("step") is not None else None
            unknown = sorted(set(leaf) - {"low", "high", "step"})
            if (
                low is None
                or high is None
                or low > high
                or unknown
                or (step is not None and step <= 0)
            ):
                problems.append(
                    Problem(
                        where,
                        dict(leaf),
                        "is not a range",
                        "write {low: <number>, high: <number>} with low <= high "
                        "(and an optional step > 0)",
                    )
                )
            else:
                dims.append(Dimension(key, low=low, high=high, step=step))
            continue
        problems.append(
            Problem(where, leaf, "is not a search dimension", "give [choices] or {low, high}")
        )
    if not dims and not problems:
        problems.append(
            Problem(
                "budget.space", {}, "is empty", "search at least optim_level: {low: 0, high: 1}"
            )
        )
    if problems:
        raise ValidationError(problems)
    return dims


def suggest(trial: Any, dims: list[Dimension]) -> dict[str, Any]:
    """Ask an Optuna trial for a value of every dimension (params named by their keys)."""
    params: dict[str, Any] = {}
    for dim in dims:
        if dim.choices is not None:
            params[dim.key] = trial.suggest_categorical(dim.key, list(dim.choices))
        else:
            params[dim.key] = trial.suggest_float(dim.key, dim.low, dim.high, step=dim.step)
    return params


def _value(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"  # a short run-dir name: the level is in it
    if value is None:
        return "null"
    if isinstance(value, str) and any(c in value for c in " ,:=[]{}()'\"\\"):
        return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"
    return str(value)


def to_overrides(params: Mapping[str, Any]) -> list[str]:
    """Trial params -> Hydra overrides, quoted where Hydra's grammar needs it (a trial's
    overrides reach the launcher as they are, without the command line's normalization, so
    an entry of recipe_args gets its `++` here)."""
    return [
        f"{'++' if in_free_dict(key) else ''}{key}={_value(value)}" for key, value in params.items()
    ]
