"""Static INT8 quantization of a tiny pruned CNN: both formats run and agree with fp32."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from torch import nn

from sparsify.algorithms import quantization
from sparsify.algorithms.quantization import quantize_onnx_static
from sparsify.errors import SparsifyError


def _tiny_pruned_cnn(sparsity: float = 0.5) -> nn.Module:
    """Conv-BN-ReLU x2, pool, Linear; the smallest |w| of each Conv/Linear set to zero."""
    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Conv2d(3, 16, 3, padding=1),
        nn.BatchNorm2d(16),
        nn.ReLU(),
        nn.Conv2d(16, 32, 3, padding=1),
        nn.BatchNorm2d(32),
        nn.ReLU(),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(32, 10),
    )
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, (nn.Conv2d, nn.Linear)):
                w = module.weight
                w[w.abs() <= w.abs().flatten().kthvalue(int(w.numel() * sparsity)).values] = 0
            elif isinstance(module, nn.BatchNorm2d):
                # non-trivial statistics so the exporter's BN folding changes the weights
                module.running_mean.uniform_(-0.1, 0.1)
                module.running_var.uniform_(0.5, 2.0)
    return model.eval()


def _export(model: nn.Module, path: Path) -> Path:
    torch.onnx.export(
        model.eval(),
        (torch.randn(1, 3, 16, 16),),
        path,
        dynamo=False,
        opset_version=17,
        input_names=["input"],
        output_names=["logits"],
        dynamic_axes={"input": {0: "batch"}, "logits": {0: "batch"}},
    )
    return path


def _samples(n: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((n, 3, 16, 16)).astype(np.float32)


@pytest.fixture(scope="module")
def fp32_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _export(_tiny_pruned_cnn(), tmp_path_factory.mktemp("quant") / "model.onnx")


@pytest.fixture(scope="module")
def calibration() -> list[dict[str, np.ndarray]]:
    return [{"input": x[None]} for x in _samples(16, seed=1)]


def _logits(path: Path, x: np.ndarray) -> np.ndarray:
    return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(
        None, {"input": x}
    )[0]


@pytest.mark.parametrize(
    ("fmt", "expected_ops"),
    [("qdq", {"QuantizeLinear", "DequantizeLinear"}), ("qoperator", {"QLinearConv"})],
)
def test_quantized_model_agrees_with_fp32(
    fp32_model: Path,
    calibration: list[dict[str, np.ndarray]],
    tmp_path: Path,
    fmt: str,
    expected_ops: set[str],
) -> None:
    out = tmp_path / f"model.{fmt}.onnx"
    info = quantize_onnx_static(fp32_model, out, calibration, fmt=fmt)

    assert out.is_file()
    assert [p.name for p in tmp_path.iterdir()] == [out.name], "temp files left behind"
    ops = {node.op_type for node in onnx.load(str(out)).graph.node}
    assert expected_ops <= ops
    assert info["format"] == fmt
    assert info["per_channel"] is True
    assert (info["activation_type"], info["weight_type"]) == ("uint8", "int8")
    assert info["calibration_samples"] == len(calibration)
    assert info["quantized_nodes"] >= 3  # two convs and the classifier at least

    x = _samples(64, seed=2)  # same distribution as the calibration samples
    ref, got = _logits(fp32_model, x), _logits(out, x)
    assert got.shape == ref.shape == (64, 10)
    assert (ref.argmax(1) == got.argmax(1)).mean() >= 0.9
    assert np.abs(ref - got).mean() < 0.05 * np.abs(ref).mean()


def test_op_types_restrict_what_is_quantized(
    fp32_model: Path, calibration: list[dict[str, np.ndarray]], tmp_path: Path
) -> None:
    info = quantize_onnx_static(
        fp32_model, tmp_path / "conv_only.onnx", calibration, fmt="qoperator", op_types=["Conv"]
    )
    assert info["op_types"] == ["Conv"]
    assert info["quantized_op_types"] == {"QLinearConv": 2}


def test_preprocess_failure_falls_back(
    fp32_model: Path,
    calibration: list[dict[str, np.ndarray]],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    def broken(*args: object, **kwargs: object) -> None:
        raise RuntimeError("shape inference exploded")

    monkeypatch.setattr("onnxruntime.quantization.shape_inference.quant_pre_process", broken)
    with caplog.at_level(logging.WARNING, logger="sparsify"):
        info = quantize_onnx_static(fp32_model, tmp_path / "q.onnx", calibration[:4])
    assert info["preprocessed"] is False
    assert info["quantized_nodes"] > 0
    assert "quant_pre_process failed" in caplog.text


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"fmt": "int4"}, "qdq, qoperator"),
        ({"activation_type": "fp8"}, "int8, uint8"),
        ({"weight_type": "int16"}, "int8, uint8"),
    ],
)
def test_bad_choices_name_the_valid_ones(
    fp32_model: Path,
    calibration: list[dict[str, np.ndarray]],
    tmp_path: Path,
    kwargs: dict[str, str],
    message: str,
) -> None:
    with pytest.raises(SparsifyError, match=message):
        quantize_onnx_static(fp32_model, tmp_path / "q.onnx", calibration, **kwargs)
    assert not (tmp_path / "q.onnx").exists()


def test_calibration_must_fit_the_model(fp32_model: Path, tmp_path: Path) -> None:
    with pytest.raises(SparsifyError, match="calibration"):
        quantize_onnx_static(fp32_model, tmp_path / "q.onnx", [])
    with pytest.raises(SparsifyError, match="input"):
        quantize_onnx_static(fp32_model, tmp_path / "q.onnx", [{"pixels": _samples(1, 0)}])


def test_summary_counts_nothing_in_a_float_graph(fp32_model: Path) -> None:
    summary = quantization.summarize_quantized_graph(onnx.load(str(fp32_model)))
    assert summary == {"quantized_nodes": 0, "quantized_op_types": {}, "qdq_nodes": 0}


def test_ignored_modules_stay_fp32(tmp_path: Path) -> None:
    fp32 = _export(_tiny_pruned_cnn(), tmp_path / "fp32.onnx")
    calibration = [{"input": s[None]} for s in _samples(8, 0)]
    kept = quantize_onnx_static(
        fp32, tmp_path / "all.onnx", calibration, fmt="qoperator", op_types=["Conv", "Gemm"]
    )
    ignored = quantize_onnx_static(
        fp32,
        tmp_path / "ignored.onnx",
        calibration,
        fmt="qoperator",
        op_types=["Conv", "Gemm"],
        ignore=["8", "/0/Conv"],  # the Linear by module name, the first Conv by node name
    )
    assert len(ignored["ignored_nodes"]) == 2
    assert ignored["quantized_nodes"] == kept["quantized_nodes"] - 2
    ops = [n.op_type for n in onnx.load(str(tmp_path / "ignored.onnx")).graph.node]
    assert "Gemm" in ops and "Conv" in ops and "QLinearConv" in ops


def test_depthwise_convolutions_can_stay_fp32(tmp_path: Path) -> None:
    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Conv2d(3, 8, 1), nn.ReLU(), nn.Conv2d(8, 8, 3, padding=1, groups=8), nn.ReLU(),
        nn.Conv2d(8, 4, 1),
    )  # fmt: skip
    fp32 = tmp_path / "m.onnx"
    torch.onnx.export(model.eval(), (torch.randn(1, 3, 16, 16),), str(fp32), dynamo=False)
    name = onnx.load(str(fp32)).graph.input[0].name
    calibration = [{name: s[None]} for s in _samples(4, 0)]
    out = quantize_onnx_static(
        fp32, tmp_path / "q.onnx", calibration, fmt="qoperator", per_channel=False,
        op_types=["Conv"], fp32_depthwise=True,
    )  # fmt: skip
    ops = [n.op_type for n in onnx.load(str(tmp_path / "q.onnx")).graph.node]
    assert ops.count("QLinearConv") == 2 and ops.count("Conv") == 1
    assert len(out["ignored_nodes"]) == 1


@pytest.mark.parametrize("method", ["minmax", "percentile", "entropy"])
def test_calibration_methods_all_run(
    method: str, fp32_model: Path, calibration: list, tmp_path: Path
) -> None:
    out = quantize_onnx_static(
        fp32_model, tmp_path / "q.onnx", calibration, fmt="qoperator", calibration_method=method
    )
    assert out["calibration_method"] == method and out["quantized_nodes"] > 0
    x = _samples(2, seed=5)
    assert np.isfinite(_logits(tmp_path / "q.onnx", x)).all()


def test_unknown_calibration_method_is_refused(fp32_model: Path, calibration: list) -> None:
    with pytest.raises(SparsifyError, match="minmax, percentile, entropy"):
        quantize_onnx_static(
            fp32_model, fp32_model.with_name("x.onnx"), calibration, calibration_method="kl"
        )


def _tiny_token_mlp(path: Path) -> Path:
    """Two Linear layers over (batch, tokens, width): exported as MatMul + Add, like BERT's."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(16, 32), nn.GELU(), nn.Linear(32, 4)).eval()
    torch.onnx.export(
        model,
        (torch.randn(2, 5, 16),),
        str(path),
        dynamo=False,
        opset_version=17,
        input_names=["input"],
        output_names=["logits"],
        dynamic_axes={"input": {0: "batch", 1: "tokens"}, "logits": {0: "batch", 1: "tokens"}},
    )
    return path


