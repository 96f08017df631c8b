"""What a model family provides to the pipeline: one declared contract, with defaults.

Every family (`models/classifier/`, `models/yolo/`, `models/transformers/`, `models/generic/`)
subclasses `ModelFamily`. The stages call only what is declared here; a family overrides a
default where it differs, and never adds hooks the stages would have to probe for.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from torch import nn

if TYPE_CHECKING:
    from sparsify.algorithms.session import RecipeSession
    from sparsify.context import RunContext
from sparsify.errors import Problem, SparsifyError

SessionFactory = Callable[..., "RecipeSession"]


class ModelFamily:
    """One adapter per family (image classifiers, YOLO, transformers, generic ONNX)."""

    name: str = ""
    # what fetch puts in the run dir: a file ("model.pth") or a folder ("model")
    artifact_name: str = "model.pth"
    # what the sparsify stage saves the result as (Ultralytics loads only .pt files)
    checkpoint_name: str = "model.pth"
    # `ignore` entries every pruning recipe gets on top of its own (e.g. "__DEPTHWISE__")
    prune_ignore: tuple[str, ...] = ()
    # ops quantized on top of `quantization.ops`, per `quantization.format`
    extra_int8_ops: Mapping[str, tuple[str, ...]] = {}
    # with quantization.format=qdq, write the INT8 model from the QAT graph itself (False:
    # ONNX Runtime's post-training QDQ re-quantizes the QAT-trained weights)
    export_qat_graph: bool = True

    # -- validate ---------------------------------------------------------------------------
    def arch_problems(self, arch: str) -> list[Problem]:
        """Why `arch` is not a model this family can build (empty if it is)."""
        raise NotImplementedError

    def checkpoint_problems(
        self, path: Path, ctx: RunContext, data: dict[str, Any]
    ) -> list[Problem]:
        """Why the user's checkpoint cannot be used for this data (empty if it can)."""
        raise NotImplementedError

    # -- fetch ------------------------------------------------------------------------------
    def resolve_source(self, ctx: RunContext) -> Path | None:
        """The user's model (`model.path`: a file, folder or cached hub id), or None."""
        raise NotImplementedError

    def needs_baseline(self, ctx: RunContext, source: Path) -> bool:
        """True when the user's model must be fine-tuned on the data first (e.g. a new head)."""
        raise NotImplementedError

    def train_baseline(
        self, ctx: RunContext, source: Path | None, out_path: Path
    ) -> dict[str, Any]:
        """Fine-tune a dense model (from `source`, or from scratch) on the user's train split."""
        raise NotImplementedError

    # -- sparsify ---------------------------------------------------------------------------
    def load(self, path: Path, ctx: RunContext) -> nn.Module:
        raise NotImplementedError

    def load_for_transfer(self, path: Path, ctx: RunContext) -> nn.Module:
        """A pre-sparsified foundation, its head rebuilt for the user's labels."""
        raise SparsifyError(
            f"the {self.name} model family has no sparse transfer in this version; "
            "use experiment=one_shot"
        )

    def save(self, model: nn.Module, path: Path, ctx: RunContext) -> None:
        """A checkpoint that `load` reads back."""
        raise NotImplementedError

    def export(self, model: nn.Module, path: Path, ctx: RunContext) -> Path:
        raise NotImplementedError

    def calibration_feeds(self, ctx: RunContext, n: int) -> list[dict[str, np.ndarray]]:
        """`n` batched input dicts from the train split, preprocessed as in deployment."""
        raise NotImplementedError

    def train_sparse(
        self,
        model: nn.Module,
        ctx: RunContext,
        session_for: SessionFactory,
        teacher: nn.Module | None,
    ) -> dict[str, Any]:
        """Fine-tune `model` under the recipe session `session_for(steps_per_epoch, ...)`
        builds; a trainer that cannot train in place returns the trained model as "model"."""
        raise SparsifyError(
            f"the {self.name} model family cannot train under a recipe in this version; "
            "use experiment=one_shot"
        )

    def int8_ops(self, ops: list[str], fmt: str) -> list[str]:
        """`quantization.ops` plus the ops this family also quantizes in format `fmt`."""
        extra = self.extra_int8_ops.get(fmt, ())
        return [*ops, *(o for o in extra if o not in ops)]

    def int8_float_nodes(self, graph: Any, fmt: str) -> list[str]:
        """Names of the ONNX nodes of `graph` that INT8 format `fmt` leaves float."""
        return []

    # -- benchmark / package ----------------------------------------------------------------
    def evaluate_onnx(self, engine: Any, ctx: RunContext, split: str = "val") -> dict[str, float]:
        """The use case's metric for an exported model on `split`: val (what pruning, the
        gate and any search look at), or test for the final dense-vs-result report."""
        raise NotImplementedError

    def has_labelled_split(self, ctx: RunContext, split: str) -> bool:
        """Whether the validated data has `split` with the labels `evaluate_onnx` scores
        against (a test split without targets does not count)."""
        return False

    def deployment_files(self, ctx: RunContext, out_dir: Path) -> dict[str, Any]:
        """Write labels/tokenizer files; return the pre/post-processing part of config.json."""
        raise NotImplementedError
