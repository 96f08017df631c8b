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

from sparsify.errors import SparsifyError


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


def to_rgb(image: Image.Image) -> Image.Image:
    """`image` as 8-bit RGB; 16-bit images (PNG, TIFF) are scaled, not clipped.

    PIL's own convert("RGB") clips 16-bit values at 255, so a 16-bit photo turns almost
    white. Scaling keeps the high byte (v >> 8: 65535 -> 255, 32768 -> 128), as PIL does for
    16-bit RGB files and OpenCV (which Ultralytics trains with) for 16-bit PNGs, so training,
    calibration, evaluation and the deployed Pipeline all see the same pixels.
    """
    if image.mode.startswith("I;16") or image.mode == "I":
        # mode "I" (32-bit int) is how PIL reads some 16-bit files; clip to the 16-bit range
        values = np.clip(np.asarray(image, dtype=np.int64), 0, 65535) >> 8
        image = Image.fromarray(values.astype(np.uint8))  # 2-D uint8: mode "L"
    return image.convert("RGB")


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
        try:
            with Image.open(source) as opened:
                opened.load()
                image = opened.copy()
        except OSError as exc:
            # validation reads every image; this names the file when one changed since
            raise SparsifyError(
                f"cannot read image {source} ({type(exc).__name__}: {exc}); "
                "replace it with a valid image or delete it, then run again"
            ) from None
    return to_rgb(image)


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
