"""The folders a run writes, checked before anything runs.

A run writes its run directory (every stage, `stages=[benchmark,package]` included) and,
when it must, the cache: the demo dataset on first use and the dense baseline it trains
once. A folder that cannot be written is found out here, with the key to change, instead
of as a PermissionError traceback halfway through a stage.

Writability is tested by creating a file, not with `os.access`: root passes every mode
check yet cannot write a read-only mount.
"""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig

from sparsify.errors import Problem, ValidationError

ELSEWHERE = "a folder you can write"


def _cannot_write(folder: Path) -> str | None:
    """Why no file can be created in `folder`; None when one can (and was, and is gone)."""
    try:
        fd, name = tempfile.mkstemp(prefix=".sparsify-write-test-", dir=folder)
    except OSError as exc:
        return exc.strerror or type(exc).__name__
    os.close(fd)
    os.unlink(name)
    return None


def _existing(path: Path) -> Path:
    """`path` or its nearest ancestor that exists (a file too: it blocks the folders below)."""
    for candidate in (path, *path.parents):
        if candidate.exists() or candidate.is_symlink():
            return candidate
    return Path(path.anchor)


def _folder_problem(key: str, value: Any, folder: Path, fix: str) -> Problem | None:
    """A problem when `folder` cannot be created or written; None when it can."""
    found = _existing(folder)
    if found == folder and not folder.is_dir():
        return Problem(key, value, f"{folder} is a file, not a folder", fix)
    if not found.is_dir():
        return Problem(key, value, f"{folder} cannot be created: {found} is a file", fix)
    why = _cannot_write(found)
    if why is None:
        return None
    if found == folder:
        return Problem(key, value, f"{folder} cannot be written ({why})", fix)
    return Problem(key, value, f"{folder} cannot be created: {found} is not writable ({why})", fix)


def _run_dir_problem(cfg: DictConfig, run_dir: Path) -> Problem | None:
    working_dir = Path(str(cfg.working_dir)).expanduser().resolve()
    if run_dir.is_relative_to(working_dir) and run_dir != working_dir:
        fix = f"set working_dir=<{ELSEWHERE}> (each run gets a folder below it)"
        return _folder_problem("working_dir", str(cfg.working_dir), run_dir, fix)
    fix = (
        f"set run_dir=<{ELSEWHERE}>: a new folder, or an earlier run's directory to go on "
        "with it (every stage writes its results there)"
    )
    return _folder_problem("run_dir", str(run_dir), run_dir, fix)


def _cache_writes(cfg: DictConfig, cache: Path) -> list[str]:
    """What this run would write into the cache: a demo dataset on first use, a dense
    baseline that no earlier run has trained."""
    from sparsify.data.demo import COMPLETE_MARKER, DEMO_DATASETS

    writes = []
    stages = [str(s) for s in cfg.stages]
    if "validate" in stages and cfg.data.demo and not cfg.data.path:
        name = DEMO_DATASETS.resolve(str(cfg.data.demo)) or str(cfg.data.demo)
        if not (cache / "datasets" / name / COMPLETE_MARKER).is_file():
            writes.append(f"the demo dataset {name}")
    if "fetch" not in stages:
        return writes
    # fetch caches under baselines/ what it trains and measures. The exact entries depend
    # on the data's fingerprint: anything cached for this family and architecture means an
    # earlier run may have made them; nothing cached means this run writes them
    baselines = cache / "baselines"
    if not cfg.model.path and str(cfg.experiment.name) != "sparse_transfer":
        prefix = f"{cfg.use_case.family}-{cfg.model.arch}-"
        if not any(True for _ in baselines.glob(f"{prefix}*/baseline.json")):
            writes.append(f"the dense {cfg.model.arch} baseline it trains (none is cached yet)")
    if not any(True for _ in baselines.glob("measured/*.json")):
        writes.append("the dense model's measured metrics")
    return writes


def _cache_problems(cfg: DictConfig) -> list[Problem]:
    value = str(cfg.cache_dir)
    cache = Path(value).expanduser().resolve()
    fix = (
        f"set cache_dir=<{ELSEWHERE}> (or the environment variable SPARSIFY_CACHE), "
        f"or make {cache} readable and writable"
    )
    if cache.is_dir():
        try:
            next(os.scandir(cache), None)
        except OSError as exc:
            return [Problem("cache_dir", value, f"{cache} cannot be read ({exc.strerror})", fix)]
    writes = _cache_writes(cfg, cache)
    if not writes:
        return []
    problem = _folder_problem("cache_dir", value, cache, fix)
    if problem is None:
        return []
    message = f"{problem.message}, and this run writes {' and '.join(writes)} there"
    return [Problem(problem.key, problem.value, message, problem.fix)]


def check_paths(cfg: DictConfig, run_dir: Path) -> None:
    """Raise one ValidationError naming every folder this run must write and cannot:
    `run_dir` (or the working_dir it is made in), and the cache when the run writes there."""
    run_dir = Path(run_dir).expanduser().resolve()
    problems = [p for p in (_run_dir_problem(cfg, run_dir),) if p is not None]
    problems.extend(_cache_problems(cfg))
    if problems:
        raise ValidationError(problems, "the run's folders")


class PathCheck(Callback):
    """The same check for the `sparsify` command, before Hydra makes the run (or sweep)
    directory and its `.hydra/` files there; registered in conf/config.yaml."""

    def on_run_start(self, config: DictConfig, **kwargs: Any) -> None:
        self._check(config, str(config.hydra.run.dir))

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        self._check(config, str(config.hydra.sweep.dir))

    @staticmethod
    def _check(config: DictConfig, folder: str) -> None:
        try:
            check_paths(config, Path(folder))
        except ValidationError as exc:
            # Hydra would print an exception raised here as a traceback
            print(f"sparsify: {exc}", file=sys.stderr)
            sys.exit(2)
