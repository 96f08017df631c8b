"""What a model family must provide to the pipeline."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np
from torch import nn

if TYPE_CHECKING:
    from sparsify.context import RunContext
from sparsify.errors import Problem


class ModelFamily(Protocol):
    """One adapter per family (image classifiers, YOLO, transformers, ...)."""

    name: str
    artifact_name: str  # what fetch puts in the run dir: a file ("model.pth") or a folder

    def arch_problems(self, arch: str) -> list[Problem]:
        """Why `arch` is not a model this family can build (empty if it is)."""

    def checkpoint_problems(
        self, path: Path, ctx: RunContext, data: dict[str, Any]
    ) -> list[Problem]:
        """Why the user's checkpoint cannot be used for this data (empty if it can)."""

    def resolve_source(self, ctx: RunContext) -> Path | None:
        """The user's model (`model.path`: a file, folder or cached hub id), or None."""

    def needs_baseline(self, ctx: RunContext, source: Path) -> bool:
        """True when the user's model must be fine-tuned on the data first (e.g. a new head)."""

    def train_baseline(
        self, ctx: RunContext, source: Path | None, out_path: Path
    ) -> dict[str, Any]:
        """Fine-tune a dense model (from `source`, or from scratch) on the user's train split."""

    def load(self, path: Path, ctx: RunContext) -> nn.Module: ...

    def save(self, model: nn.Module, path: Path, ctx: RunContext) -> None:
        """A checkpoint that `load` reads back."""

    def export(self, model: nn.Module, path: Path, ctx: RunContext) -> Path: ...

    def calibration_feeds(self, ctx: RunContext, n: int) -> list[dict[str, np.ndarray]]:
        """`n` batched input dicts from the train split, preprocessed as in deployment."""

    def evaluate_onnx(self, engine: Any, ctx: RunContext) -> dict[str, float]:
        """The use case's metric for an exported model on the val split."""

    def deployment_files(self, ctx: RunContext, out_dir: Path) -> dict[str, Any]:
        """Write labels/tokenizer files; return the pre/post-processing part of config.json."""
