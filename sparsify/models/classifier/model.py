"""Image classifiers: torchvision architectures by name plus small built-in ones."""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import nn

from sparsify.errors import Problem, SparsifyError
from sparsify.models.safe_load import UnsafePickleError, torch_load, unsafe_problem
from sparsify.models.tiny import tinynet

log = logging.getLogger("sparsify")

BUILTIN_ARCHS: dict[str, Callable[[int], nn.Module]] = {"tinynet": tinynet}


def available_archs() -> list[str]:
    import torchvision

    return sorted(
        set(BUILTIN_ARCHS) | set(torchvision.models.list_models(module=torchvision.models))
    )


def build_model(arch: str, num_classes: int) -> nn.Module:
    """A randomly initialised classifier of `arch` with `num_classes` outputs."""
    if arch in BUILTIN_ARCHS:
        return BUILTIN_ARCHS[arch](num_classes)
    import torchvision

    if arch not in torchvision.models.list_models(module=torchvision.models):
        raise SparsifyError(
            f"unknown image classifier architecture {arch!r}; available: {', '.join(available_archs())}"
        )
    return torchvision.models.get_model(arch, weights=None, num_classes=num_classes)


def read_checkpoint(path: Path, trust: bool = False) -> dict[str, Any]:
    """{state_dict, arch_key?, classes?} from a plain state dict or a SparseML-style .pth,
    read weights-only; a whole pickled module (torch.save(model)) only with `trust`.

    Raises UnsafePickleError (naming the globals) for a file weights-only loading refuses.
    """
    try:
        obj = torch_load(path, trust)
    except UnsafePickleError:
        raise
    except Exception as exc:  # noqa: BLE001 - any unpickling failure means the same to the user
        raise SparsifyError(
            f"cannot read checkpoint {path}: {exc}. Give a torch state dict saved with "
            "torch.save(model.state_dict(), path)"
        ) from None
    if isinstance(obj, nn.Module):  # a trusted full pickle: its weights are what we need
        obj = obj.state_dict()
    if not isinstance(obj, dict):
        raise SparsifyError(f"checkpoint {path} holds a {type(obj).__name__}, not a state dict")
    if "state_dict" in obj and isinstance(obj["state_dict"], dict):
        ckpt = dict(obj)
    else:
        ckpt = {"state_dict": obj}
    ckpt["state_dict"] = {
        k.removeprefix("module."): v for k, v in ckpt["state_dict"].items() if torch.is_tensor(v)
    }
    return ckpt


def checkpoint_problems(
    path: Path, arch: str, num_classes: int, key: str = "model.path", trust: bool = False
) -> list[Problem]:
    """Why `path` cannot serve as a trained `arch` with `num_classes` outputs (empty if it can)."""
    try:
        ckpt = read_checkpoint(path, trust)
    except UnsafePickleError as exc:
        return [unsafe_problem(path, exc.names, key)]
    except SparsifyError as exc:
        return [Problem(key, str(path), str(exc), "point model.path at a state dict of model.arch")]
    return _fit_problems(ckpt, path, arch, num_classes, key)


def build_for_checkpoint(ckpt: dict[str, Any], arch: str, num_classes: int) -> nn.Module:
    """`arch` with `num_classes` outputs, thinned to the channel counts a channel-pruned
    checkpoint records (`channels`: layer -> plain ints, so it stays weights-only); the
    classifier head keeps `num_classes` outputs whatever the checkpoint's were."""
    model = build_model(arch, num_classes)
    channels = ckpt.get("channels")
    if channels:
        from sparsify.algorithms.channel_widths import set_layer_widths

        heads = {k.rpartition(".")[0] for k in head_keys(arch, num_classes)}
        modules = dict(model.named_modules())
        widths = {}
        for name, counts in channels.items():
            counts = [int(c) for c in counts]
            if name in heads and name in modules:  # its outputs are the classes, not channels
                own = modules[name]
                counts[1] = own.out_features if isinstance(own, nn.Linear) else own.out_channels
            widths[str(name)] = counts
        set_layer_widths(model, widths)
    return model


