"""The ONNX Runtime engine runs a model and reports deepsparse-style benchmark numbers."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
from onnx import TensorProto, helper

from sparsify.engines.ort import OnnxRuntimeEngine, make_random_feeds
from sparsify.errors import SparsifyError
from tests.benchmark.conftest import tiny_cnn

BENCHMARK_KEYS = {
    "items_per_sec",
    "seconds_ran",
    "iterations",
    "median",
    "mean",
    "std",
    "25.0%",
    "50.0%",
    "75.0%",
    "90.0%",
    "95.0%",
    "99.0%",
    "99.9%",
    "batch_size",
}


@pytest.fixture(scope="module")
def model_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny test CNN (Conv-BN-ReLU x2, pool, Linear) exported with a dynamic batch."""
    path = tmp_path_factory.mktemp("engine") / "model.onnx"
    torch.onnx.export(
        tiny_cnn(),
        (torch.randn(1, 3, 16, 16),),
        path,
        dynamo=False,
        opset_version=17,
        input_names=["input"],
        output_names=["logits"],
        dynamic_axes={"input": {0: "batch"}, "logits": {0: "batch"}},
    )
    return path


def test_io_description(model_path: Path) -> None:
    engine = OnnxRuntimeEngine(model_path)
    assert engine.name == "onnxruntime"
    assert engine.input_names == ["input"]
    assert engine.output_names == ["logits"]
    assert engine.input_shapes == [["batch", 3, 16, 16]]


@pytest.mark.parametrize("batch_size", [1, 4])
def test_random_feeds_run(model_path: Path, batch_size: int) -> None:
    engine = OnnxRuntimeEngine(model_path)
    feeds = make_random_feeds(engine, batch_size, seed=3)
    assert feeds["input"].shape == (batch_size, 3, 16, 16)
    assert feeds["input"].dtype == np.float32
    np.testing.assert_array_equal(feeds["input"], make_random_feeds(engine, batch_size, 3)["input"])
    (logits,) = engine.run(feeds)
    assert logits.shape == (batch_size, 10)


@pytest.mark.parametrize("num_threads", [None, 1, 2])
def test_benchmark_reports_deepsparse_fields(model_path: Path, num_threads: int | None) -> None:
    engine = OnnxRuntimeEngine(model_path, num_threads=num_threads)
    result = engine.benchmark(make_random_feeds(engine, 2), warmup_s=0.05, time_s=0.2)

    assert BENCHMARK_KEYS <= result.keys()
    assert result["batch_size"] == 2
    assert result["iterations"] >= 3
    assert result["seconds_ran"] >= 0.2
    assert result["25.0%"] <= result["50.0%"] == result["median"] <= result["99.9%"]
    # loop overhead between calls is tiny next to a model run, so both views agree
    assert result["items_per_sec"] == pytest.approx(2 / (result["mean"] / 1000), rel=0.2)


def test_benchmark_runs_at_least_three_iterations(model_path: Path) -> None:
    engine = OnnxRuntimeEngine(model_path)
    result = engine.benchmark(make_random_feeds(engine, 1), warmup_s=0.0, time_s=0.0)
    assert result["iterations"] == 3


def test_symbolic_dims_and_integer_inputs(tmp_path: Path) -> None:
    """A text-model-like input: int64 ids with batch and sequence dims, sized from dim_defaults."""
    graph = helper.make_graph(
        [helper.make_node("Cast", ["ids"], ["out"], to=TensorProto.FLOAT)],
        "ids",
        [helper.make_tensor_value_info("ids", TensorProto.INT64, ["batch", "seq"])],
        [helper.make_tensor_value_info("out", TensorProto.FLOAT, ["batch", "seq"])],
    )
    path = tmp_path / "ids.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(path))
    engine = OnnxRuntimeEngine(path)
    feeds = make_random_feeds(engine, 3, dim_defaults={"seq": 7})
    assert feeds["ids"].shape == (3, 7)
    assert feeds["ids"].dtype == np.int64
    assert not feeds["ids"].any()
    assert make_random_feeds(engine, 2)["ids"].shape == (2, 1)


def test_errors_are_user_facing(model_path: Path, tmp_path: Path) -> None:
    with pytest.raises(SparsifyError, match="no such file"):
        OnnxRuntimeEngine(tmp_path / "missing.onnx")
    with pytest.raises(SparsifyError, match="input"):
        OnnxRuntimeEngine(model_path).run({"pixels": np.zeros((1, 3, 16, 16), np.float32)})


def test_sessions_leave_off_the_slow_fusions(
    model_path: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """The in-process engine and the worker (the subprocess / deployment path) open sessions
    with the same fusions disabled, so both time the same graph."""
    import onnxruntime as ort

    from sparsify.engines import ort as onnxruntime_engine
    from sparsify.engines import worker

    seen: list[list[str]] = []
    real = ort.InferenceSession

    def spy(*args, **kwargs):  # noqa: ANN202
        seen.append(kwargs.get("disabled_optimizers"))
        return real(*args, **kwargs)

    monkeypatch.setattr(ort, "InferenceSession", spy)
    OnnxRuntimeEngine(model_path)
    worker.OrtModel(model_path, 1, tmp_path)
    assert seen == [["SkipLayerNormFusion"]] * 2
    assert worker.ORT_DISABLED_OPTIMIZERS == onnxruntime_engine.DISABLED_OPTIMIZERS
