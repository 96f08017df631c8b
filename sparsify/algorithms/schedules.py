"""Schedules a training loop follows: GMP sparsity, mask-update epochs, learning rate.

Pure functions of the epoch (fractions allowed), so a trainer callback evaluates them at
every step and tests pin them at known epochs. The formulas are SparseML's:

- sparsity: `sparseml.utils.helpers.interpolate`, used by `GMPruningModifier`
  (neuralmagic/sparseml, src/sparseml/utils/helpers.py);
- updates: `ScheduledUpdateModifier` (update at start, every `update_frequency`, at end);
- learning rate: `LearningRateFunctionModifier._linear/_cosine/_cyclic_linear`
  (src/sparseml/pytorch/sparsification/training/modifier_lr.py); `step` is ours.
"""

from __future__ import annotations

import math

# the recipe schema's choices for `inter_func` and `lr_func` are these functions' cases
INTER_FUNCS = ["linear", "cubic", "inverse_cubic"]
LR_FUNCS = ["linear", "cosine", "cyclic_linear", "step"]
_EPS = 1e-9


def _check_window(start: float, end: float) -> None:
    if end < start:
        raise ValueError(f"end ({end}) is before start ({start}); give end >= start")


def _progress(epoch: float, start: float, end: float) -> float:
    """Where `epoch` lies in [start, end] as 0..1, clamped outside the window."""
    _check_window(start, end)
    if epoch >= end:
        return 1.0
    if epoch <= start:
        return 0.0
    return (epoch - start) / (end - start)


def sparsity_at(
    epoch: float, init: float, final: float, start: float, end: float, inter_func: str
) -> float:
    """Target sparsity of gradual magnitude pruning at `epoch`.

    With progress p = (epoch - start) / (end - start) clamped to [0, 1], SparseML maps
    p to a fraction y of the way from `init` to `final` (sparseml.utils.helpers.interpolate):

    - linear:        y = p
    - cubic:         y = 1 - (1 - p)^3      i.e. final + (init - final) * (1 - p)^3;
                     prunes fast early, slowly near the end (Zhu & Gupta 2017's GMP)
    - inverse_cubic: y = 1 - (1 - p)^(1/3)  prunes slowly early, fast near the end

    and returns init + y * (final - init). Before `start` it is `init`, after `end` `final`
    (the modifier itself applies no mask before start_epoch).
    """
    if inter_func not in INTER_FUNCS:
        raise ValueError(f"unknown inter_func {inter_func!r}; use one of {', '.join(INTER_FUNCS)}")
    p = _progress(epoch, start, end)
    if inter_func == "linear":
        y = p
    elif inter_func == "cubic":
        y = 1.0 - (1.0 - p) ** 3
    else:
        y = 1.0 - (1.0 - p) ** (1.0 / 3.0)
    if y <= _EPS:
        return init
    if y >= 1.0 - _EPS:
        return final
    return init + y * (final - init)


def update_epochs(start: float, end: float, update_frequency: float) -> list[float]:
    """Epochs at which GMP recomputes its masks: start, every `update_frequency`, and end."""
    _check_window(start, end)
    if update_frequency <= 0:
        raise ValueError(f"update_frequency must be > 0, got {update_frequency}")
    epochs: list[float] = []
    k = 0
    while (e := round(start + k * update_frequency, 9)) < end - _EPS:
        epochs.append(e)
        k += 1
    epochs.append(float(end))
    return epochs


def lr_at(
    epoch: float,
    lr_func: str,
    init_lr: float,
    final_lr: float,
    start: float,
    end: float,
    cycle_epochs: float | None = None,
) -> float:
    """Learning rate at `epoch`; `init_lr` before `start`, `final_lr` from `end` on.

    With p = (epoch - start) / (end - start):

    - linear:        init + (final - init) * p
    - cosine:        init + (final - init) * (1 - cos(pi * p)) / 2   (SparseML's `_cosine`,
                     which decays to or rises to `final_lr`)
    - cyclic_linear: linear from init to final within each `cycle_epochs`, restarting at
                     init; a last partial cycle is squeezed into what is left (SparseML)
    - step:          held for `cycle_epochs`, then multiplied by a constant factor so the
                     last step is `final_lr`: init * (final / init)^(k / (n - 1)) in step k
                     of n = ceil((end - start) / cycle_epochs); needs init, final > 0
    """
    if lr_func not in LR_FUNCS:
        raise ValueError(f"unknown lr_func {lr_func!r}; use one of {', '.join(LR_FUNCS)}")
    _check_window(start, end)
    if epoch < start:
        return init_lr
    if epoch >= end:
        return final_lr
    p = (epoch - start) / (end - start)
    if lr_func == "linear":
        return init_lr + (final_lr - init_lr) * p
    if lr_func == "cosine":
        return init_lr + (final_lr - init_lr) * (1.0 - math.cos(math.pi * p)) / 2.0
    if cycle_epochs is None or cycle_epochs <= 0:
        raise ValueError(f"lr_func {lr_func} needs cycle_epochs > 0, got {cycle_epochs}")
    span, pos = end - start, epoch - start
    if lr_func == "cyclic_linear":
        full = math.floor(span / cycle_epochs + _EPS) * cycle_epochs
        if pos >= full - _EPS:  # the last, partial cycle
            length, pos = span - full, pos - full
        else:
            length, pos = cycle_epochs, math.fmod(pos, cycle_epochs)
        return init_lr + (final_lr - init_lr) * pos / length
    if init_lr <= 0 or final_lr <= 0:
        raise ValueError("lr_func step needs init_lr > 0 and final_lr > 0")
    steps = max(1, math.ceil(span / cycle_epochs - _EPS))
    k = min(math.floor(pos / cycle_epochs + _EPS), steps - 1)
    return init_lr if steps == 1 else init_lr * (final_lr / init_lr) ** (k / (steps - 1))
