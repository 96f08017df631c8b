"""`experiment.train.optimizer`: resume fine-tuning from a saved optimizer state.

Each family's trainer builds its own optimizer (ours, Hugging Face's), so the state is
loaded by a hook on the first optimizer step over the model's parameters, whatever built
that optimizer. Only the per-parameter state (Adam's moments, step counts) is taken: the
learning rate and other settings stay the recipe's and the run config's.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.optim.optimizer import Optimizer, register_optimizer_step_pre_hook

from sparsify.errors import SparsifyError

log = logging.getLogger("sparsify")


def read_optimizer_state(path: Path) -> dict[str, Any]:
    """A `torch.save(optimizer.state_dict())` file, or a checkpoint holding one under
    `optimizer`; tensors and plain data only (no code runs while it loads)."""
    try:
        loaded = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - any unreadable file is the same user error
        raise SparsifyError(
            f"optimizer state {path} cannot be read ({exc}); give a file written by "
            "torch.save(optimizer.state_dict())"
        ) from None
    if isinstance(loaded, dict) and isinstance(loaded.get("optimizer"), dict):
        loaded = loaded["optimizer"]
    if not isinstance(loaded, dict) or not {"state", "param_groups"} <= set(loaded):
        raise SparsifyError(
            f"optimizer state {path} holds no optimizer state_dict (keys state, param_groups); "
            "give a file written by torch.save(optimizer.state_dict())"
        )
    return loaded


def _shapes(state: dict[Any, Any]) -> list[tuple[int, ...]]:
    """The parameter shape each entry's state implies (its first tensor of rank > 0)."""
    shapes = []
    for entry in state.values():
        tensors = [v for v in entry.values() if isinstance(v, torch.Tensor) and v.dim() > 0]
        if tensors:
            shapes.append(tuple(tensors[0].shape))
    return shapes


def check_against(saved: dict[str, Any], model: nn.Module, path: Path) -> None:
    """Refuse a state whose parameter shapes are not those of `model`'s trainable parameters
    (before training, in whichever order its trainer groups them)."""
    params = [tuple(p.shape) for p in model.parameters() if p.requires_grad]
    state_shapes = _shapes(saved["state"])
    missing = sorted(set(state_shapes) - set(params))
    if missing or len(state_shapes) > len(params):
        raise SparsifyError(
            f"optimizer state {path} does not fit this model: it holds state for "
            f"{len(state_shapes)} parameters, the model has {len(params)}"
            + (f"; shapes {missing[:4]} are none of the model's" if missing else "")
            + ". Give the optimizer state saved with this model, or leave "
            "experiment.train.optimizer unset"
        )


def _load(optimizer: Optimizer, saved: dict[str, Any], path: Path) -> None:
    live = optimizer.state_dict()
    sizes = [len(g["params"]) for g in live["param_groups"]]
    saved_sizes = [len(g["params"]) for g in saved["param_groups"]]
    if sizes != saved_sizes:
        raise SparsifyError(
            f"optimizer state {path} has parameter groups of sizes {saved_sizes}; this "
            f"trainer's optimizer has {sizes}. Give a state saved by the same trainer"
        )
    params = [p for g in optimizer.param_groups for p in g["params"]]
    order = [i for g in saved["param_groups"] for i in g["params"]]
    for index, param in zip(order, params, strict=True):
        for name, value in saved["state"].get(index, {}).items():
            if isinstance(value, torch.Tensor) and value.dim() > 0 and value.shape != param.shape:
                raise SparsifyError(
                    f"optimizer state {path}: {name} of parameter {index} has shape "
                    f"{tuple(value.shape)}, the model's parameter {tuple(param.shape)}"
                )
    # the saved moments under this run's settings (lr from the recipe, weight decay, ...)
    optimizer.load_state_dict(
        {
            "state": saved["state"],
            "param_groups": [
                {**group, "params": saved_group["params"]}
                for group, saved_group in zip(
                    live["param_groups"], saved["param_groups"], strict=True
                )
            ],
        }
    )


@contextmanager
def resume_optimizer(path: Path | None, model: nn.Module) -> Iterator[dict[str, bool]]:
    """While training `model`: the first optimizer step over its parameters starts from the
    state in `path`. Yields {"loaded": bool}, true once it was."""
    done = {"loaded": False}
    if path is None:
        yield done
        return
    saved = read_optimizer_state(path)
    check_against(saved, model, path)
    own = {id(p) for p in model.parameters()}

    def hook(optimizer: Optimizer, args: Any, kwargs: Any) -> None:
        if done["loaded"]:
            return
        params = [p for g in optimizer.param_groups for p in g["params"]]
        if not params or any(id(p) not in own for p in params):
            return  # another model's optimizer
        _load(optimizer, saved, path)
        done["loaded"] = True
        log.info("Resumed the optimizer state from %s (%d parameters)", path, len(params))

    handle = register_optimizer_step_pre_hook(hook)
    try:
        yield done
    finally:
        handle.remove()
    if not done["loaded"]:
        log.warning(
            "The optimizer state %s was not used: no optimizer step trained the model", path
        )
