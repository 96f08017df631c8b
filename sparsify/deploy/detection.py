"""YOLO pre/post-processing as plain numpy: letterbox in, boxes (and masks) out.

The same functions measure the exported models' mAP (benchmark stage) and run in the
deployment Pipeline, so measured accuracy is deployed accuracy. No Ultralytics needed.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
from PIL import Image

PAD_VALUE = 114  # grey border, as Ultralytics' LetterBox pads during training
MAX_NMS = 30000  # candidates kept (by score) before NMS: bounds its quadratic cost
MAX_WH = 7680.0  # per-class box offset: one NMS call never suppresses across classes


@dataclass
class Detection:
    """One detected object; `box` is [x1, y1, x2, y2] in original-image pixels."""

    box: list[float]
    score: float
    class_id: int
    label: str | None = None
    mask: np.ndarray | None = None  # bool (height, width) at the original size

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "box": [round(float(v), 2) for v in self.box],
            "score": float(self.score),
            "class_id": int(self.class_id),
        }
        if self.label is not None:
            out["label"] = self.label
        if self.mask is not None:
            out["mask"] = mask_to_rle(self.mask)
        return out


def mask_to_rle(mask: np.ndarray) -> dict[str, Any]:
    """COCO's uncompressed RLE: run lengths in column-major order, starting with zeros."""
    flat = np.asarray(mask, dtype=bool).flatten(order="F")
    changes = np.flatnonzero(np.diff(flat.astype(np.int8))) + 1
    edges = np.concatenate([[0], changes, [flat.size]])
    counts = np.diff(edges).tolist()
    if flat.size and flat[0]:
        counts = [0, *counts]
    return {"size": [int(mask.shape[0]), int(mask.shape[1])], "counts": counts}


def letterbox(image: Image.Image, size: int) -> tuple[np.ndarray, float, tuple[int, int]]:
    """Resize keeping the aspect ratio, pad to `size` x `size` with grey, scale to 0..1.

    Returns (CHW float32 RGB array, ratio new/old, (pad_x, pad_y) of the top-left border),
    with Ultralytics' rounding so boxes map back exactly as they do there.
    """
    image = image.convert("RGB")
    width, height = image.size
    ratio = min(size / height, size / width)
    new_w, new_h = max(round(width * ratio), 1), max(round(height * ratio), 1)
    if (new_w, new_h) != (width, height):
        image = image.resize((new_w, new_h), Image.BILINEAR)
    dw, dh = (size - new_w) / 2, (size - new_h) / 2
    left, top = round(dw - 0.1), round(dh - 0.1)
    canvas = np.full((size, size, 3), PAD_VALUE, dtype=np.uint8)
    canvas[top : top + new_h, left : left + new_w] = np.asarray(image, dtype=np.uint8)
    array = canvas.astype(np.float32).transpose(2, 0, 1) / 255.0
    return np.ascontiguousarray(array), ratio, (left, top)


def xywh_to_xyxy(boxes: np.ndarray) -> np.ndarray:
    out = np.empty_like(boxes)
    half_w, half_h = boxes[:, 2] / 2, boxes[:, 3] / 2
    out[:, 0], out[:, 1] = boxes[:, 0] - half_w, boxes[:, 1] - half_h
    out[:, 2], out[:, 3] = boxes[:, 0] + half_w, boxes[:, 1] + half_h
    return out


def box_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU of every box in `a` (n, 4) with every box in `b` (m, 4), xyxy: (n, m)."""
    lt = np.maximum(a[:, None, :2], b[None, :, :2])
    rb = np.minimum(a[:, None, 2:], b[None, :, 2:])
    inter = np.clip(rb - lt, 0, None).prod(axis=2)
    area_a = (a[:, 2] - a[:, 0]) * (a[:, 3] - a[:, 1])
    area_b = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
    return inter / np.maximum(area_a[:, None] + area_b[None, :] - inter, 1e-9)


def nms(boxes: np.ndarray, scores: np.ndarray, iou_threshold: float) -> np.ndarray:
    """Greedy non-maximum suppression: indices of kept boxes (xyxy), best score first."""
    order = np.argsort(-scores, kind="stable")
    keep: list[int] = []
    while order.size:
        best = int(order[0])
        keep.append(best)
        if order.size == 1:
            break
        ious = box_iou(boxes[best : best + 1], boxes[order[1:]])[0]
        order = order[1:][ious <= iou_threshold]
    return np.asarray(keep, dtype=np.int64)


def select_detections(
    raw: np.ndarray,
    conf: float,
    iou: float,
    max_det: int,
    num_classes: int | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Filter one image's raw head output (4 + nc + extra, anchors) by score, then NMS per class.

    Returns (xyxy boxes in input pixels, scores, class ids, extra rows e.g. mask coefficients).
    """
    pred = np.asarray(raw, dtype=np.float32)
    if pred.ndim == 3:  # a batch of one
        pred = pred[0]
    nc = pred.shape[0] - 4 if num_classes is None else num_classes
    class_scores = pred[4 : 4 + nc]
    classes = class_scores.argmax(axis=0)
    scores = class_scores.max(axis=0)
    keep = np.flatnonzero(scores > conf)
    if keep.size > MAX_NMS:
        keep = keep[np.argsort(-scores[keep], kind="stable")[:MAX_NMS]]
    boxes = xywh_to_xyxy(pred[:4, keep].T)
    scores, classes = scores[keep], classes[keep]
    extra = pred[4 + nc :, keep].T
    kept = nms(boxes + classes[:, None] * MAX_WH, scores, iou)[:max_det]
    return boxes[kept], scores[kept], classes[kept].astype(np.int64), extra[kept]


