"""Image pre-processing as plain data + numpy code.

The same function feeds training/calibration (via the torch dataset), evaluation of the
exported ONNX models, and the deployment Pipeline, so measured accuracy is deployed accuracy.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image


@dataclass(frozen=True)
class ImagePreprocess:
    image_size: int = 224
    resize_size: int | None = None  # shorter side before the center crop; None = image_size
    mean: list[float] = field(default_factory=lambda: [0.485, 0.456, 0.406])
    std: list[float] = field(default_factory=lambda: [0.229, 0.224, 0.225])

    @classmethod
    def from_config(cls, data_cfg: Any) -> ImagePreprocess:
        return cls(
            image_size=int(data_cfg.image_size),
            resize_size=int(data_cfg.resize_size) if data_cfg.resize_size else None,
            mean=[float(m) for m in data_cfg.mean],
            std=[float(s) for s in data_cfg.std],
        )

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def load_image(source: str | Path | Image.Image | np.ndarray) -> Image.Image:
    """An RGB PIL image from a path, a PIL image, or an HWC uint8 array."""
    if isinstance(source, Image.Image):
        image = source
    elif isinstance(source, np.ndarray):
        array = source
        if array.ndim == 2:
            array = np.stack([array] * 3, axis=-1)
        if array.dtype != np.uint8:
            array = np.clip(array, 0, 255).astype(np.uint8)
        image = Image.fromarray(array)
    else:
        with Image.open(source) as opened:
            opened.load()
            image = opened.copy()
    return image.convert("RGB")


def preprocess_image(image: Image.Image, params: ImagePreprocess) -> np.ndarray:
    """Resize the shorter side, center-crop, scale to 0..1, normalize: CHW float32."""
    resize = params.resize_size or params.image_size
    w, h = image.size
    scale = resize / min(w, h)
    new_w, new_h = max(resize, round(w * scale)), max(resize, round(h * scale))
    image = image.resize((new_w, new_h), Image.BILINEAR)
    crop = params.image_size
    left, top = (new_w - crop) // 2, (new_h - crop) // 2
    image = image.crop((left, top, left + crop, top + crop))
    array = np.asarray(image, dtype=np.float32) / 255.0
    array = (array - np.asarray(params.mean, dtype=np.float32)) / np.asarray(
        params.std, dtype=np.float32
    )
    return np.ascontiguousarray(array.transpose(2, 0, 1))
