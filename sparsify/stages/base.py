"""The stage interface and the stage registry."""

from __future__ import annotations

from typing import Protocol

from sparsify.context import RunContext
from sparsify.outputs import StageOutput
from sparsify.registry import Registry


class Stage(Protocol):
    """One step of the pipeline.

    `run` writes only inside `run_dir/<out_dir>` (which the pipeline empties before it runs
    the stage) and returns its typed output; paths in its `artifacts` are relative to the run
    directory. `output` is that output's class, which reads it back from the manifest.
    `config_keys` name the config sections whose values decide the stage's result: with
    the data/model files and the previous stages, they make its input fingerprint.
    """

    name: str
    out_dir: str
    output: type[StageOutput]
    config_keys: tuple[str, ...]

    def run(self, ctx: RunContext) -> StageOutput: ...


STAGES: Registry[Stage] = Registry("stage")