def test_dynamic_quantization_agrees_with_fp32(tmp_path: Path) -> None:
    fp32 = _tiny_token_mlp(tmp_path / "fp32.onnx")
    out = tmp_path / "out" / "dynamic.onnx"
    info = quantization.quantize_onnx_dynamic(fp32, out)

    assert [p.name for p in out.parent.iterdir()] == [out.name], "temp files left behind"
    ops = [n.op_type for n in onnx.load(str(out)).graph.node]
    assert ops.count("MatMulInteger") == 2 and "MatMul" not in ops
    assert "DynamicQuantizeLinear" in ops  # activations: quantized per batch at run time
    assert info["quantized_op_types"] == {"MatMulInteger": 2}  # the quantizers are not counted
    assert (info["format"], info["activation_type"], info["weight_type"]) == (
        "dynamic", "uint8", "int8",
    )  # fmt: skip
    assert info["op_types"] == ["MatMul", "Conv"]

    x = np.random.default_rng(3).standard_normal((8, 7, 16)).astype(np.float32)
    ref, got = _logits(fp32, x), _logits(out, x)
    assert got.shape == ref.shape == (8, 7, 4)
    assert np.abs(ref - got).mean() < 0.03 * np.abs(ref).mean()
    assert not np.array_equal(ref, got)  # it did quantize


