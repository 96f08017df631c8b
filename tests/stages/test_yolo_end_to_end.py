"""cv-detection and cv-segmentation one-shot through `sparsify.run`: a yolov8n(-seg) baseline
trained by Ultralytics (cached), pruned, INT8-quantized, benchmarked by mAP and packaged.

Models are random-init from Ultralytics' YAMLs, trained for two batches at 64 px, so the
mAPs only show that both models were measured, not how good they are.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch

import sparsify
from sparsify.benchmark.onnx_stats import onnx_weight_sparsity
from sparsify.models.yolo.model import read_checkpoint
from tests.fixtures.yolo import (  # noqa: F401 - ultralytics_offline is an autouse fixture
    DETECT,
    HAS_ULTRALYTICS,
    SEGMENT,
    make_yolo_dataset,
    ultralytics_offline,
)

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not HAS_ULTRALYTICS, reason="ultralytics not installed"),
]

YOLO_RUN = [
    "data.image_size=64",
    "data.batch_size=4",
    "experiment.train.epochs=1",
    "experiment.train.max_steps=2",
    "experiment.train.batch_size=4",
    "experiment.calibration_samples=4",
    "benchmark.time_s=0.1",
    "benchmark.warmup_s=0.02",
    "benchmark.batch_sizes=[1,2]",
    "baseline.allow_scratch=true",  # random-init models: only the code paths are under test
]
LEVEL_05 = 0.4 + (0.5 - 0.3) / 0.7 * 0.4  # one-shot optim level 0.5 -> 51.4 % sparsity
ANCHORS = 64 + 16 + 4  # 64 px at strides 8, 16, 32


def _run(use_case: str, data: Path, run_dir: Path, *overrides: str) -> sparsify.runner.RunResult:
    return sparsify.run(
        [f"use_case={use_case}", f"data.path={data}", *YOLO_RUN, *overrides], run_dir=run_dir
    )


def _check_run(result: sparsify.runner.RunResult, level_sparsity: float) -> dict:
    """What every YOLO run must leave: deployment, measured sparsity, INT8, mAP of both."""
    assert result.status == "done", result.error
    deploy = result.deployment_dir
    for name in ("model.onnx", "config.json", "labels.txt", "recipe.yaml", "metrics.json"):
        assert (deploy / name).is_file(), name
    measured = onnx_weight_sparsity(deploy / "model.onnx")["sparsity"]
    assert abs(measured - level_sparsity) < 0.01, measured
    graph = onnx.load(str(deploy / "model.onnx")).graph
    assert any(n.op_type == "QuantizeLinear" for n in graph.node)
    bench = json.loads((deploy / "benchmark.json").read_text())["engines"]["onnxruntime"]
    assert bench["baseline"]["sparsity"] < 0.01
    for model in ("baseline", "sparsified"):
        accuracy = bench[model]["accuracy"]
        assert accuracy["samples"] == result.outputs["validate"]["data"]["splits"]["val"]
        assert 0 <= accuracy["map50-95"] <= accuracy["map50"] <= 100
        assert [r["batch_size"] for r in bench[model]["benchmarks"]] == [1, 2]
    # the DFL kernel (0..15) is neither pruned nor quantized: boxes decode exactly
    pruned, _ = read_checkpoint(result.run_dir / "sparsify" / "model.pt")
    dfl = next(m for n, m in pruned.named_modules() if n.endswith(".dfl.conv"))
    assert torch.equal(dfl.weight.flatten(), torch.arange(16, dtype=torch.float32))
    # nor are the stem conv and the head's output convs (boxes, classes, mask coefficients)
    kept = [
        m
        for n, m in pruned.named_modules()
        if re.fullmatch(r"model\.0\.conv|.*\.cv[234]\.\d\.2", n)
    ]
    assert len(kept) >= 7 and all(bool((m.weight != 0).all()) for m in kept)
    return json.loads((deploy / "config.json").read_text())


def _onnx_outputs(path: Path, batch: int) -> list[np.ndarray]:
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    images = np.random.default_rng(0).random((batch, 3, 64, 64), dtype=np.float32)
    return session.run(None, {"images": images})


@pytest.fixture(scope="module")
def detection(tmp_path_factory: pytest.TempPathFactory) -> sparsify.runner.RunResult:
    base = tmp_path_factory.mktemp("yolo_e2e")
    data = make_yolo_dataset(base / "data", task=DETECT)
    return _run("cv-detection", data, base / "run", "optim_level=0.5")


def test_detection_one_shot(detection: sparsify.runner.RunResult) -> None:
    assert "a new yolov8n, prepared here" in detection.outputs["fetch"]["source"]
    config = _check_run(detection, LEVEL_05)
    assert config["task"] == "object-detection" and config["labels"] == ["box", "disc"]
    assert config["inputs"] == [
        {"name": "images", "shape": ["batch", 3, 64, 64], "dtype": "float32"}
    ]
    assert config["preprocessing"]["type"] == "letterbox"
    assert config["postprocessing"]["type"] == "yolo_nms" and not config["postprocessing"]["masks"]
    (out,) = _onnx_outputs(detection.deployment_dir / "model.onnx", batch=3)  # dynamic batch
    assert out.shape == (3, 4 + 2, ANCHORS) and np.isfinite(out).all()
    metrics = json.loads((detection.deployment_dir / "metrics.json").read_text())
    assert metrics["metric"] == "map50-95" and "map50-95" in metrics["sparsified"]


def test_detection_baseline_is_cached(detection: sparsify.runner.RunResult, tmp_path: Path) -> None:
    data = Path(detection.outputs["validate"]["data_path"])
    again = _run("cv-detection", data, tmp_path / "run", "stages=[validate,fetch]")
    assert again.status == "done", again.error
    assert "Using the cached dense baseline" in (tmp_path / "run" / "run.log").read_text()
    fetched = detection.outputs["fetch"]["sha256"]
    assert again.outputs["fetch"]["sha256"] == fetched


def test_detection_qdq_quantizes_between_convs_and_keeps_the_decode_float(
    detection: sparsify.runner.RunResult, tmp_path: Path
) -> None:
    """QDQ (ONNX Runtime) YOLO: SiLU, Split/Concat, MaxPool, Resize and Adds INT8 too; the
    head's decode (DFL, box arithmetic, class sigmoid, output Concat) stays float."""
    from sparsify.models.yolo.family import head_decode_nodes

    data = Path(detection.outputs["validate"]["data_path"])
    result = _run(
        "cv-detection", data, tmp_path / "run", "optim_level=0.2", "quantization.format=qdq",
        "stages=[validate,fetch,sparsify]",
    )  # fmt: skip
    assert result.status == "done", result.error
    quantized = result.outputs["sparsify"]["quantization"]["quantized_op_types"]
    assert {"Conv", "Mul", "Sigmoid", "Concat", "MaxPool", "Resize", "Split"} <= set(quantized)
    stage = result.run_dir / "sparsify"
    decode = head_decode_nodes(onnx.load(str(stage / "baseline.onnx")))
    assert any("/dfl/" in n for n in decode) and not any("/cv2." in n for n in decode)
    graph = onnx.load(str(stage / "model.onnx")).graph
    producers = {out: node.op_type for node in graph.node for out in node.output}
    quantizers = {i for node in graph.node if node.op_type == "QuantizeLinear" for i in node.input}
    outputs = {node.name: node.output for node in graph.node}
    for name in decode:  # a quantized op's result goes through a QuantizeLinear
        assert not set(outputs[name]) & quantizers, f"{name} is quantized"
    assert producers[graph.output[0].name] != "DequantizeLinear"
    fp32, int8 = (_onnx_outputs(stage / f, batch=2)[0] for f in ("model_fp32.onnx", "model.onnx"))
    boxes = slice(0, 4)
    assert np.abs(int8[:, boxes] - fp32[:, boxes]).mean() < 0.05 * np.abs(fp32[:, boxes]).mean()


