"""Engine worker: loads one ONNX model on one runtime and serves requests, one JSON per line.

Run as a script (`python worker.py WORKDIR`) by any interpreter that has numpy and the engine:
the main virtualenv for onnxruntime and OpenVINO, `.venv-deepsparse` for DeepSparse. It imports
nothing from sparsify (that interpreter may not have sparsify's dependencies) except timing.py,
host.py, deepsparse_graph.py and openvino_graph.py, loaded by path. Requests come on stdin; replies go to the
original stdout, while anything the engine prints (DeepSparse's C++ banner included) is sent to
stderr, unbuffered, so it cannot corrupt the protocol and an abort() loses none of it. Arrays
travel as .npz files inside WORKDIR. Without a thread count, engines use the CPUs this process
may run on (its affinity), and the load reply says how many.

Requests: {"op": "load", "engine", "model", "num_threads"}, {"op": "run", "inputs", "outputs"},
{"op": "benchmark", "inputs", "warmup_s", "time_s", "keep_latencies"}, {"op": "exit"}.
Replies: {"ok": true, ...} or {"ok": false, "type", "error", "traceback"}; the load reply has
"version", "input_names" and "num_threads" (the threads the engine was given).
"""

from __future__ import annotations

import importlib.util
import json
import os
import sys
import threading
import time
import traceback
from collections import OrderedDict
from pathlib import Path
from typing import Any

import numpy as np