def test_dynamic_quantization_ignores_and_refuses(tmp_path: Path) -> None:
    fp32 = _tiny_token_mlp(tmp_path / "fp32.onnx")
    info = quantization.quantize_onnx_dynamic(
        fp32, tmp_path / "ignored.onnx", op_types=["MatMul", "Gemm"], ignore=["2"]
    )
    assert info["op_types"] == ["MatMul"] and info["quantized_nodes"] == 1
    assert len(info["ignored_nodes"]) >= 1
    with pytest.raises(SparsifyError, match="MatMul, Conv"):
        quantization.quantize_onnx_dynamic(fp32, tmp_path / "gemm.onnx", op_types=["Gemm"])
    with pytest.raises(SparsifyError, match="qdq, qoperator"):
        quantize_onnx_static(fp32, tmp_path / "s.onnx", [{"input": np.zeros((1, 5, 16))}],
                             fmt="dynamic")  # fmt: skip
    with pytest.raises(SparsifyError, match="no such file"):
        quantization.quantize_onnx_dynamic(tmp_path / "missing.onnx", tmp_path / "m.onnx")


def test_keep_float_names_nodes_of_the_graph_quantized(tmp_path: Path) -> None:
    """A family's `keep_float(graph)` is asked about the graph being quantized and its
    nodes stay FP32, in the static and the dynamic quantizer alike."""
    fp32 = _tiny_token_mlp(tmp_path / "fp32.onnx")
    seen: list[onnx.ModelProto] = []

    def last_matmul(model: onnx.ModelProto) -> list[str]:
        seen.append(model)
        return [[n.name for n in model.graph.node if n.op_type == "MatMul"][-1]]

    dynamic = quantization.quantize_onnx_dynamic(
        fp32, tmp_path / "d.onnx", op_types=["MatMul"], keep_float=last_matmul
    )
    calibration = [{"input": np.random.default_rng(0).standard_normal((1, 5, 16), np.float32)}]
    static = quantize_onnx_static(
        fp32, tmp_path / "s.onnx", calibration, fmt="qoperator", op_types=["MatMul"],
        keep_float=last_matmul,
    )  # fmt: skip
    assert len(seen) == 2
    assert dynamic["quantized_op_types"] == {"MatMulInteger": 1}
    assert static["quantized_op_types"] == {"QLinearMatMul": 1}
    for path in (tmp_path / "d.onnx", tmp_path / "s.onnx"):
        assert [n.op_type for n in onnx.load(str(path)).graph.node].count("MatMul") == 1


