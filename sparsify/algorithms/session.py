"""A recipe applied during training: what every trainer calls at each step.

`RecipeSession` turns a training recipe (GMP / constant pruning, QAT, learning rate,
distillation) into four calls a training loop makes, whatever the loop is (ours for image
classifiers, a `transformers.Trainer` callback, an Ultralytics callback):

    session = RecipeSession(recipe, model, steps_per_epoch)
    for step in range(session.total_steps):
        lr = session.before_step(step)      # learning rate; QAT/freezes switch on
        loss = session.loss(loss, student_logits, teacher_logits)   # distillation
        ...backward, optimizer.step()...
        session.after_step(step)           # mask updates; masks re-applied
    report = session.finish()

Epochs are fractional (`step / steps_per_epoch`). Masks are held by module, not by name,
so they survive the QAT wrappers renaming layers.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from sparsify.algorithms.masks import magnitude_layer_masks, parse_mask_type
from sparsify.algorithms.pruning import layer_sparsity, overall_sparsity, select_layers
from sparsify.algorithms.qat import freeze_batchnorm, freeze_observers, prepare_qat
from sparsify.algorithms.schedules import lr_at, sparsity_at, update_epochs
from sparsify.algorithms.structured import (
    FFNPair,
    apply_neuron_masks,
    ffn_pairs,
    head_groups,
    neuron_masks,
    start_statistics,
    stop_statistics,
    thin,
)
from sparsify.errors import SparsifyError
from sparsify.recipes.recipe import Modifier, Recipe
from sparsify.recipes.schema import STRUCTURES

log = logging.getLogger("sparsify")

TRAINING_PRUNERS = ("GMPruningModifier", "ConstantPruningModifier")
STRUCTURED = "StructuredPruningModifier"


@dataclass
class _Pruner:
    modifier: Modifier
    layers: dict[str, nn.Module]
    start: float
    end: float
    updates: list[float] = field(default_factory=list)  # epochs still to update masks at
    masks: dict[str, torch.Tensor] = field(default_factory=dict)
    sparsity: float = 0.0

    @property
    def constant(self) -> bool:
        return self.modifier.name == "ConstantPruningModifier"


@dataclass
class _Structured:
    """A StructuredPruningModifier: units (FFN neurons or attention heads) masked on a
    schedule, then removed at its end; `width` counts units per block."""

    modifier: Modifier
    pairs: list[FFNPair]
    start: float
    end: float
    width: int
    updates: list[float] = field(default_factory=list)
    masks: dict[str, torch.Tensor] = field(default_factory=dict)
    sparsity: float = 0.0
    thinned: bool = False


def _units(structured: _Structured) -> str:
    """What a structured pruner removes, for its events."""
    return "attention heads" if structured.pairs[0].owner is not None else "FFN neurons"


def has_training(recipe: Recipe) -> bool:
    """Whether a recipe asks for training (training-aware or sparse-transfer)."""
    return bool(recipe.find("EpochRangeModifier")) or any(
        m.name in (*TRAINING_PRUNERS, STRUCTURED) for m in recipe.pruning()
    )


class RecipeSession:
    def __init__(
        self,
        recipe: Recipe,
        model: nn.Module,
        steps_per_epoch: int,
        quantize: bool = True,
        default_ignore: list[str] | None = None,
        max_steps: int | None = None,
        per_channel: bool | None = None,
        qat_ignore: list[str] | None = None,
    ) -> None:
        """`per_channel` overrides the recipe's QAT weight strategy: QAT should train for the
        INT8 format that will be deployed."""
        if steps_per_epoch < 1:
            raise SparsifyError("training needs at least one batch per epoch; add training data")
        self.recipe = recipe
        self.model = model
        self.steps_per_epoch = steps_per_epoch
        self.epochs = recipe.epochs()
        if self.epochs <= 0:
            raise SparsifyError(
                f"recipe {recipe.source} trains for 0 epochs; give EpochRangeModifier an end_epoch"
            )
        total = max(1, math.ceil(self.epochs * steps_per_epoch))
        # a capped run (tests) squeezes the whole schedule into its steps
        self.total_steps = min(total, max_steps) if max_steps else total
        self._epoch_per_step = self.epochs / self.total_steps
        self.pruners = [
            self._pruner(m, list(default_ignore or []))
            for m in recipe.pruning()
            if m.name in TRAINING_PRUNERS
        ]
        self.structured = [
            self._structured(m, list(default_ignore or []))
            for m in recipe.pruning()
            if m.name == STRUCTURED
        ]
        quant = recipe.quantization()
        self.quant = quant if quant and quant.kwargs.get("enabled", True) and quantize else None
        self.per_channel = per_channel
        self.qat_ignore = list(qat_ignore or [])
        self.qat_started = self.observers_frozen = self.bn_frozen = False
        self.distill = recipe.distillation()
        self.lr_modifier = recipe.learning_rate()
        self.events: list[dict[str, Any]] = []

    def _pruner(self, modifier: Modifier, ignore: list[str]) -> _Pruner:
        kw = modifier.kwargs
        ignore = [*(kw.get("ignore") or []), *ignore]
        layers = select_layers(self.model, kw.get("targets", "__ALL_PRUNABLE__"), ignore)
        if not layers:
            raise SparsifyError(
                f"{modifier.name}: no prunable layer matches targets={kw.get('targets')!r} "
                f"(ignore={ignore}, the recipe's and the model family's)"
            )
        start, end = self.recipe.window(modifier)
        pruner = _Pruner(modifier, layers, start, end)
        if not pruner.constant:
            pruner.updates = update_epochs(start, end, float(kw.get("update_frequency", 1.0)))
        return pruner

    def _structured(self, modifier: Modifier, ignore: list[str]) -> _Structured:
        kw = modifier.kwargs
        structure = str(kw.get("structure", "ffn_neurons"))
        if structure not in STRUCTURES:  # the recipe schema refuses it first
            raise SparsifyError(f"{modifier.name}: unknown structure {structure!r}")
        ignore = [*(kw.get("ignore") or []), *ignore]
        if structure == "attention_heads":
            pairs = head_groups(self.model, ignore)
            found = (
                "no BERT-style self-attention (query / key / value Linear layers in a module "
                "named ....self with attention_head_size, and the sibling output.dense); it "
                "applies to BERT, RoBERTa, MiniLM and other BERT-style encoders"
            )
        else:
            pairs = ffn_pairs(self.model, ignore)
            found = (
                "no transformer feed-forward network (two Linear layers hidden -> width -> "
                "hidden inside blocks named layer.N / layers.N / blocks.N / h.N); it applies "
                "to transformer encoders"
            )
        if not pairs:
            raise SparsifyError(f"{modifier.name}: structure {structure} found {found}")
        widths = {(p.units, p.unit) for p in pairs}
        if len(widths) != 1:
            raise SparsifyError(
                f"{modifier.name}: the blocks differ in size ({sorted(widths)} units, unit "
                f"size); {structure} keeps the same number in every block"
            )
        start, end = self.recipe.window(modifier)
        pruner = _Structured(modifier, pairs, start, end, widths.pop()[0])
        pruner.updates = update_epochs(start, end, float(kw.get("update_frequency", 1.0)))
        start_statistics(pairs)
        return pruner

    @property
    def sparsity(self) -> float:
        """The pruning target in force now (the largest over the pruning modifiers)."""
        return max((p.sparsity for p in self.pruners), default=0.0)

    def epoch_of(self, step: int) -> float:
        return step * self._epoch_per_step

    # ----------------------------------------------------------------- the four calls
    def before_step(self, step: int) -> float | None:
        """Switch on QAT / freezes whose epoch has come; the learning rate for this step
        (None when the recipe sets none)."""
        epoch = self.epoch_of(step)
        if step == 0:
            for pruner in self.pruners:
                if pruner.constant:
                    self._hold_current(pruner)
        if self.quant is not None:
            # events start in the step whose span reaches their epoch, so a short (capped)
            # run still passes through every phase
            self._quantization_events(self.epoch_of(step + 1) - 1e-6)
        if self.lr_modifier is None:
            return None
        kw = self.lr_modifier.kwargs
        start, end = self.recipe.window(self.lr_modifier)
        return lr_at(
            epoch,
            str(kw.get("lr_func", "linear")),
            float(kw.get("init_lr", 1e-3)),
            float(kw.get("final_lr", 0.0)),
            start,
            end,
            kw.get("cycle_epochs"),
        )

    def loss(
        self,
        loss: torch.Tensor,
        student: torch.Tensor | None = None,
        teacher: torch.Tensor | None = None,
        step: int | None = None,
    ) -> torch.Tensor:
        """Blend in the distillation loss: (1 - h) * loss + h * T^2 * KL(teacher_T || student_T)
        (Hinton et al.), over the last dimension of the logits."""
        if self.distill is None or student is None or teacher is None:
            return loss
        if step is not None:
            start, end = self.recipe.window(self.distill)
            if not start <= self.epoch_of(step) <= end:
                return loss
        hardness = float(self.distill.kwargs.get("hardness", 0.5))
        temperature = float(self.distill.kwargs.get("temperature", 2.0))
        soft = F.kl_div(
            F.log_softmax(student / temperature, dim=-1),
            F.softmax(teacher.detach() / temperature, dim=-1),
            reduction="batchmean",
        ) * (temperature**2)
        return (1.0 - hardness) * loss + hardness * soft

    @torch.no_grad()
    def after_step(self, step: int, optimizer: Any | None = None) -> None:
        """Recompute masks whose update epoch has passed, then re-apply every mask (the
        optimizer step may have moved pruned weights). A structured pruner whose window has
        ended removes its neurons, slicing `optimizer`'s state (Adam moments) alike; without
        the optimizer, that waits for `finish`."""
        epoch = self.epoch_of(step + 1)
        for structured in self.structured:
            if structured.thinned:
                continue
            due = [e for e in structured.updates if e <= epoch + 1e-9]
            if due:
                structured.updates = structured.updates[len(due) :]
                self._update_neurons(structured, epoch)
            apply_neuron_masks(structured.pairs, structured.masks)
            if not structured.updates and optimizer is not None:
                self._thin(structured, epoch, optimizer)
        for pruner in self.pruners:
            if pruner.constant:
                self._apply(pruner)
                continue
            due = [e for e in pruner.updates if e <= epoch + 1e-9]
            if due:
                pruner.updates = pruner.updates[len(due) :]
                self._update_masks(pruner, epoch)
            if pruner.masks and (
                epoch <= pruner.end + 1e-9 or pruner.modifier.kwargs.get("leave_enabled", True)
            ):
                self._apply(pruner)

    @torch.no_grad()
    def finish(self) -> dict[str, Any]:
        """Final masks applied, masked neurons removed; what the session did, for the run's
        outputs."""
        for structured in self.structured:
            if not structured.thinned:
                if structured.updates:  # a capped run: reach the target
                    structured.updates = []
                    self._update_neurons(structured, structured.end)
                apply_neuron_masks(structured.pairs, structured.masks)
                self._thin(structured, structured.end, None)
        for pruner in self.pruners:
            if not pruner.constant and pruner.updates:  # a capped run: reach the target
                pruner.updates = []
                self._update_masks(pruner, pruner.end)
            if pruner.masks:
                self._apply(pruner)
        layers = {n: m for p in self.pruners for n, m in p.layers.items()}
        return {
            "sparsity": overall_sparsity(layers),
            "per_layer_sparsity": layer_sparsity(layers),
            "qat": self.qat_started,
            **(
                {"structured": [self._structured_report(s) for s in self.structured]}
                if self.structured
                else {}
            ),
            "events": self.events,
            "steps": self.total_steps,
            "epochs": self.epochs,
        }

    # ----------------------------------------------------------------- internals
    def _event(self, epoch: float, what: str, **extra: Any) -> None:
        self.events.append({"epoch": round(epoch, 4), "event": what, **extra})
        log.info("epoch %.2f: %s %s", epoch, what, " ".join(f"{k}={v}" for k, v in extra.items()))

    def _update_neurons(self, structured: _Structured, epoch: float) -> None:
        target = _scheduled(structured.modifier, epoch, structured.start, structured.end)
        structured.masks = neuron_masks(structured.pairs, target)
        structured.sparsity = target
        unit = structured.pairs[0].unit
        kept = int(next(iter(structured.masks.values())).sum()) // unit
        self._event(epoch, f"{_units(structured)} masked", kept=f"{kept}/{structured.width}")

    def _thin(self, structured: _Structured, epoch: float, optimizer: Any | None) -> None:
        """Remove the masked neurons; unstructured masks on the thinned layers follow."""
        stop_statistics(structured.pairs)
        structured.thinned = True
        if not structured.masks:
            return
        kept = thin(self.model, structured.pairs, structured.masks, optimizer)
        rows = {
            id(layer): kept[p.down_name]
            for p in structured.pairs
            if p.down_name in kept
            for layer in p.rows
        }
        cols = {id(p.down): kept[p.down_name] for p in structured.pairs if p.down_name in kept}
        for pruner in self.pruners:
            touched = [
                n
                for n, m in pruner.layers.items()
                if id(_layer(m)) in rows or id(_layer(m)) in cols
            ]
            for name in touched:
                if name not in pruner.masks:
                    continue
                layer = _layer(pruner.layers[name])
                if id(layer) in rows:
                    pruner.masks[name] = pruner.masks[name][rows[id(layer)]]
                else:
                    pruner.masks[name] = pruner.masks[name][:, cols[id(layer)]]
            if touched and pruner.masks and not pruner.constant:
                # re-chosen on the thinned shapes (block structure along the new columns)
                kw = pruner.modifier.kwargs
                mask_type = parse_mask_type(str(kw.get("mask_type", "unstructured")))
                target = mask_type.implied_sparsity or pruner.sparsity
                fresh = magnitude_layer_masks(
                    {n: pruner.layers[n] for n in touched}, target, mask_type
                )
                pruner.masks.update(fresh)
                self._apply(pruner)
        width = structured.pairs[0].units
        self._event(epoch, f"{_units(structured)} removed", width=f"{structured.width} -> {width}")

    @staticmethod
    def _structured_report(structured: _Structured) -> dict[str, Any]:
        kept = structured.pairs[0].units
        return {
            "structure": str(structured.modifier.kwargs.get("structure", "ffn_neurons")),
            "blocks": len(structured.pairs),
            "width": structured.width,
            "kept": kept,
            "sparsity": round(1.0 - kept / structured.width, 4),
        }

    def _hold_current(self, pruner: _Pruner) -> None:
        pruner.masks = {n: m.weight.detach() != 0 for n, m in pruner.layers.items()}
        pruner.sparsity = overall_sparsity(pruner.layers)
        self._event(0.0, "masks held fixed", sparsity=f"{pruner.sparsity:.4f}")

    def _update_masks(self, pruner: _Pruner, epoch: float) -> None:
        kw = pruner.modifier.kwargs
        mask_type = parse_mask_type(str(kw.get("mask_type", "unstructured")))
        if mask_type.implied_sparsity is not None:
            target = mask_type.implied_sparsity
        else:
            target = _scheduled(pruner.modifier, epoch, pruner.start, pruner.end)
        pruner.masks = magnitude_layer_masks(pruner.layers, target, mask_type)
        pruner.sparsity = target
        self._event(epoch, "masks updated", sparsity=f"{target:.4f}")

    @staticmethod
    def _apply(pruner: _Pruner) -> None:
        for name, mask in pruner.masks.items():
            pruner.layers[name].weight.mul_(mask)

    def _quantization_events(self, epoch: float) -> None:
        kw = self.quant.kwargs  # type: ignore[union-attr]
        start = float(kw.get("start_epoch", 0.0) or 0.0)
        if not self.qat_started and epoch >= start - 1e-9:
            scheme = kw.get("scheme") or {}
            per_channel = (scheme.get("weights") or {}).get("strategy", "channel") == "channel"
            if self.per_channel is not None and self.per_channel != per_channel:
                log.info(
                    "QAT weights %s, as the deployed INT8 format (the recipe says %s)",
                    "per channel" if self.per_channel else "per tensor",
                    "per channel" if per_channel else "per tensor",
                )
                per_channel = self.per_channel
            ignore = [*(kw.get("ignore") or []), *self.qat_ignore]
            wrapped = prepare_qat(self.model, ignore, per_channel)
            self.qat_started = True
            self._event(epoch, "QAT started", layers=len(wrapped))
        freeze_obs = kw.get("freeze_observer_epoch")
        if (
            self.qat_started
            and not self.observers_frozen
            and freeze_obs is not None
            and epoch >= float(freeze_obs)
        ):
            self._event(epoch, "observers frozen", count=freeze_observers(self.model))
            self.observers_frozen = True
        freeze_bn = kw.get("freeze_bn_stats_epoch")
        if not self.bn_frozen and freeze_bn is not None and epoch >= float(freeze_bn):
            self._event(epoch, "BatchNorm statistics frozen", count=freeze_batchnorm(self.model))
            self.bn_frozen = True


def _layer(module: nn.Module) -> nn.Module:
    """The layer itself (a QAT wrapper's wrapped layer)."""
    return getattr(module, "layer", module)


def _scheduled(modifier: Modifier, epoch: float, start: float, end: float) -> float:
    """A gradual modifier's sparsity at `epoch` (init_sparsity -> final_sparsity)."""
    kw = modifier.kwargs
    return sparsity_at(
        epoch,
        float(kw.get("init_sparsity", 0.0)),
        float(kw.get("final_sparsity", 0.0)),
        start,
        end,
        str(kw.get("inter_func", "cubic")),
    )
