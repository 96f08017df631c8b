"""The one reader of a run directory: its config, manifest, stages and their typed outputs.

`RunRecord.load(run_dir)` is what the runner (`RunResult`), the sweep report and
`sparsify zoo add` read a run through. It never raises for a broken, unfinished or foreign
directory: what is missing or unreadable reads as None / empty, and the caller decides
what that means. Light on purpose (no torch): the sweep report imports it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any, TypeVar

import yaml
from omegaconf import DictConfig, OmegaConf

from sparsify.outputs import BenchmarkOutput, StageOutput, ValidateOutput
from sparsify.recipes.levels import normalize_level

T = TypeVar("T", bound=StageOutput)

MANIFEST = "manifest.json"
CONFIG = "config.yaml"  # the resolved config, saved by the run itself
HYDRA_CONFIG = Path(".hydra") / "config.yaml"  # Hydra's copy: a job that died before the run
FAILED = "FAILED"  # written by a multirun job that raised


def _read_json(path: Path) -> dict[str, Any] | None:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def _read_yaml(path: Path) -> dict[str, Any] | None:
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError):
        return None
    return data if isinstance(data, dict) else None


@dataclass
class RunRecord:
    run_dir: Path
    config: dict[str, Any] = field(default_factory=dict)  # plain; {} when there is none
    config_file: Path | None = None  # config.yaml, Hydra's copy, or None
    manifest: dict[str, Any] | None = None  # None: no readable manifest.json
    failed_marker: str | None = None  # the FAILED file's text

    @classmethod
    def load(cls, run_dir: str | Path) -> RunRecord:
        run_dir = Path(run_dir)
        record = cls(run_dir=run_dir)
        for candidate in (run_dir / CONFIG, run_dir / HYDRA_CONFIG):
            config = _read_yaml(candidate)
            if config:
                record.config, record.config_file = config, candidate
                break
        record.manifest = _read_json(run_dir / MANIFEST)
        failed = run_dir / FAILED
        if failed.is_file():
            record.failed_marker = failed.read_text(encoding="utf-8", errors="replace").strip()
        return record

    @cached_property
    def cfg(self) -> DictConfig:
        """The config with attribute access (`record.cfg.use_case.name`)."""
        return OmegaConf.create(self.config)

    @property
    def saved_config(self) -> bool:
        """Whether the run itself saved its resolved config (it got as far as the pipeline)."""
        return self.config_file == self.run_dir / CONFIG

    @property
    def status(self) -> str | None:
        """done | failed as the run recorded it; None while running or when it never ended."""
        return (self.manifest or {}).get("status")

    @property
    def stages(self) -> dict[str, dict[str, Any]]:
        """Stage name -> its manifest record (status, fingerprint, timing, outputs, error)."""
        stages = (self.manifest or {}).get("stages")
        return stages if isinstance(stages, dict) else {}

    def stage_status(self, name: str) -> str | None:
        return (self.stages.get(name) or {}).get("status")

    def unfinished(self, *names: str) -> list[str]:
        """Those of `names` whose stage is not done."""
        return [n for n in names if self.stage_status(n) != "done"]

    @property
    def outputs(self) -> dict[str, dict[str, Any]]:
        """The outputs of the finished stages, in manifest form, in pipeline order."""
        return {
            name: dict(record.get("outputs") or {})
            for name, record in self.stages.items()
            if record.get("status") == "done"
        }

    def output(self, kind: type[T]) -> T | None:
        """A finished stage's output, typed; None when that stage has not finished."""
        outputs = self.outputs
        return kind.from_dict(outputs[kind.stage]) if kind.stage in outputs else None

    def error(self) -> str | None:
        """Why the run stopped: the FAILED file, else the first failed or interrupted stage."""
        if self.failed_marker is not None:
            return self.failed_marker or "failed"
        for name, stage in self.stages.items():
            if stage.get("status") in ("failed", "interrupted") and stage.get("error"):
                return f"stage {name}: {stage['error']}"
        return None

    @property
    def level(self) -> float | None:
        """The optim level as a fraction: as validate recorded it, else read from the config
        (an old run dir may hold a percent there)."""
        validated = self.output(ValidateOutput)
        if validated is not None and validated.optim_level is not None:
            return float(validated.optim_level)
        level, _ = normalize_level(self.config.get("optim_level"))
        return level

    def _benchmark_file(self, key: str) -> Path:
        bench = self.output(BenchmarkOutput) or BenchmarkOutput()
        return self.run_dir / getattr(bench, key)

    @property
    def benchmark_path(self) -> Path:
        return self._benchmark_file("benchmark_json")

    def benchmark(self) -> dict[str, Any] | None:
        """benchmark.json: every engine's measurements of the baseline and the result."""
        return _read_json(self.benchmark_path)

    def metrics(self) -> dict[str, Any] | None:
        """metrics.json: the use case's metric per model."""
        return _read_json(self._benchmark_file("metrics_json"))


__all__ = ["CONFIG", "FAILED", "MANIFEST", "RunRecord"]
