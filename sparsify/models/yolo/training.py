"""Training YOLO models through Ultralytics' own trainer, with our hooks in its callbacks.

Ultralytics trains its own copy of the model (rebuilt from the YAML, weights transferred)
and keeps an EMA copy that it validates and saves. A per-batch hook therefore gets the
model being trained, and whatever it zeroes (pruning masks) is zeroed in the EMA too. A
channel-pruned (thin) model is rebuilt at its own channel counts (`thin_trainer`), so its
weights transfer instead of the YAML's dense widths replacing them.
"""

from __future__ import annotations

import copy
import functools
import logging
import math
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch
from torch import nn

from sparsify.algorithms.channel_widths import layer_widths, set_layer_widths
from sparsify.algorithms.pruning import PRUNABLE_TYPES
from sparsify.context import RunContext
from sparsify.eta import StepTimer
from sparsify.models.yolo.model import require_ultralytics

log = logging.getLogger("sparsify")

BatchHook = Callable[[nn.Module], None]  # gets the live (DDP-unwrapped) model being trained


@torch.no_grad()
def copy_zeros(source: nn.Module, target: nn.Module) -> None:
    """Zero `target`'s Conv/Linear weights wherever `source`'s same-named ones are exactly 0.

    A float weight lands on exactly 0.0 by chance with negligible probability, so the zero
    pattern of the live model is its pruning mask.
    """
    targets = dict(target.named_modules())
    for name, module in source.named_modules():
        other = targets.get(name)
        if isinstance(module, PRUNABLE_TYPES) and isinstance(other, PRUNABLE_TYPES):
            if other.weight.shape == module.weight.shape:
                other.weight.masked_fill_(module.weight == 0, 0.0)


def zero_masks(model: nn.Module) -> dict[str, torch.Tensor]:
    """Keep-masks (True = weight stays) of every Conv/Linear layer, by module name."""
    return {
        name: (m.weight != 0).detach().clone()
        for name, m in model.named_modules()
        if isinstance(m, PRUNABLE_TYPES)
    }


def hold_masks(masks: dict[str, torch.Tensor]) -> BatchHook:
    """A hook that re-applies fixed keep-masks (module name -> bool tensor) after each step.

    A layer whose shape changed (the class head re-initialized for other classes) is
    skipped: it starts dense, nothing of the old mask applies to it.
    """

    @torch.no_grad()
    def apply(model: nn.Module) -> None:
        modules = dict(model.named_modules())
        for name, mask in masks.items():
            weight = getattr(modules.get(name), "weight", None)
            if weight is not None and weight.shape == mask.shape:
                weight.mul_(mask.to(device=weight.device, dtype=weight.dtype))

    return apply


def add_callbacks(yolo: Any, on_batch_end: BatchHook) -> None:
    """Call `on_batch_end(model)` after every batch of Ultralytics training, after the
    optimizer step when there is one, with the model being trained (where pruning masks get
    re-applied, a QAT schedule steps); then the EMA copy takes that model's zeros."""
    from ultralytics.utils.torch_utils import unwrap_model

    def hook(trainer: Any) -> None:
        model = unwrap_model(trainer.model)
        on_batch_end(model)
        if getattr(trainer, "ema", None) is not None:
            copy_zeros(model, trainer.ema.ema)

    yolo.add_callback("on_train_batch_end", hook)


def stop_after(yolo: Any, max_steps: int) -> None:
    """Stop Ultralytics training after `max_steps` batches; the epoch still validates/saves."""
    seen = [0]

    def count(trainer: Any) -> None:
        seen[0] += 1
        if seen[0] >= max_steps:
            trainer.stop = True

    yolo.add_callback("on_train_batch_end", count)


def add_eta(yolo: Any, what: str, max_steps: int | None) -> None:
    """Log the estimated time of the training after its first batches, then the time left
    now and then; the total is known once Ultralytics built its loader (on_train_start)."""
    timer = StepTimer(what)

    def start(trainer: Any) -> None:
        total = int(trainer.epochs) * max(1, len(trainer.train_loader))
        timer.total = min(total, max_steps) if max_steps else total

    def step(trainer: Any) -> None:
        timer.step()

    yolo.add_callback("on_train_start", start)
    yolo.add_callback("on_train_batch_end", step)


def start_widths(model: nn.Module, source: nn.Module) -> dict[str, list[int]]:
    """The channel counts `model` (built from `source`'s YAML, maybe for other classes) must
    take so that a channel-pruned `source`'s weights fit it (`set_layer_widths`); empty for a
    dense source. The class convs keep `model`'s outputs (its class count); the class branch's
    hidden layers take the source's widths, as Ultralytics' own transfer keeps them."""
    from ultralytics.nn.modules import Detect

    widths = layer_widths(source, model)
    head = next((m for m in model.modules() if isinstance(m, Detect)), None)
    names = {id(m): n for n, m in model.named_modules()}
    branches = [b for a in ("cv3", "one2one_cv3") for b in getattr(head, a, None) or []]
    prefixes = tuple(f"{names[id(b)]}." for b in branches)
    if all(n.startswith(prefixes) for n in widths):  # only the class branch: a dense source
        return {}
    for branch in branches:
        name = names[id(branch[-1])]
        if name in widths:  # in: the source's (thin) channels; out: this model's classes
            own = branch[-1]
            widths[name] = [widths[name][0], own.out_channels, own.groups]
    return widths


