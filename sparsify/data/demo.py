"""Built-in demo datasets, written once into the cache so runs work offline.

`digits` is scikit-learn's bundled 8x8 digits set (no download) as an image folder.
"""

from __future__ import annotations

import logging
import os
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from sparsify.fileio import temp_dir
from sparsify.registry import Registry

log = logging.getLogger(__name__)

COMPLETE_MARKER = ".complete"  # hidden, so the image-folder reader ignores it


@dataclass(frozen=True)
class DemoDataset:
    format: str  # a name in sparsify.data.DATA_FORMATS
    description: str
    build: Callable[[Path], None]  # writes the dataset into an empty folder


DEMO_DATASETS: Registry[DemoDataset] = Registry("demo dataset")


def _build_digits(out: Path) -> None:
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    digits = load_digits()
    indices = np.arange(len(digits.target))
    train, val = train_test_split(indices, test_size=0.2, stratify=digits.target, random_state=0)
    # 0..16 -> 0..255; upscaled so the usual conv stems (stride 2 + pooling) have room.
    pixels = np.clip(digits.images * (255.0 / 16.0), 0, 255).round().astype(np.uint8)
    for split, split_indices in (("train", train), ("val", val)):
        for label in range(10):
            (out / split / str(label)).mkdir(parents=True, exist_ok=True)
        for i in split_indices:
            image = Image.fromarray(pixels[i]).resize((32, 32), Image.BILINEAR)
            image.save(out / split / str(int(digits.target[i])) / f"{int(i)}.png")


DEMO_DATASETS.register(
    "digits",
    DemoDataset(
        format="image_folder",
        description="scikit-learn digits: 10 classes, 1437 train / 360 val, 32x32 grayscale",
        build=_build_digits,
    ),
)


def materialize_demo(name: str, cache_dir: Path) -> Path:
    """The folder of demo dataset `name` under `cache_dir`, written on first use.

    It is built in a temporary folder and moved into place with os.replace, so a crash or
    a concurrent run never leaves a half-written dataset behind.
    """
    demo = DEMO_DATASETS.get(name)  # unknown names raise SparsifyError listing the known ones
    name = DEMO_DATASETS.resolve(name) or name
    parent = Path(cache_dir) / "datasets"
    target = parent / name
    if (target / COMPLETE_MARKER).is_file():
        return target
    parent.mkdir(parents=True, exist_ok=True)
    log.info("Writing demo dataset <%s> to %s", name, target)
    tmp = temp_dir(parent, prefix=f".{name}-")  # the umask's mode, not 0700
    try:
        demo.build(tmp)
        (tmp / COMPLETE_MARKER).write_text(f"{demo.description}\n")
        if target.exists():
            # only an unfinished copy gets here (no marker): it is ours to replace
            shutil.rmtree(target, ignore_errors=True)
        try:
            os.replace(tmp, target)
        except OSError:
            # another process finished first; its copy is as good as ours
            if not (target / COMPLETE_MARKER).is_file():
                raise
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return target
