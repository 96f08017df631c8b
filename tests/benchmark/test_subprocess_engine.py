"""Engines in worker processes: same answers as in-process, and every way to fail is reported."""

from __future__ import annotations

import os
import signal
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from sparsify.engines.base import Engine, EngineFailure
from sparsify.engines.ort import OnnxRuntimeEngine, make_random_feeds
from sparsify.engines.worker_client import SubprocessEngine
from sparsify.errors import SparsifyError


def test_worker_matches_in_process_onnxruntime(cnn_models: dict[str, Path]) -> None:
    path = cnn_models["qoperator"]
    local = OnnxRuntimeEngine(path)
    with SubprocessEngine("onnxruntime", path, num_threads=1) as remote:
        assert isinstance(remote, Engine) and isinstance(local, Engine)
        assert remote.input_names == local.input_names == ["input"]
        assert remote.input_shapes == local.input_shapes
        assert remote.input_dtypes == local.input_dtypes
        feeds = make_random_feeds(remote, 3, seed=1)
        (mine,) = remote.run(feeds)
        np.testing.assert_array_equal(mine, local.run(feeds)[0])
        result = remote.benchmark(feeds, warmup_s=0.02, time_s=0.1)
    assert result["engine"] == "onnxruntime" and result["batch_size"] == 3
    assert result["iterations"] >= 3 and result["items_per_sec"] > 0
    assert result["25.0%"] <= result["median"] <= result["99.0%"]
    assert remote.analysis == {}  # only DeepSparse reports supported ops


def test_engine_error_is_reported_with_its_message(tmp_path: Path, cnn_models: dict) -> None:
    with pytest.raises(SparsifyError, match="no such file"):
        SubprocessEngine("onnxruntime", tmp_path / "missing.onnx")
    with pytest.raises(EngineFailure) as info:
        SubprocessEngine("onnxruntime", cnn_models["fp32"], python="/nonexistent/python")
    assert info.value.kind == "unavailable"


def test_bad_model_is_an_error_not_a_crash(tmp_path: Path) -> None:
    from onnx import TensorProto, helper, save

    graph = helper.make_graph(
        [helper.make_node("NoSuchOp", ["x"], ["y"])],
        "bad",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1])],
    )
    path = tmp_path / "bad.onnx"
    save(helper.make_model(graph), str(path))
    with pytest.raises(EngineFailure) as info:
        SubprocessEngine("onnxruntime", path)
    assert info.value.kind == "error"
    assert "NoSuchOp" in str(info.value)
    assert info.value.to_dict()["traceback"]


def test_killed_worker_is_a_crash_with_its_signal(cnn_models: dict[str, Path]) -> None:
    with SubprocessEngine("onnxruntime", cnn_models["fp32"]) as engine:
        feeds = make_random_feeds(engine, 1)
        threading.Timer(0.5, os.kill, (engine.pid, signal.SIGKILL)).start()
        with pytest.raises(EngineFailure) as info:
            engine.benchmark(feeds, warmup_s=0.0, time_s=30.0)
    failure = info.value
    assert failure.kind == "crash" and failure.signal_name == "SIGKILL"
    assert failure.to_dict()["signal"] == "SIGKILL"
    assert "benchmarking at batch 1" in str(failure)


def test_aborting_interpreter_is_a_crash(cnn_models: dict[str, Path], aborting_python) -> None:
    with pytest.raises(EngineFailure) as info:
        SubprocessEngine("deepsparse", cnn_models["fp32"], python=aborting_python)
    assert info.value.kind == "crash" and info.value.signal_name == "SIGABRT"
    assert "loading" in str(info.value)


def test_hung_worker_is_killed_after_the_timeout(cnn_models: dict[str, Path], tmp_path) -> None:
    hanging = tmp_path / "hanging-python"
    hanging.write_text("#!/bin/sh\nexec sleep 60\n")
    hanging.chmod(0o755)
    start = time.monotonic()
    with pytest.raises(EngineFailure) as info:
        SubprocessEngine("deepsparse", cnn_models["fp32"], python=hanging, timeout_s=0.5)
    assert time.monotonic() - start < 10
    assert info.value.kind == "timeout"
    assert "no answer after 0 s" in str(info.value) or "no answer after 1 s" in str(info.value)
    assert "benchmark.timeout_s" in str(info.value)


def test_worker_dies_with_its_parent(cnn_models: dict[str, Path], tmp_path: Path) -> None:
    """A killed run must not leave a worker benchmarking for nobody."""
    import subprocess
    import sys

    pid_file = tmp_path / "worker.pid"
    script = f"""
import sys, time
from sparsify.engines.worker_client import SubprocessEngine
from sparsify.engines.ort import make_random_feeds
engine = SubprocessEngine("onnxruntime", {str(cnn_models["fp32"])!r})
open({str(pid_file)!r}, "w").write(str(engine.pid))
engine.benchmark(make_random_feeds(engine, 1), warmup_s=0.0, time_s=60.0)
"""
    parent = subprocess.Popen([sys.executable, "-c", script], cwd=Path(__file__).parents[2])
    deadline = time.monotonic() + 60
    while not pid_file.is_file() or not pid_file.read_text():
        assert time.monotonic() < deadline and parent.poll() is None
        time.sleep(0.1)
    worker = int(pid_file.read_text())
    time.sleep(0.3)
    parent.kill()
    parent.wait()
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            os.kill(worker, 0)
        except ProcessLookupError:
            return
        time.sleep(0.1)
    os.kill(worker, signal.SIGKILL)
    pytest.fail("the worker outlived its parent by 10 s")
