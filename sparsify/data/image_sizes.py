"""The sizes of a dataset's images, and whether `data.image_size` fits them.

`data.image_size` defaults to the family's size (224 for classifiers, 640 for YOLO) whatever
the images are: 8x8 digits upscaled to 224 cost ~49x the pixels of 32 for no information
(87 s against ~2 s a baseline epoch on one core). Validation reads the train images' headers,
reports min / median / max and warns, with the size that fits, when the configured one is
far larger than the images.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from typing import Any

from PIL import Image

log = logging.getLogger("sparsify")

SAMPLE = 2000  # headers read at most: enough for a median, cheap on a large set
CLASSIFIER_SIZE = 224  # the families' default data.image_size (conf/data/*.yaml)
YOLO_SIZE = 640
STRIDE = 32  # every family's input side is a multiple of 32 (YOLO's stride, CNN downsampling)


def read_sizes(paths: Sequence[str]) -> list[tuple[int, int]]:
    """(width, height) of up to SAMPLE images, evenly spread over `paths` (header only)."""
    step = max(1, math.ceil(len(paths) / SAMPLE))
    sizes = []
    for path in paths[::step]:
        try:
            with Image.open(path) as image:
                sizes.append(image.size)
        except Exception:  # noqa: BLE001, S112 - validation reports unreadable files itself
            continue
    return sizes


def size_stats(sizes: Sequence[tuple[int, int]]) -> dict[str, Any]:
    """{"images", "min", "median", "max"}: [width, height] each, by area; {} without sizes."""
    if not sizes:
        return {}
    ordered = sorted(sizes, key=lambda s: (s[0] * s[1], s))
    return {
        "images": len(ordered),
        "min": list(ordered[0]),
        "median": list(ordered[len(ordered) // 2]),
        "max": list(ordered[-1]),
    }


def fitting_size(stats: dict[str, Any], family_default: int) -> int:
    """The median image's longer side rounded up to a multiple of 32, at least 32, at most
    the family's default size."""
    side = max(stats["median"])
    return int(min(family_default, max(STRIDE, math.ceil(side / STRIDE) * STRIDE)))


def report_sizes(stats: dict[str, Any], configured: int, family_default: int) -> None:
    """Log the distribution; warn with the fix when `data.image_size` is over twice the size
    that fits the images (the compute grows with its square)."""
    if not stats:
        return
    log.info(
        "Image sizes (width x height, %d train images read): min %s, median %s, max %s",
        stats["images"],
        "x".join(map(str, stats["min"])),
        "x".join(map(str, stats["median"])),
        "x".join(map(str, stats["max"])),
    )
    fits = fitting_size(stats, family_default)
    if configured > 2 * fits:
        log.warning(
            "data.image_size=%d upscales images of %s (median) about %.0fx in pixels: set "
            "data.image_size=%d to train and run much faster at the same information",
            configured,
            "x".join(map(str, stats["median"])),
            (configured / fits) ** 2,
            fits,
        )
