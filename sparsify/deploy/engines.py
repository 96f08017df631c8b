"""The inference engine a Pipeline runs on: ONNX Runtime here, or DeepSparse in its worker.

DeepSparse comes from `sparsify.benchmark` (it runs in its own virtualenv behind a worker
process); this module only delegates to it.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from sparsify.errors import SparsifyError
from sparsify.registry import canonical_key

ENGINES = ("onnxruntime", "deepsparse")


class Engine(Protocol):
    """What a Pipeline needs of an engine. `run` must be safe to call from several threads."""

    name: str

    @property
    def input_names(self) -> list[str]: ...

    def run(self, feeds: dict[str, np.ndarray]) -> list[np.ndarray]: ...


class SerializedEngine:
    """An engine whose `run` is not thread-safe (one worker pipe), one call at a time."""

    def __init__(self, engine: Any) -> None:
        self.inner = engine
        self.name = str(getattr(engine, "name", "engine"))
        self.static_shapes = bool(getattr(engine, "static_shapes", False))
        self._lock = threading.Lock()

    @property
    def input_names(self) -> list[str]:
        return list(self.inner.input_names)

    def run(self, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
        with self._lock:
            return self.inner.run(feeds)

    def close(self) -> None:
        close = getattr(self.inner, "close", None)
        if close is not None:
            close()


def _deepsparse(model_path: Path, num_threads: int | None) -> SerializedEngine:
    try:
        from sparsify.benchmark.engines import open_engine
    except ImportError:
        raise SparsifyError(
            "engine 'deepsparse' is not available in this version of sparsify "
            "(sparsify.benchmark has no DeepSparse engine); use engine='onnxruntime'"
        ) from None
    from omegaconf import OmegaConf

    settings = OmegaConf.create({"num_threads": num_threads, "deepsparse_python": None})
    # raises EngineFailure (a SparsifyError) saying how to install DeepSparse when it is missing
    return SerializedEngine(open_engine("deepsparse", Path(model_path), settings))


def load_engine(name: str, model_path: Path, num_threads: int | None = None) -> Any:
    """An engine for `model_path` by name (case, '-', '_' and spaces ignored)."""
    key = canonical_key(str(name))
    if key in ("onnxruntime", "ort"):
        from sparsify.benchmark.onnxruntime_engine import OnnxRuntimeEngine

        # InferenceSession.run is thread-safe: no lock, concurrent requests overlap
        return OnnxRuntimeEngine(Path(model_path), num_threads=num_threads)
    if key in ("deepsparse", "ds"):
        return _deepsparse(Path(model_path), num_threads)
    raise SparsifyError(f"unknown engine {name!r}; known engines: {', '.join(ENGINES)}")