def test_checkpoint_with_other_classes_is_fine_tuned(
    detection: sparsify.runner.RunResult, tmp_path: Path
) -> None:
    checkpoint = detection.run_dir / "fetch" / "model.pt"
    data = make_yolo_dataset(tmp_path / "data", task=DETECT, classes=("cat", "dog", "bird"), seed=3)
    # optim level 0.2: INT8 only, no pruning
    result = _run("cv-detection", data, tmp_path / "run", f"model={checkpoint}", "optim_level=0.2")
    assert f"{checkpoint}, prepared here" in result.outputs["fetch"]["source"]
    config = _check_run(result, 0.0)
    assert config["labels"] == ["cat", "dog", "bird"]
    (out,) = _onnx_outputs(result.deployment_dir / "model.onnx", batch=2)
    assert out.shape == (2, 4 + 3, ANCHORS)


def test_detection_checkpoint_for_segmentation_is_refused(
    detection: sparsify.runner.RunResult, tmp_path: Path
) -> None:
    data = make_yolo_dataset(tmp_path / "data", task=SEGMENT)
    checkpoint = detection.run_dir / "fetch" / "model.pt"
    result = _run("cv-segmentation", data, tmp_path / "run", f"model={checkpoint}")
    assert result.status == "failed"
    assert "is a detect model, but cv-segmentation needs a segment model" in result.error
    assert "yolov8n-seg" in result.error
    assert not (tmp_path / "run" / "fetch").exists()


