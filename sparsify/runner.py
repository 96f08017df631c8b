"""One run: set up its directory and logging, run the pipeline, report what it made."""

from __future__ import annotations

import logging
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from omegaconf import DictConfig, OmegaConf

from sparsify.benchmark.table import format_table
from sparsify.config.compose import compose_config, settle_optim_level
from sparsify.context import RunContext
from sparsify.errors import SparsifyError
from sparsify.fileio import atomic_write_text
from sparsify.outputs import BenchmarkOutput, PackageOutput, StageOutput
from sparsify.run_record import RunRecord
from sparsify.stages.manifest import Manifest

log = logging.getLogger("sparsify")
T = TypeVar("T", bound=StageOutput)


@dataclass
class RunResult:
    """What a run made, read back from its run dir: the stages it went through (those
    selected and the earlier ones they used) and their outputs."""

    record: RunRecord
    status: str  # done | failed
    stages: tuple[str, ...] = ()
    error: str | None = None

    @property
    def run_dir(self) -> Path:
        return self.record.run_dir

    @property
    def outputs(self) -> dict[str, dict[str, Any]]:
        """Stage name -> its outputs in manifest form."""
        return {k: v for k, v in self.record.outputs.items() if k in self.stages}

    def output(self, kind: type[T]) -> T | None:
        """A stage's output, typed; None when this run did not go through that stage."""
        return self.record.output(kind) if kind.stage in self.stages else None

    @property
    def deployment_dir(self) -> Path | None:
        package = self.output(PackageOutput)
        return Path(package.deployment_dir) if package and package.deployment_dir else None

    @property
    def table(self) -> list[dict[str, Any]]:
        benchmark = self.output(BenchmarkOutput)
        return benchmark.table if benchmark else []


def setup_logging(run_dir: Path, verbose: bool = False) -> logging.Handler:
    """Console (stderr) + run.log in the run directory for the `sparsify` logger."""
    logger = logging.getLogger("sparsify")
    logger.setLevel(logging.DEBUG)
    logger.propagate = False
    fmt = logging.Formatter("[%(asctime)s][%(levelname)s] %(message)s", "%H:%M:%S")
    for handler in list(logger.handlers):
        if getattr(handler, "_sparsify", False):
            logger.removeHandler(handler)
            handler.close()
    console = logging.StreamHandler(sys.stderr)
    console.setLevel(logging.DEBUG if verbose else logging.INFO)
    console.setFormatter(fmt)
    file = logging.FileHandler(run_dir / "run.log", encoding="utf-8")
    file.setLevel(logging.DEBUG)
    file.setFormatter(fmt)
    for handler in (console, file):
        handler._sparsify = True  # type: ignore[attr-defined]
        logger.addHandler(handler)
    return file


def execute(cfg: DictConfig, run_dir: Path) -> RunResult:
    """Run the pipeline for a composed config in `run_dir` (created if needed)."""
    from sparsify.stages import STAGES  # noqa: F401 - registers the stages
    from sparsify.stages.pipeline import run_pipeline

    run_dir = run_dir.expanduser().resolve()
    run_dir.mkdir(parents=True, exist_ok=True)
    setup_logging(run_dir)
    settle_optim_level(cfg, log)  # before anything reads it, and before config.yaml is saved
    atomic_write_text(run_dir / "config.yaml", OmegaConf.to_yaml(cfg, resolve=True))
    log.info("Run directory: %s", run_dir)
    ctx = RunContext(cfg=cfg, run_dir=run_dir)
    try:
        run_pipeline(ctx)
    except SparsifyError as exc:
        log.error("%s", exc)
        Manifest(run_dir).set("status", "failed")
        return RunResult(RunRecord.load(run_dir), "failed", tuple(ctx.outputs), str(exc))
    Manifest(run_dir).set("status", "done")
    result = RunResult(RunRecord.load(run_dir), "done", tuple(ctx.outputs))
    if result.table:
        print("\n" + format_table(result.table))
    if result.deployment_dir:
        print(f"\nDeployment folder: {result.deployment_dir}")
    return result


def run(
    overrides: list[str] | None = None,
    run_dir: str | Path | None = None,
    config_dir: str | None = None,
) -> RunResult:
    """Compose the config from `overrides` (as on the command line) and run it.

    Raises SparsifyError for bad overrides; a run that fails validation returns
    status "failed" with the error message.
    """
    cfg = compose_config(overrides, config_dir=config_dir)
    if run_dir is not None:
        cfg.run_dir = str(run_dir)
    return execute(cfg, Path(str(cfg.run_dir)))
