"""What every stage sees: the config, the run directory, and earlier stages' outputs."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from omegaconf import DictConfig, OmegaConf

from sparsify.errors import SparsifyError
from sparsify.outputs import StageOutput
from sparsify.recipes.levels import Derived, derive

if TYPE_CHECKING:
    from sparsify.recipes.recipe import Recipe

T = TypeVar("T", bound=StageOutput)


@dataclass
class RunContext:
    cfg: DictConfig
    run_dir: Path
    # stage name -> its output in manifest form (StageOutput.to_dict); read with `output`
    outputs: dict[str, dict[str, Any]] = field(default_factory=dict)
    log: logging.Logger = field(default_factory=lambda: logging.getLogger("sparsify"))

    def __post_init__(self) -> None:
        # what a finished run's stages settled (validate's chosen data.image_size, fetch's
        # model.arch) holds for any context rebuilt from its config and outputs
        for produced in self.outputs.values():
            for key, value in (produced.get("config_overrides") or {}).items():
                OmegaConf.update(self.cfg, key, value, merge=False)

    def output(self, kind: type[T]) -> T:
        """An earlier stage's output, typed: `ctx.output(ValidateOutput).data_path`."""
        if kind.stage not in self.outputs:
            raise SparsifyError(
                f"the {kind.stage} stage has no results in {self.run_dir}; run it first "
                "(add it to `stages`, or run all stages)"
            )
        return kind.from_dict(self.outputs[kind.stage])

    def stage_dir(self, name: str) -> Path:
        path = self.run_dir / name
        path.mkdir(parents=True, exist_ok=True)
        return path

    def rel(self, path: Path) -> str:
        """An artifact path as recorded in the manifest: relative to the run dir."""
        return str(Path(path).resolve().relative_to(self.run_dir.resolve()))

    def artifact(self, rel_path: str) -> Path:
        return self.run_dir / rel_path

    @cached_property
    def level(self) -> float:
        """The optim level as a fraction; the config step normalized it before the run."""
        level = float(self.cfg.optim_level)
        if not 0.0 <= level <= 1.0:  # NaN included; the validate stage reports why first
            raise ValueError(
                f"optim_level {self.cfg.optim_level!r} is not a fraction from 0.0 to 1.0 "
                "(sparsify.config.compose.settle_optim_level normalizes it before a run)"
            )
        return level

    @cached_property
    def derived(self) -> Derived:
        return derive(self.cfg.experiment, self.level)

    @cached_property
    def cache_dir(self) -> Path:
        return Path(str(self.cfg.cache_dir)).expanduser()


def resolve_data_path(ctx: RunContext) -> Path | None:
    """The dataset folder: `data.path`, or a demo set written to the cache on first use."""
    data = ctx.cfg.data
    if data.path:
        return Path(str(data.path)).expanduser().resolve()
    if data.demo:
        from sparsify.data.demo import materialize_demo  # PIL: only when a demo is asked for

        return materialize_demo(str(data.demo), ctx.cache_dir)
    return None


def recipe_variables(ctx: RunContext) -> dict[str, Any]:
    """What a recipe's `${...}` may read: the level, what it derives, the experiment, the
    mask type."""
    derived = ctx.derived
    return {
        "optim_level": ctx.level,
        "derived": {
            "sparsity": derived.sparsity,
            "quantize": derived.quantize,
            "tier": derived.tier,
            "variant": derived.variant,
        },
        "experiment": OmegaConf.to_container(ctx.cfg.experiment, resolve=True),
        # the shipped recipes' mask_type reads it; a config written before the key: unstructured
        "pruning": {
            "mask_type": str(OmegaConf.select(ctx.cfg, "pruning.mask_type") or "unstructured")
        },
    }


def load_run_recipe(ctx: RunContext) -> Recipe:
    """The run's recipe (`recipe`, else the experiment's), interpolated with
    `recipe_variables` and its top-level variables set by `recipe_args`."""
    from sparsify.recipes.recipe import load_recipe  # the modifiers import torch

    cfg = ctx.cfg
    args = OmegaConf.to_container(cfg.recipe_args, resolve=True) if cfg.get("recipe_args") else {}
    return load_recipe(str(cfg.recipe or cfg.experiment.recipe), recipe_variables(ctx), args)  # type: ignore[arg-type]
