"""ONNX Runtime (CPU) engine: run a model and time it like `deepsparse.benchmark` does."""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

import numpy as np

from sparsify.errors import SparsifyError

log = logging.getLogger("sparsify")

PERCENTILES = (25.0, 50.0, 75.0, 90.0, 95.0, 99.0, 99.9)
MIN_ITERATIONS = 3

# ONNX type strings as reported by onnxruntime's NodeArg.type
ORT_DTYPES: dict[str, type[np.generic]] = {
    "tensor(float)": np.float32,
    "tensor(float16)": np.float16,
    "tensor(double)": np.float64,
    "tensor(int64)": np.int64,
    "tensor(int32)": np.int32,
    "tensor(int8)": np.int8,
    "tensor(uint8)": np.uint8,
    "tensor(bool)": np.bool_,
}


class OnnxRuntimeEngine:
    """An InferenceSession on the CPU provider, set up for latency measurement."""

    name = "onnxruntime"

    def __init__(self, model_path: Path, num_threads: int | None = None) -> None:
        import onnxruntime as ort

        self.model_path = Path(model_path)
        if not self.model_path.is_file():
            raise SparsifyError(f"cannot load ONNX model {self.model_path}: no such file")
        self.num_threads = num_threads
        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        # sequential: one request at a time is what a latency number means
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        if num_threads is not None:
            options.intra_op_num_threads = int(num_threads)
        log.info(
            "Loading %s in onnxruntime %s (CPU, threads=%s)",
            self.model_path,
            ort.__version__,
            num_threads if num_threads is not None else "default",
        )
        self.session = ort.InferenceSession(
            str(self.model_path), sess_options=options, providers=["CPUExecutionProvider"]
        )

    @property
    def input_names(self) -> list[str]:
        return [i.name for i in self.session.get_inputs()]

    @property
    def input_shapes(self) -> list[list[int | str | None]]:
        """Per input, its dims: an int when fixed, the symbol (or None) when dynamic."""
        return [list(i.shape) for i in self.session.get_inputs()]

    @property
    def input_dtypes(self) -> list[np.dtype]:
        return [np.dtype(ORT_DTYPES.get(i.type, np.float32)) for i in self.session.get_inputs()]

    @property
    def output_names(self) -> list[str]:
        return [o.name for o in self.session.get_outputs()]

    def run(self, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
        missing = set(self.input_names) - set(feeds)
        if missing:
            raise SparsifyError(
                f"inputs {sorted(missing)} missing for {self.model_path.name}; "
                f"the model expects {self.input_names}"
            )
        return self.session.run(None, feeds)

    def benchmark(
        self, feeds: dict[str, np.ndarray], warmup_s: float, time_s: float
    ) -> dict[str, Any]:
        """Warm up for `warmup_s`, then time back-to-back runs for `time_s` (>= 3 runs).

        Keys follow `deepsparse.benchmark`'s benchmark_result; latencies are ms per batch.
        """
        first = next(iter(feeds.values()))
        batch_size = int(first.shape[0]) if first.ndim else 1
        start = time.perf_counter()
        while time.perf_counter() - start < warmup_s:
            self.run(feeds)

        latencies: list[float] = []
        start = time.perf_counter()
        while time.perf_counter() - start < time_s or len(latencies) < MIN_ITERATIONS:
            t0 = time.perf_counter()
            self.session.run(None, feeds)
            latencies.append(time.perf_counter() - t0)
        seconds_ran = time.perf_counter() - start

        ms = np.asarray(latencies) * 1000.0
        result: dict[str, Any] = {
            "engine": self.name,
            "scenario": "sync",
            "batch_size": batch_size,
            "num_threads": self.num_threads,
            "items_per_sec": batch_size * len(ms) / seconds_ran,
            "seconds_ran": seconds_ran,
            "iterations": len(ms),
            "median": float(np.median(ms)),
            "mean": float(ms.mean()),
            "std": float(ms.std()),
        }
        for q, value in zip(PERCENTILES, np.percentile(ms, PERCENTILES), strict=True):
            result[f"{q}%"] = float(value)
        log.info(
            "%s batch %d: %.2f items/s, median %.3f ms over %d iterations",
            self.model_path.name,
            batch_size,
            result["items_per_sec"],
            result["median"],
            result["iterations"],
        )
        return result


def make_random_feeds(
    engine: OnnxRuntimeEngine,
    batch_size: int,
    seed: int = 0,
    dim_defaults: dict[str, int] | None = None,
) -> dict[str, np.ndarray]:
    """Random inputs matching the model's inputs: floats ~ N(0, 1), integers zeros.

    The first dynamic dim is the batch; other symbolic dims come from `dim_defaults`, else 1.
    """
    rng = np.random.default_rng(seed)
    dim_defaults = dim_defaults or {}
    feeds: dict[str, np.ndarray] = {}
    for name, dims, dtype in zip(
        engine.input_names, engine.input_shapes, engine.input_dtypes, strict=True
    ):
        shape: list[int] = []
        for i, dim in enumerate(dims):
            if isinstance(dim, int) and dim > 0:
                shape.append(dim)
            elif i == 0:
                shape.append(batch_size)
            else:
                shape.append(int(dim_defaults.get(str(dim), 1)) if dim is not None else 1)
        if np.issubdtype(dtype, np.floating):
            feeds[name] = rng.standard_normal(shape).astype(dtype)
        else:
            # token ids / masks of zeros are always in range for embeddings
            feeds[name] = np.zeros(shape, dtype=dtype)
    return feeds
