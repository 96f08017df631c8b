"""DeepSparse 1.8 for real, from .venv-deepsparse, behind the same worker protocol."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from sparsify.benchmark.measure import NO_SUPPORTED_OPS, measure_model
from sparsify.benchmark.table import comparison
from sparsify.engines.base import EngineFailure
from sparsify.engines.ort import OnnxRuntimeEngine, make_random_feeds
from sparsify.engines.registry import deepsparse_python as resolve_python
from sparsify.engines.worker_client import SubprocessEngine


def _open(python: Path):  # noqa: ANN202
    return lambda engine, path: SubprocessEngine(engine, path, python=python, num_threads=1)


def test_runs_the_default_int8_graph_natively(cnn_models: dict, deepsparse_python: Path) -> None:
    """Per-tensor QOperator Conv+MatMul (QuantizationConfig's default) runs in DeepSparse."""
    path = cnn_models["qoperator"]
    with SubprocessEngine("deepsparse", path, python=deepsparse_python) as engine:
        assert engine.version == "1.8.0"
        feeds = make_random_feeds(engine, 4, seed=2)
        result = engine.benchmark(feeds, warmup_s=0.02, time_s=0.1)
        assert engine.analysis["fraction_of_supported_ops"] >= 0.9
        (logits,) = engine.run(feeds)
        # a short last batch is padded to the compiled batch size and cut back
        (short,) = engine.run({"input": feeds["input"][:3]})
    assert result["engine"] == "deepsparse" and result["batch_size"] == 4
    assert result["iterations"] >= 3 and result["median"] > 0
    (reference,) = OnnxRuntimeEngine(path).run(feeds)
    # both run the same INT8 graph; their kernels may round a requantization step differently
    # (and ORT's u8s8 kernels can saturate on CPUs without VNNI), so the random model's nearly
    # tied logits may swap their order: compare the values, not the argmax
    scale = np.abs(reference).max()
    assert np.abs(logits - reference).max() <= 0.05 * scale
    np.testing.assert_allclose(short, logits[:3], rtol=1e-5, atol=1e-5 * scale)
    assert np.corrcoef(logits.ravel(), reference.ravel())[0, 1] >= 0.99


def _measure(path: Path, python: Path) -> dict:
    feeds = {1: {"input": np.ones((1, 3, 16, 16), np.float32)}}
    return measure_model("deepsparse", path, feeds, opener=_open(python), warmup_s=0.0, time_s=0.05)


def test_qdq_graph_is_flagged_not_reported_as_a_speedup(
    cnn_models: dict, deepsparse_python: Path
) -> None:
    """DeepSparse hands a QDQ graph whole to its bundled ONNX Runtime: 0 supported ops."""
    models = {
        "baseline": _measure(cnn_models["fp32"], deepsparse_python),
        "sparsified": _measure(cnn_models["qdq"], deepsparse_python),
    }
    assert models["baseline"]["fraction_of_supported_ops"] == 1.0
    assert models["baseline"]["flags"] == []
    assert models["sparsified"]["fraction_of_supported_ops"] == 0.0
    assert NO_SUPPORTED_OPS in models["sparsified"]["flags"]
    base_row, row = comparison({"engines": {"deepsparse": models}})
    assert base_row["speedup_b1"] == 1.0
    assert row["speedup_b1"] is None and "no speedup" in row["notes"]
    assert row["items_per_sec_b1"] > 0  # measured, just not claimed as a speedup


def test_per_tensor_weights_run_where_per_channel_do_not(
    cnn_models: dict, deepsparse_python: Path
) -> None:
    """Why QuantizationConfig defaults to per_channel=False (0.03 on MobileNetV2, 0.5 here)."""
    per_tensor = _measure(cnn_models["qoperator"], deepsparse_python)
    per_channel = _measure(cnn_models["qoperator_per_channel"], deepsparse_python)
    assert per_tensor["fraction_of_supported_ops"] == 1.0
    assert per_channel["fraction_of_supported_ops"] < 0.9


def test_missing_interpreter_names_the_make_target(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.delenv("SPARSIFY_DEEPSPARSE_PYTHON", raising=False)
    with pytest.raises(EngineFailure, match="make deepsparse") as info:
        resolve_python(str(tmp_path / "nowhere" / "python"))
    assert info.value.kind == "unavailable"
    monkeypatch.setenv("SPARSIFY_DEEPSPARSE_PYTHON", str(tmp_path / "env-python"))
    with pytest.raises(EngineFailure, match="SPARSIFY_DEEPSPARSE_PYTHON"):
        resolve_python(None)


@pytest.mark.parametrize("variant", ["fp32", "qoperator"])
def test_models_are_left_as_they_were(
    cnn_models: dict, deepsparse_python: Path, variant: str
) -> None:
    """The worker loads a cleaned copy when the ONNX needs one, and never touches the original."""
    path = cnn_models[variant]
    before = path.read_bytes()
    with SubprocessEngine("deepsparse", path, python=deepsparse_python) as engine:
        engine.run({"input": np.zeros((1, 3, 16, 16), np.float32)})
    assert path.read_bytes() == before
    assert sorted(p.name for p in path.parent.iterdir() if p.name.startswith(".")) == []


def test_layer_norm_graphs_compile_whole(layer_norm_onnx: Path, deepsparse_python: Path) -> None:
    """An opset-17 export (LayerNormalization ops, as every transformer has) runs with all its
    ops supported: the worker's copy spells LayerNormalization out (0.82 of this graph's ops
    without that), and computes what ONNX Runtime computes on the file, which is unchanged."""
    before = layer_norm_onnx.read_bytes()
    feeds = {"x": np.random.default_rng(0).normal(size=(4, 16, 8)).astype(np.float32)}
    with SubprocessEngine("deepsparse", layer_norm_onnx, python=deepsparse_python) as engine:
        engine.benchmark(feeds, warmup_s=0.0, time_s=0.02)
        assert engine.analysis["fraction_of_supported_ops"] == 1.0
        (got,) = engine.run(feeds)
    (expected,) = OnnxRuntimeEngine(layer_norm_onnx).run(feeds)
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-4)
    assert layer_norm_onnx.read_bytes() == before
