"""The timing loop every engine shares, so numbers from different engines compare.

Standalone on purpose (stdlib + numpy only): the engine worker loads this file by path in
interpreters that do not have sparsify's dependencies, e.g. the DeepSparse virtualenv.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import numpy as np

PERCENTILES = (25.0, 50.0, 75.0, 90.0, 95.0, 99.0, 99.9)
MIN_ITERATIONS = 3


def time_runs(
    run: Callable[[], Any],
    batch_size: int,
    warmup_s: float,
    time_s: float,
) -> dict[str, Any]:
    """Call `run` for `warmup_s`, then time back-to-back calls for `time_s` (>= 3 calls).

    Keys follow `deepsparse.benchmark`'s benchmark_result; latencies are ms per batch.
    """
    start = time.perf_counter()
    while time.perf_counter() - start < warmup_s:
        run()

    latencies: list[float] = []
    start = time.perf_counter()
    while time.perf_counter() - start < time_s or len(latencies) < MIN_ITERATIONS:
        t0 = time.perf_counter()
        run()
        latencies.append(time.perf_counter() - t0)
    seconds_ran = time.perf_counter() - start

    ms = np.asarray(latencies) * 1000.0
    result: dict[str, Any] = {
        "scenario": "sync",
        "batch_size": int(batch_size),
        "items_per_sec": batch_size * len(ms) / seconds_ran,
        "seconds_ran": seconds_ran,
        "iterations": len(ms),
        "median": float(np.median(ms)),
        "mean": float(ms.mean()),
        "std": float(ms.std()),
    }
    for q, value in zip(PERCENTILES, np.percentile(ms, PERCENTILES), strict=True):
        result[f"{q}%"] = float(value)
    return result
