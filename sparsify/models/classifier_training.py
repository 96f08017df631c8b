"""Fine-tuning and evaluation loops for image classifiers."""

from __future__ import annotations

import logging
import math
import sys
from collections.abc import Callable

import torch
from torch import nn
from torch.utils.data import DataLoader
from tqdm import tqdm

log = logging.getLogger("sparsify")


def progress(iterable, total: int | None = None, desc: str = ""):  # noqa: ANN001, ANN201
    """A progress bar on a terminal, nothing in non-interactive logs."""
    return tqdm(iterable, total=total, desc=desc, leave=False, disable=not sys.stderr.isatty())


def train_classifier(
    model: nn.Module,
    train_loader: DataLoader,
    epochs: float,
    lr: float,
    weight_decay: float = 1e-4,
    max_steps: int | None = None,
    after_step: Callable[[int], None] | None = None,
) -> dict[str, float]:
    """AdamW with a cosine schedule; `after_step(step)` runs after every optimizer step
    (pruning re-applies masks there)."""
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
    step, running = 0, 0.0
    bar = progress(range(total), total=total, desc="training")
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
            if step % max(1, steps_per_epoch) == 0:
                log.info(
                    "step %d/%d (epoch %.1f): loss %.4f",
                    step,
                    total,
                    step / steps_per_epoch,
                    running,
                )
            if step >= total:
                break
    bar.close()
    model.eval()
    return {"steps": step, "loss": round(running, 5)}


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
