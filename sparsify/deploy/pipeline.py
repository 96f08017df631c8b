"""Pipeline(deployment_dir)(inputs): the packaged model with its pre/post-processing."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from sparsify.deploy.preprocess import ImagePreprocess, load_image, preprocess_image
from sparsify.deploy.text import Answer, Entity, TextRunner, softmax
from sparsify.errors import SparsifyError

TASKS = (
    "image-classification",
    "text-classification",
    "token-classification",
    "question-answering",
)


@dataclass(frozen=True)
class Classification:
    label: str
    score: float
    index: int

    def to_dict(self) -> dict[str, Any]:
        return {"label": self.label, "score": self.score, "index": self.index}


def _top(probs: np.ndarray, labels: list[str], top_k: int) -> Any:
    order = np.argsort(-probs)[:top_k]
    picks = [Classification(labels[i], float(probs[i]), int(i)) for i in order]
    return picks[0] if top_k == 1 else picks


class Pipeline:
    """Load a deployment folder written by sparsify and run it on raw inputs.

    - image-classification: image paths, PIL images or HWC uint8 arrays -> Classification
    - text-classification: strings (or (text, pair) tuples) -> Classification
    - token-classification: strings -> list of Entity (BIO tags joined into spans)
    - question-answering: {"question": ..., "context": ...} dicts -> Answer
    One input gives one result; a list gives a list.
    """

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
        self.task = self.config["task"]
        if self.task not in TASKS:
            raise SparsifyError(
                f"task {self.task!r} has no pipeline in this version; known: {TASKS}"
            )
        if engine != "onnxruntime":
            raise SparsifyError(f"engine {engine!r} is not available; use engine='onnxruntime'")
        from sparsify.benchmark.onnxruntime_engine import OnnxRuntimeEngine

        self.engine = OnnxRuntimeEngine(self.dir / self.config["model"], num_threads=num_threads)
        self.labels: list[str] = [str(x) for x in self.config.get("labels", [])]
        pre = dict(self.config["preprocessing"])
        kind = pre.pop("type", None)
        if kind == "image":
            self.preprocess = ImagePreprocess(**pre)
        else:
            from sparsify.models.transformers_family import require_transformers

            tokenizer = require_transformers().AutoTokenizer.from_pretrained(str(self.dir))
            self.doc_stride = int(pre.get("doc_stride", 32))
            self.runner = TextRunner(self.engine, tokenizer, int(pre["max_length"]))

    def __call__(self, inputs: Any, top_k: int = 1) -> Any:
        single = not isinstance(inputs, list)
        batch = [inputs] if single else list(inputs)
        results = self._run(batch, top_k) if batch else []
        return results[0] if single else results

    def _run(self, batch: list[Any], top_k: int) -> list[Any]:
        if self.task == "image-classification":
            arrays = np.stack([preprocess_image(load_image(i), self.preprocess) for i in batch])
            probs = softmax(self.engine.run({"input": arrays})[0])
            return [_top(row, self.labels, top_k) for row in probs]
        if self.task == "text-classification":
            texts = [b[0] if isinstance(b, tuple) else self._text(b) for b in batch]
            pairs = [b[1] for b in batch] if all(isinstance(b, tuple) for b in batch) else None
            return [_top(row, self.labels, top_k) for row in self.runner.classify(texts, pairs)]
        if self.task == "token-classification":
            return [self.runner.entities(self._text(b), self.labels) for b in batch]
        return [self._answer(b) for b in batch]

    @staticmethod
    def _text(value: Any) -> str:
        if not isinstance(value, str) or not value.strip():
            raise SparsifyError("text input must be a non-empty string")
        return value

    def _answer(self, item: Any) -> Answer:
        if not isinstance(item, dict) or not {"question", "context"} <= set(item):
            raise SparsifyError('question answering takes {"question": ..., "context": ...}')
        return self.runner.answer(
            self._text(item["question"]), self._text(item["context"]), self.doc_stride
        )


__all__ = ["Answer", "Classification", "Entity", "Pipeline"]
