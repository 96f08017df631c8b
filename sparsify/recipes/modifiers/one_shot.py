"""One-shot pruning modifiers: applied once to a torch model, with calibration data.

- `MagnitudePruningModifier`: each layer to `final_sparsity` by |w| (unstructured, blockN
  or N:M masks).
- `GlobalMagnitudePruningModifier`: one |w| threshold across all selected layers, so layers
  with many small weights give more (unstructured only).
- `SparseGPTModifier`: layer-wise OBS reconstruction on the calibration inputs
  (`sparsegpt.sparsegpt_prune_model`).
- `ChannelPruningModifier`: whole channels of CNNs / YOLO removed, the next layers re-fit by
  least squares (`channels`, `channel_reconstruction`); the one-shot design of channel
  pruning (`StructuredPruningModifier` with `structure: channels` is its training-aware one).

`recalibrate_batchnorm: true` re-estimates BatchNorm statistics on the calibration data
afterwards. `profile: sensitivity` (magnitude, SparseGPT) gives each layer its own sparsity
from a sensitivity analysis on the calibration data (`sparsify.algorithms.sensitivity`), the
overall count of zeros at the target; the analysis goes to sensitivity.csv / .png.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

import torch
from torch import nn

from sparsify.algorithms.batchnorm import batched_inputs, has_batchnorm, recalibrate_batchnorm
from sparsify.algorithms.channel_reconstruction import reconstruct_consumers
from sparsify.algorithms.channels import (
    ROOT_TYPES,
    ChannelGraph,
    channel_report,
    count_macs,
    taylor_gradients,
)
from sparsify.algorithms.masks import (
    magnitude_layer_masks,
    parse_mask_type,
    structured_magnitude_mask,
)
from sparsify.algorithms.one_shot import (
    Feeds,
    global_magnitude_masks,
    target_sparsity,
    torch_batches,
)
from sparsify.algorithms.pruning import apply_masks, log_sparsity, overall_sparsity, select_layers
from sparsify.algorithms.sensitivity import MAX_SAMPLES, sensitivity_profile
from sparsify.algorithms.sensitivity_report import write_report
from sparsify.algorithms.sparsegpt import sparsegpt_prune_model
from sparsify.errors import SparsifyError
from sparsify.matching import DEPTHWISE
from sparsify.recipes.modifiers.base import REGISTRY, Modifier, register
from sparsify.recipes.modifiers.fields import (
    BOOL,
    IGNORE,
    IMPORTANCE,
    MASK,
    PROFILE,
    SPARSITY,
    TARGETS,
    spec,
    state,
)
from sparsify.recipes.modifiers.pruning import GradualFields

log = logging.getLogger("sparsify")

Calibration = Callable[[], Feeds]
TAYLOR_BATCHES = 4  # calibration batches whose gradients rank channels by first-order Taylor


class PruneJob(NamedTuple):
    model: nn.Module
    layers: dict[str, nn.Module]  # the selected layers, by name
    calibration: Calibration
    recalibrate: bool  # re-estimate BatchNorm statistics (the recipe asks, the model has BN)
    report_dir: Path | None = None  # where analyses are written (the sparsify stage's folder)


class Pruned(NamedTuple):
    method: str  # the modifier that did it (SparseGPT falls back to magnitude)
    stats: dict[str, Any]  # per-layer statistics
    recalibrated: bool  # BatchNorm statistics already re-estimated on the way
    extra: dict[str, Any] = {}  # more for the stage's result (e.g. a structured report)


@dataclass(kw_only=True)
class OneShotPruning(Modifier):
    """A pruning modifier applied once, before export; subclasses choose the masks."""

    group = "pruning_modifiers"

    @property
    def target_sparsity(self) -> float:
        """What it asks for (N:M masks imply their own)."""
        return target_sparsity(self.kwargs)

    @property
    def mask(self) -> str:
        kwargs = self.kwargs
        return str(kwargs.get("mask_structure") or kwargs.get("mask_type", "unstructured"))

    def recalibrates(self) -> bool:
        """Whether the recipe asks to re-estimate BatchNorm statistics afterwards."""
        return False

    def apply(
        self,
        model: nn.Module,
        calibration: Calibration,
        default_ignore: list[str] | None = None,
        report_dir: Path | None = None,
    ) -> dict[str, Any]:
        """Prune `model` in place; returns what it did (`report_dir`: where an analysis the
        modifier runs is written)."""
        targets = self.kwargs.get("targets", "__ALL_PRUNABLE__")
        ignore = [*(self.kwargs.get("ignore") or []), *self.family_ignore(default_ignore or [])]
        layers = select_layers(model, targets, ignore)
        if not layers:
            raise SparsifyError(
                f"{self.name}: no prunable layer matches targets={targets!r} "
                f"(ignore={ignore}); use __ALL_PRUNABLE__ or `re:` patterns of layer names"
            )
        recalibrate = self.recalibrates() and has_batchnorm(model)
        done = self.prune(PruneJob(model, layers, calibration, recalibrate, report_dir))
        if recalibrate and not done.recalibrated:
            recalibrate_batchnorm(model, batched_inputs(calibration()))  # restores the mode
        elif recalibrate:  # the last layer's re-estimation already gave the final statistics
            log.info(
                "Re-estimated BatchNorm statistics after each of %d pruned layers", len(layers)
            )
        per_layer = log_sparsity(layers, "After pruning")
        return {
            **done.extra,
            "method": done.method,
            "mask_type": self.mask,
            "target_sparsity": self.target_sparsity,
            "per_layer_sparsity": per_layer,
            "sparsity": overall_sparsity(layers),
            "layer_stats": {
                n: {k: v for k, v in s.items() if k != "error"} for n, s in done.stats.items()
            },
        }

    def family_ignore(self, default_ignore: list[str]) -> list[str]:
        """The model family's `ignore` entries this modifier honours (all, by default)."""
        return default_ignore

    def prune(self, job: PruneJob) -> Pruned:
        raise NotImplementedError(f"{self.name} does not say how it prunes")


