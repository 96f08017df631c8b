"""The `sparsify` command: a Hydra app over conf/, plus a few subcommands.

`sparsify serve|report|zoo ...` go to their own modules (`sparsify.cli.<name>.main(argv)`);
anything else is Hydra overrides.
"""

from __future__ import annotations

import contextlib
import importlib
import logging
import os
import sys
from pathlib import Path
from typing import Any

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig

from sparsify.budget import budget_outcome
from sparsify.config.overrides import config_dir_option, hydra_quote, normalize_overrides
from sparsify.config.schema import register_configs
from sparsify.errors import SparsifyError
from sparsify.report.callback import failed_sweep_jobs
from sparsify.report.resources import register_resolvers
from sparsify.run_record import FAILED

log = logging.getLogger("sparsify")
register_configs()
register_resolvers()  # launcher presets' ${sparsify_n_jobs:...}, also under --cfg

# the job running in this process, for the Ctrl-C message
_running: dict[str, Any] = {"run_dir": None, "sweep": False}


def interrupted(prog: str, run_dir: Path | None, sweep: bool = False) -> int:
    """Ctrl-C under `sparsify` or `sparsify.run`: one line saying what is kept and how to go
    on, no traceback. Returns the exit status (130, as a shell reports SIGINT)."""
    again = f"run_dir={hydra_quote(str(run_dir))}"
    if run_dir is None:
        message = "interrupted before a run directory was made."
    elif sweep:  # the sweep command would start a new sweep: the job is resumed on its own
        message = (
            f"interrupted. Finished jobs are kept in {run_dir.parent}; to go on with the "
            f"stopped job, run `sparsify` with its overrides and {again}."
        )
    else:
        message = (
            f"interrupted. Finished stages are kept in {run_dir}; run the same command with "
            f"{again} to go on from the unfinished stage."
        )
    print(f"{prog}: {message}", file=sys.stderr)
    return 130


def _record_failure(run_dir: Path, text: str) -> None:
    # the run dir may be the very thing that is not writable: the log has the error then
    with contextlib.suppress(OSError):
        (run_dir / FAILED).write_text(f"{text}\n", encoding="utf-8")


def task(cfg: DictConfig) -> float | None:
    """One Hydra job. In a sweep a failed job is recorded and the sweep goes on."""
    from sparsify.runner import execute

    hydra_cfg = HydraConfig.get()
    run_dir = Path(hydra_cfg.runtime.output_dir)
    multirun = hydra_cfg.mode == RunMode.MULTIRUN
    _running.update(run_dir=run_dir, sweep=multirun)
    try:
        result = execute(cfg, run_dir)
    except Exception as exc:
        if not multirun:
            if isinstance(exc, SparsifyError):  # a mistake the user can fix: no traceback
                print(f"sparsify: {exc}", file=sys.stderr)
                sys.exit(2)
            raise
        log.exception("Job %s failed: %s", run_dir, exc)
        _record_failure(run_dir, f"{type(exc).__name__}: {exc}")
        return None
    if result.status != "done":
        if multirun:
            _record_failure(run_dir, str(result.error))
            return None
        sys.exit(1)
    top = next((r["accuracy"] for r in result.table if r["model"] == "sparsified"), None)
    return top


@hydra.main(version_base="1.3", config_path="pkg://sparsify.conf", config_name="config")
def _hydra_main(cfg: DictConfig) -> float | None:
    return task(cfg)


# subcommand -> module under sparsify.cli with a `main(argv: list[str]) -> int`
SUBCOMMANDS = {
    "serve": "serve the deployment folder of a run over HTTP",
    "report": "build the sweep report from existing run directories",
    "zoo": "list, show, add or remove models in the local zoo",
}


def _subcommand(name: str, argv: list[str]) -> None:
    # as a run does: ONNX Runtime's telemetry (~/.cache/Microsoft/...) and Ultralytics'
    # settings stay out of HOME; `sparsify serve` loads ONNX Runtime like a run
    from sparsify.environment import prepare_environment

    cache = os.environ.get("SPARSIFY_CACHE") or "~/.cache/sparsify"  # config.cache_dir's default
    prepare_environment(Path(cache).expanduser())
    try:
        module = importlib.import_module(f"sparsify.cli.{name}")
    except ModuleNotFoundError as exc:
        if exc.name and exc.name.startswith("sparsify.cli"):
            print(f"sparsify: `{name}` is not available in this version", file=sys.stderr)
            sys.exit(2)
        raise
    try:
        sys.exit(module.main(argv))
    except SparsifyError as exc:
        print(f"sparsify {name}: {exc}", file=sys.stderr)
        sys.exit(2)


def main(argv: list[str] | None = None) -> None:
    """`sparsify ARGS` (`argv` stands for sys.argv[1:]); exits with the command's status:
    2 for a mistake on the command line, 1 for a failed run or a sweep with a failed job,
    130 for Ctrl-C."""
    args = sys.argv[1:] if argv is None else list(argv)
    if args and args[0] in SUBCOMMANDS:
        _subcommand(args[0], args[1:])
    try:
        sys.argv = [sys.argv[0], *normalize_overrides(args, config_dir_option(args))]
    except SparsifyError as exc:
        print(f"sparsify: {exc}", file=sys.stderr)
        sys.exit(2)
    _running.update(run_dir=None, sweep=False)
    # an earlier sweep in this process (a caller of main(), a test) must not decide this
    # command's exit status: read both outcomes, which clears them
    failed_sweep_jobs()
    budget_outcome()
    try:
        _hydra_main()
    except KeyboardInterrupt:
        sys.exit(interrupted("sparsify", _running["run_dir"], _running["sweep"]))
    failed = failed_sweep_jobs()
    outcome = budget_outcome()
    if outcome is not None:  # a budget search: failed trials are part of it (trials.csv)
        if outcome:
            print(f"sparsify: {outcome}", file=sys.stderr)
            sys.exit(1)
        return
    if failed:  # every job ran and the report is written; the status says not all went well
        print(f"sparsify: {failed}", file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()
