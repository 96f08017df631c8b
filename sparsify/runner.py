"""One run: set up its directory and logging, run the pipeline, report what it made."""

from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from omegaconf import DictConfig, OmegaConf

from sparsify import distributed
from sparsify.benchmark.table import format_table
from sparsify.config.compose import compose_config, settle_optim_level
from sparsify.context import RunContext
from sparsify.environment import (
    describe_environment,
    engine_versions,
    prepare_environment,
)
from sparsify.errors import SparsifyError
from sparsify.fileio import atomic_write_text
from sparsify.outputs import BenchmarkOutput, PackageOutput, StageOutput
from sparsify.paths import check_paths
from sparsify.run_lock import RunLock
from sparsify.run_logging import run_logging
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


def _check_resolvable(cfg: DictConfig) -> None:
    """Every `${...}` of the config resolves, or one error naming the key and the reference."""
    from omegaconf.errors import OmegaConfBaseException

    try:
        OmegaConf.to_container(cfg, resolve=True)
    except OmegaConfBaseException as exc:
        key = getattr(exc, "full_key", None) or "the config"
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise SparsifyError(
            f"{key}: {reason}; give it a value, or an interpolation to a key that exists"
        ) from None


def execute(cfg: DictConfig, run_dir: Path) -> RunResult:
    """Run the pipeline for a composed config in `run_dir` (created if needed), holding the
    run dir's lock (a second process on it is refused)."""
    _check_resolvable(cfg)  # `key=${typo}` fails here, not as a traceback mid-run
    # first: ONNX Runtime, Ultralytics and Hugging Face read these when imported
    prepared = prepare_environment(Path(str(cfg.cache_dir)).expanduser())
    run_dir = run_dir.expanduser().resolve()
    distributed.refuse_unsupported(
        str(cfg.use_case.family), bool(cfg.experiment.train.get("sync_batchnorm"))
    )
    if distributed.active():  # one of several processes (torchrun / accelerate launch)
        distributed.init(str(cfg.device))
        try:
            if not distributed.is_main():
                return _follow()
            try:
                return _execute_main(cfg, run_dir, prepared)
            finally:  # whatever happened, the other ranks must not wait for training
                distributed.release_followers(run_dir, "rank 0 ran no training")
        finally:
            distributed.shutdown()
    return _execute_main(cfg, run_dir, prepared)


def _execute_main(cfg: DictConfig, run_dir: Path, prepared: dict[str, str]) -> RunResult:
    """The run itself, in the one process that owns the run dir (rank 0 under torchrun)."""
    check_paths(cfg, run_dir)  # a folder it cannot write: one error now, not mid-stage
    run_dir.mkdir(parents=True, exist_ok=True)
    with RunLock(run_dir) as lock, run_logging(run_dir):
        if lock.unsupported:
            log.warning(
                "%s: nothing stops a second run in this run_dir meanwhile", lock.unsupported
            )
        if lock.stale:
            log.info("Took over the lock of %s: that process is gone", lock.stale.describe())
        if prepared:
            log.debug("Set for this process (keeps files out of ~): %s", prepared)
        return _execute_locked(cfg, run_dir)


def _follow() -> RunResult:
    """A rank other than 0: wait for rank 0's go (its run dir, config and stage outputs),
    train alongside it, and leave; it writes only its log (and trainer scratch) under
    run_dir/ranks/rank-N/."""
    from sparsify.stages.pipeline import follow_training

    message = distributed.share()
    run_dir = Path(message["run_dir"])
    if "stop" in message:
        print(f"sparsify rank {distributed.rank()}: nothing to train ({message['stop']})")
        return RunResult(RunRecord.load(run_dir), "done")
    own = distributed.rank_dir(run_dir)
    own.mkdir(parents=True, exist_ok=True)
    distributed.set_failure_dir(run_dir)
    with run_logging(own):
        distributed.quiet_console()  # rank 0 says it all once; this rank's full log is in its run.log
        ctx = RunContext(cfg=OmegaConf.create(message["cfg"]), run_dir=run_dir)
        ctx.outputs = message["outputs"]
        log.info(
            "Rank %d of %d (PID %d): training in %s",
            distributed.rank(),
            distributed.world_size(),
            os.getpid(),
            run_dir,
        )
        try:
            follow_training(ctx)
        except BaseException as exc:
            distributed.record_failure(exc)
            raise
    return RunResult(RunRecord.load(run_dir), "done")


def _execute_locked(cfg: DictConfig, run_dir: Path) -> RunResult:
    from sparsify.stages import STAGES  # noqa: F401 - registers the stages
    from sparsify.stages.pipeline import run_pipeline

    settle_optim_level(cfg, log)  # before anything reads it, and before config.yaml is saved
    atomic_write_text(run_dir / "config.yaml", OmegaConf.to_yaml(cfg, resolve=True))
    log.info("Run directory: %s", run_dir)
    ctx = RunContext(cfg=cfg, run_dir=run_dir)
    # what produced this run dir, so that it alone says how to reproduce it
    Manifest(run_dir).record_environment(describe_environment(list(cfg.benchmark.engines)))
    if cfg.get("run") is not None:  # bookkeeping ids (project / experiment), as given
        Manifest(run_dir).set("run", OmegaConf.to_container(cfg.run, resolve=True))
    try:
        run_pipeline(ctx)
    except SparsifyError as exc:
        log.error("%s", exc)
        Manifest(run_dir).set("status", "failed")
        return RunResult(RunRecord.load(run_dir), "failed", tuple(ctx.outputs), str(exc))
    _record_engine_versions(run_dir, ctx)
    Manifest(run_dir).set("status", "done")
    result = RunResult(RunRecord.load(run_dir), "done", tuple(ctx.outputs))
    if result.table:
        notes = result.outputs.get("benchmark", {}).get("footnotes") or ()
        print("\n" + format_table(result.table, notes))
    if result.deployment_dir:
        print(f"\nDeployment folder: {result.deployment_dir}")
    return result


def _record_engine_versions(run_dir: Path, ctx: RunContext) -> None:
    """The versions the engines reported while benchmarking, into the manifest's environment:
    an engine in its own interpreter (DeepSparse's venv) is not importable here."""
    if "benchmark" not in ctx.outputs:
        return
    path = run_dir / ctx.output(BenchmarkOutput).benchmark_json
    try:
        reported = engine_versions(json.loads(path.read_text(encoding="utf-8")))
    except (OSError, ValueError):
        return
    Manifest(run_dir).record_engine_versions(reported)


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
