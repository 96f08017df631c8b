"""`data.train_samples` / `data.val_samples`: a fixed subset of a split, the same in every
stage of a run (training, calibration, evaluation) and in every run with the same seed."""

from __future__ import annotations

import logging
from typing import Any, TypeVar

import numpy as np

log = logging.getLogger("sparsify")
T = TypeVar("T")

LIMIT_KEYS = {"train": "train_samples", "val": "val_samples"}
_logged: set[tuple[str, int, int]] = set()  # one log line per split and size, not per reader


def split_limit(data_cfg: Any, split: str) -> int | None:
    """The sample count `data.<split>_samples` asks for `split`; None = the whole split."""
    key = LIMIT_KEYS.get(split)
    value = data_cfg.get(key) if key else None
    return int(value) if value is not None else None


def take_subset(items: list[T], limit: int | None, seed: int, split: str) -> list[T]:
    """`limit` of `items` drawn at random with `seed`, in their original order; all of them
    when `limit` is None or not smaller than the split."""
    if limit is None or limit >= len(items):
        return items
    picked = np.random.default_rng(seed).choice(len(items), size=limit, replace=False)
    if (split, limit, len(items)) not in _logged:
        _logged.add((split, limit, len(items)))
        log.info(
            "Using %s of %s %s samples (data.%s)",
            f"{limit:,}",
            f"{len(items):,}",
            split,
            LIMIT_KEYS.get(split, f"{split}_samples"),
        )
    return [items[i] for i in sorted(picked)]


def split_subset(items: list[T], ctx_cfg: Any, split: str) -> list[T]:
    """`take_subset` with the run config's limit for `split` and its seed."""
    return take_subset(items, split_limit(ctx_cfg.data, split), int(ctx_cfg.seed), split)
