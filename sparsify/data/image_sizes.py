"""The sizes of a dataset's images, and the `data.image_size` that fits them.

A fixed family size (224 for classifiers, 640 for YOLO) whatever the images are upscales
28x28 digits ~64x in pixels for no information: 87 s a baseline epoch on one core against a
4-minute whole run at 32. So `data.image_size` defaults to null, and the validate stage reads
the train images' headers, logs min / median / max, and settles it once (`settle_image_size`):

- set by the user: kept as given; a warning with the fix when it is far larger than the images.
- unset, the dense model made here on the data (no `model.path`): the median image's longer
  side rounded up to a multiple of 32, within the family's range (classifiers 32..224, YOLO
  160..640: a detector's stride-8 level needs objects of ~10+ px), raised to the smallest size
  the classifier's architecture runs at (inception_v3 96, ViT 224). Pretrained weights (cached
  torchvision ImageNet weights, a zoo foundation) are fine-tuned at that size too: on images
  that small a few points may be lost against 224, which `data.image_size=224` buys back at
  ~49x the compute.
- unset with `model.path` (or `data.resize_size`) given: the family's default size, since that
  model was trained at a size the run cannot see; warned about as a set value is.

The value is handed to the later stages as the validate stage's `config_overrides` (recorded in
the manifest, applied on a rerun that skips validate), so training, export, the cached
baseline's key and the deployment's config.json all read the same size.
"""

from __future__ import annotations

import logging
import math
import warnings
from collections.abc import Sequence
from typing import Any

from PIL import Image

log = logging.getLogger("sparsify")

SAMPLE = 2000  # headers read at most: enough for a median, cheap on a large set
CLASSIFIER_SIZE = 224  # the families' sizes when the images cannot choose (model.path given)
YOLO_SIZE = 640
STRIDE = 32  # every family's input side is a multiple of 32 (YOLO's stride, CNN downsampling)
# model family -> (smallest, largest) data.image_size chosen from the images
SIZE_RANGES: dict[str, tuple[int, int]] = {
    "image_classifier": (STRIDE, CLASSIFIER_SIZE),
    "yolo": (160, YOLO_SIZE),
}


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


def fitting_size(stats: dict[str, Any], largest: int, smallest: int = STRIDE) -> int:
    """The median image's longer side rounded up to a multiple of 32, within
    [smallest, largest]."""
    side = max(stats["median"])
    return int(min(largest, max(smallest, math.ceil(side / STRIDE) * STRIDE)))


def _wxh(size: Sequence[int]) -> str:
    return "x".join(map(str, size))


def report_sizes(
    stats: dict[str, Any], configured: int | None, largest: int, smallest: int = STRIDE
) -> None:
    """Log the distribution; warn with the fix when `configured` is over twice the size that
    fits the images (the compute grows with its square)."""
    if not stats:
        return
    log.info(
        "Image sizes (width x height, %d train images read): min %s, median %s, max %s",
        stats["images"],
        _wxh(stats["min"]),
        _wxh(stats["median"]),
        _wxh(stats["max"]),
    )
    fits = fitting_size(stats, largest, smallest)
    if configured is not None and configured > 2 * fits:
        log.warning(
            "data.image_size=%d upscales images of %s (median) about %.0fx in pixels: set "
            "data.image_size=%d to train and run much faster at the same information",
            configured,
            _wxh(stats["median"]),
            (configured / fits) ** 2,
            fits,
        )


def smallest_that_runs(arch: str, start: int, largest: int) -> int:
    """The first multiple of 32 from `start` below `largest` that the classifier `arch` takes
    (else `largest`, the size its weights are made for): forwards on the meta device, shapes
    only, no weights (ms). An arch that cannot be built there is taken to run at `start`."""
    import torch

    from sparsify.models.classifier.model import build_model

    with warnings.catch_warnings():  # torchvision's init notices (inception, googlenet)
        warnings.simplefilter("ignore")
        try:
            with torch.device("meta"):
                model = build_model(arch, 2).eval()
        except Exception:  # noqa: BLE001 - its constructor computes on tensors (regnets)
            return start
        for size in range(start, largest, STRIDE):
            try:
                with torch.no_grad():
                    model(torch.empty(1, 3, size, size, device="meta"))
            except Exception:  # noqa: BLE001, S112 - pooling past 1x1, ViT's fixed size, windows
                continue
            return size
    return largest


def settle_image_size(cfg: Any, stats: dict[str, Any]) -> int | None:
    """The data.image_size to run with when `cfg` leaves it unset (None: the config's own value
    stands, or the family reads no images). Logs the images' sizes and what was chosen and
    why, or warns, with the fix, about a size far larger than the images."""
    family = str(cfg.use_case.family)
    if family not in SIZE_RANGES:
        return None
    smallest, largest = SIZE_RANGES[family]
    configured = cfg.data.get("image_size")
    if configured is not None:  # the user's: never changed
        report_sizes(stats, int(configured), largest, smallest)
        return None
    given = [k for k in ("model.path", "data.resize_size") if _select(cfg, k) is not None]
    if given or not stats:
        report_sizes(stats, largest, largest, smallest)
        why = (
            f"{' and '.join(given)} given: the model's training size is not known"
            if given
            else "no train image could be read"
        )
        log.info(
            "data.image_size=%d, the %s default (%s); set data.image_size to change it",
            largest,
            family,
            why,
        )
        return largest
    report_sizes(stats, None, largest, smallest)
    fits = fitting_size(stats, largest, smallest)
    size, note = fits, ""
    if family == "image_classifier":
        arch = str(cfg.model.arch)
        size = smallest_that_runs(arch, fits, largest)
        note = f"; {arch} needs at least {size}" if size != fits else ""
    log.info(
        "data.image_size=%d chosen from the images (median %s%s); set data.image_size to override",
        size,
        _wxh(stats["median"]),
        note,
    )
    return size


def _select(cfg: Any, key: str) -> Any:
    from omegaconf import OmegaConf

    return OmegaConf.select(cfg, key) or None
