"""Engines by name: the known names and aliases, a worker for benchmarking (onnxruntime and
OpenVINO on this interpreter, DeepSparse in its venv), and the engine a deployment Pipeline
runs on."""

from __future__ import annotations

import importlib.util
import os
import threading
from pathlib import Path
from typing import Any

import numpy as np

from sparsify.engines.base import EngineFailure
from sparsify.engines.worker_client import SubprocessEngine
from sparsify.errors import SparsifyError
from sparsify.registry import canonical_key

ENGINE_NAMES = ("onnxruntime", "deepsparse", "openvino")
ALIASES = {"ort": "onnxruntime", "ov": "openvino", "ds": "deepsparse"}


def engine_name(name: str) -> str | None:
    """The canonical engine name for `name` (case, '-', '_' and spaces ignored), or None."""
    key = canonical_key(str(name))
    key = ALIASES.get(key, key)
    return key if key in ENGINE_NAMES else None


def check_engine_names(names: list[str]) -> list[str]:
    """The configured engine names, normalized; an unknown one lists the known ones."""
    out = []
    for name in names:
        key = engine_name(name)
        if key is None:
            raise SparsifyError(
                f"benchmark.engines: unknown engine {name!r}; known: {', '.join(ENGINE_NAMES)} "
                "(e.g. benchmark.engines=[onnxruntime,openvino,deepsparse])"
            )
        out.append(key)
    return out


PROJECT_ROOT = Path(__file__).resolve().parents[2]
DEEPSPARSE_VENV = ".venv-deepsparse"
DEEPSPARSE_ENV_VAR = "SPARSIFY_DEEPSPARSE_PYTHON"
MAKE_TARGET = "make deepsparse"


def deepsparse_python(configured: str | None = None) -> Path:
    """The interpreter of the DeepSparse virtualenv.

    In order: `benchmark.deepsparse_python`, $SPARSIFY_DEEPSPARSE_PYTHON, then
    `.venv-deepsparse/bin/python` in the project checkout. A missing one names the make target.
    """
    if configured:
        path, source = Path(os.path.expanduser(str(configured))), "benchmark.deepsparse_python"
    elif os.environ.get(DEEPSPARSE_ENV_VAR):
        path, source = Path(os.environ[DEEPSPARSE_ENV_VAR]), f"${DEEPSPARSE_ENV_VAR}"
    else:
        path, source = PROJECT_ROOT / DEEPSPARSE_VENV / "bin" / "python", "the default"
    if not path.is_absolute():
        path = PROJECT_ROOT / path
    if not (path.is_file() and os.access(path, os.X_OK)):
        raise EngineFailure(
            "deepsparse",
            "unavailable",
            f"DeepSparse interpreter {path} ({source}) not found: DeepSparse 1.8.0 lives in its "
            f"own virtualenv because it pins numpy<2, onnx<1.15 and onnxruntime 1.26; create it "
            f"with `{MAKE_TARGET}` in {PROJECT_ROOT}, point benchmark.deepsparse_python (or "
            f"${DEEPSPARSE_ENV_VAR}) at an existing one, or drop it: benchmark.engines=[onnxruntime]",
        )
    return path


def check_openvino() -> None:
    """OpenVINO runs in this interpreter's worker: a missing one names the extra."""
    if importlib.util.find_spec("openvino") is None:
        raise EngineFailure(
            "openvino",
            "unavailable",
            "OpenVINO is not installed in this environment: pip install 'sparsify[openvino]' "
            "(`make install` includes it), or drop it: benchmark.engines=[onnxruntime]",
        )


def open_engine(name: str, model_path: Path, cfg: Any) -> SubprocessEngine:
    """`name` on `model_path` in a worker process, configured from the `benchmark` config."""
    if name == "openvino":
        check_openvino()
    python = deepsparse_python(cfg.get("deepsparse_python")) if name == "deepsparse" else None
    threads = int(cfg.num_threads) if cfg.get("num_threads") else None
    return SubprocessEngine(
        name,
        model_path,
        python=python,
        num_threads=threads,
        timeout_s=float(cfg.get("timeout_s") or 600),
    )


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


def _in_worker(name: str, model_path: Path, num_threads: int | None) -> SerializedEngine:
    from omegaconf import OmegaConf

    settings = OmegaConf.create({"num_threads": num_threads, "deepsparse_python": None})
    # raises EngineFailure (a SparsifyError) saying how to install the engine when it is missing
    return SerializedEngine(open_engine(name, Path(model_path), settings))


def load_engine(name: str, model_path: Path, num_threads: int | None = None) -> Any:
    """An engine for `model_path` by name (case, '-', '_' and spaces ignored)."""
    key = engine_name(name)
    if key == "onnxruntime":
        from sparsify.engines.ort import OnnxRuntimeEngine

        # InferenceSession.run is thread-safe: no lock, concurrent requests overlap
        return OnnxRuntimeEngine(Path(model_path), num_threads=num_threads)
    if key in ("deepsparse", "openvino"):
        return _in_worker(key, Path(model_path), num_threads)
    raise SparsifyError(f"unknown engine {name!r}; known engines: {', '.join(ENGINE_NAMES)}")
