"""Fine-tuning and evaluation loops for image classifiers."""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from pathlib import Path
from urllib.parse import urlparse

import torch
from torch import nn
from torch.utils.data import DataLoader, DistributedSampler

from sparsify.algorithms.session import RecipeSession
from sparsify.eta import StepTimer
from sparsify.models.tensorboard import EventLog
from sparsify.progress import progress

log = logging.getLogger("sparsify")


def train_classifier(
    model: nn.Module,
    train_loader: DataLoader,
    epochs: float,
    lr: float,
    weight_decay: float = 1e-4,
    max_steps: int | None = None,
    after_step: Callable[[int], None] | None = None,
    val_loader: DataLoader | None = None,
    on_epoch_end: Callable[[int, dict[str, float]], None] | None = None,
    patience: int | None = None,
    what: str = "dense baseline training",
) -> dict[str, float]:
    """AdamW with a one-cycle schedule; `after_step(step)` runs after every optimizer step
    (pruning re-applies masks there). With `val_loader`, top-1 is measured after every epoch
    and the best epoch's weights are kept, and with `patience` training stops after that many
    epochs without a better top-1; `on_epoch_end(epoch, metrics)` can checkpoint. `what`
    names the loop in the time estimate the log gives after the first steps."""
    steps_per_epoch = len(train_loader)
    total = max(1, math.ceil(epochs * steps_per_epoch))
    if max_steps is not None:
        total = min(total, max_steps)
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=weight_decay)
    scheduler = torch.optim.lr_scheduler.OneCycleLR(
        optimizer, max_lr=lr, total_steps=total, pct_start=0.15
    )
    loss_fn = nn.CrossEntropyLoss()
    model.train()
    step, running, epoch = 0, 0.0, 0
    best: tuple[float, dict[str, torch.Tensor]] | None = None
    since_best = 0
    bar = progress(range(total), total=total, desc="training")
    timer = StepTimer(what, total)
    while step < total:
        for images, labels in train_loader:
            optimizer.zero_grad(set_to_none=True)
            loss = loss_fn(model(images), labels)
            loss.backward()
            optimizer.step()
            scheduler.step()
            step += 1
            running = 0.9 * running + 0.1 * loss.item() if step > 1 else loss.item()
            if after_step is not None:
                after_step(step)
            bar.update(1)
            timer.step()
            if step >= total:
                break
        epoch += 1
        metrics = {"loss": running}
        if val_loader is not None:
            metrics.update(evaluate_classifier(model, val_loader))
            model.train()
            if best is None or metrics["top1"] > best[0]:
                best = (
                    metrics["top1"],
                    {k: v.detach().clone() for k, v in model.state_dict().items()},
                )
                since_best = 0
            else:
                since_best += 1
        log.info(
            "epoch %d (step %d/%d): %s",
            epoch,
            step,
            total,
            ", ".join(f"{k} {v:.4f}" for k, v in metrics.items() if k != "samples"),
        )
        if on_epoch_end is not None:
            on_epoch_end(epoch, metrics)
        if patience and since_best >= patience:
            log.info("Val top-1 has not improved for %d epochs: stopping early", since_best)
            break
    bar.close()
    if best is not None:
        model.load_state_dict(best[1])
        log.info("Kept the best epoch's weights (val top-1 %.2f %%)", best[0])
    model.eval()
    return {"steps": step, "epochs": epoch, "loss": round(running, 5)}


@torch.no_grad()
def evaluate_classifier(model: nn.Module, loader: DataLoader) -> dict[str, float]:
    """Top-1 (and top-5 where there are more than 5 classes) accuracy in percent."""
    model.eval()
    correct1 = correct5 = seen = 0
    for images, labels in progress(loader, desc="evaluating"):
        logits = model(images)
        top = logits.topk(min(5, logits.shape[1]), dim=1).indices
        correct1 += (top[:, 0] == labels).sum().item()
        correct5 += (top == labels[:, None]).any(dim=1).sum().item()
        seen += labels.numel()
    return {
        "top1": 100.0 * correct1 / max(1, seen),
        "top5": 100.0 * correct5 / max(1, seen),
        "samples": seen,
    }


