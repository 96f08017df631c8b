"""The Ultralytics YOLO family on tiny generated datasets: train, export, mAP, checkpoints.

Models are built from Ultralytics' YAMLs with random init (no downloads) and trained for a
batch or two at 64 px, so the numbers say nothing about quality, only that the path works.
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import pytest
import torch

from sparsify.algorithms.pruning import apply_masks, magnitude_masks, select_layers
from sparsify.data.yolo import validate_yolo_dataset
from sparsify.data.yolo_loader import yolo_samples
from sparsify.engines.ort import OnnxRuntimeEngine
from sparsify.errors import SparsifyError
from sparsify.models.yolo.family import PRUNE_IGNORE, YoloFamily, add_callbacks, arch_task
from tests.fixtures.yolo import (  # noqa: F401 - ultralytics_offline is an autouse fixture
    DETECT,
    HAS_ULTRALYTICS,
    SEGMENT,
    make_ctx,
    make_yolo_dataset,
    ultralytics_offline,
)

needs_ultralytics = pytest.mark.skipif(not HAS_ULTRALYTICS, reason="ultralytics not installed")
FAMILY = YoloFamily()
# ---------------------------------------------------------------- environment and fixtures


def snapshot(root: Path) -> list[tuple[str, int, int]]:
    return sorted(
        (str(p.relative_to(root)), p.stat().st_size, p.stat().st_mtime_ns) for p in root.rglob("*")
    )


def _val_input(n: int = 2) -> np.ndarray:
    return np.random.default_rng(0).random((n, 3, 64, 64), dtype=np.float32)


def _torch_head(model: torch.nn.Module, x: np.ndarray) -> list[np.ndarray]:
    """The eval-mode model's decoded head output (+ protos): what the ONNX must reproduce."""
    with torch.no_grad():
        out = model(torch.from_numpy(x))[0]
    return [t.numpy() for t in out] if isinstance(out, tuple) else [out.numpy()]


