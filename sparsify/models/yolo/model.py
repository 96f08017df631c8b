"""Ultralytics YOLO models: build by YAML name, checkpoints in and out, ONNX export.

Ultralytics is imported inside functions: it is an optional extra (`sparsify[yolo]`).
"""

from __future__ import annotations

import copy
import functools
import importlib
import warnings
from datetime import datetime
from functools import cache
from pathlib import Path
from typing import Any

import torch
from torch import nn

from sparsify.errors import SparsifyError
from sparsify.models.safe_load import torch_load

# What an Ultralytics checkpoint legitimately pickles besides tensors and plain containers:
# nn.Module subclasses from these packages (a YOLOv8s, a trained yolov8n / -seg, an
# unstripped last.pt and sparsify's own checkpoints need nothing more) and the training
# args namespace. Module instances are rebuilt by __new__ + __setstate__, which runs no code
# from the file.
MODULE_PACKAGES = ("torch.nn.modules.", "ultralytics.nn.modules.", "ultralytics.nn.tasks.")
HELPERS = ("ultralytics.utils.IterableSimpleNamespace",)
# names older Ultralytics versions pickled, mapped as its own loader maps them
RENAMED_PACKAGES = {
    "ultralytics.yolo.utils.": "ultralytics.utils.",
    "ultralytics.yolo.v8.": "ultralytics.models.yolo.",
    "ultralytics.yolo.data.": "ultralytics.data.",
}
RENAMED = {
    "ultralytics.nn.modules.block.Silence": "torch.nn.modules.linear.Identity",  # YOLOv9e
    "ultralytics.nn.tasks.YOLOv10DetectionModel": "ultralytics.nn.tasks.DetectionModel",
}


def require_ultralytics() -> Any:
    try:
        import ultralytics
    except ImportError:
        raise SparsifyError(
            "cv-detection and cv-segmentation need Ultralytics: pip install 'sparsify[yolo]'"
        ) from None
    return ultralytics


def arch_yaml(arch: str) -> str:
    return arch if arch.endswith((".yaml", ".yml")) else f"{arch}.yaml"


@cache
def arch_task(arch: str) -> str:
    """The Ultralytics task ('detect', 'segment', ...) of a model YAML name, read offline.

    Raises FileNotFoundError when Ultralytics ships no such YAML.
    """
    require_ultralytics()
    from ultralytics.nn.tasks import guess_model_task, yaml_model_load

    return str(guess_model_task(yaml_model_load(arch_yaml(arch))))


@functools.cache
def yolo_global(name: str) -> Any:
    """The class a YOLO checkpoint may rebuild for the pickled global `name`, or None."""
    target = RENAMED.get(name, name)
    for old, new in RENAMED_PACKAGES.items():
        if target.startswith(old):
            target = new + target.removeprefix(old)
    if not target.startswith(MODULE_PACKAGES) and target not in HELPERS:
        return None  # nothing outside these packages is even imported
    module, _, attr = target.rpartition(".")
    try:
        obj = getattr(importlib.import_module(module), attr)
    except (ImportError, AttributeError):
        return None
    if not isinstance(obj, type):
        return None
    return obj if target in HELPERS or issubclass(obj, nn.Module) else None


def read_checkpoint(path: Path, trust: bool = False) -> tuple[nn.Module, dict[str, Any]]:
    """(model in fp32 eval mode, checkpoint dict) of an Ultralytics checkpoint (.pt, or
    sparsify's own .pth), loaded weights-only with `yolo_global`'s classes unless `trust`.

    Anything that passes here holds no code, so Ultralytics' own (full) unpickling of the
    same file, `YOLO(path)`, is safe after it: call this first.
    """
    require_ultralytics()
    from ultralytics.nn.tasks import guess_model_task
    from ultralytics.utils import DEFAULT_CFG_DICT

    if not path.is_file():
        raise SparsifyError(f"YOLO checkpoint {path} does not exist")
    ckpt = torch_load(path, trust, allow=yolo_global)
    model = ckpt.get("ema") or ckpt.get("model") if isinstance(ckpt, dict) else None
    if not isinstance(model, nn.Module):
        raise SparsifyError(f"{path} is not an Ultralytics checkpoint (no 'model' module in it)")
    # what ultralytics.nn.tasks.load_checkpoint does after its unpickling
    model = model.float()
    model.args = {**DEFAULT_CFG_DICT, **(ckpt.get("train_args") or {})}
    model.pt_path = str(path)
    model.task = getattr(model, "task", None) or guess_model_task(model)
    if not hasattr(model, "stride"):
        model.stride = torch.tensor([32.0])
    for m in model.modules():
        if hasattr(m, "inplace"):
            m.inplace = True
        elif isinstance(m, nn.Upsample) and not hasattr(m, "recompute_scale_factor"):
            m.recompute_scale_factor = None  # torch 1.11 compatibility
    return model.eval(), ckpt


def load_yolo(path: Path, trust: bool = False) -> Any:
    """`ultralytics.YOLO(path)` for training, after `read_checkpoint` has checked that the
    file holds nothing but allow-listed classes (Ultralytics unpickles it fully)."""
    require_ultralytics()
    from ultralytics import YOLO

    read_checkpoint(Path(path), trust)
    return YOLO(str(path))


def class_names(model: nn.Module) -> list[str]:
    names = getattr(model, "names", None) or {}
    return [str(names[i]) for i in sorted(names)] if isinstance(names, dict) else list(names)