def test_qdq_leaves_matmul_outputs_float(tmp_path: Path) -> None:
    """In QDQ, a MatMul's inputs are quantized but its output is not, so ONNX Runtime runs
    DQ -> MatMul as one MatMulIntegerToFloat (no QLinearMatMul + DequantizeLinear)."""
    fp32 = _tiny_token_mlp(tmp_path / "fp32.onnx")
    x = np.random.default_rng(0).standard_normal((64, 5, 16), np.float32)
    calibration = [{"input": x[i : i + 1]} for i in range(16)]
    out = tmp_path / "qdq.onnx"
    quantize_onnx_static(fp32, out, calibration, fmt="qdq", op_types=["MatMul"])
    graph = onnx.load(str(out)).graph
    matmuls = [n for n in graph.node if n.op_type == "MatMul"]
    quantized_inputs = {n.output[0] for n in graph.node if n.op_type == "DequantizeLinear"}
    assert len(matmuls) == 2 and all(m.input[0] in quantized_inputs for m in matmuls)
    consumed = {i for n in graph.node if n.op_type == "QuantizeLinear" for i in n.input}
    assert not consumed & {m.output[0] for m in matmuls}
    session = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    expected = ort.InferenceSession(str(fp32), providers=["CPUExecutionProvider"])
    got, ref = session.run(None, {"input": x})[0], expected.run(None, {"input": x})[0]
    assert np.abs(got - ref).max() <= 0.05 * np.abs(ref).max()


def test_qdq_with_ort_fusions_writes_the_bias_into_the_int8_kernel(tmp_path: Path) -> None:
    """ort_fusions: each Linear's DQ -> MatMul -> Add becomes one MatMulIntegerToFloat with
    the bias inside; same outputs as the plain QDQ graph. QOperator graphs are not touched."""
    fp32 = _tiny_token_mlp(tmp_path / "fp32.onnx")
    x = np.random.default_rng(0).standard_normal((64, 5, 16), np.float32)
    calibration = [{"input": x[i : i + 1]} for i in range(16)]
    plain, fused = tmp_path / "qdq.onnx", tmp_path / "fused.onnx"
    quantize_onnx_static(fp32, plain, calibration, fmt="qdq", op_types=["MatMul"])
    info = quantize_onnx_static(
        fp32, fused, calibration, fmt="qdq", op_types=["MatMul"], ort_fusions=True
    )
    assert info["ort_fused_matmuls"] == 2
    assert info["quantized_op_types"] == {"MatMulIntegerToFloat": 2}
    ops = [n.op_type for n in onnx.load(str(fused)).graph.node]
    assert "MatMul" not in ops and ops.count("Add") == 1  # the GELU's 1 + erf only
    runs = [
        ort.InferenceSession(str(p), providers=["CPUExecutionProvider"]).run(None, {"input": x})[0]
        for p in (plain, fused)
    ]
    np.testing.assert_allclose(runs[1], runs[0], rtol=1e-4, atol=1e-4)

    qop = quantize_onnx_static(
        fp32, tmp_path / "qop.onnx", calibration, fmt="qoperator", ort_fusions=True
    )
    assert qop["ort_fused_matmuls"] == 0 and "QLinearMatMul" in qop["quantized_op_types"]
