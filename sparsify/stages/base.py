"""The stage interface and the stage registry."""

from __future__ import annotations

from typing import Any, Protocol

from sparsify.context import RunContext
from sparsify.registry import Registry


class Stage(Protocol):
    """One step of the pipeline.

    `run` writes only inside `ctx.stage_dir(name)` and returns a JSON-able dict of what it
    produced; paths in its `artifacts` list are relative to the run directory.
    `config_keys` name the config sections whose values decide the stage's result: with
    the data/model files and the previous stages, they make its input fingerprint.
    """

    name: str
    config_keys: tuple[str, ...]

    def run(self, ctx: RunContext) -> dict[str, Any]: ...


STAGES: Registry[Stage] = Registry("stage")