def _magnitude(
    layers: dict[str, nn.Module],
    sparsity: float,
    mask_type: str,
    per_layer: dict[str, float] | None = None,
) -> Pruned:
    log.info("Magnitude pruning %d layers to %.1f %% (%s)", len(layers), 100 * sparsity, mask_type)
    if per_layer is None:
        apply_masks(layers, magnitude_layer_masks(layers, sparsity, mask_type))
    else:
        apply_masks(
            layers,
            {
                n: structured_magnitude_mask(m.weight, per_layer[n], mask_type)
                for n, m in layers.items()
            },
        )
    return Pruned("MagnitudePruningModifier", {}, False)


@dataclass(kw_only=True)
class ProfileFields(OneShotPruning):
    """`profile`: uniform, or per-layer sparsities from a sensitivity analysis."""

    profile: str = spec(PROFILE, "uniform")

    def layer_sparsities(self, job: PruneJob) -> dict[str, float] | None:
        """Each layer's sparsity under `profile: sensitivity` (None: uniform), the analysis
        written to the job's report folder."""
        if self.profile != "sensitivity":
            return None
        if parse_mask_type(self.mask).kind == "nm":
            raise SparsifyError(
                f"{self.name}: profile: sensitivity cannot move the sparsity of N:M masks "
                f"({self.mask} fixes every layer's); use mask_structure unstructured or blockN, "
                "or profile: uniform"
            )
        batches = torch_batches(job.calibration()[:MAX_SAMPLES])
        if not batches:
            raise SparsifyError(f"{self.name}: profile: sensitivity needs calibration samples")
        allocated, rows = sensitivity_profile(
            job.model, job.layers, batches, self.target_sparsity, self.mask
        )
        if job.report_dir is not None:
            write_report(job.report_dir, rows)
        return allocated


@register
@dataclass(kw_only=True)
class MagnitudePruningModifier(GradualFields, ProfileFields):
    # re-estimate BatchNorm statistics on calibration data after pruning (one-shot)
    recalibrate_batchnorm: bool = spec(BOOL, False)

    def recalibrates(self) -> bool:
        return bool(self.recalibrate_batchnorm)

    def prune(self, job: PruneJob) -> Pruned:
        return _magnitude(job.layers, self.target_sparsity, self.mask, self.layer_sparsities(job))


@register
@dataclass(kw_only=True)
class GlobalMagnitudePruningModifier(GradualFields, OneShotPruning):
    def prune(self, job: PruneJob) -> Pruned:
        if parse_mask_type(self.mask).kind != "unstructured":
            raise SparsifyError(
                "GlobalMagnitudePruningModifier prunes unstructured only; "
                "use MagnitudePruningModifier or SparseGPTModifier for blockN / N:M masks"
            )
        sparsity = self.target_sparsity
        layers = job.layers
        log.info("Global magnitude pruning %d layers to %.1f %%", len(layers), 100 * sparsity)
        apply_masks(layers, global_magnitude_masks(layers, sparsity))
        return Pruned(self.name, {}, False)


