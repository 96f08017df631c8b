"""Optim level -> what an experiment does (docs/experiments.md, from the original guides)."""

from __future__ import annotations

import math
from dataclasses import dataclass

from sparsify.errors import Problem


@dataclass(frozen=True)
class Derived:
    """What the optim level asks of the run."""

    sparsity: float  # target fraction of zero weights in prunable layers
    quantize: bool
    tier: str | None = None  # sparse_transfer: zoo size tier
    variant: str | None = None  # sparse_transfer: dense | int8 | pruned_int8

    def describe(self) -> str:
        if self.tier:
            return f"zoo tier {self.tier} ({self.variant})"
        if self.sparsity == 0 and not self.quantize:
            return "dense baseline (no change)"
        parts = []
        if self.sparsity > 0:
            parts.append(f"{self.sparsity:.0%} sparse")
        if self.quantize:
            parts.append("INT8")
        return " + ".join(parts)


# the original CLI's named levels
LEVEL_NAMES = {"accuracy": 0.0, "balanced": 0.5, "performant": 1.0}


def named_level(value: object) -> float | None:
    """The fraction of a named level (`balanced` -> 0.5; case and spaces ignored), else None."""
    if not isinstance(value, str):
        return None
    return LEVEL_NAMES.get(value.strip().strip("'\"").strip().lower())


def normalize_level(value: object) -> tuple[float | None, Problem | None]:
    """0..1 as is; an integer 2..100 as percent; a name of LEVEL_NAMES as its fraction.
    Anything else is a problem.

    The config step (`sparsify.config.compose.settle_optim_level`) calls this once per run;
    afterwards `cfg.optim_level` is the fraction. Readers of old run directories, whose
    config.yaml may hold a percent, call it too."""
    fix = (
        "give a number from 0.0 to 1.0, or an integer percent from 1 to 100 (e.g. 50), "
        f"or one of {', '.join(LEVEL_NAMES)}"
    )
    named = named_level(value)
    if named is not None:
        return named, None
    try:
        level = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return None, Problem("optim_level", value, "is not a number", fix)
    if math.isnan(level):  # float("nan") parses, but is no level
        return None, Problem("optim_level", value, "is not a number", fix)
    if level < 0:
        return None, Problem("optim_level", value, "must not be negative", fix)
    if level <= 1.0:
        return level, None
    if level <= 100 and level.is_integer():
        return level / 100.0, None
    return None, Problem("optim_level", value, "is above 1.0 and not an integer percent", fix)


def derive(experiment: object, level: float) -> Derived:
    """Map a normalized level through the experiment config's mapping."""
    tiers = list(getattr(experiment, "tiers", []) or [])
    if tiers:
        # the first row is level 0.0 exactly; each later row covers levels below its bound,
        # and the last one also its bound (1.0)
        if level == 0.0:
            row = tiers[0]
        else:
            row = next((r for r in tiers[1:] if level < float(r[0])), tiers[-1])
        _, tier, variant = row
        return Derived(
            sparsity=0.0, quantize=variant != "dense", tier=str(tier), variant=str(variant)
        )
    if level == 0.0:
        return Derived(sparsity=0.0, quantize=False)
    # the one decision "INT8 or not" for pruning experiments; recipes read it as
    # ${derived.quantize}
    quantize = level > float(getattr(experiment, "quantize_from_level", 0.0) or 0.0)
    start = float(experiment.sparsity_from_level)  # type: ignore[attr-defined]
    if level < start:
        return Derived(sparsity=0.0, quantize=quantize)
    lo = float(experiment.sparsity_at_start)  # type: ignore[attr-defined]
    hi = float(experiment.sparsity_at_end)  # type: ignore[attr-defined]
    frac = (level - start) / (1.0 - start) if start < 1.0 else 1.0
    return Derived(sparsity=round(lo + frac * (hi - lo), 6), quantize=quantize)
