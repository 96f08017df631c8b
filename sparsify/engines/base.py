"""What every inference engine offers (the benchmark stage and deployment Pipelines alike)."""

from __future__ import annotations

import signal
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import numpy as np

from sparsify.errors import SparsifyError

Feeds = dict[str, np.ndarray]  # input name -> batched array


@runtime_checkable
class Engine(Protocol):
    """An ONNX model loaded on an inference runtime (in this process or in a worker)."""

    name: str

    @property
    def input_names(self) -> list[str]: ...

    @property
    def input_shapes(self) -> list[list[int | str | None]]:
        """Per input, its dims: an int when fixed, the symbol (or None) when dynamic."""
        ...

    @property
    def input_dtypes(self) -> list[np.dtype]: ...

    def run(self, feeds: dict[str, np.ndarray]) -> list[np.ndarray]: ...

    def benchmark(
        self, feeds: Feeds, warmup_s: float, time_s: float, keep_latencies: bool = False
    ) -> dict[str, Any]:
        """deepsparse.benchmark-style result (items_per_sec, median, ... in ms/batch);
        `keep_latencies` adds each call's (`latencies_ms`, for `timing.merge_rounds`)."""
        ...

    def close(self) -> None: ...


class EngineFailure(SparsifyError):
    """An engine that crashed, hung or raised: recorded in benchmark.json, never fatal to a run.

    kind: "crash" (the worker process died), "timeout" (killed after the limit), "error" (the
    engine raised, e.g. refused the graph) or "unavailable" (the engine is not installed).
    """

    def __init__(
        self,
        engine: str,
        kind: str,
        message: str,
        returncode: int | None = None,
        stderr_tail: str = "",
        details: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(message)
        self.engine, self.kind, self.message = engine, kind, message
        self.returncode, self.stderr_tail = returncode, stderr_tail
        self.details = dict(details or {})

    @property
    def signal_name(self) -> str | None:
        if self.returncode is None or self.returncode >= 0:
            return None
        try:
            return signal.Signals(-self.returncode).name
        except ValueError:
            return f"signal {-self.returncode}"

    def __str__(self) -> str:
        return self.message

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"engine": self.engine, "kind": self.kind, "message": self.message}
        if self.returncode is not None:
            out["returncode"] = self.returncode
            out["signal"] = self.signal_name
        if self.stderr_tail:
            out["stderr_tail"] = self.stderr_tail
        return {**out, **self.details}


def batch_size_of(feeds: dict[str, np.ndarray]) -> int:
    first = next(iter(feeds.values()))
    return int(first.shape[0]) if first.ndim else 1


def onnx_input_specs(path: Path) -> list[tuple[str, list[int | str | None], np.dtype]]:
    """(name, dims, dtype) of each graph input that is not an initializer, read from the file."""
    import onnx
    from onnx import helper

    graph = onnx.load(str(path), load_external_data=False).graph
    initializers = {init.name for init in graph.initializer}
    specs = []
    for value in graph.input:
        if value.name in initializers:
            continue
        tensor = value.type.tensor_type
        dims: list[int | str | None] = [
            d.dim_value if d.HasField("dim_value") else (d.dim_param or None)
            for d in tensor.shape.dim
        ]
        specs.append(
            (value.name, dims, np.dtype(helper.tensor_dtype_to_np_dtype(tensor.elem_type)))
        )
    return specs


class ModelInputs:
    """An ONNX file's inputs (names, dims, dtypes), as make_random_feeds wants them."""

    def __init__(self, path: Path) -> None:
        self._specs = onnx_input_specs(Path(path))

    @property
    def input_names(self) -> list[str]:
        return [name for name, _, _ in self._specs]

    @property
    def input_shapes(self) -> list[list[int | str | None]]:
        return [dims for _, dims, _ in self._specs]

    @property
    def input_dtypes(self) -> list[np.dtype]:
        return [dtype for _, _, dtype in self._specs]
