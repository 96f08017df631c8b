"""Measure models on engines: every step in a worker process, every failure written down.

A step (loading, a benchmark at one batch size, the accuracy pass) that crashes, hangs or
raises is recorded under the model's `failures` with what happened, and the next step starts a
fresh worker; the other steps, models and engines are still measured.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from sparsify.benchmark.engine import EngineFailure
from sparsify.benchmark.engines import open_engine
from sparsify.benchmark.onnx_stats import file_size_mb, onnx_weight_sparsity
from sparsify.benchmark.subprocess_engine import SubprocessEngine
from sparsify.progress import progress

log = logging.getLogger("sparsify")

NO_SUPPORTED_OPS = "no_supported_ops"
FAILED = "failed"

Opener = Callable[[str, Path], SubprocessEngine]
Evaluator = Callable[[Any], dict[str, float]]


class _Worker:
    """One engine on one model, reopened after a failure so later steps get a clean process."""

    def __init__(self, engine: str, path: Path, opener: Opener) -> None:
        self.engine, self.path, self.opener = engine, path, opener
        self.current: SubprocessEngine | None = None

    def get(self) -> SubprocessEngine:
        if self.current is None:
            self.current = self.opener(self.engine, self.path)
        return self.current

    def drop(self) -> None:
        if self.current is not None:
            self.current.close()
            self.current = None


def _failure(step: str, exc: EngineFailure) -> dict[str, Any]:
    log.error("%s failed while %s: %s", exc.engine, step, exc)
    return {"step": step, **exc.to_dict()}


def measure_model(
    engine: str,
    path: Path,
    feeds_by_batch: dict[int, dict[str, np.ndarray]],
    *,
    opener: Opener,
    warmup_s: float,
    time_s: float,
    evaluate: Evaluator | None = None,
    rel: Callable[[Path], str] = str,
) -> dict[str, Any]:
    """Size, sparsity, a benchmark per batch size and (with `evaluate`) accuracy on `engine`."""
    sparsity = onnx_weight_sparsity(path)
    out: dict[str, Any] = {
        "model_path": rel(path),
        "size_mb": round(file_size_mb(path), 4),
        "sparsity": round(sparsity["sparsity"], 6),
        "benchmarks": [],
        "failures": [],
        "flags": [],
    }
    worker = _Worker(engine, path, opener)
    try:
        bar = progress(
            feeds_by_batch.items(), total=len(feeds_by_batch), desc=f"{engine} {path.name}"
        )
        for batch, feeds in bar:
            step = f"benchmark batch {batch}"
            try:
                live = worker.get()
                result = live.benchmark(feeds, warmup_s=warmup_s, time_s=time_s)
            except EngineFailure as exc:
                out["failures"].append(_failure(step, exc))
                worker.drop()
                continue
            out["benchmarks"].append(
                {
                    "engine": engine,
                    "engine_version": live.version,
                    "model_path": rel(path),
                    "batch_size": int(batch),
                    "input_shapes": [list(v.shape) for v in feeds.values()],
                    "num_cores": live.num_threads or os.cpu_count(),
                    "scenario": "sync",
                    "seconds_to_run": float(time_s),
                    "benchmark_result": result,
                    **live.analysis,
                }
            )
        if evaluate is not None:
            try:
                out["accuracy"] = evaluate(worker.get())
                out["accuracy_engine"] = engine
            except EngineFailure as exc:
                out["accuracy"] = None
                out["failures"].append(_failure("accuracy", exc))
                worker.drop()
    finally:
        worker.drop()

    fractions = [
        r["fraction_of_supported_ops"]
        for r in out["benchmarks"]
        if "fraction_of_supported_ops" in r
    ]
    if fractions:
        out["fraction_of_supported_ops"] = min(fractions)
        if out["fraction_of_supported_ops"] <= 0.0:
            # DeepSparse hands an unsupported graph to its bundled ONNX Runtime: no speedup
            out["flags"].append(NO_SUPPORTED_OPS)
    if out["failures"]:
        out["flags"].append(FAILED)
    return out


def engine_opener(cfg: Any) -> Opener:
    """open_engine bound to the `benchmark` config (threads, timeout, DeepSparse interpreter)."""

    def opener(engine: str, path: Path) -> SubprocessEngine:
        return open_engine(engine, path, cfg)

    return opener
