"""What each stage hands to the later ones: one dataclass per stage.

A stage returns its output; the pipeline stores `to_dict()` in manifest.json (and in
`RunContext.outputs`), and everything after reads it back with `from_dict`, by attribute:
`ctx.output(ValidateOutput).data_path` in a run, `RunRecord.load(run_dir).output(...)` after
it. The dict keeps the keys manifest.json has always had, so run directories written by
earlier versions read the same. Light on purpose (no torch): the report imports it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, ClassVar, Self, TypeVar

T = TypeVar("T", bound="StageOutput")

# names a family saves its torch checkpoint under (ModelFamily.checkpoint_name)
CHECKPOINT_NAMES = ("model.pth", "model.pt")


def optional(default: Any = None) -> Any:
    """A key the stage writes only when it has a value (None leaves it out of the manifest)."""
    return field(default=default, metadata={"optional": True})


@dataclass
class StageOutput:
    """Common to every stage: its files, and what it records that no later stage reads."""

    stage: ClassVar[str] = ""
    # files and folders the stage made, relative to the run dir; a finished stage whose
    # artifacts are gone runs again
    artifacts: list[str] = field(default_factory=list)
    # config values the stage settled for the later ones (fetch: the zoo model's
    # architecture); applied whether the stage ran now or in an earlier attempt
    config_overrides: dict[str, Any] | None = optional()
    # the rest of what the stage reported (a family's training statistics, ...), kept as it
    # is so that the manifest holds everything
    extra: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """The manifest form: the fields and `extra`, flat, paths as strings."""
        out = dict(self.extra)
        for f in fields(self):
            value = getattr(self, f.name)
            if f.name == "extra" or (value is None and f.metadata.get("optional")):
                continue
            out[f.name] = str(value) if isinstance(value, Path) else value
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any] | None) -> Self:
        """Back from the manifest form; keys this class does not name go to `extra`."""
        data = dict(data or {})
        names = {f.name for f in fields(cls)} - {"extra"}
        known = {k: data.pop(k) for k in list(data) if k in names}
        return cls(**known, extra=data)


@dataclass
class ValidateOutput(StageOutput):
    stage: ClassVar[str] = "validate"
    optim_level: float | None = None  # the normalized level (0..1)
    derived: dict[str, Any] = field(default_factory=dict)  # sparsity, quantize, tier, variant
    data_path: str | None = None  # the dataset folder, resolved (a demo set: in the cache)
    data: dict[str, Any] | None = None  # the data format's summary (splits, classes, labels...)
    recipe: str | None = None  # the recipe's source

    @property
    def data_dir(self) -> Path:
        if not self.data_path:
            raise ValueError("the validate stage recorded no data path")
        return Path(self.data_path)

    @property
    def summary(self) -> dict[str, Any]:
        return self.data or {}


@dataclass
class FetchOutput(StageOutput):
    stage: ClassVar[str] = "fetch"
    source: str | None = None  # where the dense model came from, in words
    sha256: str | None = None  # of the dense model in the run dir
    baseline: dict[str, Any] | None = optional()  # training stats of a baseline made here
    # sparse transfer: the (sparse) foundation model the result starts from
    foundation: str | None = optional()
    foundation_entry: dict[str, Any] | None = optional()
    foundation_sparsity: float | None = optional()
    foundation_sha256: str | None = optional()

    @property
    def model(self) -> str:
        """The dense model (file or folder), relative to the run dir: the first artifact."""
        if not self.artifacts:
            raise ValueError("the fetch stage recorded no model")
        return self.artifacts[0]


@dataclass
class SparsifyOutput(StageOutput):
    stage: ClassVar[str] = "sparsify"
    sparsity: float = 0.0  # of the prunable layers
    per_layer_sparsity: dict[str, float] = field(default_factory=dict)
    quantization: dict[str, Any] | None = optional()  # absent: the result is not INT8
    structured: list[dict[str, Any]] | None = optional()  # one report per structure removed
    qat: bool | None = optional()  # whether training ran quantization-aware
    baseline_onnx: str | None = None  # the dense model exported, relative to the run dir
    model_onnx: str | None = None  # the result
    model_fp32_onnx: str | None = optional()  # the result before INT8 (pruned, FP32)
    # quantization.variants: name -> {path (relative to the run dir), format, fp32_depthwise,
    # ops, configured, same_as | failed}; absent when only the configured INT8 model was made
    variants: dict[str, dict[str, Any]] | None = optional()
    recipe_applied: str | None = None  # the modifiers that were applied, as a recipe
    ignore_unmatched: list[str] | None = optional()  # recipe `ignore` entries matching nothing

    @property
    def checkpoint(self) -> str | None:
        """The result as a torch checkpoint (file or folder), relative to the run dir."""
        return next((a for a in self.artifacts if Path(a).name in CHECKPOINT_NAMES), None)


@dataclass
class BenchmarkOutput(StageOutput):
    stage: ClassVar[str] = "benchmark"
    benchmark_json: str = "benchmark/benchmark.json"
    metrics_json: str = "benchmark/metrics.json"
    table: list[dict[str, Any]] = field(default_factory=list)  # dense vs result, printed
    # the candidate packaged (benchmark.json `chosen`): variant, path, engine, reason, ...;
    # absent when no choice was made (quantization.variants=[])
    chosen: dict[str, Any] | None = optional()


@dataclass
class PackageOutput(StageOutput):
    stage: ClassVar[str] = "package"
    deployment_dir: str | None = None  # absolute
    task: str | None = None


OUTPUTS: dict[str, type[StageOutput]] = {
    cls.stage: cls
    for cls in (ValidateOutput, FetchOutput, SparsifyOutput, BenchmarkOutput, PackageOutput)
}
