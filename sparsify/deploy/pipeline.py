"""Pipeline(deployment_dir)(inputs): the packaged model with its pre/post-processing."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from sparsify.deploy.preprocess import ImagePreprocess, load_image, preprocess_image
from sparsify.errors import SparsifyError


@dataclass(frozen=True)
class Classification:
    label: str
    score: float
    index: int

    def to_dict(self) -> dict[str, Any]:
        return {"label": self.label, "score": self.score, "index": self.index}


def _softmax(logits: np.ndarray) -> np.ndarray:
    shifted = logits - logits.max(axis=-1, keepdims=True)
    exp = np.exp(shifted)
    return exp / exp.sum(axis=-1, keepdims=True)


class Pipeline:
    """Load a deployment folder written by sparsify and run it on raw inputs."""

    def __init__(
        self,
        deployment_dir: str | Path,
        engine: str = "onnxruntime",
        num_threads: int | None = None,
    ) -> None:
        self.dir = Path(deployment_dir)
        config_path = self.dir / "config.json"
        if not config_path.is_file():
            raise SparsifyError(f"{self.dir} is not a sparsify deployment folder (no config.json)")
        self.config = json.loads(config_path.read_text(encoding="utf-8"))
        if engine != "onnxruntime":
            raise SparsifyError(f"engine {engine!r} is not available; use engine='onnxruntime'")
        from sparsify.benchmark.onnxruntime_engine import OnnxRuntimeEngine

        self.engine = OnnxRuntimeEngine(self.dir / self.config["model"], num_threads=num_threads)
        task = self.config["task"]
        if task != "image-classification":
            raise SparsifyError(f"task {task!r} has no pipeline in this version")
        self.labels: list[str] = list(self.config["labels"])
        pre = dict(self.config["preprocessing"])
        pre.pop("type", None)
        self.preprocess = ImagePreprocess(**pre)

    def __call__(
        self, images: Any, top_k: int = 1
    ) -> list[Classification] | list[list[Classification]]:
        """Images (paths, PIL images or HWC uint8 arrays; one or a list) -> best classes."""
        single = not isinstance(images, list | tuple)
        batch = [images] if single else list(images)
        if not batch:
            return []
        arrays = np.stack([preprocess_image(load_image(i), self.preprocess) for i in batch])
        probs = _softmax(self.engine.run({"input": arrays})[0])
        results = []
        for row in probs:
            order = np.argsort(-row)[:top_k]
            picks = [Classification(self.labels[i], float(row[i]), int(i)) for i in order]
            results.append(picks[0] if top_k == 1 else picks)
        return results
