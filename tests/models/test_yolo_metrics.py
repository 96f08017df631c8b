"""mAP pieces: greedy matching by score, Ultralytics' 101-point AP, a perfect engine's score."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageDraw

from sparsify.context import RunContext
from sparsify.data.yolo_loader import yolo_samples
from sparsify.deploy.detection import letterbox
from sparsify.deploy.preprocess import load_image
from sparsify.models.yolo.family import YoloFamily
from sparsify.models.yolo.metrics import average_precision, match_predictions
from tests.fixtures.yolo import DETECT, SEGMENT, make_ctx, make_yolo_dataset

FAMILY = YoloFamily()


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
    # Ultralytics' AP: trapezoids between 101 recall points (step 0.01) of the precision
    # envelope, 1 below recall 0.5, 2/3 from 0.5 to 0.99, 0 at recall 1
    trapezoids = 49 * 1 + (1 + 2 / 3) / 2 + 49 * 2 / 3 + (2 / 3 + 0) / 2
    assert ap[0, 0] == pytest.approx(trapezoids / 100)
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
def test_perfect_predictions_score_the_maximum(tmp_path: Path, task: str) -> None:
    # 96x64 images at 64 px: ratio 2/3 and 10 px of padding to undo
    root = make_yolo_dataset(tmp_path / "data", task=task, size=(96, 64), n_val=5)
    ctx = make_ctx(root, task, tmp_path / "run", "data.batch_size=2")
    scores = FAMILY.evaluate_onnx(PerfectEngine(ctx, task == SEGMENT), ctx)
    assert scores["samples"] == 6
    # Ultralytics' AP ends at precision 0 at recall 1: a perfect detector scores 99.5, as in
    # `yolo val`
    assert scores["map50"] == pytest.approx(99.5) and scores["map50-95"] == pytest.approx(99.5)
    if task == SEGMENT:
        assert scores["mask_map50"] == pytest.approx(99.5)
        assert 60 < scores["mask_map50-95"] <= 99.5  # masks from 16x16 protos are a bit soft
