"""INT8 QDQ graphs of a small C2f-like CNN (Split, Concat, SiLU): Concat inputs quantized on
their output's grid (`concat_ranges`), conv weights stored with zero point -1
(`ort_fusions.offset_conv_weights`); both leave the model's numbers as they were."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from omegaconf import OmegaConf
from onnx import numpy_helper
from torch import nn

from sparsify.algorithms import ort_fusions
from sparsify.algorithms.concat_ranges import concat_groups
from sparsify.algorithms.ort_fusions import (
    apply_conv_weight_zero_point,
    cpu_has_amx,
    offset_conv_weights,
)
from sparsify.algorithms.quantization import quantize_onnx_static
from sparsify.config.checks import _quantization_problems
from sparsify.config.schema import QuantizationConfig
from sparsify.errors import SparsifyError

OPS = ["Conv", "Concat", "Split", "Sigmoid", "Mul", "Resize", "MaxPool"]


class _C2fLike(nn.Module):
    """conv -> SiLU -> split in two -> one half through a conv scaled x4 (another range) ->
    concat of the halves, the branch and its max-pooled copy -> conv."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Conv2d(3, 8, 3, padding=1)
        self.branch = nn.Conv2d(4, 4, 3, padding=1)
        self.head = nn.Conv2d(16, 6, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = nn.functional.silu(self.stem(x))
        a, b = y.split(4, dim=1)
        c = nn.functional.silu(self.branch(b)) * 4.0
        d = nn.functional.max_pool2d(c, 3, stride=1, padding=1)
        return self.head(torch.cat([a, b, c, d], dim=1))


def _export(module: type[nn.Module], path: Path) -> Path:
    """A freshly seeded `module` exported with a dynamic batch, input 3 x 12 x 12."""
    torch.manual_seed(0)
    torch.onnx.export(
        module().eval(),
        (torch.randn(1, 3, 12, 12),),
        path,
        dynamo=False,
        opset_version=17,
        input_names=["input"],
        output_names=["out"],
        dynamic_axes={"input": {0: "batch"}, "out": {0: "batch"}},
    )
    return path


@pytest.fixture(scope="module")
def fp32(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _export(_C2fLike, tmp_path_factory.mktemp("c2f") / "model.onnx")


class _Deep(nn.Module):
    """stem (3 channels: too shallow for the GEMM) -> 3x3 32 -> 32 at 12 x 12 (moved) -> 3x3
    32 -> 16 with stride 4 (3 x 3 pixels: too few, kept)."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Conv2d(3, 32, 3, padding=1)
        self.body = nn.Conv2d(32, 32, 3, padding=1)
        self.tail = nn.Conv2d(32, 16, 3, stride=4, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.tail(torch.relu(self.body(torch.relu(self.stem(x)))))


@pytest.fixture(scope="module")
def deep(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _export(_Deep, tmp_path_factory.mktemp("deep") / "model.onnx")


@pytest.fixture(scope="module")
def calibration() -> list[dict[str, np.ndarray]]:
    rng = np.random.default_rng(1)
    return [{"input": rng.standard_normal((1, 3, 12, 12)).astype(np.float32)} for _ in range(8)]


def _run(path: Path, x: np.ndarray) -> np.ndarray:
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return session.run(None, {"input": x})[0]


def _params(graph: onnx.GraphProto) -> tuple[dict, dict, dict]:
    values = {i.name: numpy_helper.to_array(i) for i in graph.initializer}
    producers = {o: n for n in graph.node for o in n.output}
    readers: dict[str, list[onnx.NodeProto]] = {}
    for node in graph.node:
        for name in node.input:
            readers.setdefault(name, []).append(node)
    return values, producers, readers


def _concat_grids(path: Path) -> list[set[tuple[float, int]]]:
    """Per Concat: the (scale, zero point) set of its inputs' DequantizeLinear and its
    output's QuantizeLinear; one element = one shared grid."""
    graph = onnx.load(str(path)).graph
    values, producers, readers = _params(graph)
    grids = []
    for node in graph.node:
        if node.op_type != "Concat":
            continue
        qdq = [producers[i] for i in node.input] + [
            r for r in readers[node.output[0]] if r.op_type == "QuantizeLinear"
        ]
        assert {n.op_type for n in qdq} == {"DequantizeLinear", "QuantizeLinear"}
        grids.append({(float(values[n.input[1]]), int(values[n.input[2]])) for n in qdq})
    return grids


@pytest.mark.parametrize("shared", [True, False])
def test_concat_inputs_share_the_output_grid(
    fp32: Path, calibration: list, tmp_path: Path, shared: bool
) -> None:
    out = tmp_path / "int8.onnx"
    info = quantize_onnx_static(
        fp32, out, calibration, fmt="qdq", op_types=OPS, share_concat_ranges=shared
    )
    grids = _concat_grids(out)
    assert len(grids) == 1
    if shared:
        assert len(grids[0]) == 1  # QLinearConcat then copies bytes
        assert info["shared_concat_ranges"] >= 6  # 4 inputs, output, the split's input
    else:  # calibration alone gives the x4 branch another grid
        assert len(grids[0]) > 1 and info["shared_concat_ranges"] == 0
    x = calibration[0]["input"]
    ref, got = _run(fp32, x), _run(out, x)
    assert np.abs(got - ref).max() < 0.05 * np.abs(ref).max()


def test_concat_groups_reach_through_pass_through_ops(fp32: Path) -> None:
    model = onnx.load(str(fp32))
    split = next(n for n in model.graph.node if n.op_type == "Split")
    pool = next(n for n in model.graph.node if n.op_type == "MaxPool")
    (group,) = concat_groups(model)
    # the Split's input (the stem's SiLU) and the pool's input join the Concat's tensors
    assert split.input[0] in group and pool.input[0] in group and len(group) == 6
    (without_split,) = concat_groups(model, op_types=["Conv", "Concat", "MaxPool"])
    assert split.input[0] not in without_split and pool.input[0] in without_split
    concat = next(n for n in model.graph.node if n.op_type == "Concat")
    assert concat_groups(model, excluded=[concat.name]) == []


def test_concat_with_a_constant_input_keeps_its_ranges() -> None:
    x = onnx.helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [1, 2])
    y = onnx.helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, [1, 4])
    const = numpy_helper.from_array(np.ones((1, 2), np.float32), "c")
    graph = onnx.helper.make_graph(
        [onnx.helper.make_node("Concat", ["x", "c"], ["y"], axis=1)], "g", [x], [y], [const]
    )
    assert concat_groups(onnx.helper.make_model(graph)) == []


