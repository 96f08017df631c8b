"""Checking the keyword options a Pipeline call takes (top_k, thresholds)."""

from __future__ import annotations

import math
from typing import Any

from sparsify.deploy.inputs import InputError


def check_options(given: dict[str, Any], allowed: dict[str, Any]) -> dict[str, Any]:
    """`allowed` maps option -> default; unknown options are refused with the known ones."""
    unknown = sorted(set(given) - set(allowed))
    if unknown:
        known = ", ".join(sorted(allowed)) or "none"
        raise InputError(f"unknown option(s) {unknown}; this task takes: {known}")
    return {**allowed, **{k: v for k, v in given.items() if v is not None}}


def int_in(name: str, value: Any, low: int, high: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise InputError(f"{name} must be an integer from {low} to {high}, got {value!r}")
    return int(value)


def fraction(name: str, value: Any) -> float:
    ok = isinstance(value, int | float) and not isinstance(value, bool)
    if not ok or not math.isfinite(value) or not 0.0 <= value <= 1.0:
        raise InputError(f"{name} must be a number from 0 to 1, got {value!r}")
    return float(value)
