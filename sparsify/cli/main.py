"""The `sparsify` command: a Hydra app over conf/, plus a few subcommands.

`sparsify serve|report|zoo ...` go to their own modules (`sparsify.cli.<name>.main(argv)`);
anything else is Hydra overrides.
"""

from __future__ import annotations

import importlib
import logging
import sys
from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig

from sparsify.config.overrides import normalize_overrides
from sparsify.config.schema import register_configs
from sparsify.errors import SparsifyError
from sparsify.report.resources import register_resolvers
from sparsify.run_record import FAILED

log = logging.getLogger("sparsify")
register_configs()
register_resolvers()  # launcher presets' ${sparsify_n_jobs:...}, also under --cfg


def task(cfg: DictConfig) -> float | None:
    """One Hydra job. In a sweep a failed job is recorded and the sweep goes on."""
    from sparsify.runner import execute

    hydra_cfg = HydraConfig.get()
    run_dir = Path(hydra_cfg.runtime.output_dir)
    multirun = hydra_cfg.mode == RunMode.MULTIRUN
    try:
        result = execute(cfg, run_dir)
    except Exception as exc:
        if not multirun:
            raise
        log.exception("Job %s failed: %s", run_dir, exc)
        (run_dir / FAILED).write_text(f"{type(exc).__name__}: {exc}\n", encoding="utf-8")
        return None
    if result.status != "done":
        if multirun:
            (run_dir / FAILED).write_text(f"{result.error}\n", encoding="utf-8")
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


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] in SUBCOMMANDS:
        _subcommand(sys.argv[1], sys.argv[2:])
    try:
        sys.argv = [sys.argv[0], *normalize_overrides(sys.argv[1:])]
    except SparsifyError as exc:
        print(f"sparsify: {exc}", file=sys.stderr)
        sys.exit(2)
    try:
        _hydra_main()
    except KeyboardInterrupt:
        print(
            "sparsify: interrupted. Finished stages are kept; run the same command with "
            "run_dir=<the run directory> to go on from the unfinished stage.",
            file=sys.stderr,
        )
        sys.exit(130)


if __name__ == "__main__":
    main()
