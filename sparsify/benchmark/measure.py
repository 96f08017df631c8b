"""Measure models on engines: every step in a worker process, every failure written down.

A step (loading, a benchmark at one batch size, the accuracy pass) that crashes, hangs or
raises is recorded under the model's `failures` with what happened, and the next step starts a
fresh worker; the other steps, models and engines are still measured. Each timed run records
the engine's version, the threads it was given (`num_cores`; by default the CPUs this process
may use) and the host (`host`: CPU model, the flags INT8 speed depends on, usable CPUs).
"""

from __future__ import annotations

import copy
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from sparsify.benchmark.onnx_stats import file_size_mb, int8_op_count, onnx_weight_sparsity
from sparsify.engines.base import EngineFailure, batch_size_of
from sparsify.engines.host import available_cores, host_record
from sparsify.engines.registry import open_engine
from sparsify.engines.timing import merge_rounds
from sparsify.engines.worker_client import SubprocessEngine
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


def _static(path: Path, rel: Callable[[Path], str]) -> dict[str, Any]:
    """What a model's file says without running it: size, weight sparsity, INT8 ops."""
    return {
        "model_path": rel(path),
        "size_mb": round(file_size_mb(path), 4),
        "sparsity": round(onnx_weight_sparsity(path)["sparsity"], 6),
        "int8_ops": int8_op_count(path),
        "benchmarks": [],
        "failures": [],
        "flags": [],
    }


def _int8_fraction(analysis: dict[str, Any], int8_ops: int) -> dict[str, Any]:
    """OpenVINO's INT8 compute layers over the graph's INT8 ops (QLinear*, DQ-fed Conv/MatMul):
    below 1, it ran some of what was quantized in float. Nothing for a float graph."""
    if "int8_layers" not in analysis or not int8_ops:
        return {}
    return {"fraction_int8": round(min(1.0, analysis["int8_layers"] / int8_ops), 4)}


def _flag(out: dict[str, Any]) -> None:
    for key in ("fraction_of_supported_ops", "fraction_int8"):
        fractions = [r[key] for r in out["benchmarks"] if key in r]
        if fractions:
            out[key] = min(fractions)
    if out.get("fraction_of_supported_ops", 1.0) <= 0.0:
        # DeepSparse hands an unsupported graph to its bundled ONNX Runtime: no speedup
        out["flags"].append(NO_SUPPORTED_OPS)
    if out["failures"]:
        out["flags"].append(FAILED)


Key = tuple[str, str]  # (engine, model name)


def _timed_rounds(
    workers: dict[Key, _Worker],
    outs: dict[Key, dict[str, Any]],
    feeds: dict[str, np.ndarray],
    warmup_s: float,
    time_s: float,
    rounds: int,
) -> dict[Key, dict[str, Any]]:
    """Each worker's benchmark at one batch size, its `time_s` cut into `rounds` taken in
    turn with the others' (so a slow spell of the machine hits them alike); merged."""
    step = f"benchmark batch {batch_size_of(feeds)}"
    taken: dict[Key, list[dict[str, Any]]] = {name: [] for name in workers}
    failed: set[Key] = set()
    for _ in range(rounds):
        for name, worker in workers.items():
            if name in failed:
                continue
            try:
                taken[name].append(
                    worker.get().benchmark(
                        feeds,
                        warmup_s=warmup_s,
                        time_s=time_s / rounds,
                        keep_latencies=rounds > 1,
                    )
                )
            except EngineFailure as exc:
                outs[name]["failures"].append(_failure(step, exc))
                worker.drop()
                failed.add(name)
    results = {}
    for name, runs in taken.items():
        if name not in failed:
            first = {k: v for k, v in runs[0].items() if k != "latencies_ms"}
            results[name] = first if rounds == 1 else {**first, **merge_rounds(runs)}
    return results


def measure_models(
    engines: list[str],
    paths: dict[str, Path],
    feeds_by_batch: dict[int, dict[str, np.ndarray]],
    *,
    opener: Opener,
    warmup_s: float,
    time_s: float,
    rounds: int = 1,
    evaluate: Evaluator | None = None,
    rel: Callable[[Path], str] = str,
) -> dict[str, dict[str, dict[str, Any]]]:
    """Per engine, per model (name -> ONNX file): size, sparsity, a benchmark per batch size
    and (with `evaluate`) accuracy. At each batch size every (engine, model) is timed in
    `rounds` rounds of `time_s / rounds` (each after a `warmup_s`), all of them in turn
    within a round, so speedups across models and engines share the machine's slow spells."""
    if rounds < 1:
        raise ValueError(f"benchmark rounds must be >= 1, got {rounds}")
    static = {name: _static(path, rel) for name, path in paths.items()}
    keys = [(engine, name) for engine in engines for name in paths]
    outs = {key: copy.deepcopy(static[key[1]]) for key in keys}
    workers = {key: _Worker(key[0], paths[key[1]], opener) for key in keys}
    host = host_record()
    try:
        bar = progress(
            feeds_by_batch.items(),
            total=len(feeds_by_batch),
            desc=f"{', '.join(engines)}: {', '.join(p.name for p in paths.values())}",
        )
        for batch, feeds in bar:
            timed = _timed_rounds(workers, outs, feeds, warmup_s, time_s, rounds)
            for (engine, name), result in timed.items():
                live = workers[(engine, name)].get()
                out = outs[(engine, name)]
                out["benchmarks"].append(
                    {
                        "engine": engine,
                        "engine_version": live.version,
                        "model_path": rel(paths[name]),
                        "batch_size": int(batch),
                        "input_shapes": [list(v.shape) for v in feeds.values()],
                        # the threads the engine was given (the worker's default: the CPUs
                        # this process may use), not the host's count
                        "num_cores": live.num_threads or available_cores(),
                        "host": host,
                        "scenario": "sync",
                        "seconds_to_run": float(time_s),
                        "benchmark_result": result,
                        **live.analysis,
                        **_int8_fraction(live.analysis, out["int8_ops"]),
                    }
                )
        for key, worker in workers.items() if evaluate is not None else ():
            try:
                outs[key]["accuracy"] = evaluate(worker.get())  # type: ignore[misc]
                outs[key]["accuracy_engine"] = key[0]
            except EngineFailure as exc:
                outs[key]["accuracy"] = None
                outs[key]["failures"].append(_failure("accuracy", exc))
                worker.drop()
    finally:
        for worker in workers.values():
            worker.drop()
    report: dict[str, dict[str, dict[str, Any]]] = {engine: {} for engine in engines}
    for (engine, name), out in outs.items():
        _flag(out)
        report[engine][name] = out
    return report


def measure_model(engine: str, path: Path, *args: Any, **kwargs: Any) -> dict[str, Any]:
    """`measure_models` for one model on one engine."""
    return measure_models([engine], {"model": path}, *args, **kwargs)[engine]["model"]


def engine_opener(cfg: Any) -> Opener:
    """open_engine bound to the `benchmark` config (threads, timeout, DeepSparse interpreter)."""

    def opener(engine: str, path: Path) -> SubprocessEngine:
        return open_engine(engine, path, cfg)

    return opener