@pytest.fixture(scope="module")
def detect_run(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """A yolov8n trained for one batch on the detection dataset (the slow part, shared)."""
    base = tmp_path_factory.mktemp("yolo_detect")
    root = make_yolo_dataset(base / "user_data", task=DETECT)
    before = snapshot(root)
    ctx = make_ctx(root, DETECT, base / "run")
    out = base / "cache" / "model.pt"
    out.parent.mkdir()
    threads = torch.get_num_threads()
    metrics = FAMILY.train_baseline(ctx, None, out)
    return {
        "ctx": ctx,
        "root": root,
        "before": before,
        "model": out,
        "metrics": metrics,
        "threads": threads,
    }


def test_deployment_files_and_calibration(tmp_path: Path) -> None:
    root = make_yolo_dataset(tmp_path / "data", task=SEGMENT, size=(80, 64))
    ctx = make_ctx(root, SEGMENT, tmp_path / "run")
    part = FAMILY.deployment_files(ctx, tmp_path)
    assert (tmp_path / "labels.txt").read_text() == "box\ndisc\n"
    assert part["labels"] == ["box", "disc"]
    assert part["preprocessing"]["type"] == "letterbox"
    assert part["preprocessing"]["image_size"] == 64
    post = part["postprocessing"]
    assert post["type"] == "yolo_nms" and post["masks"] is True
    assert 0 < post["conf_threshold"] < 1 and 0 < post["iou_threshold"] < 1
    assert post["max_detections"] == 300
    feeds = FAMILY.calibration_feeds(ctx, 4)
    assert len(feeds) == 4 and all(set(f) == {"images"} for f in feeds)
    images = np.concatenate([f["images"] for f in feeds])
    assert images.shape == (4, 3, 64, 64) and images.dtype == np.float32
    assert 0 <= images.min() and images.max() <= 1
    assert len(FAMILY.calibration_feeds(ctx, 100)) == 7  # all train images


def test_missing_ultralytics_says_what_to_install(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = make_yolo_dataset(tmp_path / "data")
    ctx = make_ctx(root, DETECT, tmp_path / "run")
    fake = tmp_path / "model.pt"
    fake.write_bytes(b"not a checkpoint")
    monkeypatch.setitem(sys.modules, "ultralytics", None)  # makes `import ultralytics` fail
    arch_task.cache_clear()
    calls = [
        lambda: FAMILY.arch_problems("yolov8n"),
        lambda: FAMILY.checkpoint_problems(fake, ctx, ctx.outputs["validate"]["data"]),
        lambda: FAMILY.train_baseline(ctx, None, tmp_path / "out.pt"),
        lambda: FAMILY.load(fake, ctx),
        lambda: FAMILY.export(torch.nn.Conv2d(3, 3, 1), tmp_path / "m.onnx", ctx),
    ]
    for call in calls:
        with pytest.raises(SparsifyError, match=r"pip install 'sparsify\[yolo\]'"):
            call()
    arch_task.cache_clear()


# ---------------------------------------------------------------- with Ultralytics


@needs_ultralytics
def test_arch_problems() -> None:
    for arch in ("yolov8n", "yolov8n-seg", "yolo11n"):
        assert FAMILY.arch_problems(arch) == [], arch
    (unknown,) = FAMILY.arch_problems("resnet18")
    assert "not a YOLO model" in unknown.message and "yolov8n-seg" in unknown.fix
    (classify,) = FAMILY.arch_problems("yolov8n-cls")
    assert "classify" in classify.message


@needs_ultralytics
def test_train_baseline_stays_in_its_folders(detect_run: dict[str, Any]) -> None:
    metrics, model = detect_run["metrics"], detect_run["model"]
    assert model.is_file() and metrics["epochs"] == 1
    assert all(0 <= metrics[k] <= 100 for k in ("map50", "map50-95"))
    assert not (model.parent / "ultralytics" / "train" / "weights").exists()  # no 2nd copy
    assert snapshot(detect_run["root"]) == detect_run["before"], "user's dataset was written to"
    assert (detect_run["ctx"].run_dir / "fetch" / "dataset" / "labels" / "train.cache").is_file()
    # settings live in this session's temp config (the first fixture to import Ultralytics)
    import ultralytics.utils

    assert Path(ultralytics.utils.SETTINGS.file).parent.parent.name.startswith("yolo_config")
    assert not Path(ultralytics.utils.SETTINGS.file).is_relative_to(Path.home())
    # Ultralytics' CPU thread cap and deterministic mode do not leak into the process
    assert torch.get_num_threads() == detect_run["threads"]
    assert not torch.are_deterministic_algorithms_enabled()


@needs_ultralytics
def test_export_matches_torch(detect_run: dict[str, Any], tmp_path: Path) -> None:
    ctx = detect_run["ctx"]
    model = FAMILY.load(detect_run["model"], ctx)
    assert not model.training and next(model.parameters()).dtype == torch.float32
    path = FAMILY.export(model, tmp_path / "model.onnx", ctx)
    graph = onnx.load(str(path)).graph
    assert not [n for n in graph.node if n.op_type == "BatchNormalization"]
    assert [i.name for i in graph.input] == ["images"]
    dims = [
        [d.dim_param or d.dim_value for d in o.type.tensor_type.shape.dim] for o in graph.output
    ]
    assert dims == [["batch", 4 + 2, 64 + 16 + 4]]  # xywh + 2 classes, anchors of 3 strides
    assert any(isinstance(m, torch.nn.BatchNorm2d) for m in model.modules())  # not fused in place
    # the DFL's softmax is spelled out over the bin axis in place: no Softmax, no Transpose
    assert not [n for n in graph.node if n.op_type in ("Softmax", "Transpose")]
    x = _val_input()
    (onnx_out,) = OnnxRuntimeEngine(path).run({"images": x})
    (torch_out,) = _torch_head(model, x)
    np.testing.assert_allclose(onnx_out, torch_out, rtol=1e-3, atol=1e-3)


@needs_ultralytics
def test_dfl_expectation_is_ultralytics_dfl() -> None:
    from ultralytics.nn.modules import DFL

    from sparsify.models.yolo.model import _dfl_expectation

    dfl = DFL(16).eval()
    x = torch.randn(2, 64, 30) * 4
    x[0, :16, 0] += 500.0  # large logits: exp must not overflow
    with torch.no_grad():
        torch.testing.assert_close(_dfl_expectation(dfl, x), dfl(x), rtol=1e-5, atol=1e-5)


@needs_ultralytics
def test_evaluate_onnx(detect_run: dict[str, Any], tmp_path: Path) -> None:
    ctx = detect_run["ctx"]
    path = FAMILY.export(FAMILY.load(detect_run["model"], ctx), tmp_path / "model.onnx", ctx)
    scores = FAMILY.evaluate_onnx(OnnxRuntimeEngine(path), ctx)
    assert set(scores) == {"map50-95", "map50", "samples"}
    assert scores["samples"] == ctx.outputs["validate"]["data"]["splits"]["val"] == 4
    assert 0 <= scores["map50-95"] <= scores["map50"] <= 100


@needs_ultralytics
@pytest.mark.parametrize("suffix", [".pt", ".pth"])
def test_checkpoint_round_trip(detect_run: dict[str, Any], tmp_path: Path, suffix: str) -> None:
    from ultralytics import YOLO

    ctx = detect_run["ctx"]
    model = FAMILY.load(detect_run["model"], ctx)
    with torch.no_grad():
        model.model[0].conv.weight[0] = 0.0  # an edit (e.g. pruning) must survive the trip
    path = tmp_path / f"model{suffix}"
    FAMILY.save(model, path, ctx)
    again = FAMILY.load(path, ctx)
    assert not again.training and again.names == {0: "box", 1: "disc"}
    assert torch.equal(again.model[0].conv.weight, model.model[0].conv.weight)
    x = _val_input(1)
    np.testing.assert_allclose(_torch_head(again, x)[0], _torch_head(model, x)[0], atol=1e-6)
    if suffix == ".pt":  # Ultralytics itself reads what we save
        yolo = YOLO(str(path))
        assert yolo.task == "detect" and yolo.names == {0: "box", 1: "disc"}
        image = yolo_samples(ctx.outputs["validate"]["data"], "val")[0][0]
        assert len(yolo.predict(str(image), imgsz=64, verbose=False)) == 1


@needs_ultralytics
def test_checkpoint_problems(detect_run: dict[str, Any], tmp_path: Path) -> None:
    detect_ctx, checkpoint = detect_run["ctx"], detect_run["model"]
    data = detect_ctx.outputs["validate"]["data"]
    assert FAMILY.checkpoint_problems(checkpoint, detect_ctx, data) == []
    assert FAMILY.needs_baseline(detect_ctx, checkpoint) is False

    seg_root = make_yolo_dataset(tmp_path / "seg", task=SEGMENT)
    seg_ctx = make_ctx(seg_root, SEGMENT, tmp_path / "seg_run")
    (wrong_task,) = FAMILY.checkpoint_problems(checkpoint, seg_ctx, data)
    assert "is a detect model" in wrong_task.message and "segment" in wrong_task.message
    assert "yolov8n-seg" in wrong_task.fix

    garbage = tmp_path / "garbage.pt"
    garbage.write_bytes(b"\x00not a checkpoint")
    pth = tmp_path / "model.pth"
    shutil.copyfile(checkpoint, pth)
    for path, text in (
        (tmp_path / "missing.pt", "does not exist"),
        (pth, "not a .pt"),
        (garbage, "cannot be loaded"),
    ):
        (problem,) = FAMILY.checkpoint_problems(path, detect_ctx, data)
        assert text in problem.message and problem.fix

    other = make_yolo_dataset(tmp_path / "other", classes=("cat", "dog"))
    assert FAMILY.needs_baseline(make_ctx(other, DETECT, tmp_path / "o"), checkpoint) is True


@needs_ultralytics
def test_add_callbacks_fires_every_batch(tmp_path: Path) -> None:
    from ultralytics import YOLO

    root = make_yolo_dataset(tmp_path / "data")
    summary, _ = validate_yolo_dataset(root, DETECT)
    from sparsify.data.yolo_loader import write_ultralytics_dataset

    data = write_ultralytics_dataset(summary.to_dict(), tmp_path / "dataset")  # type: ignore[union-attr]
    yolo = YOLO("yolov8n.yaml")
    calls: list[int] = []
    add_callbacks(yolo, lambda model: calls.append(1))
    yolo.train(
        data=str(data),
        epochs=1,
        imgsz=32,
        batch=4,
        device="cpu",
        workers=0,
        plots=False,
        val=False,
        project=str(tmp_path / "runs"),
        name="train",
        exist_ok=True,
        amp=False,
        verbose=False,
    )
    assert len(calls) == len(yolo.trainer.train_loader) == 2  # 7 train images, batch 4


@needs_ultralytics
@pytest.mark.slow
def test_segmentation_end_to_end(tmp_path: Path) -> None:
    root = make_yolo_dataset(tmp_path / "data", task=SEGMENT)
    ctx = make_ctx(root, SEGMENT, tmp_path / "run")
    out = tmp_path / "cache" / "model.pt"
    out.parent.mkdir()
    metrics = FAMILY.train_baseline(ctx, None, out)
    assert {"map50", "map50-95", "mask_map50", "mask_map50-95"} <= set(metrics)
    model = FAMILY.load(out, ctx)
    assert type(model).__name__ == "SegmentationModel"
    path = FAMILY.export(model, tmp_path / "model.onnx", ctx)
    graph = onnx.load(str(path)).graph
    assert not [n for n in graph.node if n.op_type == "BatchNormalization"]
    x = _val_input()
    engine = OnnxRuntimeEngine(path)
    for got, want in zip(engine.run({"images": x}), _torch_head(model, x), strict=True):
        assert got.shape == want.shape
        np.testing.assert_allclose(got, want, rtol=1e-3, atol=1e-3)
    assert engine.run({"images": x})[1].shape == (2, 32, 16, 16)  # mask protos at 1/4
    scores = FAMILY.evaluate_onnx(engine, ctx)
    assert scores["samples"] == 4
    assert all(0 <= scores[k] <= 100 for k in ("map50", "map50-95", "mask_map50", "mask_map50-95"))


@needs_ultralytics
@pytest.mark.slow
def test_fine_tune_checkpoint_with_other_classes(
    detect_run: dict[str, Any], tmp_path: Path
) -> None:
    root = make_yolo_dataset(tmp_path / "data", classes=("cat", "dog", "bird"))
    ctx = make_ctx(root, DETECT, tmp_path / "run")
    assert FAMILY.needs_baseline(ctx, detect_run["model"])
    out = tmp_path / "cache" / "model.pt"
    out.parent.mkdir()
    FAMILY.train_baseline(ctx, detect_run["model"], out)
    assert FAMILY.load(out, ctx).names == {0: "cat", 1: "dog", 2: "bird"}
    assert FAMILY.needs_baseline(ctx, out) is False


@needs_ultralytics
def test_fine_tune_holds_masks_and_calls_the_hook(
    detect_run: dict[str, Any], tmp_path: Path
) -> None:
    ctx = detect_run["ctx"]
    model = FAMILY.load(detect_run["model"], ctx)
    layers = select_layers(model, ignore=PRUNE_IGNORE)
    masks = magnitude_masks(layers, 0.5)
    apply_masks(layers, masks)
    before = {n: m.weight.detach().clone() for n, m in layers.items()}
    seen: list[torch.nn.Module] = []
    tuned = FAMILY.fine_tune(
        model,
        ctx,
        tmp_path / "ft",
        on_batch_end=seen.append,
        epochs=1,
        hold_sparsity=True,
    )
    assert len(seen) == 1 and seen[0] is not model  # max_steps=1; Ultralytics' own copy
    assert type(tuned).__name__ == "DetectionModel" and not tuned.training
    assert tuned.names == {0: "box", 1: "disc"}
    modules = dict(tuned.named_modules())
    moved = 0
    for name, mask in masks.items():
        weight = modules[name].weight.detach()
        assert not weight[~mask].any(), f"{name}: a pruned weight came back"
        moved += int((weight[mask] != before[name][mask]).sum())
    assert moved > 0  # the optimizer did change the kept weights
    assert (tmp_path / "ft" / "ultralytics" / "train" / "weights" / "last.pt").is_file()


@needs_ultralytics
def test_fine_tune_checkpoint_for_other_classes_keeps_backbone_masks(
    detect_run: dict[str, Any], tmp_path: Path
) -> None:
    model = FAMILY.load(detect_run["model"], detect_run["ctx"])
    layers = select_layers(model, ignore=PRUNE_IGNORE)
    apply_masks(layers, magnitude_masks(layers, 0.6))
    pruned = tmp_path / "pruned.pt"
    FAMILY.save(model, pruned, detect_run["ctx"])
    root = make_yolo_dataset(tmp_path / "data", classes=("cat", "dog", "bird"))
    ctx = make_ctx(root, DETECT, tmp_path / "run")
    tuned = FAMILY.fine_tune(pruned, ctx, tmp_path / "ft", hold_sparsity=True)
    assert tuned.names == {0: "cat", 1: "dog", 2: "bird"}
    modules = dict(tuned.named_modules())
    backbone = modules["model.2.cv1.conv"].weight
    assert abs(float((backbone == 0).float().mean()) - 0.6) < 0.01  # mask held
    head = modules["model.22.cv3.0.2"].weight  # the class conv, new shape: trained dense
    assert head.shape[0] == 3 and float((head == 0).float().mean()) < 0.1


def test_trainer_metrics_last_epoch_is_not_the_best_checkpoints() -> None:
    """Under a pruning schedule the final validation (of best.pt, an early dense epoch) says
    nothing about the model returned: `last_epoch` reads the last row of results.csv."""
    from types import SimpleNamespace

    from sparsify.models.yolo.training import trainer_metrics

    best = SimpleNamespace(results_dict={"metrics/mAP50(B)": 0.99, "metrics/mAP50-95(B)": 0.95})
    columns = {
        "epoch": [1, 2],
        "  metrics/mAP50(B)": [0.99, 0.14],
        "metrics/mAP50-95(B)": [0.95, 0.05],
    }
    trainer = SimpleNamespace(
        epoch=1, validator=SimpleNamespace(metrics=best), read_results_csv=lambda: columns
    )
    assert trainer_metrics(trainer) == {"epochs": 2, "map50": 99.0, "map50-95": 95.0}
    assert trainer_metrics(trainer, last_epoch=True) == {
        "epochs": 2, "map50": 14.0, "map50-95": 5.0,
    }  # fmt: skip
    no_csv = SimpleNamespace(epoch=0, validator=SimpleNamespace(metrics=best))
    assert trainer_metrics(no_csv, last_epoch=True)["map50-95"] == 95.0
