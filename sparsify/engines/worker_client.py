"""An engine that runs in a worker process, so a crash or a hang is a failure, not a lost run."""

from __future__ import annotations

import json
import logging
import os
import queue
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np

from sparsify.engines.base import EngineFailure, Feeds, ModelInputs, batch_size_of
from sparsify.errors import SparsifyError

log = logging.getLogger("sparsify")

WORKER = Path(__file__).with_name("worker.py")
STDERR_TAIL = 4000


class SubprocessEngine(ModelInputs):
    """`engine` ("onnxruntime", "openvino" or "deepsparse") on `model_path`, inside
    `python worker.py`. `num_threads` None: the CPUs this process may use; `num_threads` then
    says what the worker was given.

    Every request waits at most `timeout_s` (a benchmark also gets its warm-up and measuring
    time); past that the worker is killed. A worker that dies, hangs or raises turns into an
    EngineFailure naming the engine, the step, the exit signal and the worker's last stderr.
    """

    def __init__(
        self,
        engine: str,
        model_path: Path,
        *,
        python: str | Path | None = None,
        num_threads: int | None = None,
        timeout_s: float = 600.0,
        env: dict[str, str] | None = None,
    ) -> None:
        self.name = engine
        # DeepSparse compiles one engine per input shape (callers with a choice keep shapes fixed)
        self.static_shapes = engine == "deepsparse"
        self.model_path = Path(model_path).resolve()
        if not self.model_path.is_file():
            raise SparsifyError(f"cannot load ONNX model {self.model_path}: no such file")
        self.python = str(python or sys.executable)
        self.num_threads = num_threads
        self.timeout_s = float(timeout_s)
        self.version: str | None = None
        self.analysis: dict[str, Any] = {}
        super().__init__(self.model_path)
        self._workdir = Path(tempfile.mkdtemp(prefix=f"sparsify-{engine}-"))
        self._stderr_path = self._workdir / "stderr.txt"
        # append-only, so whatever the worker's libraries write lands at the end; read back
        # through a handle of our own (`_tail`), whose seeks cannot move the worker's offset
        self._stderr = open(self._stderr_path, "ab")  # noqa: SIM115 (closed in close)
        self._replies: queue.Queue[str | None] = queue.Queue()
        self._counter = 0
        log.info(
            "Loading %s in %s (worker %s, threads=%s)",
            model_path,
            engine,
            self.python,
            num_threads if num_threads else "default",
        )
        try:
            self._proc = subprocess.Popen(
                [self.python, str(WORKER), str(self._workdir)],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=self._stderr,
                # unbuffered: a worker that aborts leaves its last lines (C stdio included)
                env={
                    **os.environ,
                    "NM_DISABLE_ANALYTICS": "1",
                    "PYTHONUNBUFFERED": "1",
                    **self._private_home(engine),
                    **(env or {}),
                },
                start_new_session=True,  # a kill takes the worker's own children too
            )
        except OSError as exc:
            self._cleanup()
            raise EngineFailure(
                engine, "unavailable", f"cannot start {self.python}: {exc}"
            ) from exc
        threading.Thread(target=self._read_replies, daemon=True).start()
        try:
            reply = self._request(
                {
                    "op": "load",
                    "engine": engine,
                    "model": str(self.model_path),
                    "num_threads": num_threads,
                },
                "loading",
            )
        except EngineFailure:
            self._kill()
            self._cleanup()
            raise
        self.version = reply.get("version")
        self.num_threads = reply.get("num_threads") or num_threads

    # -- Engine protocol (input_* come from ModelInputs) -----------------------------------
    @property
    def pid(self) -> int:
        return self._proc.pid

    def run(self, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
        inputs, outputs = self._paths()
        np.savez(inputs, **feeds)
        try:
            self._request({"op": "run", "inputs": str(inputs), "outputs": str(outputs)}, "running")
            with np.load(outputs) as data:
                return [data[f"arr_{i}"] for i in range(len(data.files))]
        finally:
            inputs.unlink(missing_ok=True)
            outputs.unlink(missing_ok=True)

    def _private_home(self, engine: str) -> dict[str, str]:
        """OpenVINO's import writes telemetry ids to ~/intel (openvino_telemetry, pulled in
        by openvino.tools.ovc): its worker gets a HOME inside the worker's temporary folder,
        removed on close, so nothing lands in the user's home."""
        if engine != "openvino":
            return {}
        home = self._workdir / "home"
        home.mkdir(exist_ok=True)
        return {"HOME": str(home)}

    def benchmark(
        self, feeds: Feeds, warmup_s: float, time_s: float, keep_latencies: bool = False
    ) -> dict[str, Any]:
        """A deepsparse.benchmark-style result; `keep_latencies` adds each call's ms."""
        inputs, _ = self._paths()
        np.savez(inputs, **feeds)
        batch = batch_size_of(feeds)
        try:
            reply = self._request(
                {
                    "op": "benchmark",
                    "inputs": str(inputs),
                    "warmup_s": warmup_s,
                    "time_s": time_s,
                    "keep_latencies": keep_latencies,
                },
                f"benchmarking at batch {batch}",
                extra_s=warmup_s + time_s,
            )
        finally:
            inputs.unlink(missing_ok=True)
        self.analysis = {k: v for k, v in reply.items() if k not in ("ok", "result")}
        result = {"engine": self.name, "num_threads": self.num_threads, **reply["result"]}
        log.info(
            "%s on %s batch %d: %.2f items/s, median %.3f ms over %d iterations%s",
            self.model_path.name,
            self.name,
            batch,
            result["items_per_sec"],
            result["median"],
            result["iterations"],
            "".join(f", {k} {v}" for k, v in self.analysis.items()),
        )
        return result

    def close(self) -> None:
        if self._proc.poll() is None:
            try:
                self._proc.stdin.write(b'{"op": "exit"}\n')  # type: ignore[union-attr]
                self._proc.stdin.flush()  # type: ignore[union-attr]
                self._proc.wait(timeout=10)
            except (OSError, subprocess.TimeoutExpired):
                self._kill()
        self._cleanup()

    def __enter__(self) -> SubprocessEngine:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- plumbing --------------------------------------------------------------------------
    def _paths(self) -> tuple[Path, Path]:
        self._counter += 1
        return (self._workdir / f"in{self._counter}.npz", self._workdir / f"out{self._counter}.npz")

    def _read_replies(self) -> None:
        assert self._proc.stdout is not None
        for line in self._proc.stdout:
            self._replies.put(line.decode("utf-8", "replace"))
        self._replies.put(None)  # EOF: the worker exited or died

    def _request(self, request: dict[str, Any], step: str, extra_s: float = 0.0) -> dict[str, Any]:
        what = f"{self.name} worker {step} {self.model_path.name}"
        try:
            self._proc.stdin.write((json.dumps(request) + "\n").encode())  # type: ignore[union-attr]
            self._proc.stdin.flush()  # type: ignore[union-attr]
        except OSError:
            pass  # the worker is gone; the reply queue says how
        limit = self.timeout_s + extra_s
        try:
            line = self._replies.get(timeout=limit)
        except queue.Empty:
            self._kill()
            raise EngineFailure(
                self.name,
                "timeout",
                f"{what}: no answer after {limit:.0f} s, worker killed "
                "(raise benchmark.timeout_s if the model is just slow to compile)",
                returncode=self._proc.returncode,
                stderr_tail=self._tail(),
            ) from None
        if line is None:
            try:
                code = self._proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self._kill()
                code = self._proc.returncode
            failure = EngineFailure(
                self.name, "crash", "", returncode=code, stderr_tail=self._tail()
            )
            how = failure.signal_name or f"exit code {code}"
            failure.message = f"{what}: the worker died ({how}); see stderr_tail"
            failure.args = (failure.message,)
            raise failure
        reply = json.loads(line)
        if not reply.get("ok"):
            raise EngineFailure(
                self.name,
                "error",
                f"{what}: {reply.get('type')}: {reply.get('error')}",
                stderr_tail=self._tail(),
                details={"traceback": reply.get("traceback", "")},
            )
        return reply

    def _kill(self) -> None:
        try:
            os.killpg(self._proc.pid, 9)
        except (ProcessLookupError, PermissionError):
            self._proc.kill()
        deadline = time.monotonic() + 10
        while self._proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)

    def _tail(self) -> str:
        """The last STDERR_TAIL bytes the worker wrote (its last words, not its banner)."""
        try:
            with open(self._stderr_path, "rb") as f:
                f.seek(0, os.SEEK_END)
                f.seek(max(0, f.tell() - STDERR_TAIL))
                return f.read().decode("utf-8", "replace").strip()
        except OSError:
            return ""

    def _cleanup(self) -> None:
        self._stderr.close()
        shutil.rmtree(self._workdir, ignore_errors=True)
