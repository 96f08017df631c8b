"""Ultralytics YOLO models: build by YAML name, checkpoints in and out, ONNX export.

Ultralytics is imported inside functions: it is an optional extra (`sparsify[yolo]`).
"""

from __future__ import annotations

import copy
import functools
import warnings
from datetime import datetime
from functools import cache
from pathlib import Path
from typing import Any

import torch
from torch import nn

from sparsify.errors import SparsifyError


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


def read_checkpoint(path: Path) -> tuple[nn.Module, dict[str, Any]]:
    """(model in fp32 eval mode, checkpoint dict) of an Ultralytics checkpoint."""
    require_ultralytics()
    if not path.is_file():
        raise SparsifyError(f"YOLO checkpoint {path} does not exist")
    if path.suffix == ".pt":
        from ultralytics.nn.tasks import load_checkpoint

        model, ckpt = load_checkpoint(str(path), device="cpu")
        return model, ckpt
    # sparsify's own checkpoints (the pipeline names them model.pth); Ultralytics' loader
    # insists on .pt and would try to download anything it cannot find
    ckpt = torch.load(str(path), map_location="cpu", weights_only=False)
    return (ckpt.get("ema") or ckpt["model"]).float().eval(), ckpt


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
    """An Ultralytics-format checkpoint (fp32): `YOLO(path)` and `read_checkpoint` read it."""
    ultralytics = require_ultralytics()
    args = getattr(model, "args", {}) or {}
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(
        {
            "date": datetime.now().isoformat(),
            "version": ultralytics.__version__,
            "epoch": -1,
            "best_fitness": None,
            "model": model,
            "ema": None,
            "updates": None,
            "optimizer": None,
            "train_args": dict(args) if isinstance(args, dict) else dict(vars(args)),
        },
        str(path),
    )
