"""OpenVINO in its worker process: ONNX Runtime's answers, INT8 where the graph is INT8, and
every way to fail recorded like DeepSparse's."""

from __future__ import annotations

import importlib.util
import time
from pathlib import Path

import numpy as np
import onnx
import pytest
from omegaconf import OmegaConf
from onnx import TensorProto, helper

from sparsify.benchmark.measure import measure_model, measure_models
from sparsify.benchmark.table import comparison
from sparsify.engines.base import Engine, EngineFailure
from sparsify.engines.ort import OnnxRuntimeEngine, make_random_feeds
from sparsify.engines.registry import (
    ENGINE_NAMES,
    SerializedEngine,
    check_engine_names,
    engine_name,
    load_engine,
    open_engine,
)
from sparsify.engines.worker import MAX_COMPILED
from sparsify.engines.worker_client import SubprocessEngine
from tests.openvino_check import skip_without_openvino

skip_without_openvino()


@pytest.mark.parametrize("model, atol", [("fp32", 1e-5), ("qdq", 2e-3), ("qoperator", 2e-3)])
def test_outputs_match_onnxruntime(cnn_models: dict[str, Path], model: str, atol: float) -> None:
    """FP32 layers stay FP32 (no BF16 on an AMX CPU), INT8 layers agree with ORT's INT8."""
    path = cnn_models[model]
    local = OnnxRuntimeEngine(path, num_threads=1)
    with SubprocessEngine("openvino", path, num_threads=1) as engine:
        assert isinstance(engine, Engine) and engine.version and engine.version[0].isdigit()
        assert engine.num_threads == 1
        feeds = make_random_feeds(engine, 4, seed=3)
        (mine,) = engine.run(feeds)
        (want,) = local.run(feeds)
        assert mine.shape == want.shape == (4, 10) and mine.dtype == np.float32
        np.testing.assert_allclose(mine, want, atol=atol, rtol=0)
        result = engine.benchmark(feeds, warmup_s=0.01, time_s=0.05)
    assert result["engine"] == "openvino" and result["batch_size"] == 4
    assert result["num_threads"] == 1 and result["iterations"] >= 3
    int8 = engine.analysis["int8_layers"]
    assert engine.analysis["compute_layers"] == 3  # two convs and the Linear
    assert int8 == (0 if model == "fp32" else 2)  # the convs were quantized, the Linear not


def test_offset_conv_weights_run_in_int8(cnn_models: dict[str, Path], tmp_path: Path) -> None:
    """Conv weights stored with zero point -1 (ONNX Runtime's AMX layout) ran FP32 on OpenVINO;
    the worker's copy stores them symmetric again: every conv INT8, the same outputs, and the
    model file itself unchanged."""
    from sparsify.algorithms.ort_fusions import offset_conv_weights
    from sparsify.engines.openvino_graph import symmetric_conv_weights

    model = onnx.load(str(cnn_models["qdq"]))
    assert offset_conv_weights(model, min_depth=0, min_pixels=0) == 2
    path = tmp_path / "offset.onnx"
    onnx.save(model, str(path))
    before = path.read_bytes()
    local = OnnxRuntimeEngine(path, num_threads=1)
    with SubprocessEngine("openvino", path, num_threads=1) as engine:
        feeds = make_random_feeds(engine, 4, seed=5)
        np.testing.assert_allclose(engine.run(feeds)[0], local.run(feeds)[0], atol=2e-3, rtol=0)
        engine.benchmark(feeds, warmup_s=0.0, time_s=0.02)
    assert engine.analysis["int8_layers"] == 2  # both convs (the Linear is not quantized)
    assert path.read_bytes() == before and sorted(p.name for p in tmp_path.iterdir()) == [
        "offset.onnx"
    ]
    # the rewrite alone: zero points back to 0, weights moved by one, nothing else touched
    again = onnx.load(str(path))
    assert symmetric_conv_weights(again) == 2
    assert symmetric_conv_weights(again) == 0
    assert symmetric_conv_weights(onnx.load(str(cnn_models["qdq"]))) == 0


def test_any_batch_size_past_the_compiled_ones(cnn_models: dict[str, Path]) -> None:
    """The dynamic batch is compiled per shape, then one dynamic-shape compile takes the rest."""
    path = cnn_models["qdq"]
    local = OnnxRuntimeEngine(path, num_threads=1)
    with SubprocessEngine("openvino", path, num_threads=1) as engine:
        for batch in range(1, MAX_COMPILED + 4):
            feeds = make_random_feeds(engine, batch, seed=batch)
            (mine,) = engine.run(feeds)
            np.testing.assert_allclose(mine, local.run(feeds)[0], atol=2e-3, rtol=0)