def scale_boxes(
    boxes: np.ndarray, ratio: float, pad: tuple[int, int], orig_size: tuple[int, int]
) -> np.ndarray:
    """Boxes from letterboxed-input pixels back to the original image (`orig_size` = (w, h))."""
    out = boxes.astype(np.float32).copy()
    out[:, [0, 2]] = np.clip((out[:, [0, 2]] - pad[0]) / ratio, 0, orig_size[0])
    out[:, [1, 3]] = np.clip((out[:, [1, 3]] - pad[1]) / ratio, 0, orig_size[1])
    return out


def _bilinear_matrix(n_out: int, n_in: int, ratio: float, pad: float, scale: float) -> np.ndarray:
    """(n_out, n_in) weights sampling a proto axis at each original pixel's centre."""
    src = ((np.arange(n_out) + 0.5) * ratio + pad) * scale - 0.5
    src = np.clip(src, 0, n_in - 1)
    lo = np.floor(src).astype(np.int64)
    hi = np.minimum(lo + 1, n_in - 1)
    frac = (src - lo).astype(np.float32)
    matrix = np.zeros((n_out, n_in), dtype=np.float32)
    rows = np.arange(n_out)
    np.add.at(matrix, (rows, lo), 1 - frac)
    np.add.at(matrix, (rows, hi), frac)
    return matrix


MaskCrop = tuple[tuple[int, int, int, int], np.ndarray]  # (x0, y0, x1, y1) window, its mask


def mask_crops(
    protos: np.ndarray,
    mask_coeffs: np.ndarray,
    boxes: np.ndarray,
    ratio: float,
    pad: tuple[int, int],
    orig_size: tuple[int, int],
    input_size: int,
) -> list[MaskCrop]:
    """Per detection, its box's pixel window in the original image and the mask inside it.

    `protos` (nm, mh, mw) are the prototypes of the letterboxed input; `boxes` are in
    original pixels. Logits are interpolated bilinearly and cut at 0 (sigmoid 0.5), as
    Ultralytics does. Only box windows are computed: 300 full-size masks of a large image
    would not fit in memory during evaluation.
    """
    if protos.ndim == 4:
        protos = protos[0]
    _, mh, mw = protos.shape
    width, height = orig_size
    rows = _bilinear_matrix(height, mh, ratio, pad[1], mh / input_size)
    cols = _bilinear_matrix(width, mw, ratio, pad[0], mw / input_size)
    crops: list[MaskCrop] = []
    for i, (x1, y1, x2, y2) in enumerate(np.asarray(boxes, dtype=np.float64)):
        # pixel u lies in the box when x1 <= u < x2 (Ultralytics' crop_mask)
        c0, c1 = max(math.ceil(x1), 0), min(math.ceil(x2), width)
        r0, r1 = max(math.ceil(y1), 0), min(math.ceil(y2), height)
        if c0 >= c1 or r0 >= r1:
            crops.append(((0, 0, 0, 0), np.zeros((0, 0), dtype=bool)))
            continue
        ry, rx = rows[r0:r1], cols[c0:c1]
        used_r, used_c = np.flatnonzero(ry.any(axis=0)), np.flatnonzero(rx.any(axis=0))
        pr = slice(int(used_r[0]), int(used_r[-1]) + 1)
        pc = slice(int(used_c[0]), int(used_c[-1]) + 1)
        logits = np.tensordot(mask_coeffs[i], protos[:, pr, pc], axes=(0, 0))
        crops.append(((c0, r0, c1, r1), (ry[:, pr] @ logits @ rx[:, pc].T) > 0))
    return crops


def paste_masks(crops: list[MaskCrop], orig_size: tuple[int, int]) -> np.ndarray:
    """Per-detection binary masks (n, h, w) at the original size, zero outside their boxes."""
    width, height = orig_size
    masks = np.zeros((len(crops), height, width), dtype=bool)
    for i, ((c0, r0, c1, r1), crop) in enumerate(crops):
        masks[i, r0:r1, c0:c1] = crop
    return masks


def postprocess_detections(
    raw: np.ndarray,
    ratio: float,
    pad: tuple[int, int],
    orig_size: tuple[int, int],
    conf: float = 0.25,
    iou: float = 0.7,
    max_det: int = 300,
    num_classes: int | None = None,
    protos: np.ndarray | None = None,
    input_size: int | None = None,
    labels: list[str] | None = None,
) -> list[Detection]:
    """One image's raw output -> detections in original pixels (`orig_size` = (w, h)).

    For segmentation pass `num_classes`, the image's `protos` and the `input_size`.
    """
    boxes, scores, classes, coeffs = select_detections(raw, conf, iou, max_det, num_classes)
    boxes = scale_boxes(boxes, ratio, pad, orig_size)
    masks: np.ndarray | None = None
    if protos is not None:
        if input_size is None:
            raise ValueError("input_size is needed to place the mask prototypes")
        crops = mask_crops(protos, coeffs, boxes, ratio, pad, orig_size, input_size)
        masks = paste_masks(crops, orig_size)
    return [
        Detection(
            box=[float(v) for v in boxes[i]],
            score=float(scores[i]),
            class_id=int(classes[i]),
            label=labels[int(classes[i])] if labels else None,
            mask=masks[i] if masks is not None else None,
        )
        for i in range(len(boxes))
    ]
