"""ONNX Runtime (CPU) engine: run a model and time it like `deepsparse.benchmark` does."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np

from sparsify.engines.base import Feeds
from sparsify.engines.host import available_cores
from sparsify.engines.timing import time_runs
from sparsify.engines.worker import ORT_DISABLED_OPTIMIZERS
from sparsify.errors import SparsifyError

log = logging.getLogger("sparsify")

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


# Graph fusions left off, the same as in the worker's sessions (why there).
DISABLED_OPTIMIZERS = ORT_DISABLED_OPTIMIZERS


class OnnxRuntimeEngine:
    """An InferenceSession on the CPU provider, set up for latency measurement."""

    name = "onnxruntime"

    def __init__(self, model_path: Path, num_threads: int | None = None) -> None:
        import onnxruntime as ort

        self.model_path = Path(model_path)
        if not self.model_path.is_file():
            raise SparsifyError(f"cannot load ONNX model {self.model_path}: no such file")
        # by default the CPUs this process may use (`taskset -c 0` gives 1), set explicitly so
        # that the number recorded is the number used
        self.num_threads = int(num_threads) if num_threads else available_cores()
        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        # sequential: one request at a time is what a latency number means
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        # errors only: its warnings ("Removing initializer ... not used by any node" on every
        # transformer load) are C++ chatter that never changes a result
        options.log_severity_level = 3
        options.intra_op_num_threads = self.num_threads
        log.info(
            "Loading %s in onnxruntime %s (CPU, threads=%s)",
            self.model_path,
            ort.__version__,
            self.num_threads,
        )
        self.session = ort.InferenceSession(
            str(self.model_path),
            sess_options=options,
            providers=["CPUExecutionProvider"],
            disabled_optimizers=list(DISABLED_OPTIMIZERS),
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
        self, feeds: Feeds, warmup_s: float, time_s: float, keep_latencies: bool = False
    ) -> dict[str, Any]:
        """Warm up for `warmup_s`, then time back-to-back runs for `time_s` (>= 3 runs).

        Keys follow `deepsparse.benchmark`'s benchmark_result; latencies are ms per batch.
        """
        first = next(iter(feeds.values()))
        batch_size = int(first.shape[0]) if first.ndim else 1
        self.run(feeds)  # checks the inputs once, outside the timed loop

        def once() -> None:
            self.session.run(None, feeds)

        result = {
            "engine": self.name,
            "num_threads": self.num_threads,
            **time_runs(once, batch_size, warmup_s, time_s, keep_latencies),
        }
        log.info(
            "%s batch %d: %.2f items/s, median %.3f ms over %d iterations",
            self.model_path.name,
            batch_size,
            result["items_per_sec"],
            result["median"],
            result["iterations"],
        )
        return result

    def close(self) -> None:
        """Nothing to release beyond the session, which garbage collection frees."""


def make_random_feeds(
    engine: Any,
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