@register
@dataclass(kw_only=True)
class SparseGPTModifier(ProfileFields):
    aliases = {"dampening_frac": "percdamp"}

    sparsity: float = spec(SPARSITY, 0.0)
    block_size: int = spec(
        {
            "type": "integer",
            "minimum": 1,
            "description": "columns pruned per OBS block, an integer >= 1 (e.g. 128)",
        },
        128,
    )
    percdamp: float = spec(
        {
            "type": "number",
            "exclusiveMinimum": 0,
            "maximum": 1,
            "description": "Hessian dampening as a fraction of its mean diagonal, in (0, 1]",
        },
        0.01,
    )
    mask_structure: str = spec(MASK, "unstructured")
    targets: str | list[str] = spec(TARGETS, "__ALL_PRUNABLE__")
    ignore: list[str] = spec(IGNORE, factory=list)
    recalibrate_batchnorm: bool = spec(BOOL, False)
    # true: each layer calibrated on the outputs of the already-pruned layers before it
    # (one partial forward pass per layer); false: every Hessian from one dense pass
    sequential_update: bool = spec(BOOL, True)

    def recalibrates(self) -> bool:
        return bool(self.recalibrate_batchnorm)

    def prune(self, job: PruneJob) -> Pruned:
        model, layers, calibration, recalibrate, _ = job
        sparsity, mask_type = self.target_sparsity, self.mask
        per_layer = self.layer_sparsities(job)
        if isinstance(model, torch.jit.ScriptModule):
            log.info("SparseGPT needs forward hooks, which TorchScript lacks: pruning by magnitude")
            return _magnitude(layers, sparsity, mask_type, per_layer)
        feeds = calibration()
        log.info(
            "SparseGPT pruning %d layers to %.1f %% (%s) on %d calibration samples",
            len(layers),
            100 * sparsity,
            mask_type,
            len(feeds),
        )
        sequential = bool(self.sequential_update)
        after_layer = None
        if sequential and recalibrate:
            # each layer is then reconstructed under the statistics the pruned model will have
            bn_batches = batched_inputs(feeds)
            after_layer = lambda: recalibrate_batchnorm(model, bn_batches, quiet=True)  # noqa: E731
        result = sparsegpt_prune_model(
            model,
            layers,
            torch_batches(feeds),
            sparsity,
            mask_type,
            block_size=int(self.block_size),
            percdamp=float(self.percdamp),
            sequential=sequential,
            after_layer=after_layer,
            layer_sparsity=per_layer,
        )
        return Pruned(self.name, result.stats, after_layer is not None)


@register
@dataclass(kw_only=True)
class ChannelPruningModifier(OneShotPruning):
    """Whole channels of CNNs / YOLO removed once (`sparsify.algorithms.channels`): ranked on
    the calibration data, removed with everything coupled to them, the layers reading them
    re-fit by least squares, BatchNorm re-estimated. `sparsity` is the channel fraction."""

    sparsity: float = spec(SPARSITY, 0.0)
    importance: str = spec(IMPORTANCE, "magnitude")
    # one ranking over every group (groups with many weak channels give more) instead of the
    # same fraction from each
    global_pruning: bool = spec(BOOL, False)
    reconstruct: bool = spec(BOOL, True)  # least-squares re-fit of the next layers
    ignore: list[str] = spec(IGNORE, factory=list)
    recalibrate_batchnorm: bool = spec(BOOL, True)
    report: dict[str, Any] = state(dict)

    def recalibrates(self) -> bool:
        return bool(self.recalibrate_batchnorm)

    def family_ignore(self, default_ignore: list[str]) -> list[str]:
        # a depthwise conv has no channels of its own (each follows its input channel): the
        # families' __DEPTHWISE__ is about unstructured masks and would freeze MobileNets
        return [e for e in default_ignore if e != DEPTHWISE]

    def prune(self, job: PruneJob) -> Pruned:
        model = job.model
        batches = torch_batches(job.calibration())
        if not batches:
            raise SparsifyError(f"{self.name} needs calibration samples (train split)")
        selected = {id(m) for m in job.layers.values()}
        protected = [n for n, m in model.named_modules() if isinstance(m, ROOT_TYPES)
                     and id(m) not in selected]  # fmt: skip
        example = batches[0]
        macs, params = count_macs(model, example)
        graph = ChannelGraph(model, example, protected)
        importance = str(self.importance)
        if importance == "taylor":
            taylor_gradients(model, batches[:TAYLOR_BATCHES])
        chosen = graph.choose(float(self.sparsity), importance, bool(self.global_pruning))
        model.zero_grad(set_to_none=True)
        if self.reconstruct:
            reconstruct_consumers(model, graph.consumers(chosen), batches)
        graph.remove(chosen)
        thin_macs, thin_params = count_macs(model, example)
        width = sum(g.width for g in graph.groups)
        removed = sum(len(v) for v in chosen.values())
        self.report = channel_report(len(chosen), width, removed, (macs, thin_macs),
                                     (params, thin_params))  # fmt: skip
        log.info(
            "Channel pruning (%s%s): %d of %d channels removed; MACs %d -> %d, params %d -> %d",
            importance,
            ", global" if self.global_pruning else "",
            removed,
            width,
            macs,
            thin_macs,
            params,
            thin_params,
        )
        return Pruned(self.name, {}, False, {"structured": [self.report]})


def one_shot_modifier(name: str, fields: dict[str, Any]) -> OneShotPruning:
    """The one-shot pruning modifier `name` with `fields` (a recipe's, validated)."""
    cls = REGISTRY.get(name)
    if not issubclass(cls, OneShotPruning):
        choices = [n for n in REGISTRY.names() if issubclass(REGISTRY.get(n), OneShotPruning)]
        raise SparsifyError(
            f"{name} is not a one-shot pruning modifier; use one of {', '.join(choices)}"
        )
    return cls.from_fields(fields)  # type: ignore[return-value]


def prune_one_shot(
    model: nn.Module,
    name: str,
    fields: dict[str, Any],
    calibration: Calibration,
    default_ignore: list[str] | None = None,
) -> dict[str, Any]:
    """Apply the one-shot pruning modifier `name` to `model` in place; returns what it did."""
    return one_shot_modifier(name, fields).apply(model, calibration, default_ignore)
