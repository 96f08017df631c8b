"""Deployment folders for the tests, made by the real pipeline (or its stage functions).

Images: full one-shot runs (tiny classifier, YOLO at 64 px trained for one batch).
Text: a tiny random-init BERT with the task's head, exported and packaged by the family and
the package stage's own functions (a full run per NLP use case is the slow suite's job).
"""

from __future__ import annotations

import base64
import contextlib
import io
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from PIL import Image

from sparsify.config.compose import compose_config
from sparsify.context import RunContext
from sparsify.data.yolo import validate_yolo_dataset
from sparsify.fileio import atomic_write_json
from sparsify.models.transformers.family import TransformersFamily
from sparsify.models.yolo.family import YoloFamily
from sparsify.stages.package import deployment_config
from tests.fixtures.text import make_tiny_tokenizer
from tests.fixtures.yolo import make_yolo_dataset

YOLO_RUN = [
    "data=yolo",
    "data.image_size=64",
    "data.batch_size=4",
    "experiment.train.epochs=1",
    "experiment.train.max_steps=1",
    "experiment.train.batch_size=4",
    "experiment.calibration_samples=4",
    "benchmark.time_s=0.05",
    "benchmark.warmup_s=0.01",
    "benchmark.batch_sizes=[1,2]",
    "optim_level=0.5",
]
NLP_LABELS = {
    "text-classification": ["neg", "pos"],
    "token-classification": ["O", "B-PER", "I-PER", "B-LOC", "I-LOC", "B-ORG", "I-ORG"],
    "question-answering": [],
}
NLP_USE_CASES = {
    "nlp-text_classification": "text-classification",
    "nlp-sentiment_analysis": "text-classification",
    "nlp-token_classification": "token-classification",
    "nlp-named_entity_recognition": "token-classification",
    "nlp-question_answering": "question-answering",
}


def yolo_deployment(base: Path, use_case: str) -> tuple[Path, Path]:
    """(deployment folder, Ultralytics checkpoint) of a random-init yolov8n[-seg] at 64 px.

    Packaged by the family and the package stage's own functions; no training: the
    Pipeline, not the model's quality, is under test.
    """
    import torch
    from ultralytics.nn.tasks import DetectionModel, SegmentationModel

    task = "object-detection" if use_case == "cv-detection" else "instance-segmentation"
    root = make_yolo_dataset(base / "data", task=task)
    cfg = compose_config([f"use_case={use_case}", *YOLO_RUN[:3], f"data.path={root}"])
    summary, problems = validate_yolo_dataset(root, task)
    assert summary is not None and problems == []
    ctx = RunContext(cfg=cfg, run_dir=base / "run")
    ctx.outputs["validate"] = {"data_path": str(root), "data": summary.to_dict()}
    torch.manual_seed(0)
    kind, arch = (
        (DetectionModel, "yolov8n.yaml")
        if task == "object-detection"
        else (SegmentationModel, "yolov8n-seg.yaml")
    )
    model = kind(arch, nc=2, verbose=False).eval()
    model.names = {0: "box", 1: "disc"}
    model.args = {"task": "detect" if task == "object-detection" else "segment", "imgsz": 64}
    family = YoloFamily()
    checkpoint = base / "model.pt"
    family.save(model, checkpoint, ctx)
    out = base / "deployment"
    out.mkdir()
    family.export(model, out / "model.onnx", ctx)
    part = family.deployment_files(ctx, out)
    config = deployment_config(out / "model.onnx", task, use_case, part, experiment="none")
    atomic_write_json(out / "config.json", config)
    return out, checkpoint


def make_hf_model(directory: Path, task: str) -> Path:
    """A 2-layer, 32-wide random-init BERT with the task's head and the fixtures' tokenizer."""
    import torch
    import transformers

    tokenizer = make_tiny_tokenizer(directory)
    torch.manual_seed(0)
    labels = NLP_LABELS[task]
    config = transformers.BertConfig(
        vocab_size=len(tokenizer),
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=128,
    )
    if labels:
        config.num_labels = len(labels)
        config.id2label = dict(enumerate(labels))
        config.label2id = {label: i for i, label in enumerate(labels)}
    head = {
        "text-classification": transformers.BertForSequenceClassification,
        "token-classification": transformers.BertForTokenClassification,
        "question-answering": transformers.BertForQuestionAnswering,
    }[task]
    model = head(config).eval()
    model.save_pretrained(directory)
    tokenizer.save_pretrained(directory)
    return directory


def nlp_deployment(base: Path, use_case: str, max_length: int = 48) -> Path:
    """model/ (torch) and deployment/ (its ONNX export, packaged as the package stage does)."""
    task = NLP_USE_CASES[use_case]
    run_dir = base / "run"
    model_dir = make_hf_model(run_dir / "fetch" / "model", task)
    cfg = compose_config([f"use_case={use_case}", f"data.max_length={max_length}"])
    ctx = RunContext(cfg=cfg, run_dir=run_dir)
    ctx.outputs["fetch"] = {"artifacts": [ctx.rel(model_dir)], "source": str(model_dir)}
    ctx.outputs["validate"] = {"data": {"labels": NLP_LABELS[task]}}
    family = TransformersFamily()
    out = base / "deployment"
    out.mkdir()
    family.export(family.load(model_dir, ctx), out / "model.onnx", ctx)
    part = family.deployment_files(ctx, out)
    config = deployment_config(out / "model.onnx", task, use_case, part, experiment="none")
    atomic_write_json(out / "config.json", config)
    return out


def env_without_proxy() -> dict[str, Any]:
    """The environment for a server subprocess; loopback requests must not go to a proxy."""
    return {k: v for k, v in os.environ.items() if "proxy" not in k.lower()}


@contextlib.contextmanager
def serving(deployment_dir: Path, options: list[str], log_path: Path) -> Iterator[str]:
    """`python -m sparsify serve DIR OPTIONS` on a free loopback port, as a user runs it; yields
    its URL once /health answers (60 s at most), and stops the server afterwards."""
    import httpx

    from tests.deploy.test_server import free_port

    port = free_port()
    log = open(log_path, "w+b")  # noqa: SIM115 - closed below
    proc = subprocess.Popen(
        [sys.executable, "-m", "sparsify", "serve", str(deployment_dir), "--port", str(port)]
        + options,
        stdout=log,
        stderr=subprocess.STDOUT,
        env=env_without_proxy(),
        cwd=Path(__file__).resolve().parents[2],
    )
    try:
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 60
        while True:
            assert proc.poll() is None, log_path.read_text()
            try:
                if httpx.get(f"{url}/health", timeout=2, trust_env=False).status_code == 200:
                    break
            except httpx.TransportError:
                assert time.monotonic() < deadline, "server did not come up"
                time.sleep(0.2)
        yield url
    finally:
        proc.terminate()
        proc.wait(timeout=30)
        log.close()


def blue_png_request() -> dict[str, str]:
    """A /predict JSON body with one 10x10 blue PNG."""
    buffer = io.BytesIO()
    Image.new("RGB", (10, 10), (0, 0, 255)).save(buffer, format="PNG")
    return {"inputs": base64.b64encode(buffer.getvalue()).decode()}
