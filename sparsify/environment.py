"""The process environment a run sets up, and the record of what produced a run.

`prepare_environment` keeps third-party libraries from writing outside the run dir, the cache
and the zoo; it must run before they are imported (their settings are read at import):
- Ultralytics writes settings.json to ~/.config/Ultralytics unless YOLO_CONFIG_DIR says where;
- ONNX Runtime (1.2x, `core/platform/posix/device_id.cc`, part of its telemetry) writes
  `deviceid` and `onnxruntime.db` to ~/.cache/Microsoft/DeveloperTools/.onnxruntime when it is
  imported; ORT_DISABLE_TELEMETRY=1 turns that off (`onnxruntime.disable_telemetry_events()`
  comes too late: the files are written at import);
- Hugging Face's weight-loading / shard-writing progress bars flood the console and run.log.
A variable the user set is left as it is.

`describe_environment` is what the manifest records so that a run dir alone says how to
reproduce it: versions, the git commit of a checkout, the CPU and the cores this process may use.
"""

from __future__ import annotations

import os
import platform
import subprocess
import sys
from importlib import metadata
from pathlib import Path
from typing import Any

import sparsify
from sparsify.engines.host import host_record

# distributions whose versions say what produced a run (read from metadata, never imported)
PACKAGES = (
    "torch",
    "torchvision",
    "onnx",
    "onnxruntime",
    "transformers",
    "ultralytics",
    "numpy",
    "hydra-core",
)
# engine name -> the distribution that provides it in this interpreter
ENGINE_PACKAGES = {"onnxruntime": "onnxruntime", "deepsparse": "deepsparse", "openvino": "openvino"}


def environment_variables(cache_dir: Path) -> dict[str, str]:
    """The variables `prepare_environment` sets (unless already set), and their values."""
    return {
        "YOLO_CONFIG_DIR": str(cache_dir / "ultralytics"),
        "ORT_DISABLE_TELEMETRY": "1",
        "HF_HUB_DISABLE_PROGRESS_BARS": "1",
    }


def prepare_environment(cache_dir: Path) -> dict[str, str]:
    """Set `environment_variables(cache_dir)` that the user has not set; returns those set."""
    applied = {}
    for name, value in environment_variables(cache_dir).items():
        if name not in os.environ:
            os.environ[name] = value
            applied[name] = value
    return applied


def package_version(name: str) -> str | None:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None


def _git(root: Path, *args: str) -> str | None:
    """`git -C root <args>`'s output; None when git is missing, fails or takes over 5 s."""
    try:
        done = subprocess.run(
            ["git", "-C", str(root), *args], capture_output=True, text=True, timeout=5, check=False
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return done.stdout.strip() if done.returncode == 0 else None


def git_commit(source: Path | None = None) -> str | None:
    """HEAD of the git checkout sparsify runs from (+dirty with uncommitted changes, which the
    commit alone does not reproduce); None for an installed copy or without git."""
    root = (source or Path(sparsify.__file__).resolve().parent).parent
    if not (root / ".git").exists():
        return None
    commit = _git(root, "rev-parse", "HEAD")
    if not commit:
        return None
    changes = _git(root, "status", "--porcelain", "--untracked-files=no")
    return commit + ("+dirty" if changes else "")


def describe_environment(engines: list[str] | tuple[str, ...] = ()) -> dict[str, Any]:
    """sparsify's version (and commit), Python, the libraries, the engines, CPU and cores."""
    host = host_record()
    return {
        "sparsify": sparsify.__version__,
        "git_commit": git_commit(),
        "python": platform.python_version(),
        "python_executable": sys.executable,
        "platform": platform.platform(),
        "packages": {name: package_version(name) for name in PACKAGES},
        # an engine run in its own interpreter (DeepSparse's venv) gets the version it reported
        # once the benchmark has run (`engine_versions`)
        "engines": {e: package_version(ENGINE_PACKAGES.get(e, e)) for e in engines},
        "cpu": host["cpu"],
        "cpu_flags": host["cpu_flags"],
        "cpus_available": host["cpus_available"],
        "cpu_count": host["cpu_count"],
    }


def engine_versions(benchmark: dict[str, Any]) -> dict[str, str]:
    """Engine -> the version its worker reported, from a benchmark.json."""
    found: dict[str, str] = {}
    for engine, models in (benchmark.get("engines") or {}).items():
        for model in (models or {}).values():
            for row in (model or {}).get("benchmarks") or []:
                if row.get("engine_version"):
                    found[engine] = str(row["engine_version"])
    return found
