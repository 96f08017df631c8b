"""manifest.json: what each stage of a run did, and what produced the run (`environment`:
versions, commit, CPU, cores; `sparsify.environment.describe_environment`). Written
atomically after every change.

This is the pipeline's writer; everything else reads a run through `sparsify.run_record`."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from sparsify.fileio import atomic_write_json
from sparsify.run_record import MANIFEST


class Manifest:
    def __init__(self, run_dir: Path) -> None:
        self.path = run_dir / MANIFEST
        self.data: dict[str, Any] = {"stages": {}}
        if self.path.exists():
            self.data = json.loads(self.path.read_text(encoding="utf-8"))
            self.data.setdefault("stages", {})

    def stage(self, name: str) -> dict[str, Any] | None:
        return self.data["stages"].get(name)

    def update_stage(self, name: str, record: dict[str, Any]) -> None:
        self.data["stages"][name] = record
        self.save()

    def set(self, key: str, value: Any) -> None:
        self.data[key] = value
        self.save()

    def record_environment(self, environment: dict[str, Any]) -> None:
        """What this run ran in (the latest run in this dir, for the stages it ran)."""
        self.set("environment", environment)

    def record_engine_versions(self, versions: dict[str, str]) -> None:
        """Engine versions reported by the engines themselves, over those read up front."""
        environment = self.data.setdefault("environment", {})
        environment["engines"] = {**environment.get("engines", {}), **versions}
        self.save()

    def save(self) -> None:
        atomic_write_json(self.path, self.data)