def test_int8_fraction_is_recorded(cnn_models: dict[str, Path]) -> None:
    feeds = {1: make_random_feeds(OnnxRuntimeEngine(cnn_models["fp32"]), 2)}
    report = measure_models(
        ["openvino"],
        {"baseline": cnn_models["fp32"], "sparsified": cnn_models["qdq"]},
        feeds,
        opener=lambda engine, path: SubprocessEngine(engine, path, num_threads=1),
        warmup_s=0.0,
        time_s=0.05,
    )["openvino"]
    dense, int8 = report["baseline"], report["sparsified"]
    assert dense["int8_ops"] == 0 and "fraction_int8" not in dense
    assert int8["int8_ops"] == 2 and int8["fraction_int8"] == 1.0
    (run,) = int8["benchmarks"]
    assert (run["int8_layers"], run["compute_layers"], run["fraction_int8"]) == (2, 3, 1.0)
    assert run["engine_version"] and run["num_cores"] == 1 and run["host"]["cpu"]
    # a graph OpenVINO ran partly in float gets a note in the end-of-run table
    int8["fraction_int8"] = 0.5
    rows = comparison({"engines": {"openvino": report}})
    assert "only 50% of the INT8 ops ran in INT8" in rows[1]["notes"]


def test_crash_is_a_recorded_failure(
    cnn_models: dict[str, Path], openvino_abort_on_benchmark_python: Path
) -> None:
    python = openvino_abort_on_benchmark_python
    feeds = {1: make_random_feeds(OnnxRuntimeEngine(cnn_models["fp32"]), 1)}
    out = measure_model(
        "openvino",
        cnn_models["qdq"],
        feeds,
        opener=lambda engine, path: SubprocessEngine(engine, path, python=python),
        warmup_s=0.0,
        time_s=0.05,
        evaluate=lambda engine: {"top1": float(engine.run(feeds[1])[0].shape[0])},
    )
    (failure,) = out["failures"]
    assert failure["step"] == "benchmark batch 1" and failure["signal"] == "SIGABRT"
    assert failure["engine"] == "openvino" and failure["kind"] == "crash"
    assert failure["stderr_tail"].splitlines()[-1] == "openvino: about to crash"
    assert out["accuracy"] == {"top1": 1.0}  # a fresh worker still measured the accuracy
    assert "failed" in out["flags"]


def test_hang_is_killed_after_the_timeout(cnn_models: dict[str, Path], tmp_path: Path) -> None:
    hanging = tmp_path / "hanging-python"
    hanging.write_text("#!/bin/sh\nexec sleep 60\n")
    hanging.chmod(0o755)
    start = time.monotonic()
    with pytest.raises(EngineFailure) as info:
        SubprocessEngine("openvino", cnn_models["fp32"], python=hanging, timeout_s=0.5)
    assert time.monotonic() - start < 10 and info.value.kind == "timeout"


def test_registry_names_and_deployment_engine(cnn_models: dict[str, Path]) -> None:
    assert "openvino" in ENGINE_NAMES
    assert {engine_name(n) for n in ("openvino", "OV", "open-vino", "Open_VINO")} == {"openvino"}
    assert check_engine_names(["onnxruntime", "ov", "deepsparse"]) == [
        "onnxruntime",
        "openvino",
        "deepsparse",
    ]
    engine = load_engine("ov", cnn_models["fp32"], num_threads=1)
    try:
        assert isinstance(engine, SerializedEngine) and engine.name == "openvino"
        feeds = make_random_feeds(OnnxRuntimeEngine(cnn_models["fp32"]), 2)
        np.testing.assert_allclose(
            engine.run(feeds)[0], OnnxRuntimeEngine(cnn_models["fp32"]).run(feeds)[0], atol=1e-5
        )
    finally:
        engine.close()


def test_missing_openvino_names_the_extra(
    cnn_models: dict[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    find_spec = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util,
        "find_spec",
        lambda name, *a: None if name == "openvino" else find_spec(name, *a),
    )
    cfg = OmegaConf.create({"num_threads": 1, "timeout_s": 60, "deepsparse_python": None})
    with pytest.raises(EngineFailure, match=r"pip install 'sparsify\[openvino\]'") as info:
        open_engine("openvino", cnn_models["fp32"], cfg)
    assert info.value.kind == "unavailable"


def test_openvino_worker_writes_nothing_in_home(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """openvino's import writes telemetry ids under ~/intel; the worker keeps them in its own
    temporary folder."""
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    model = tmp_path / "relu.onnx"
    node = helper.make_node("Relu", ["x"], ["y"])
    graph = helper.make_graph(
        [node],
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4])],
    )
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), model)
    engine = SubprocessEngine("openvino", model, num_threads=1)
    try:
        (out,) = engine.run({"x": -np.ones((1, 4), np.float32)})
    finally:
        engine.close()
    assert np.array_equal(out, np.zeros((1, 4), np.float32))
    assert list(home.iterdir()) == []