def detect_head(model: nn.Module) -> nn.Module:
    from ultralytics.nn.modules import Detect

    return next(m for m in model.modules() if isinstance(m, Detect))


def export_onnx(model: nn.Module, path: Path, imgsz: int, opset: int) -> Path:
    """The raw head output (batch, 4 + nc [+ 32], anchors) [+ protos] with BatchNorm folded.

    Done as Ultralytics' exporter prepares a model, on a copy: the caller's (maybe pruned)
    model keeps its BatchNorm layers for later re-estimation.
    """
    require_ultralytics()
    from ultralytics.nn.modules import DFL, C2f, Detect, Segment

    model = copy.deepcopy(model).float().eval()
    for p in model.parameters():
        p.requires_grad_(False)
    head = detect_head(model)
    if getattr(head, "one2one_cv2", None) is not None:
        head.end2end = False  # NMS-free heads (v10, 26) export their one-to-many branch + our NMS
    model = model.fuse(verbose=False)
    for m in model.modules():
        if isinstance(m, Detect):
            m.export, m.format, m.dynamic, m.xyxy, m.shape = True, "onnx", False, False, None
        elif isinstance(m, C2f):
            m.forward = m.forward_split  # Split instead of chunk: a cleaner graph
        elif isinstance(m, DFL):
            m.forward = functools.partial(_dfl_expectation, m)
    segment = isinstance(head, Segment)
    outputs = ["output0", "output1"] if segment else ["output0"]
    path.parent.mkdir(parents=True, exist_ok=True)
    example = torch.zeros(1, 3, imgsz, imgsz)
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # tracer warnings about shape-dependent Python values
        # one forward caches the anchor grid for this size: it is traced as constants, not
        # as Shape/Range ops
        produced = model(example)
        torch.onnx.export(
            model,
            example,
            str(path),
            dynamo=False,
            opset_version=opset,
            input_names=["images"],
            output_names=outputs,
            dynamic_axes={n: {0: "batch"} for n in ["images", *outputs]},
        )
    shapes = [produced.shape] if isinstance(produced, torch.Tensor) else [t.shape for t in produced]
    _fix_output_dims(path, [list(shape[1:]) for shape in shapes])
    return path


def _dfl_expectation(dfl: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """DFL: the softmax over each box edge's c1 bins, then the expected bin (Ultralytics' 1x1
    conv with a frozen 0..c1-1 kernel), written as max, exp and two sums over the bin axis in
    place: the same numbers, no Conv that pruning or INT8 could touch (rounding the kernel to
    int8 shifts every box edge), and no Softmax over a middle axis, which ONNX Runtime runs
    as a transpose and 16-wide rows. YOLOv8s at 160 px, batch 16, 2 cores: 4.4 -> 0.33 ms
    for the decode's softmax and expectation, in the dense and the INT8 model alike."""
    b, _, a = x.shape
    logits = x.view(b, 4, dfl.c1, a)
    e = (logits - logits.amax(2, keepdim=True)).exp()
    bins = torch.arange(dfl.c1, dtype=x.dtype).view(1, 1, dfl.c1, 1)
    return (e * bins).sum(2) / e.sum(2)  # (b, 4, a)


def _fix_output_dims(path: Path, dims: list[list[int]]) -> None:
    """Write the known non-batch output dims: the tracer leaves them symbolic (they come
    from a batch-dependent Reshape), and config.json and quantization read them.

    Also gives each Identity of an initializer its own initializer: the exporter shares
    equal tensors (the box branches' biases start equal) through Identity nodes, and ONNX
    Runtime's quantizer needs every Conv bias to be an initializer.
    """
    import onnx
    from onnx import numpy_helper

    model = onnx.load(str(path))
    graph = model.graph
    for output, known in zip(graph.output, dims, strict=True):
        for dim, value in zip(list(output.type.tensor_type.shape.dim)[1:], known, strict=True):
            dim.Clear()
            dim.dim_value = int(value)
    initializers = {i.name: i for i in graph.initializer}
    shared = [n for n in graph.node if n.op_type == "Identity" and n.input[0] in initializers]
    for node in shared:
        array = numpy_helper.to_array(initializers[node.input[0]])
        graph.initializer.append(numpy_helper.from_array(array.copy(), node.output[0]))
        graph.node.remove(node)
    onnx.save(model, str(path))


def save_checkpoint(model: nn.Module, path: Path) -> None:
    """An Ultralytics-format checkpoint (fp32): `YOLO(path)` and `read_checkpoint` read it,
    the latter without `model.trust_pickle` (checked here after writing)."""
    ultralytics = require_ultralytics()
    args = getattr(model, "args", {}) or {}
    args = dict(args) if isinstance(args, dict) else dict(vars(args))
    # a shallow copy (shared weights) with plain args and no loss object, as Ultralytics'
    # strip_optimizer saves a model; the caller's model keeps its attributes
    saved = copy.copy(model)
    saved.args = args
    if hasattr(saved, "criterion"):
        saved.criterion = None
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(
        {
            "date": datetime.now().isoformat(),
            "version": ultralytics.__version__,
            "epoch": -1,
            "best_fitness": None,
            "model": saved,
            "ema": None,
            "updates": None,
            "optimizer": None,
            "train_args": args,
        },
        str(path),
    )
    stray = [
        n
        for n in torch.serialization.get_unsafe_globals_in_checkpoint(str(path))
        if yolo_global(n) is None
    ]
    if stray:  # a bug here, not the user's: sparsify must read back what it writes
        raise SparsifyError(f"{path}: the saved YOLO model holds {stray}, outside the allow-list")
