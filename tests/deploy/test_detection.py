"""YOLO pre/post-processing with hand-made numbers: letterbox, NMS, rescale, masks."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from sparsify.deploy.detection import (
    PAD_VALUE,
    Detection,
    box_iou,
    letterbox,
    mask_crops,
    mask_to_rle,
    nms,
    paste_masks,
    postprocess_detections,
    scale_boxes,
)

GREY = PAD_VALUE / 255


def test_letterbox_pads_evenly_and_scales_to_unit_range() -> None:
    image = Image.new("RGB", (100, 50), (255, 0, 0))  # (w, h)
    array, ratio, pad = letterbox(image, 64)
    assert array.shape == (3, 64, 64) and array.dtype == np.float32
    assert ratio == pytest.approx(0.64) and pad == (0, 16)  # 100x50 -> 64x32, 16 rows each side
    assert np.allclose(array[:, :16], GREY) and np.allclose(array[:, 48:], GREY)
    assert np.allclose(array[:, 16:48], np.array([1.0, 0.0, 0.0])[:, None, None])


def test_letterbox_odd_padding_follows_ultralytics_rounding() -> None:
    # 100x45 -> 64x29: 35 rows of padding, 17 on top and 18 below (round(17.5 -/+ 0.1))
    array, ratio, pad = letterbox(Image.new("RGB", (100, 45), (0, 0, 255)), 64)
    assert pad == (0, 17)
    assert np.allclose(array[2, 17:46], 1.0) and np.allclose(array[2, 46:], GREY)
    # a tall image pads left and right; an already-square one is untouched
    _, ratio, pad = letterbox(Image.new("RGB", (32, 128)), 64)
    assert (ratio, pad) == (0.5, (24, 0))
    _, ratio, pad = letterbox(Image.new("RGB", (64, 64)), 64)
    assert (ratio, pad) == (1.0, (0, 0))


def test_box_iou_and_nms() -> None:
    boxes = np.array([[0, 0, 10, 10], [1, 1, 11, 11], [20, 20, 30, 30]], dtype=np.float32)
    iou = box_iou(boxes, boxes)
    assert iou[0, 1] == pytest.approx(81 / 119) and iou[0, 2] == 0 and iou[1, 1] == 1
    scores = np.array([0.8, 0.9, 0.7])
    assert nms(boxes, scores, 0.5).tolist() == [1, 2]  # best first; box 0 overlaps box 1
    assert nms(boxes, scores, 0.7).tolist() == [1, 0, 2]  # 0.68 overlap is allowed
    assert nms(boxes[:0], scores[:0], 0.5).tolist() == []


def _raw(anchors: list[tuple[float, float, float, float, list[float]]]) -> np.ndarray:
    """(4 + nc, anchors) head output from (xc, yc, w, h, class scores) rows."""
    return np.array([[*xywh, *scores] for *xywh, scores in anchors], dtype=np.float32).T


def test_postprocess_rescales_to_original_pixels() -> None:
    raw = _raw(
        [
            (32, 40, 20, 10, [0.1, 0.9]),  # kept: class 1
            (33, 40, 20, 10, [0.0, 0.6]),  # same class, overlaps: suppressed
            (33, 40, 20, 10, [0.5, 0.0]),  # other class, same place: kept
            (10, 30, 4, 4, [0.1, 0.2]),  # under conf
        ]
    )
    # the 100x50 image of the letterbox test: ratio 0.64, pad (0, 16)
    found = postprocess_detections(raw[None], 0.64, (0, 16), (100, 50), conf=0.25, iou=0.5)
    assert [(d.class_id, d.score) for d in found] == [(1, pytest.approx(0.9)), (0, 0.5)]
    # letterbox xyxy (22, 35, 42, 45) -> ((x - 0) / 0.64, (y - 16) / 0.64)
    assert found[0].box == pytest.approx([34.375, 29.6875, 65.625, 45.3125])
    assert found[0].to_dict() == {
        "box": [34.38, 29.69, 65.62, 45.31],
        "score": pytest.approx(0.9),
        "class_id": 1,
    }
    named = postprocess_detections(raw, 0.64, (0, 16), (100, 50), max_det=1, labels=["a", "b"])
    assert [d.label for d in named] == ["b"]


def test_boxes_are_clipped_to_the_image() -> None:
    boxes = scale_boxes(np.array([[-10, 0, 80, 70]], dtype=np.float32), 0.5, (4, 0), (100, 50))
    assert boxes.tolist() == [[0, 0, 100, 50]]


def test_masks_follow_protos_padding_and_boxes() -> None:
    # 128x64 image at input 64: ratio 0.5, pad (0, 16); protos 16x16 (4 input px per cell)
    protos = -np.ones((1, 16, 16), dtype=np.float32)
    protos[0, 4:8, :] = 1.0  # input rows 16..32 = the top half of the original image
    boxes = np.array([[0, 0, 128, 64], [0, 0, 64, 64]], dtype=np.float32)
    crops = mask_crops(protos, np.ones((2, 1), np.float32), boxes, 0.5, (0, 16), (128, 64), 64)
    masks = paste_masks(crops, (128, 64))
    assert masks.shape == (2, 64, 128) and masks.dtype == bool
    assert masks[0, :28].all() and not masks[0, 36:].any()
    assert abs(int(masks[0].sum()) - 32 * 128) <= 4 * 128  # edge blur of one proto cell
    assert masks[1, :28, :64].all() and not masks[1, :, 64:].any()  # cropped to its box
    assert [window for window, _ in crops] == [(0, 0, 128, 64), (0, 0, 64, 64)]
    assert np.array_equal(crops[1][1], masks[1, :, :64])
    negative = paste_masks(
        mask_crops(protos, -np.ones((1, 1), np.float32), boxes[:1], 0.5, (0, 16), (128, 64), 64),
        (128, 64),
    )
    assert negative[0, 36:].all() and not negative[0, :28].any()


def test_segmentation_postprocess_attaches_masks() -> None:
    raw = _raw([(16, 16, 16, 16, [0.9])])
    raw = np.concatenate([raw, np.ones((1, 1), np.float32)])  # one mask coefficient
    protos = np.ones((1, 1, 16, 16), dtype=np.float32)
    (found,) = postprocess_detections(
        raw, 1.0, (0, 0), (64, 64), num_classes=1, protos=protos, input_size=64
    )
    assert found.mask is not None and found.mask.shape == (64, 64)
    assert found.mask[8:24, 8:24].all() and found.mask.sum() == 16 * 16
    assert found.to_dict()["mask"]["size"] == [64, 64]
    with pytest.raises(ValueError, match="input_size"):
        postprocess_detections(raw, 1.0, (0, 0), (64, 64), num_classes=1, protos=protos)


def test_mask_rle_is_column_major_and_starts_with_zeros() -> None:
    assert mask_to_rle(np.array([[0, 1], [1, 1]], bool)) == {"size": [2, 2], "counts": [1, 3]}
    assert mask_to_rle(np.array([[1, 0], [0, 0]], bool))["counts"] == [0, 1, 3]
    assert Detection([0, 0, 1, 1], 0.5, 0).to_dict()["class_id"] == 0