def _conv_weights(path: Path) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Per Conv: its weight as the graph dequantizes it, and the stored zero points."""
    graph = onnx.load(str(path)).graph
    values, producers, _ = _params(graph)
    out = {}
    for node in graph.node:
        if node.op_type == "Conv":
            dq = producers[node.input[1]]
            q, scale, zero = (values[n] for n in dq.input)
            shape = (-1,) + (1,) * (q.ndim - 1)
            real = (q.astype(np.float32) - zero.reshape(shape)) * scale.reshape(shape)
            out[node.name] = (real, zero)
    return out


def test_offset_conv_weights_are_the_same_numbers(
    deep: Path, calibration: list, tmp_path: Path
) -> None:
    zero, offset = tmp_path / "zero.onnx", tmp_path / "offset.onnx"
    kwargs = {"fmt": "qdq", "op_types": ["Conv"]}
    info0 = quantize_onnx_static(deep, zero, calibration, conv_weight_zero_point="zero", **kwargs)
    info1 = quantize_onnx_static(
        deep, offset, calibration, conv_weight_zero_point="offset", **kwargs
    )
    assert info0["conv_weight_zero_point"] == "zero" and info0["offset_conv_weights"] == 0
    assert info1["conv_weight_zero_point"] == "offset" and info1["offset_conv_weights"] == 1
    before, after = _conv_weights(zero), _conv_weights(offset)
    assert before.keys() == after.keys() and len(before) == 3
    moved = [name for name, (_, zp) in after.items() if np.all(zp == -1)]
    assert moved == ["/body/Conv"]  # deep enough, 144 pixels; the stem and tail stay
    for name, (real, zp) in before.items():
        assert np.all(zp == 0)
        np.testing.assert_array_equal(after[name][0], real)
    x = calibration[2]["input"]
    np.testing.assert_allclose(_run(offset, x), _run(zero, x), rtol=0, atol=1e-5)


def _dq_conv(weight: np.ndarray, consumer: str = "Conv") -> onnx.ModelProto:
    inits = [
        numpy_helper.from_array(weight, "w_q"),
        numpy_helper.from_array(np.full(weight.shape[0], 0.01, np.float32), "w_scale"),
        numpy_helper.from_array(np.zeros(weight.shape[0], np.int8), "w_zp"),
    ]
    dq = onnx.helper.make_node("DequantizeLinear", ["w_q", "w_scale", "w_zp"], ["w"], axis=0)
    inputs = ["x", "w"] if consumer == "Conv" else ["w", "x"]
    node = onnx.helper.make_node(consumer, inputs, ["y"], name="op")
    x = onnx.helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, None)
    y = onnx.helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, None)
    return onnx.helper.make_model(onnx.helper.make_graph([dq, node], "g", [x], [y], inits))


def test_offset_direction_follows_the_weights_range() -> None:
    low = np.array([-128, 5, 0, 126]).astype(np.int8).reshape(1, 4, 1, 1)
    assert offset_conv_weights(_dq_conv(low)) == 0  # 4 deep, pixels unknown: kept
    model = _dq_conv(low)
    assert offset_conv_weights(model, min_depth=0, min_pixels=0) == 1
    # -128 present: every value + 1, zero point + 1
    values = {i.name: numpy_helper.to_array(i) for i in model.graph.initializer}
    dq = model.graph.node[0]
    assert values[dq.input[0]].tolist() == [[[[-127]], [[6]], [[1]], [[127]]]]
    assert values[dq.input[2]].tolist() == [1]
    assert set(values) == {dq.input[0], dq.input[1], dq.input[2]}  # the old ones dropped
    full = np.array([-128, 127]).astype(np.int8).reshape(1, 2, 1, 1)
    assert offset_conv_weights(_dq_conv(full), 0, 0) == 0  # no room either way
    assert offset_conv_weights(_dq_conv(low, consumer="MatMul"), 0, 0) == 0  # convs only


def test_auto_offsets_where_the_cpu_has_amx(
    deep: Path, calibration: list, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    out = tmp_path / "int8.onnx"
    quantize_onnx_static(deep, out, calibration, fmt="qdq", op_types=["Conv"])
    for amx, chosen in ((True, "offset"), (False, "zero")):
        monkeypatch.setattr(ort_fusions, "cpu_has_amx", lambda amx=amx: amx)
        copy = tmp_path / f"{chosen}.onnx"
        copy.write_bytes(out.read_bytes())
        info = apply_conv_weight_zero_point(copy, "auto")
        assert info == {"conv_weight_zero_point": chosen, "offset_conv_weights": int(amx)}
    with pytest.raises(SparsifyError, match="auto, zero, offset"):
        apply_conv_weight_zero_point(out, "sometimes")
    assert isinstance(cpu_has_amx(), bool)


def test_config_check_names_the_zero_point_choices() -> None:
    cfg = OmegaConf.structured(QuantizationConfig(conv_weight_zero_point="nope"))
    (problem,) = _quantization_problems(cfg)
    assert problem.key == "quantization.conv_weight_zero_point"
    assert "auto, zero, offset" in problem.fix
