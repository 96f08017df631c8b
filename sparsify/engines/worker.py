"""Engine worker: loads one ONNX model on one runtime and serves requests, one JSON per line.

Run as a script (`python worker.py WORKDIR`) by any interpreter that has numpy and the engine:
the main virtualenv for onnxruntime, `.venv-deepsparse` for DeepSparse. It imports nothing
from sparsify (that interpreter may not have sparsify's dependencies) except timing.py and
deepsparse_graph.py, loaded by path. Requests come on stdin; replies go to the original stdout,
while anything the engine prints (DeepSparse's C++ banner included) is sent to stderr, so it
cannot corrupt the protocol. Arrays travel as .npz files inside WORKDIR.

Requests: {"op": "load", "engine", "model", "num_threads"}, {"op": "run", "inputs", "outputs"},
{"op": "benchmark", "inputs", "warmup_s", "time_s", "keep_latencies"}, {"op": "exit"}.
Replies: {"ok": true, ...} or {"ok": false, "type", "error", "traceback"}.
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
deepsparse_graph = _sibling("deepsparse_graph")

# ONNX Runtime graph fusions left off, here and in the in-process OnnxRuntimeEngine.
# SkipLayerNormFusion merges a transformer's bias Add, residual Add and LayerNormalization into
# one SkipLayerNormalization kernel, which on INT8 graphs is slower than the ops it replaces
# (MiniLM-L6 INT8, batch 16, 2 cores: 177 -> 155 ms/batch QOperator, 157 -> 145 ms QDQ with it
# off; FP32 graphs do not get it).
ORT_DISABLED_OPTIMIZERS = ("SkipLayerNormFusion",)
MAX_COMPILED = 8  # DeepSparse compiles per input shape; keep a few, drop the oldest


class OrtModel:
    """onnxruntime on the CPU provider, set up like OnnxRuntimeEngine in the parent."""

    def __init__(self, model: Path, num_threads: int | None, workdir: Path) -> None:
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        if num_threads:
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
    external = any(
        init.data_location == onnx.TensorProto.EXTERNAL for init in proto.graph.initializer
    )
    # external data is referenced relative to the model file, so such a copy must sit beside it
    out = model.with_name(f".{model.stem}.deepsparse.onnx") if external else workdir / model.name
    onnx.save(proto, str(out))
    return out


class DeepSparseModel:
    """deepsparse.Engine, compiled per input shape (it only runs static shapes)."""

    def __init__(self, model: Path, num_threads: int | None, workdir: Path) -> None:
        os.environ.setdefault("NM_DISABLE_ANALYTICS", "1")
        import deepsparse
        import onnx

        self.path = _deepsparse_copy(model, workdir)
        # a copy written beside the model is deleted on close (the workdir goes anyway)
        self.cleanup = self.path if self.path.parent == model.parent else None
        self.num_cores = int(num_threads) if num_threads else None
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


ENGINES = {"onnxruntime": OrtModel, "deepsparse": DeepSparseModel}


class Worker:
    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.model: OrtModel | DeepSparseModel | None = None

    def _arrays(self, path: str) -> list[np.ndarray]:
        assert self.model is not None, "load a model first"
        with np.load(path) as data:
            return [data[name] for name in self.model.input_names]

    def handle(self, request: dict[str, Any]) -> dict[str, Any]:
        op = request["op"]
        if op == "load":
            cls = ENGINES[request["engine"]]
            self.model = cls(Path(request["model"]), request.get("num_threads"), self.workdir)
            return {"version": self.model.version, "input_names": self.model.input_names}
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


def main(argv: list[str]) -> int:
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
