"""The accuracy budget search: the fastest package within `budget.max_drop` points.

`sparsify -m hydra/sweeper=sparsify_budget budget.max_drop=1.0 budget.trials=8 ...` runs it
(docs/budget.md). `sweeper.py` is the Hydra sweeper, `study.py` the Optuna study it keeps in
the sweep dir, `space.py` the searched settings, `trials.py` how a trial is judged and the
choice, `results.py` what is written at the sweep root, `held_out.py` the re-measure on test.
Light on purpose: the `sparsify` command imports this module for the exit status.
"""

from __future__ import annotations

# How the last budget search in this process ended, for the `sparsify` command's exit status
# (Hydra returns nothing from a multirun): None when no search ran, "" when one chose a
# package, else the line saying that none fits.
_last: dict[str, str | None] = {"outcome": None}


def set_outcome(no_fit: str | None) -> None:
    _last["outcome"] = "" if no_fit is None else no_fit


def budget_outcome() -> str | None:
    """None: no budget search ran; "": it chose a package; else why none was chosen. Reading
    it clears it."""
    outcome, _last["outcome"] = _last["outcome"], None
    return outcome


__all__ = ["budget_outcome", "set_outcome"]