@functools.cache
def thin_trainer(base: type) -> type:
    """`base` (the task's Ultralytics trainer) building its model at the channel counts of the
    weights it starts from: Ultralytics rebuilds the model from the YAML and transfers only
    the tensors whose shapes match, which would drop every thinned layer's weights."""

    class ThinTrainer(base):  # type: ignore[misc, valid-type]
        def get_model(
            self, cfg: Any = None, weights: nn.Module | None = None, verbose: bool = True
        ) -> nn.Module:
            if not isinstance(weights, nn.Module):
                return super().get_model(cfg=cfg, weights=weights, verbose=verbose)
            model = super().get_model(cfg=cfg, weights=None, verbose=verbose)
            widths = start_widths(model, weights)
            if widths:
                log.info("Building the model at the channel counts of the channel-pruned start")
                set_layer_widths(model, widths)
            model.load(weights, verbose=verbose)
            return model

    ThinTrainer.__name__ = ThinTrainer.__qualname__ = f"Thin{base.__name__}"
    return ThinTrainer


@contextmanager
def torch_state_kept() -> Iterator[None]:
    """Undo what Ultralytics' trainer sets process-wide: on CPU it drops torch to
    cpu_count - 1 threads, and `seed` turns on deterministic algorithms."""
    threads = torch.get_num_threads()
    deterministic = torch.are_deterministic_algorithms_enabled()
    warn_only = torch.is_deterministic_algorithms_warn_only_enabled()
    try:
        yield
    finally:
        torch.set_num_threads(threads)
        torch.use_deterministic_algorithms(deterministic, warn_only=warn_only)


def run_training(
    yolo: Any, ctx: RunContext, data_yaml: Path, project: Path, epochs: float | None = None
) -> Any:
    """One `yolo.train()` with the run's `experiment.train` settings; returns the trainer.

    `nbs` equals the batch size: one optimizer step per batch, so a per-batch hook sees
    every step and `weight_decay` applies as configured (Ultralytics scales it by batch/nbs).
    """
    train = ctx.cfg.experiment.train
    if train.max_steps:
        stop_after(yolo, int(train.max_steps))
    add_eta(yolo, "Ultralytics training", int(train.max_steps or 0) or None)
    epochs = max(1, math.ceil(float(train.epochs if epochs is None else epochs)))
    batch = int(train.batch_size)
    with torch_state_kept():
        yolo.train(
            trainer=thin_trainer(yolo.task_map[yolo.task]["trainer"]),
            data=str(data_yaml),
            epochs=epochs,
            imgsz=int(ctx.cfg.data.image_size),
            batch=batch,
            nbs=batch,
            optimizer="AdamW",  # "auto" would ignore lr0 and pick its own learning rate
            lr0=float(train.lr),
            weight_decay=float(train.weight_decay),
            device=str(ctx.cfg.device),
            workers=int(ctx.cfg.data.num_workers),
            plots=False,
            val=True,
            project=str(project),
            name="train",
            exist_ok=True,
            amp=False,
            seed=int(ctx.cfg.seed),
            verbose=False,
        )
    return yolo.trainer


def trainer_metrics(trainer: Any, last_epoch: bool = False) -> dict[str, Any]:
    """Ultralytics' validator's box (and mask) mAPs, in percent, and the epoch count.

    By default the final validation's, which Ultralytics runs on best.pt; `last_epoch`: the
    last epoch's (results.csv), i.e. of the model `last_model` returns, which under a pruning
    schedule can be far from the best epoch (an early, still dense one)."""
    results: dict[str, Any] = {}
    if last_epoch:
        read = getattr(trainer, "read_results_csv", None)
        columns = read() if read is not None else {}
        results = {k.strip(): v[-1] for k, v in columns.items() if v}
    if not results:
        results = getattr(getattr(trainer, "validator", None), "metrics", None)
        results = getattr(results, "results_dict", {}) or {}
    out: dict[str, Any] = {"epochs": int(trainer.epoch) + 1}
    for suffix, prefix in (("B", ""), ("M", "mask_")):
        for name in ("mAP50", "mAP50-95"):
            value = results.get(f"metrics/{name}({suffix})")
            if value is not None:
                out[f"{prefix}{name.lower()}"] = round(100.0 * float(value), 4)
    return out


def last_model(trainer: Any) -> nn.Module:
    """The model as trained up to the last step (the EMA weights Ultralytics validates and
    saves), in fp32 eval mode: not best.pt, whose epoch may predate a pruning schedule's end."""
    require_ultralytics()
    from ultralytics.utils.torch_utils import unwrap_model

    source = trainer.ema.ema if getattr(trainer, "ema", None) is not None else trainer.model
    model = copy.deepcopy(unwrap_model(source)).float().eval()
    for p in model.parameters():
        p.requires_grad_(True)  # the EMA copy has grads off; a caller may train it further
    return model
