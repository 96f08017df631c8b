"""Engine selection: ONNX Runtime here; OpenVINO and DeepSparse in a worker process."""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from sparsify.deploy import Pipeline
from sparsify.engines.registry import SerializedEngine, load_engine
from sparsify.errors import SparsifyError
from sparsify.runner import RunResult
from tests.openvino_check import skip_without_openvino


def test_onnxruntime_aliases(classifier_run: RunResult) -> None:
    model = classifier_run.deployment_dir / "model.onnx"
    for name in ("onnxruntime", "ORT", "onnx_runtime"):
        assert load_engine(name, model).name == "onnxruntime"


def test_deepsparse_missing_venv_is_a_clear_error(
    classifier_run: RunResult, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """Without DeepSparse's interpreter, the Pipeline says how to get it (or to use ORT)."""
    monkeypatch.setenv("SPARSIFY_DEEPSPARSE_PYTHON", str(tmp_path / "no-such-python"))
    with pytest.raises(SparsifyError, match="make deepsparse.*benchmark.engines=\\[onnxruntime\\]"):
        Pipeline(classifier_run.deployment_dir, engine="deepsparse")


def test_deepsparse_is_delegated_and_serialized(
    classifier_run: RunResult, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Whatever sparsify.benchmark opens for "deepsparse" runs the Pipeline, one call at a time."""
    engines = pytest.importorskip("sparsify.engines.registry")
    from sparsify.engines.ort import OnnxRuntimeEngine

    opened: list[tuple[str, Path, Any]] = []
    busy, overlaps = threading.Lock(), []

    class Recording(OnnxRuntimeEngine):
        name = "deepsparse"

        def run(self, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
            if not busy.acquire(blocking=False):
                overlaps.append(1)
                return super().run(feeds)
            try:
                time.sleep(0.01)
                return super().run(feeds)
            finally:
                busy.release()

    def fake_open(name: str, model_path: Path, cfg: Any) -> Recording:
        opened.append((name, model_path, cfg))
        return Recording(model_path)

    monkeypatch.setattr(engines, "open_engine", fake_open)
    pipe = Pipeline(classifier_run.deployment_dir, engine="deepsparse", num_threads=2)
    assert isinstance(pipe.engine, SerializedEngine) and pipe.engine_name == "deepsparse"
    ((name, path, cfg),) = opened
    assert name == "deepsparse" and path == classifier_run.deployment_dir / "model.onnx"
    assert cfg.num_threads == 2
    image = np.zeros((16, 16, 3), np.uint8)
    want = Pipeline(classifier_run.deployment_dir)(image)
    threads = [threading.Thread(target=lambda: pipe([image] * 2)) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert overlaps == [] and pipe(image) == want


def test_deepsparse_unavailable_says_how_to_get_it(
    classifier_run: RunResult, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    pytest.importorskip("sparsify.engines.registry")
    monkeypatch.setenv("SPARSIFY_DEEPSPARSE_PYTHON", str(tmp_path / "no-python"))
    with pytest.raises(SparsifyError, match="DeepSparse"):
        Pipeline(classifier_run.deployment_dir, engine="deepsparse")


def test_openvino_pipeline_matches_onnxruntime(classifier_run: RunResult) -> None:
    skip_without_openvino()
    pipe = Pipeline(classifier_run.deployment_dir, engine="OV", num_threads=1)
    try:
        assert isinstance(pipe.engine, SerializedEngine) and pipe.engine_name == "openvino"
        rng = np.random.default_rng(0)
        images = [rng.integers(0, 255, (20, 24, 3), dtype=np.uint8) for _ in range(3)]
        want = Pipeline(classifier_run.deployment_dir)(images, top_k=3)
        got = pipe(images, top_k=3)
        for mine, theirs in zip(got, want, strict=True):
            assert [c.label for c in mine] == [c.label for c in theirs]
            assert [c.score for c in mine] == pytest.approx([c.score for c in theirs], abs=2e-3)
    finally:
        pipe.engine.close()


def test_serve_runs_on_openvino(classifier_run: RunResult, tmp_path: Path) -> None:
    """`sparsify serve --engine openvino` as a user runs it."""
    skip_without_openvino()
    httpx = pytest.importorskip("httpx")
    pytest.importorskip("fastapi")
    from tests.deploy.builders import blue_png_request, serving

    options = ["--engine", "openvino", "--threads", "1"]
    with serving(classifier_run.deployment_dir, options, tmp_path / "serve.log") as url:
        reply = httpx.post(f"{url}/predict", json=blue_png_request(), timeout=30, trust_env=False)
        assert reply.status_code == 200 and reply.json()["predictions"][0]["label"] in "abc"
        info = httpx.get(f"{url}/info", timeout=5, trust_env=False).json()
        assert info["engine"] == "openvino"
