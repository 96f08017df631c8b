"""The Ultralytics YOLO family on tiny generated datasets: train, export, mAP, checkpoints.

Models are built from Ultralytics' YAMLs with random init (no downloads) and trained for a
batch or two at 64 px, so the numbers say nothing about quality, only that the path works.
"""

from __future__ import annotations

import importlib.util
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import pytest
import torch
from PIL import Image, ImageDraw

from sparsify.benchmark.onnxruntime_engine import OnnxRuntimeEngine
from sparsify.config.compose import compose_config
from sparsify.context import RunContext
from sparsify.data.yolo import validate_yolo_dataset
from sparsify.data.yolo_loader import yolo_samples
from sparsify.deploy.detection import letterbox
from sparsify.deploy.preprocess import load_image
from sparsify.errors import SparsifyError
from sparsify.models.yolo_family import (
    YoloFamily,
    add_callbacks,
    arch_task,
    average_precision,
    match_predictions,
)
from tests.fixtures.yolo import make_yolo_dataset

DETECT, SEGMENT = "object-detection", "instance-segmentation"
HAS_ULTRALYTICS = importlib.util.find_spec("ultralytics") is not None
needs_ultralytics = pytest.mark.skipif(not HAS_ULTRALYTICS, reason="ultralytics not installed")
FAMILY = YoloFamily()
TINY = [
    "data.image_size=64",
    "data.batch_size=4",
    "experiment.train.epochs=1",
    "experiment.train.max_steps=1",
    "experiment.train.batch_size=4",
    "experiment.calibration_samples=4",
]


# ---------------------------------------------------------------- environment and fixtures


def _find_font() -> Path | None:
    """Any TTF here; Ultralytics otherwise downloads Arial.ttf when it checks a dataset."""
    spec = importlib.util.find_spec("matplotlib")
    if spec is not None and spec.origin:
        font = Path(spec.origin).parent / "mpl-data" / "fonts" / "ttf" / "DejaVuSans.ttf"
        if font.is_file():
            return font
    if shutil.which("fc-list"):
        listing = subprocess.run(["fc-list", ":", "file"], capture_output=True, text=True).stdout
        fonts = sorted(line.strip().rstrip(":") for line in listing.splitlines())
        return next((Path(f) for f in fonts if f.lower().endswith(".ttf")), None)
    return None