def _sibling(name: str) -> Any:
    """A module of this folder, loaded by path (its interpreter may lack sparsify's deps)."""
    spec = importlib.util.spec_from_file_location(
        f"_sparsify_{name}", Path(__file__).with_name(f"{name}.py")
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


timing = _sibling("timing")
host = _sibling("host")
deepsparse_graph = _sibling("deepsparse_graph")
openvino_graph = _sibling("openvino_graph")

# ONNX Runtime graph fusions left off, here and in the in-process OnnxRuntimeEngine.
# SkipLayerNormFusion merges a transformer's bias Add, residual Add and LayerNormalization into
# one SkipLayerNormalization kernel, which on INT8 graphs is slower than the ops it replaces
# (MiniLM-L6 INT8, batch 16, 2 cores: 177 -> 155 ms/batch QOperator, 157 -> 145 ms QDQ with it
# off; FP32 graphs do not get it).
ORT_DISABLED_OPTIMIZERS = ("SkipLayerNormFusion",)
MAX_COMPILED = 8  # DeepSparse compiles per input shape; keep a few, drop the oldest


class OrtModel:
    """onnxruntime on the CPU provider, set up like OnnxRuntimeEngine in the parent."""

    def __init__(self, model: Path, num_threads: int, workdir: Path) -> None:
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        options.intra_op_num_threads = int(num_threads)
        self.session = ort.InferenceSession(
            str(model),
            sess_options=options,
            providers=["CPUExecutionProvider"],
            disabled_optimizers=list(ORT_DISABLED_OPTIMIZERS),
        )
        self.version = ort.__version__
        self.input_names = [i.name for i in self.session.get_inputs()]

    def run(self, arrays: list[np.ndarray]) -> list[np.ndarray]:
        return self.session.run(None, dict(zip(self.input_names, arrays, strict=True)))

    def analysis(self, arrays: list[np.ndarray]) -> dict[str, Any]:
        return {}


def _deepsparse_copy(model: Path, workdir: Path) -> Path:
    """The copy of `model` DeepSparse gets: never the file itself, because `deepsparse.Engine`
    with `input_shapes` rewrites the model file in place with those static shapes (a deployed
    model.onnx would be left with a fixed batch size). The copy also drops opset imports no node
    uses: ORT's quant_pre_process stamps ai.onnx.ml opset 5 (and other unused domains) on its
    output, which the ONNX Runtime bundled in DeepSparse 1.8 refuses to load. And it gets
    `deepsparse_graph`'s rewrites (ops spelled the way DeepSparse compiles them).
    """
    import onnx

    proto = onnx.load(str(model), load_external_data=False)
    used = {node.domain or "" for node in proto.graph.node}
    keep = [o for o in proto.opset_import if (o.domain or "") in used or o.domain == "ai.onnx"]
    del proto.opset_import[:]
    proto.opset_import.extend(keep)
    changed = deepsparse_graph.for_deepsparse(proto)
    print(f"DeepSparse copy of {model.name}: {changed}", file=sys.stderr, flush=True)
    return _save_copy(proto, model, workdir, "deepsparse")


def _save_copy(proto: Any, model: Path, workdir: Path, engine: str) -> Path:
    """Write an engine's copy of `model`: in the workdir, or beside the model when its weights
    are external data (referenced relative to the model file)."""
    import onnx

    external = any(
        init.data_location == onnx.TensorProto.EXTERNAL for init in proto.graph.initializer
    )
    out = model.with_name(f".{model.stem}.{engine}.onnx") if external else workdir / model.name
    onnx.save(proto, str(out))
    return out


class DeepSparseModel:
    """deepsparse.Engine, compiled per input shape (it only runs static shapes)."""

    def __init__(self, model: Path, num_threads: int, workdir: Path) -> None:
        os.environ.setdefault("NM_DISABLE_ANALYTICS", "1")
        import deepsparse
        import onnx

        self.path = _deepsparse_copy(model, workdir)
        # a copy written beside the model is deleted on close (the workdir goes anyway)
        self.cleanup = self.path if self.path.parent == model.parent else None
        self.num_cores = int(num_threads)
        self.version = deepsparse.__version__
        graph = onnx.load(str(self.path), load_external_data=False).graph
        initializers = {i.name for i in graph.initializer}
        self.input_names = [i.name for i in graph.input if i.name not in initializers]
        self.engines: OrderedDict[tuple, Any] = OrderedDict()

    def _engine(self, shapes: list[list[int]]) -> Any:
        from deepsparse import Engine

        key = tuple(tuple(s) for s in shapes)
        if key not in self.engines:
            self.engines[key] = Engine(
                str(self.path),
                batch_size=shapes[0][0] if shapes and shapes[0] else 1,
                num_cores=self.num_cores,
                input_shapes=shapes,
            )
            if len(self.engines) > MAX_COMPILED:
                self.engines.popitem(last=False)
        self.engines.move_to_end(key)
        return self.engines[key]

    def _padded(self, arrays: list[np.ndarray]) -> tuple[list[np.ndarray], int]:
        """Pad a short last batch up to an already-compiled batch size, instead of recompiling."""
        shapes = [list(a.shape) for a in arrays]
        if tuple(tuple(s) for s in shapes) in self.engines or not arrays or not arrays[0].ndim:
            return arrays, 0
        n = arrays[0].shape[0]
        for key in reversed(self.engines):
            big = key[0][0] if key and key[0] else 0
            same_rest = all(list(k[1:]) == s[1:] for k, s in zip(key, shapes, strict=True))
            if big > n and same_rest:
                pad = big - n
                return [np.concatenate([a, np.repeat(a[-1:], pad, axis=0)]) for a in arrays], pad
        return arrays, 0

    def run(self, arrays: list[np.ndarray]) -> list[np.ndarray]:
        arrays = [np.ascontiguousarray(a) for a in arrays]
        padded, pad = self._padded(arrays)
        outputs = self._engine([list(a.shape) for a in padded]).run(padded)
        return [o[: o.shape[0] - pad] if pad else o for o in outputs]

    def analysis(self, arrays: list[np.ndarray]) -> dict[str, Any]:
        engine = self._engine([list(a.shape) for a in arrays])
        return {"fraction_of_supported_ops": float(engine.fraction_of_supported_ops)}


# OpenVINO CPU layers that do a model's arithmetic (what an INT8 graph quantizes)
OPENVINO_COMPUTE_LAYERS = ("Convolution", "Deconvolution", "FullyConnected", "MatMul")


def _openvino_source(model: Path, workdir: Path) -> Path:
    """What OpenVINO reads: `model` itself, or where `openvino_graph`'s rewrites changed
    something, a copy with them in the workdir (beside the model if its weights are external,
    which are found relative to it; deleted on close)."""
    import onnx

    proto = onnx.load(str(model), load_external_data=False)
    changed = openvino_graph.for_openvino(proto)
    if not any(changed.values()):
        return model
    print(f"OpenVINO copy of {model.name}: {changed}", file=sys.stderr, flush=True)
    return _save_copy(proto, model, workdir, "openvino")


class OpenVinoModel:
    """OpenVINO on its CPU plugin, LATENCY hint, compiled per input shape: a dynamic dim is
    reshaped to the feed's (static shapes compile to faster kernels); past MAX_COMPILED shapes,
    or for a graph that refuses the reshape, one dynamic-shape compile serves the rest."""

    def __init__(self, model: Path, num_threads: int, workdir: Path) -> None:
        import openvino

        self.core = openvino.Core()
        self.path = _openvino_source(model, workdir)
        # only a copy written beside the model is deleted on close, never the model itself
        self.cleanup = (
            self.path if self.path != model and self.path.parent == model.parent else None
        )
        self.model = self.core.read_model(str(self.path))
        self.version = openvino.get_version().split("-")[0]
        self.input_names = [port.get_any_name() for port in self.model.inputs]
        self.dynamic = any(port.get_partial_shape().is_dynamic for port in self.model.inputs)
        self.config = {
            "PERFORMANCE_HINT": "LATENCY",
            "INFERENCE_NUM_THREADS": int(num_threads),
            # OpenVINO runs FP32 layers in BF16 on CPUs with AMX / AVX512-BF16 by default: keep
            # the precision the model was exported in, as the other engines do
            "INFERENCE_PRECISION_HINT": "f32",
        }
        self.compiled: OrderedDict[tuple, Any] = OrderedDict()
        self.any_shape: Any = None  # (compiled model, infer request) for dynamic shapes

    def _compile(self, shapes: list[list[int]]) -> Any:
        model = self.model
        if shapes:
            model = self.model.clone()
            model.reshape(dict(zip(self.input_names, shapes, strict=True)))
        compiled = self.core.compile_model(model, "CPU", self.config)
        return compiled, compiled.create_infer_request()

    def _request(self, shapes: list[list[int]]) -> tuple[Any, Any]:
        key = tuple(tuple(s) for s in shapes) if self.dynamic else ()
        if key in self.compiled:
            self.compiled.move_to_end(key)
            return self.compiled[key]
        if len(self.compiled) < MAX_COMPILED:
            try:
                self.compiled[key] = self._compile(shapes if self.dynamic else [])
                return self.compiled[key]
            except RuntimeError as exc:  # e.g. a Reshape constant that fixes another size
                print(f"OpenVINO: no static compile for {shapes}: {exc}", file=sys.stderr)
        if self.any_shape is None:
            self.any_shape = self._compile([])
        return self.any_shape

    def run(self, arrays: list[np.ndarray]) -> list[np.ndarray]:
        compiled, request = self._request([list(a.shape) for a in arrays])
        # inputs are used in place (as ONNX Runtime does); outputs are copies
        result = request.infer(dict(zip(self.input_names, arrays, strict=True)), share_inputs=True)
        return [np.asarray(result[port]) for port in compiled.outputs]

    def analysis(self, arrays: list[np.ndarray]) -> dict[str, Any]:
        """How many compute layers ran in INT8, from the compiled model's runtime info."""
        compiled, _ = self._request([list(a.shape) for a in arrays])
        infos = [op.get_rt_info() for op in compiled.get_runtime_model().get_ordered_ops()]
        precisions = [
            info["runtimePrecision"].astype(str)
            for info in infos
            if info["layerType"].astype(str) in OPENVINO_COMPUTE_LAYERS
        ]
        int8 = sum(p in ("i8", "u8") for p in precisions)
        return {"int8_layers": int8, "compute_layers": len(precisions)}


ENGINES = {"onnxruntime": OrtModel, "deepsparse": DeepSparseModel, "openvino": OpenVinoModel}


class Worker:
    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.model: OrtModel | DeepSparseModel | OpenVinoModel | None = None

    def _arrays(self, path: str) -> list[np.ndarray]:
        assert self.model is not None, "load a model first"
        with np.load(path) as data:
            return [data[name] for name in self.model.input_names]

    def handle(self, request: dict[str, Any]) -> dict[str, Any]:
        op = request["op"]
        if op == "load":
            cls = ENGINES[request["engine"]]
            threads = int(request.get("num_threads") or host.available_cores())
            self.model = cls(Path(request["model"]), threads, self.workdir)
            return {
                "version": self.model.version,
                "input_names": self.model.input_names,
                "num_threads": threads,
            }
        if self.model is None:
            raise RuntimeError(f"{op!r} before 'load'")
        if op == "run":
            outputs = self.model.run(self._arrays(request["inputs"]))
            np.savez(request["outputs"], *outputs)
            return {"outputs": len(outputs)}
        if op == "benchmark":
            arrays = [np.ascontiguousarray(a) for a in self._arrays(request["inputs"])]
            model = self.model
            model.run(arrays)  # compiles (DeepSparse) and checks the inputs, outside the timing
            result = timing.time_runs(
                lambda: model.run(arrays),
                int(arrays[0].shape[0]) if arrays and arrays[0].ndim else 1,
                float(request["warmup_s"]),
                float(request["time_s"]),
                keep_latencies=bool(request.get("keep_latencies", False)),
            )
            return {"result": result, **model.analysis(arrays)}
        raise ValueError(f"unknown op {op!r}")

    def close(self) -> None:
        cleanup = getattr(self.model, "cleanup", None)
        if cleanup is not None:
            cleanup.unlink(missing_ok=True)


def _die_with_parent() -> None:
    """Exit when the parent does: it started us in our own session, so a kill of the parent
    (Ctrl-C, SIGKILL) would otherwise leave us running a benchmark for nobody."""
    parent = os.getppid()
    try:
        import ctypes
        import signal

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, int(signal.SIGKILL))  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass  # not Linux: the watchdog below still catches it within a second

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(0.5)
        os._exit(1)

    threading.Thread(target=watch, daemon=True).start()