def test_segmentation_one_shot(tmp_path: Path) -> None:
    data = make_yolo_dataset(tmp_path / "data", task=SEGMENT)
    result = _run("cv-segmentation", data, tmp_path / "run", "optim_level=0.5")
    assert "a new yolov8n-seg, prepared here" in result.outputs["fetch"]["source"]
    config = _check_run(result, LEVEL_05)
    assert config["task"] == "instance-segmentation" and config["postprocessing"]["masks"]
    assert [o["name"] for o in config["outputs"]] == ["output0", "output1"]
    boxes, protos = _onnx_outputs(result.deployment_dir / "model.onnx", batch=2)
    assert boxes.shape == (2, 4 + 2 + 32, ANCHORS) and protos.shape == (2, 32, 16, 16)
    metrics = json.loads((result.deployment_dir / "metrics.json").read_text())
    assert metrics["metric"] == "mask_map50-95"
    for model in ("baseline", "sparsified"):
        scores = metrics[model]
        assert list(scores)[0] == "mask_map50-95"  # what the table reports
        assert 0 <= scores["mask_map50-95"] <= scores["mask_map50"] <= 100
    assert result.table[0]["metric"] == "mask_map50-95"


def test_detection_training_aware(detection: sparsify.runner.RunResult, tmp_path: Path) -> None:
    """GMP through Ultralytics' trainer (the session in its per-batch hook), then INT8 PTQ."""
    data = Path(detection.outputs["validate"]["data_path"])
    checkpoint = detection.run_dir / "fetch" / "model.pt"
    result = _run(
        "cv-detection",
        data,
        tmp_path / "run",
        "experiment=training_aware",
        f"model={checkpoint}",
        "optim_level=0.5",
        "experiment.train.epochs=2",  # 2 epochs x 2 batches, capped at 3 steps
        "experiment.train.max_steps=3",
    )
    # training-aware level 0.5 -> 60 + (0.5 - 0.3) / 0.7 * 35 = 70 % sparsity
    _check_run(result, 0.7)
    produced = result.outputs["sparsify"]
    assert produced["qat"] is False and produced["steps"] == 3
    assert "masks updated" in [e["event"] for e in produced["events"]]
    assert not (result.run_dir / "sparsify" / "ultralytics").exists()
    assert (result.run_dir / "sparsify" / "ultralytics_results.csv").is_file()
    assert list((result.run_dir / "sparsify" / "tensorboard").glob("events.out.tfevents.*"))


def test_detection_sparse_transfer_to_other_classes(
    detection: sparsify.runner.RunResult, tmp_path: Path
) -> None:
    """The one-shot run's 51 %-sparse detector as foundation for a 3-class dataset: the new
    head is dense, every other layer keeps exactly the foundation's zeros."""
    foundation = detection.run_dir / "sparsify" / "model.pt"
    data = make_yolo_dataset(tmp_path / "data", task=DETECT, classes=("cat", "dog", "bird"), seed=3)
    result = _run(
        "cv-detection",
        data,
        tmp_path / "run",
        "experiment=sparse_transfer",
        f"model={foundation}",
        "optim_level=0.4",  # largest tier, pruned + INT8
        "experiment.train.epochs=1",
    )
    assert result.status == "done", result.error
    produced = result.outputs["sparsify"]
    assert "masks held fixed" in [e["event"] for e in produced["events"]]
    before, _ = read_checkpoint(foundation)
    after, _ = read_checkpoint(result.run_dir / "sparsify" / "model.pt")
    shapes = {n: m.weight.shape for n, m in after.named_modules() if hasattr(m, "weight")}
    kept = changed = 0
    for name, module in before.named_modules():
        if not isinstance(module, torch.nn.Conv2d) or name not in shapes:
            continue
        if shapes[name] != module.weight.shape:  # the re-initialised class head
            changed += 1
            continue
        zeros = module.weight == 0
        assert torch.equal(after.get_submodule(name).weight == 0, zeros), name
        kept += 1
    assert changed >= 1 and kept > 20
    config = json.loads((result.deployment_dir / "config.json").read_text())
    assert config["labels"] == ["cat", "dog", "bird"]