@pytest.fixture(scope="module", autouse=True)
def ultralytics_offline(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """No network, no auto-install, settings and fonts in a temp dir (never ~/.config)."""
    config = tmp_path_factory.mktemp("yolo_config")
    (config / "Ultralytics").mkdir()
    font = _find_font()
    if font is not None:
        shutil.copy(font, config / "Ultralytics" / "Arial.ttf")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("YOLO_CONFIG_DIR", str(config))
        mp.setenv("YOLO_OFFLINE", "1")
        mp.setenv("YOLO_AUTOINSTALL", "false")
        mp.setenv("MPLCONFIGDIR", str(config / "matplotlib"))
        if HAS_ULTRALYTICS:
            import ultralytics.utils
            import ultralytics.utils.checks

            # Ultralytics fixes its config dir at first import, which another test may have done
            mp.setattr(ultralytics.utils, "USER_CONFIG_DIR", config / "Ultralytics")
            mp.setattr(ultralytics.utils.checks, "USER_CONFIG_DIR", config / "Ultralytics")
            mp.setattr(ultralytics.utils.checks, "AUTOINSTALL", False)
            mp.setattr(ultralytics.utils, "ONLINE", False)
        yield config


def snapshot(root: Path) -> list[tuple[str, int, int]]:
    return sorted(
        (str(p.relative_to(root)), p.stat().st_size, p.stat().st_mtime_ns) for p in root.rglob("*")
    )


def make_ctx(root: Path, task: str, run_dir: Path, *overrides: str) -> RunContext:
    """A run context as the pipeline has it after `validate`."""
    use_case = "cv-detection" if task == DETECT else "cv-segmentation"
    cfg = compose_config(
        [f"use_case={use_case}", "data=yolo", f"data.path={root}", *TINY, *overrides]
    )
    summary, problems = validate_yolo_dataset(root, task)
    assert summary is not None and problems == []
    run_dir.mkdir(parents=True, exist_ok=True)
    ctx = RunContext(cfg=cfg, run_dir=run_dir)
    ctx.outputs["validate"] = {"data_path": str(root), "data": summary.to_dict()}
    return ctx


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


# ---------------------------------------------------------------- mAP pieces (numpy only)


def test_match_predictions_is_greedy_by_score() -> None:
    iou = np.array([[0.9, 0.1], [0.6, 0.56], [0.99, 0.99]])
    correct = match_predictions(
        iou, np.array([0, 0, 1]), np.array([0, 0]), np.array([0.9, 0.8, 0.95])
    )
    # p0 takes g0 up to IoU 0.9; p1 then gets g1 only where 0.56 clears the threshold
    assert correct[0].tolist() == [True] * 9 + [False]
    assert correct[1].tolist() == [True, True] + [False] * 8
    assert not correct[2].any()  # wrong class never matches
    assert match_predictions(
        np.zeros((0, 2)), np.zeros(0), np.array([0, 1]), np.zeros(0)
    ).shape == (
        0,
        10,
    )


def test_average_precision_101_points() -> None:
    correct = np.array([[True], [False], [True]])
    ap = average_precision(correct, np.array([0.9, 0.8, 0.7]), np.zeros(3, int), np.zeros(2, int))
    # precision envelope 1 up to recall 0.5 (51 points), then 2/3 (50 points)
    assert ap[0, 0] == pytest.approx((51 + 50 * 2 / 3) / 101)
    # a class with ground truth but no predictions scores 0; predictions without one are ignored
    ap = average_precision(correct, np.array([0.9, 0.8, 0.7]), np.array([2, 2, 2]), np.array([0]))
    assert ap.tolist() == [[0.0]]


class PerfectEngine:
    """Answers with the ground truth of each val image as a YOLO head would (in order)."""

    def __init__(self, ctx: RunContext, segment: bool) -> None:
        self.size = int(ctx.cfg.data.image_size)
        self.nc = len(ctx.outputs["validate"]["data"]["classes"])
        self.segment = segment
        samples = yolo_samples(ctx.outputs["validate"]["data"], "val")
        self.queue = [self._answer(load_image(p), label) for p, label in samples]

    def _answer(self, image: Image.Image, label: Path | None) -> list[np.ndarray]:
        _, ratio, (px, py) = letterbox(image, self.size)
        w, h = image.size
        anchors = 32
        raw = np.zeros((4 + self.nc + 32 * self.segment, anchors), np.float32)
        protos = -np.ones((32, self.size // 4, self.size // 4), np.float32)
        lines = label.read_text().splitlines() if label else []
        for k, line in enumerate(lines):
            cls, *coords = line.split()
            values = np.array(coords, dtype=np.float64)
            if not self.segment:  # xc yc w h, normalized
                xc, yc, bw, bh = values * (w, h, w, h) * ratio + (px, py, 0, 0)
            else:  # polygon, normalized
                xy = values.reshape(-1, 2) * (w, h) * ratio + (px, py)
                (x0, y0), (x1, y1) = xy.min(axis=0), xy.max(axis=0)
                xc, yc, bw, bh = (x0 + x1) / 2, (y0 + y1) / 2, x1 - x0, y1 - y0
                canvas = Image.new("L", (self.size, self.size), 0)
                ImageDraw.Draw(canvas).polygon([tuple(p) for p in xy], fill=255)
                cover = np.asarray(canvas.resize((self.size // 4,) * 2, Image.BOX)) / 255.0
                protos[k] = 2 * cover - 1  # zero where a cell is half covered
                raw[4 + self.nc + k, k] = 1.0
            raw[:4, k] = xc, yc, bw, bh
            raw[4 + int(cls), k] = 0.9
        return [raw, protos]

    def run(self, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
        images = feeds["images"]
        assert images.shape[1:] == (3, self.size, self.size) and 0 <= images.min() <= 1
        answers, self.queue = self.queue[: len(images)], self.queue[len(images) :]
        return [np.stack([a[i] for a in answers]) for i in range(1 + self.segment)]


@pytest.mark.parametrize("task", [DETECT, SEGMENT])
def test_perfect_predictions_score_100(tmp_path: Path, task: str) -> None:
    # 96x64 images at 64 px: ratio 2/3 and 10 px of padding to undo
    root = make_yolo_dataset(tmp_path / "data", task=task, size=(96, 64), n_val=5)
    ctx = make_ctx(root, task, tmp_path / "run", "data.batch_size=2")
    scores = FAMILY.evaluate_onnx(PerfectEngine(ctx, task == SEGMENT), ctx)
    assert scores["samples"] == 6
    assert scores["map50"] == pytest.approx(100) and scores["map50-95"] == pytest.approx(100)
    if task == SEGMENT:
        assert scores["mask_map50"] == pytest.approx(100)
        assert 60 < scores["mask_map50-95"] <= 100  # masks from 16x16 protos are a bit soft


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
    x = _val_input()
    (onnx_out,) = OnnxRuntimeEngine(path).run({"images": x})
    (torch_out,) = _torch_head(model, x)
    np.testing.assert_allclose(onnx_out, torch_out, rtol=1e-3, atol=1e-3)


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
    add_callbacks(yolo, lambda: calls.append(1))
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