def train_with_session(
    model: nn.Module,
    train_loader: DataLoader,
    session: RecipeSession,
    lr: float,
    weight_decay: float = 1e-4,
    teacher: nn.Module | None = None,
    events: EventLog | None = None,
    forward: nn.Module | None = None,
) -> dict[str, float]:
    """Fine-tune under a training recipe: the session sets the learning rate, distils from
    `teacher`, switches QAT on and updates / re-applies the pruning masks every step. No
    best-epoch selection: the weights that count are the last ones, at the final sparsity.
    `forward` computes the logits when it is not `model` itself (its DDP wrapper: gradients
    all-reduced over the ranks, the loader then a DistributedSampler's)."""
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=weight_decay)
    loss_fn = nn.CrossEntropyLoss()
    net = forward if forward is not None else model
    sampler = train_loader.sampler
    if teacher is not None:
        teacher.eval()
    model.train()
    step, running, passes = 0, 0.0, 0
    bar = progress(range(session.total_steps), total=session.total_steps, desc="training")
    timer = StepTimer("training under the recipe", session.total_steps)
    while step < session.total_steps:
        if isinstance(sampler, DistributedSampler):  # another shuffle (the same on all ranks)
            sampler.set_epoch(passes)
        passes += 1
        for images, labels in train_loader:
            new_lr = session.before_step(step)
            if new_lr is not None:
                for group in optimizer.param_groups:
                    group["lr"] = new_lr
            logits = net(images)
            loss = loss_fn(logits, labels)
            if teacher is not None:
                with torch.no_grad():
                    target = teacher(images)
                loss = session.loss(loss, logits, target, step)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            session.after_step(step, optimizer)  # structured pruning slices its state
            if events is not None:
                events.scalars(
                    step,
                    loss=loss.item(),
                    lr=optimizer.param_groups[0]["lr"],
                    sparsity=session.sparsity,
                    epoch=session.epoch_of(step + 1),
                )
            step += 1
            running = 0.9 * running + 0.1 * loss.item() if step > 1 else loss.item()
            bar.update(1)
            timer.step()
            if step % max(1, session.steps_per_epoch) == 0 or step == session.total_steps:
                log.info(
                    "epoch %.2f (step %d/%d): loss %.4f",
                    session.epoch_of(step),
                    step,
                    session.total_steps,
                    running,
                )
            if step >= session.total_steps:
                break
    bar.close()
    model.eval()
    return {"steps": step, "loss": round(running, 5)}


def cached_pretrained(arch: str) -> tuple[Path, str] | None:
    """(file, weights name) of torchvision's pretrained weights for `arch` when they are
    already in torch's hub cache ($TORCH_HOME/hub/checkpoints); never downloads."""
    import torchvision

    try:
        weights = torchvision.models.get_model_weights(arch).DEFAULT
    except (ValueError, KeyError, AttributeError):  # a built-in arch, or one without weights
        return None
    name = Path(urlparse(weights.url).path).name
    file = Path(torch.hub.get_dir()) / "checkpoints" / name
    return (file, f"{type(weights).__name__}.{weights.name}") if file.is_file() else None


def load_pretrained(model: nn.Module, file: Path) -> list[str]:
    """Copy the weights of `file` (a torchvision state dict, read weights-only) into `model`
    wherever the shapes agree; returns the keys left as initialised (the new head)."""
    state = torch.load(file, map_location="cpu", weights_only=True)
    own = model.state_dict()
    fits = {k: v for k, v in state.items() if k in own and tuple(v.shape) == tuple(own[k].shape)}
    model.load_state_dict(fits, strict=False)
    return sorted(set(own) - set(fits))
