"""One INT8 range for all tensors of a Concat, so ONNX Runtime's QLinearConcat copies bytes.

Calibration gives every tensor its own range, so a quantized Concat's inputs and output
usually have different scales, and ONNX Runtime's QLinearConcat then requantizes each input
byte through a lookup table. When an input's scale and zero point equal the output's, it
copies the bytes instead. `shared_concat_ranges` measures the float ranges of the tensors
around every quantized Concat on the calibration samples and gives each group of tensors
joined by Concats their common (widest) range, as `TensorQuantOverrides` for
`onnxruntime.quantization.quantize_static`. The cost is a slightly coarser grid for a tensor
whose own range was narrower than its group's (in YOLO's C2f blocks, the branches being
concatenated share one activation and similar ranges). YOLOv8s QDQ at 160 px, batch 16,
2 cores: QLinearConcat 3.6 -> 2.2 ms per batch.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from pathlib import Path

import numpy as np
import onnx

from sparsify.onnx_graph import constant_names, inferred_tensor_types

log = logging.getLogger("sparsify")

# ops whose INT8 output ONNX Runtime's quantizer gives its input's scale and zero point: a
# group reaches through them (a Split's outputs being concatenated share the Split's input's
# range, so that range must be the group's too)
PASS_THROUGH = frozenset(
    {"Split", "Resize", "MaxPool", "AveragePool", "Reshape", "Transpose", "Squeeze",
     "Unsqueeze", "Flatten", "Slice", "Gather"}
)  # fmt: skip


def concat_groups(
    model: onnx.ModelProto,
    excluded: Iterable[str] = (),
    op_types: Iterable[str] | None = None,
) -> list[list[str]]:
    """Tensor names that must share one range: each float Concat's inputs and output, and
    through the quantized pass-through ops (`PASS_THROUGH` of `op_types`, None = all) their
    input and outputs, merged where they share a tensor. Nodes in `excluded`, with a constant
    data input or of other types are left out; none when `op_types` leaves Concat float."""
    if op_types is not None and "Concat" not in op_types:
        return []
    constants = constant_names(model.graph)
    skip = set(excluded)
    quantized = set(PASS_THROUGH if op_types is None else PASS_THROUGH & set(op_types))
    nodes = [n for n in model.graph.node if n.name not in skip]
    concats = [n for n in nodes if n.op_type == "Concat"]
    types = inferred_tensor_types(model) if concats else {}
    if concats and not types:  # an aid: without types, no Concat group is formed
        log.warning("shape inference failed; Concat inputs keep their own ranges")
    floats = {name for name, t in types.items() if t.elem_type == onnx.TensorProto.FLOAT}
    parent: dict[str, str] = {}

    def root(name: str) -> str:
        parent.setdefault(name, name)
        while parent[name] != name:
            parent[name] = parent[parent[name]]
            name = parent[name]
        return name

    def join(names: list[str]) -> None:
        if names and all(n not in constants and n in floats for n in names):
            for name in names[1:]:
                parent[root(name)] = root(names[0])

    for node in concats:
        join([n for n in (*node.input, *node.output) if n])
    passing = [n for n in nodes if n.op_type in quantized and n.input]
    size = -1
    while size != len(parent):  # only pass-through ops touching a group (chains too)
        size = len(parent)
        for node in passing:
            names = [node.input[0], *(n for n in node.output if n)]
            if parent.keys() & set(names):
                join(names)
    groups: dict[str, list[str]] = {}
    for name in parent:
        groups.setdefault(root(name), []).append(name)
    return [sorted(group) for group in groups.values()]


def tensor_ranges(
    model_path: Path,
    names: list[str],
    calibration: list[dict[str, np.ndarray]],
    work_dir: Path,
) -> dict[str, tuple[float, float]]:
    """(min, max) of each named float tensor over the calibration samples, from ONNX Runtime
    running a copy of the model that outputs them (no graph optimization: names stay),
    written into `work_dir`."""
    import onnxruntime as ort

    probe = onnx.load(str(model_path))
    outputs = {o.name for o in probe.graph.output}
    for name in names:
        if name not in outputs:
            info = onnx.helper.make_tensor_value_info(name, onnx.TensorProto.FLOAT, None)
            probe.graph.output.append(info)
    probe_path = Path(work_dir) / "concat_ranges_probe.onnx"
    onnx.save(
        probe, str(probe_path), save_as_external_data=True, location=probe_path.name + ".data"
    )
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    session = ort.InferenceSession(str(probe_path), options, providers=["CPUExecutionProvider"])
    lows = dict.fromkeys(names, np.inf)
    highs = dict.fromkeys(names, -np.inf)
    for feeds in calibration:
        for name, value in zip(names, session.run(names, feeds), strict=True):
            lows[name] = min(lows[name], float(np.min(value)))
            highs[name] = max(highs[name], float(np.max(value)))
    del session
    return {name: (lows[name], highs[name]) for name in names}


def shared_concat_ranges(
    model_path: Path,
    calibration: list[dict[str, np.ndarray]],
    work_dir: Path,
    excluded: Iterable[str] = (),
    op_types: Iterable[str] | None = None,
) -> dict[str, list[dict[str, np.float32]]]:
    """`TensorQuantOverrides` giving every tensor of a Concat group the group's range (with
    0 inside, as calibration has it); empty when the model has no quantizable Concat.
    Probe files go into `work_dir`."""
    model = onnx.load(str(model_path), load_external_data=False)
    groups = concat_groups(model, excluded, op_types)
    if not groups:
        return {}
    names = [name for group in groups for name in group]
    ranges = tensor_ranges(model_path, names, calibration, work_dir)
    overrides: dict[str, list[dict[str, np.float32]]] = {}
    for group in groups:
        low = min(0.0, *(ranges[n][0] for n in group))
        high = max(0.0, *(ranges[n][1] for n in group))
        for name in group:
            overrides[name] = [{"rmin": np.float32(low), "rmax": np.float32(high)}]
    log.info(
        "Concat inputs share their output's INT8 range: %d groups, %d tensors",
        len(groups),
        len(overrides),
    )
    return overrides
