"""What every stage sees: the config, the run directory, and earlier stages' outputs."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

from omegaconf import DictConfig

from sparsify.recipes.levels import Derived, derive, normalize_level


@dataclass
class RunContext:
    cfg: DictConfig
    run_dir: Path
    outputs: dict[str, dict[str, Any]] = field(default_factory=dict)
    log: logging.Logger = field(default_factory=lambda: logging.getLogger("sparsify"))

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
        level, problem = normalize_level(self.cfg.optim_level)
        if problem is not None:
            raise ValueError(str(problem))  # the validate stage reports this first
        return float(level)  # type: ignore[arg-type]

    @cached_property
    def derived(self) -> Derived:
        return derive(self.cfg.experiment, self.level)

    @cached_property
    def cache_dir(self) -> Path:
        return Path(str(self.cfg.cache_dir)).expanduser()
