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

    def arch_problems(self, arch: str) -> list[Problem]:
        """Why `arch` is not a model this family can build (empty if it is)."""

    def checkpoint_problems(
        self, path: Path, ctx: RunContext, data: dict[str, Any]
    ) -> list[Problem]:
        """Why the user's checkpoint cannot be used for this data (empty if it can)."""

    def train_baseline(self, ctx: RunContext, out_path: Path) -> dict[str, Any]:
        """Train a dense model on the user's train split when none was given."""

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
