"""mAP of YOLO predictions (box, and mask for segmentation) as Ultralytics reports it.

The project reports Ultralytics' definition, the one `yolo val`, the dense baseline's
validator run at fetch, and the zoo's numbers use: per image, predictions are matched by
descending confidence to the best-overlapping free ground truth of their class at each IoU
0.5:0.95; AP per class is `ultralytics.utils.metrics.ap_per_class`, the trapezoid over 101
recall points of the interpolated precision envelope, which falls to 0 at recall 1 (so a
perfect detector scores 99.5, not 100). pycocotools' COCO AP (a step mean over the same 101
points, at most 100 detections per image) reads slightly differently. Predictions are decoded
by `sparsify.deploy.detection`, the code the deployment runs.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageDraw

from sparsify.data.yolo_loader import yolo_samples
from sparsify.deploy.detection import (
    MaskCrop,
    box_iou,
    letterbox,
    mask_crops,
    scale_boxes,
    select_detections,
)
from sparsify.deploy.preprocess import load_image
from sparsify.models.yolo.model import require_ultralytics

# mAP is measured as Ultralytics' validator does: keep nearly everything, let AP rank it
EVAL_CONF, EVAL_IOU, MAX_DET = 0.001, 0.7, 300
IOU_THRESHOLDS = np.linspace(0.5, 0.95, 10)


def match_predictions(
    iou: np.ndarray, pred_cls: np.ndarray, gt_cls: np.ndarray, scores: np.ndarray
) -> np.ndarray:
    """(n_pred, 10) true-positive flags at IoU 0.5:0.95: by descending score, each prediction
    takes the best-overlapping still-free ground truth of its class.

    Ultralytics' `BaseValidator.match_predictions` in numpy (it is a method of a validator that
    needs a run config and a save dir); tests/models/test_metric_equivalence.py holds the two
    equal. `iou` is (n_pred, n_gt)."""
    correct = np.zeros((len(pred_cls), len(IOU_THRESHOLDS)), dtype=bool)
    if not len(pred_cls) or not len(gt_cls):
        return correct
    iou = np.where(pred_cls[:, None] == gt_cls[None, :], iou, -1.0)
    taken = np.zeros((len(IOU_THRESHOLDS), len(gt_cls)), dtype=bool)
    rows = np.arange(len(IOU_THRESHOLDS))
    for i in np.argsort(-scores, kind="stable"):
        candidates = np.where(taken, -1.0, iou[i][None, :])
        best = candidates.argmax(axis=1)
        hit = candidates[rows, best] >= IOU_THRESHOLDS
        correct[i] = hit
        taken[rows[hit], best[hit]] = True
    return correct


def average_precision(
    correct: np.ndarray, scores: np.ndarray, pred_cls: np.ndarray, gt_cls: np.ndarray
) -> np.ndarray:
    """AP per ground-truth class (sorted) and IoU threshold, (classes, 10), by Ultralytics'
    `ap_per_class`; a class with ground truth and no prediction scores 0, predictions of a
    class without ground truth are ignored."""
    require_ultralytics()
    from ultralytics.utils.metrics import ap_per_class

    if not len(gt_cls):
        return np.zeros((0, correct.shape[1]))
    # index 5 of its result is the (classes, thresholds) AP table
    return ap_per_class(correct, scores, pred_cls, gt_cls)[5]


def _ground_truth(
    label: Path | None, size: tuple[int, int], segment: bool
) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """(classes, xyxy boxes in pixels, polygon masks at `size` = (w, h) or None)."""
    width, height = size
    classes, boxes, polygons = [], [], []
    lines = label.read_text(encoding="utf-8-sig").splitlines() if label else []
    for line in lines:
        values = line.split()
        if not values:
            continue
        classes.append(int(values[0]))
        coords = np.asarray(values[1:], dtype=np.float64)
        if segment:
            points = coords.reshape(-1, 2) * (width, height)
            polygons.append([tuple(p) for p in points])
            boxes.append([*points.min(axis=0), *points.max(axis=0)])
        else:
            xc, yc, w, h = coords * (width, height, width, height)
            boxes.append([xc - w / 2, yc - h / 2, xc + w / 2, yc + h / 2])
    masks = None
    if segment:
        masks = np.zeros((len(polygons), height, width), dtype=bool)
        for i, polygon in enumerate(polygons):
            canvas = Image.new("L", (width, height), 0)
            ImageDraw.Draw(canvas).polygon(polygon, fill=1)
            masks[i] = np.asarray(canvas, dtype=bool)
    return (
        np.asarray(classes, dtype=np.int64),
        np.asarray(boxes, dtype=np.float32).reshape(-1, 4),
        masks,
    )


def _mask_iou(crops: list[MaskCrop], gt: np.ndarray) -> np.ndarray:
    """IoU of predicted masks (box windows) with full-size ground-truth masks (m, h, w)."""
    iou = np.zeros((len(crops), len(gt)))
    gt_area = gt.sum(axis=(1, 2))
    for i, ((c0, r0, c1, r1), crop) in enumerate(crops):
        inter = np.logical_and(gt[:, r0:r1, c0:c1], crop).sum(axis=(1, 2))
        iou[i] = inter / np.maximum(crop.sum() + gt_area - inter, 1)
    return iou


def score_image(
    outputs: list[np.ndarray],
    image: Image.Image,
    letterboxed: tuple[np.ndarray, float, tuple[int, int]],
    label: Path | None,
    nc: int,
    segment: bool,
) -> dict[str, np.ndarray]:
    """One image's predictions matched to its ground truth, by the deployment's functions
    (what `postprocess_detections` composes; masks stay box-sized to bound memory)."""
    size, ratio, pad = letterboxed[0].shape[-1], letterboxed[1], letterboxed[2]
    boxes, scores, pred_cls, coeffs = select_detections(
        outputs[0], EVAL_CONF, EVAL_IOU, MAX_DET, nc
    )
    boxes = scale_boxes(boxes, ratio, pad, image.size)
    gt_cls, gt_boxes, gt_masks = _ground_truth(label, image.size, segment)
    iou = box_iou(boxes, gt_boxes)
    out = {
        "box": match_predictions(iou, pred_cls, gt_cls, scores),
        "scores": scores,
        "pred_cls": pred_cls,
        "gt_cls": gt_cls,
    }
    if segment:
        crops = mask_crops(outputs[1], coeffs, boxes, ratio, pad, image.size, size)
        mask_iou = _mask_iou(crops, gt_masks)  # type: ignore[arg-type]
        out["mask"] = match_predictions(mask_iou, pred_cls, gt_cls, scores)
    return out


def map_scores(stats: dict[str, list[np.ndarray]], key: str) -> tuple[float, float]:
    """mAP@0.5 and mAP@0.5:0.95 in percent over the ground-truth classes of the val split."""
    gt = np.concatenate(stats["gt_cls"]) if stats["gt_cls"] else np.zeros(0, np.int64)
    if not len(gt):
        return 0.0, 0.0
    ap = average_precision(
        np.concatenate(stats[key]),
        np.concatenate(stats["scores"]),
        np.concatenate(stats["pred_cls"]),
        gt,
    )
    return 100.0 * float(ap[:, 0].mean()), 100.0 * float(ap.mean())


def evaluate_yolo(
    engine: Any,
    summary: dict[str, Any],
    size: int,
    segment: bool,
    batch: int = 1,
    limit: int | None = None,
    split: str = "val",
) -> dict[str, float]:
    """mAP@0.5 and mAP@0.5:0.95 in percent (box; mask too when `segment`) of an engine
    (`run({"images": (n, 3, size, size)})` -> raw head outputs) on `split`."""
    samples = yolo_samples(summary, split)
    if limit:
        samples = samples[:limit]
    nc = len(summary["classes"])
    stats: dict[str, list[np.ndarray]] = {
        k: [] for k in ("box", "mask", "scores", "pred_cls", "gt_cls")
    }
    for start in range(0, len(samples), max(1, batch)):
        chunk = samples[start : start + max(1, batch)]
        images = [load_image(p) for p, _ in chunk]
        boxed = [letterbox(image, size) for image in images]
        outputs = engine.run({"images": np.stack([b[0] for b in boxed])})
        for j, ((_, label), image) in enumerate(zip(chunk, images, strict=True)):
            mine = [o[j] for o in outputs]
            for key, value in score_image(mine, image, boxed[j], label, nc, segment).items():
                stats[key].append(value)
    map50, map50_95 = map_scores(stats, "box")
    result: dict[str, float] = {"map50-95": map50_95, "map50": map50}
    if segment:
        result["mask_map50"], result["mask_map50-95"] = map_scores(stats, "mask")
    result["samples"] = len(samples)
    return result