def _fit_problems(
    ckpt: dict[str, Any], path: Path, arch: str, num_classes: int, key: str
) -> list[Problem]:
    """Why the read checkpoint `ckpt` does not fit `arch` with `num_classes` outputs."""
    try:
        model = build_for_checkpoint(ckpt, ckpt.get("arch_key") or arch, num_classes)
    except SparsifyError as exc:
        return [Problem(key, str(path), str(exc), "point model.path at a state dict of model.arch")]
    saved_arch = ckpt.get("arch_key")
    if saved_arch and saved_arch != arch:
        return [
            Problem(
                key,
                str(path),
                f"was saved from arch {saved_arch!r}, but model.arch is {arch!r}",
                f"set model.arch={saved_arch}",
            )
        ]
    expected = model.state_dict()
    got = ckpt["state_dict"]
    missing = sorted(set(expected) - set(got))
    unexpected = sorted(set(got) - set(expected))
    if missing or unexpected:
        return [
            Problem(
                key,
                str(path),
                f"does not fit architecture {arch!r}: {len(missing)} missing keys (e.g. {missing[:3]}), "
                f"{len(unexpected)} unexpected keys (e.g. {unexpected[:3]})",
                "set model.arch to the architecture the checkpoint was saved from",
            )
        ]
    wrong = [k for k in expected if tuple(expected[k].shape) != tuple(got[k].shape)]
    if wrong and set(wrong) != set(head_keys(arch, num_classes)):
        return [
            Problem(
                key,
                str(path),
                f"tensor shapes differ from {arch!r} with {num_classes} classes: {wrong[:4]}",
                "give a checkpoint of model.arch (its classifier may have any number of classes)",
            )
        ]
    return []


def head_keys(arch: str, num_classes: int) -> list[str]:
    """State-dict keys of the classifier head: those whose first dimension is the class count."""
    probe = build_model(arch, num_classes + 7)  # an unusual count singles the head out
    base = build_model(arch, num_classes).state_dict()
    return [k for k, v in probe.state_dict().items() if tuple(v.shape) != tuple(base[k].shape)]


def head_fits(path: Path, arch: str, classes: list[str], trust: bool = False) -> bool:
    """True when the checkpoint's classifier already serves these classes (count and names)."""
    ckpt = read_checkpoint(path, trust)
    saved = ckpt.get("classes")
    if saved is not None and list(saved) != list(classes):
        return False
    expected = build_for_checkpoint(ckpt, arch, len(classes)).state_dict()
    return all(
        tuple(ckpt["state_dict"][k].shape) == tuple(expected[k].shape)
        for k in head_keys(arch, len(classes))
    )


def load_model(
    path: Path, arch: str, num_classes: int, new_head: bool = False, trust: bool = False
) -> nn.Module:
    """The checkpoint as `arch`; with `new_head` a classifier of another size is re-initialised.
    `trust` also reads a whole pickled module (it may run code)."""
    ckpt = read_checkpoint(path, trust)  # an UnsafePickleError passes as it is
    problems = _fit_problems(ckpt, path, arch, num_classes, "model.path")
    if problems:
        raise SparsifyError(str(problems[0]))
    model = build_for_checkpoint(ckpt, arch, num_classes)
    state = ckpt["state_dict"]
    expected = model.state_dict()
    other = [k for k in head_keys(arch, num_classes) if state[k].shape != expected[k].shape]
    if other and not new_head:
        raise SparsifyError(
            f"{path}: its classifier has {state[other[0]].shape[0]} outputs, not {num_classes}; "
            "fine-tune it on this dataset first (fetch does that when the classes differ)"
        )
    state = {k: v for k, v in state.items() if k not in other}
    model.load_state_dict(state, strict=not other)
    if other:
        log.info(
            "Re-initialised the classifier head (%s) for %d classes", ", ".join(other), num_classes
        )
    return model


def save_checkpoint(
    model: nn.Module, path: Path, arch: str, classes: list[str], **extra: Any
) -> None:
    """SparseML-style checkpoint: state dict plus what is needed to rebuild the model (a
    channel-pruned model's channel counts per thinned layer, as plain ints)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    if arch in available_archs() and "channels" not in extra:
        from sparsify.algorithms.channel_widths import layer_widths

        channels = layer_widths(model, build_model(arch, len(classes)))
        extra = {**extra, **({"channels": channels} if channels else {})}
    torch.save(
        {"state_dict": model.state_dict(), "arch_key": arch, "classes": list(classes), **extra}, tmp
    )
    tmp.replace(path)


def export_onnx(model: nn.Module, path: Path, image_size: int, opset: int) -> Path:
    """ONNX with input `input` (N,3,H,W), output `logits`, dynamic batch; BN folded."""
    path.parent.mkdir(parents=True, exist_ok=True)
    model = model.eval()
    dummy = torch.randn(1, 3, image_size, image_size)
    with torch.no_grad():
        torch.onnx.export(
            model,
            (dummy,),
            str(path),
            dynamo=False,
            opset_version=opset,
            input_names=["input"],
            output_names=["logits"],
            dynamic_axes={"input": {0: "batch"}, "logits": {0: "batch"}},
        )
    return path
