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
    keep_latencies: bool = False,
) -> dict[str, Any]:
    """Call `run` for `warmup_s`, then time back-to-back calls for `time_s` (>= 3 calls).

    Keys follow `deepsparse.benchmark`'s benchmark_result; latencies are ms per batch.
    `keep_latencies` adds every call's latency (`latencies_ms`), for `merge_rounds`.
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
    result = summarize([t * 1000.0 for t in latencies], batch_size, seconds_ran)
    if keep_latencies:
        result["latencies_ms"] = [t * 1000.0 for t in latencies]
    return result


def summarize(latencies_ms: list[float], batch_size: int, seconds_ran: float) -> dict[str, Any]:
    """deepsparse.benchmark's summary of per-batch latencies (ms) timed over `seconds_ran`."""
    ms = np.asarray(latencies_ms, dtype=float)
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


def merge_rounds(rounds: list[dict[str, Any]]) -> dict[str, Any]:
    """One summary from several `time_runs(keep_latencies=True)` rounds of the same model:
    all their calls, over the seconds they ran together (the raw latencies are dropped)."""
    latencies = [t for r in rounds for t in r["latencies_ms"]]
    merged = summarize(latencies, rounds[0]["batch_size"], sum(r["seconds_ran"] for r in rounds))
    merged["rounds"] = len(rounds)
    return merged