def _unbuffered_c_stdout() -> None:
    """Make C's stdout unbuffered. fd 1 goes to the stderr file, so the C library would buffer it
    fully (4 KiB), and abort() drops what is still in that buffer: DeepSparse prints its
    `Assertion at ...` there right before aborting. (Python does this itself under
    PYTHONUNBUFFERED, which the parent sets; this covers an interpreter that ignores it.)"""
    try:
        import ctypes

        libc = ctypes.CDLL(None)
        libc.setvbuf(ctypes.c_void_p.in_dll(libc, "stdout"), None, 2, 0)  # 2: _IONBF
    except (OSError, ValueError, AttributeError):
        pass  # no C library to reach (not POSIX): Python-level output is unbuffered anyway


def main(argv: list[str]) -> int:
    _unbuffered_c_stdout()  # before anything writes to C's stdout: setvbuf must come first
    _die_with_parent()
    # the protocol keeps the real stdout; fd 1 (C++ prints included) now goes to stderr
    reply_stream = os.fdopen(os.dup(1), "w", encoding="utf-8")
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    worker = Worker(Path(argv[0]))
    try:
        for line in sys.stdin:
            if not line.strip():
                continue
            request = json.loads(line)
            if request.get("op") == "exit":
                break
            try:
                reply = {"ok": True, **worker.handle(request)}
            except Exception as exc:  # reported to the parent, which records the failure
                reply = {
                    "ok": False,
                    "type": type(exc).__name__,
                    "error": str(exc),
                    "traceback": traceback.format_exc(limit=8),
                }
            reply_stream.write(json.dumps(reply) + "\n")
            reply_stream.flush()
    finally:
        worker.close()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
