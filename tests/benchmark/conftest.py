"""Tiny ONNX models and stand-in worker interpreters for the engine tests."""

from __future__ import annotations

import os
import stat
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from sparsify.algorithms.quantization import quantize_onnx_static
from sparsify.engines.registry import PROJECT_ROOT

DEEPSPARSE_PYTHON = PROJECT_ROOT / ".venv-deepsparse" / "bin" / "python"


def tiny_cnn() -> nn.Module:
    """Conv-BN-ReLU x2, pool, Linear: small enough for milliseconds per run."""
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(3, 16, 3, padding=1),
        nn.BatchNorm2d(16),
        nn.ReLU(),
        nn.Conv2d(16, 32, 3, padding=1),
        nn.BatchNorm2d(32),
        nn.ReLU(),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(32, 10),
    ).eval()


@pytest.fixture(scope="session")
def cnn_models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """fp32, QOperator per-tensor Conv+MatMul (the default), per-channel and QDQ exports."""
    root = tmp_path_factory.mktemp("cnn")
    fp32 = root / "fp32.onnx"
    torch.onnx.export(
        tiny_cnn(),
        (torch.randn(1, 3, 16, 16),),
        fp32,
        dynamo=False,
        opset_version=17,
        input_names=["input"],
        output_names=["logits"],
        dynamic_axes={"input": {0: "batch"}, "logits": {0: "batch"}},
    )
    rng = np.random.default_rng(0)
    calib = [{"input": rng.standard_normal((1, 3, 16, 16)).astype(np.float32)} for _ in range(8)]
    paths = {"fp32": fp32}
    variants = {
        "qoperator": {"fmt": "qoperator", "per_channel": False},
        "qoperator_per_channel": {"fmt": "qoperator", "per_channel": True},
        "qdq": {"fmt": "qdq", "per_channel": False},
    }
    for name, kwargs in variants.items():
        paths[name] = root / f"{name}.onnx"
        quantize_onnx_static(fp32, paths[name], calib, op_types=["Conv", "MatMul"], **kwargs)
    return paths


@pytest.fixture(scope="session")
def layer_norm_onnx(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Linear -> LayerNorm -> GELU -> Linear -> LayerNorm (64 wide) over (n, 16, 8) inputs,
    exported at opset 17: LayerNormalization ops, as in every transformer export."""
    torch.manual_seed(0)
    net = nn.Sequential(
        nn.Linear(8, 64), nn.LayerNorm(64), nn.GELU(), nn.Linear(64, 64), nn.LayerNorm(64)
    ).eval()
    path = tmp_path_factory.mktemp("layer_norm") / "ln.onnx"
    torch.onnx.export(
        net,
        (torch.randn(2, 16, 8),),
        path,
        dynamo=False,
        opset_version=17,
        input_names=["x"],
        output_names=["y"],
        dynamic_axes={"x": {0: "n"}},
    )
    return path


def _executable(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    path.chmod(path.stat().st_mode | stat.S_IXUSR)
    return path


@pytest.fixture
def aborting_python(tmp_path: Path) -> Path:
    """An 'interpreter' that aborts (SIGABRT) before saying anything."""
    return _executable(tmp_path / "abort-python", "#!/bin/sh\nkill -ABRT $$\n")


@pytest.fixture
def abort_on_benchmark_python(tmp_path: Path) -> Path:
    """Runs the real worker (any engine name served by onnxruntime), but calls os.abort() on a
    'benchmark' request: what DeepSparse does on some graphs, after loading fine."""
    return _executable(
        tmp_path / "abort-on-benchmark-python",
        f"""#!{sys.executable}
import importlib.util, os, sys
spec = importlib.util.spec_from_file_location("worker", sys.argv[1])
worker = importlib.util.module_from_spec(spec)
spec.loader.exec_module(worker)
worker.ENGINES["deepsparse"] = worker.OrtModel
serve = worker.Worker.handle
def handle(self, request):
    if request["op"] == "benchmark":
        os.abort()
    return serve(self, request)
worker.Worker.handle = handle
sys.exit(worker.main(sys.argv[2:]))
""",
    )


@pytest.fixture(scope="session")
def deepsparse_python() -> Path:
    """The real DeepSparse venv; `make test` builds it and requires these tests to run."""
    if not os.access(DEEPSPARSE_PYTHON, os.X_OK):
        message = f"{DEEPSPARSE_PYTHON} missing: run `make deepsparse`"
        if os.environ.get("SPARSIFY_REQUIRE_DEEPSPARSE"):
            pytest.fail(message)
        pytest.skip(message)
    return DEEPSPARSE_PYTHON


ASSERTION = "Assertion at ./src/include/wand/jit/sparse_direct_convolution/simd_b.hpp:501"


@pytest.fixture
def banner_then_abort_python(tmp_path: Path) -> Path:
    """Runs the real worker ("deepsparse" served by onnxruntime) the way DeepSparse 1.8 fails on
    some graphs: a long banner printed from C on loading, then on 'benchmark' an assertion
    printed from C to stdout, nothing flushed, and abort()."""
    return _executable(
        tmp_path / "banner-then-abort-python",
        f"""#!{sys.executable}
import ctypes, importlib.util, os, sys
libc = ctypes.CDLL(None)
spec = importlib.util.spec_from_file_location("worker", sys.argv[1])
worker = importlib.util.module_from_spec(spec)
spec.loader.exec_module(worker)
class Banner(worker.OrtModel):
    def __init__(self, *args):
        for i in range(200):
            libc.printf(b"DeepSparse banner line %d: an engine by Neural Magic\\n", i)
        super().__init__(*args)
worker.ENGINES["deepsparse"] = Banner
serve = worker.Worker.handle
def handle(self, request):
    if request["op"] == "benchmark":
        libc.fputs(b"[nm_ort] compiling the graph\\n", ctypes.c_void_p.in_dll(libc, "stderr"))
        libc.printf(b"{ASSERTION}\\n")
        os.abort()
    return serve(self, request)
worker.Worker.handle = handle
sys.exit(worker.main(sys.argv[2:]))
""",
    )


@pytest.fixture
def openvino_abort_on_benchmark_python(tmp_path: Path) -> Path:
    """Runs the real worker with the real OpenVINO engine, but calls os.abort() on a
    'benchmark' request: a native crash after loading fine."""
    return _executable(
        tmp_path / "openvino-abort-python",
        f"""#!{sys.executable}
import importlib.util, os, sys
spec = importlib.util.spec_from_file_location("worker", sys.argv[1])
worker = importlib.util.module_from_spec(spec)
spec.loader.exec_module(worker)
serve = worker.Worker.handle
def handle(self, request):
    if request["op"] == "benchmark":
        print("openvino: about to crash", file=sys.stderr, flush=True)
        os.abort()
    return serve(self, request)
worker.Worker.handle = handle
sys.exit(worker.main(sys.argv[2:]))
""",
    )
