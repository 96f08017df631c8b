"""Open an engine by name: onnxruntime in a worker on this interpreter, DeepSparse in its venv."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from sparsify.benchmark.engine import EngineFailure
from sparsify.benchmark.subprocess_engine import SubprocessEngine

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


def open_engine(name: str, model_path: Path, cfg: Any) -> SubprocessEngine:
    """`name` on `model_path` in a worker process, configured from the `benchmark` config."""
    python = deepsparse_python(cfg.get("deepsparse_python")) if name == "deepsparse" else None
    threads = int(cfg.num_threads) if cfg.get("num_threads") else None
    return SubprocessEngine(
        name,
        model_path,
        python=python,
        num_threads=threads,
        timeout_s=float(cfg.get("timeout_s") or 600),
    )
