"""Build zoo tiers with sparsify's own pipeline: one run pruned to a tier's sparsity, its pruned
checkpoint registered in the local zoo (`add_run`, the code of `sparsify zoo add`).

`scripts/build_zoo.py` builds every tier from packaged weights with it, and the fetch stage
builds a missing tier on first use (sparsify/zoo/first_use.py).
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from omegaconf import DictConfig

from sparsify.errors import SparsifyError
from sparsify.zoo.catalog import TIERS
from sparsify.zoo.local import add_run

if TYPE_CHECKING:
    from sparsify.runner import RunResult

# the sparsity each tier is built to (the shipped catalog's built tiers use the same)
TIER_SPARSITY: dict[str, float] = {"largest": 0.6, "medium": 0.75, "smallest": 0.9}
DEFAULT_TIERS = ",".join(f"{tier}={value}" for tier, value in TIER_SPARSITY.items())


def parse_tiers(text: str) -> dict[str, float]:
    """`largest=0.6,smallest=0.9` -> {tier: sparsity}, every pair checked."""
    tiers = {}
    for part in text.split(","):
        tier, _, value = part.partition("=")
        if tier.strip() not in TIERS or not value:
            raise SparsifyError(f"--tiers {text!r}: give TIER=SPARSITY pairs, tiers {TIERS}")
        sparsity = float(value)
        if not 0 < sparsity < 1:
            raise SparsifyError(f"--tiers: sparsity {sparsity} must be between 0 and 1")
        tiers[tier.strip()] = sparsity
    return tiers


def tier_overrides(sparsity: float) -> list[str]:
    """Prune to exactly `sparsity`: level 1.0 maps to sparsity_at_end, for one_shot and
    training_aware alike."""
    return ["optim_level=1.0", f"experiment.sparsity_at_end={sparsity}"]


def compose(overrides: list[str]) -> DictConfig:
    """The run config for `overrides`, also from inside a running `sparsify` command: Hydra
    composes only while no app holds its global state, so the app's is set aside meanwhile."""
    from hydra.core.global_hydra import GlobalHydra
    from hydra.core.singleton import Singleton

    from sparsify.config.compose import compose_config

    held = Singleton._instances.pop(GlobalHydra, None)
    try:
        return compose_config(overrides)
    finally:
        if held is not None:
            Singleton._instances[GlobalHydra] = held


@contextlib.contextmanager
def _outer_log_kept() -> Iterator[None]:
    """A run started inside another one replaces the `sparsify` logger's console and run.log
    handlers with its own; the outer run gets its handlers back when the inner one ends."""
    logger = logging.getLogger("sparsify")
    saved = list(logger.handlers)
    try:
        yield
    finally:
        for handler in [h for h in logger.handlers if h not in saved]:
            logger.removeHandler(handler)
            handler.close()
        for handler in [h for h in saved if h not in logger.handlers]:
            logger.addHandler(handler)  # a closed FileHandler reopens (append) on its next line


def build_tier(
    cfg: DictConfig,
    name: str,
    tier: str,
    zoo: Path,
    *,
    run_dir: Path | None = None,
    force: bool = False,
    provenance: dict[str, Any] | None = None,
) -> tuple[dict[str, Any], RunResult]:
    """Run `cfg` (a pruning run, see `tier_overrides`) in `run_dir` (default cfg.run_dir) and
    register its pruned checkpoint as `name`, variant pruned_int8 (a pruned FP32 checkpoint
    that sparse transfer quantizes). A run dir that holds an interrupted attempt resumes: the
    pipeline skips the stages that finished. The zoo entry appears whole or not at all
    (`LocalZoo.add` copies into a temp dir inside the zoo and renames)."""
    from sparsify.outputs import SparsifyOutput
    from sparsify.runner import execute

    started = time.monotonic()
    with _outer_log_kept():
        result = execute(cfg, Path(str(run_dir or cfg.run_dir)))
    if result.status != "done":
        raise SparsifyError(f"building the {tier} tier failed ({result.run_dir}): {result.error}")
    if provenance is not None:  # how long it took, and the recipe as applied
        applied = (result.output(SparsifyOutput) or SparsifyOutput()).recipe_applied
        recipe = result.run_dir / applied if applied else None
        provenance = {
            **provenance,
            "seconds": round(time.monotonic() - started, 1),
            "recipe_applied": recipe.read_text(encoding="utf-8") if recipe else None,
        }
    entry = add_run(
        result.run_dir, name, tier, zoo, variant="pruned_int8", force=force, provenance=provenance
    )
    return entry, result
