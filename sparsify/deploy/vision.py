"""Image tasks of a Pipeline: classification (softmax top-k) and YOLO detection/segmentation.

Detection runs `sparsify.deploy.detection`, the functions that measured the model's mAP.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from sparsify.deploy.detection import PAD_VALUE, Detection, letterbox, postprocess_detections
from sparsify.deploy.inputs import MAX_PIXELS, load_image
from sparsify.deploy.options import check_options, fraction, int_in
from sparsify.deploy.preprocess import ImagePreprocess, preprocess_image
from sparsify.deploy.results import Classification
from sparsify.deploy.text import softmax
from sparsify.errors import SparsifyError

BATCH = 8  # images per engine run


def top_k(probs: np.ndarray, labels: list[str], k: int) -> Classification | list[Classification]:
    """The best class (k=1) or the k best, most probable first."""
    order = np.argsort(-probs, kind="stable")[:k]
    names = labels if len(labels) == len(probs) else [str(i) for i in range(len(probs))]
    picks = [Classification(names[i], float(probs[i]), int(i)) for i in order]
    return picks[0] if k == 1 else picks


def _chunks(items: list[Any], size: int) -> list[list[Any]]:
    return [items[i : i + size] for i in range(0, len(items), size)]


class ImageClassificationTask:
    """Images -> Classification (or the top_k best as a list)."""

    def __init__(self, engine: Any, config: dict[str, Any], max_pixels: int = MAX_PIXELS) -> None:
        pre = {k: v for k, v in config["preprocessing"].items() if k != "type"}
        self.params = ImagePreprocess(**pre)
        self.engine = engine
        self.input_name = engine.input_names[0]
        self.labels = [str(x) for x in config.get("labels", [])]
        self.max_pixels = max_pixels

    def options(self) -> dict[str, Any]:
        return {"top_k": 1}

    def __call__(self, batch: list[Any], **options: Any) -> list[Any]:
        opts = check_options(options, self.options())
        k = int_in("top_k", opts["top_k"], 1, max(1, len(self.labels)))
        out: list[Any] = []
        for chunk in _chunks(batch, BATCH):
            # one decoded image alive at a time: a full-size RGB image can be 100s of MB
            arrays = np.stack(
                [preprocess_image(load_image(item, self.max_pixels), self.params) for item in chunk]
            )
            probs = softmax(self.engine.run({self.input_name: arrays})[0])
            out += [top_k(row, self.labels, k) for row in probs]
        return out


class YoloTask:
    """Images -> list of Detection per image (boxes in original pixels; masks for -seg)."""

    def __init__(self, engine: Any, config: dict[str, Any], max_pixels: int = MAX_PIXELS) -> None:
        pre, post = config["preprocessing"], config["postprocessing"]
        if pre.get("pad_value", PAD_VALUE) != PAD_VALUE or post.get("type") != "yolo_nms":
            raise SparsifyError(
                f"config.json asks for pre/post-processing this version cannot run: {pre}, {post}"
            )
        self.engine = engine
        self.input_name = engine.input_names[0]
        self.size = int(pre["image_size"])
        self.labels = [str(x) for x in config.get("labels", [])]
        self.num_classes = int(post.get("num_classes", len(self.labels)))
        self.masks = bool(post.get("masks", False))
        self.defaults = {
            "conf_threshold": float(post["conf_threshold"]),
            "iou_threshold": float(post["iou_threshold"]),
            "max_detections": int(post["max_detections"]),
        }
        self.max_pixels = max_pixels

    def options(self) -> dict[str, Any]:
        return dict(self.defaults)

    def __call__(self, batch: list[Any], **options: Any) -> list[list[Detection]]:
        opts = check_options(options, self.options())
        conf = fraction("conf_threshold", opts["conf_threshold"])
        iou = fraction("iou_threshold", opts["iou_threshold"])
        max_det = int_in("max_detections", opts["max_detections"], 1, 10_000)
        out: list[list[Detection]] = []
        for chunk in _chunks(batch, BATCH):
            boxed = [self._letterboxed(item) for item in chunk]
            outputs = self.engine.run({self.input_name: np.stack([b[0] for b in boxed])})
            if self.masks and len(outputs) < 2:
                raise SparsifyError("a segmentation model must output mask prototypes")
            for j, (_, ratio, pad, size) in enumerate(boxed):
                out.append(
                    postprocess_detections(
                        outputs[0][j],
                        ratio,
                        pad,
                        size,
                        conf=conf,
                        iou=iou,
                        max_det=max_det,
                        num_classes=self.num_classes,
                        protos=outputs[1][j] if self.masks else None,
                        input_size=self.size,
                        labels=self.labels or None,
                    )
                )
        return out

    def _letterboxed(self, item: Any) -> tuple[np.ndarray, float, tuple[int, int], tuple[int, int]]:
        """(letterboxed array, ratio, pad, original size): the decoded image is freed here,
        so one full-size image is alive at a time, not a chunk of them."""
        image = load_image(item, self.max_pixels)
        array, ratio, pad = letterbox(image, self.size)
        return array, ratio, pad, image.size
