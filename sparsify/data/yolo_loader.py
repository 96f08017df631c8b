"""YOLO datasets handed to Ultralytics: the run-dir copy (per-file links) and sample lists."""

from __future__ import annotations

import logging
import os
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from sparsify.data.files import walk_files
from sparsify.data.yolo import IMAGE_EXTENSIONS
from sparsify.errors import SparsifyError

log = logging.getLogger("sparsify")


def _link_files(src: Path, dst: Path, extensions: frozenset[str]) -> None:
    """Mirror `src` into a real folder `dst` holding one symlink per file.

    Not one link to the folder: Ultralytics resolves split folders to their real path, so it
    would then look for labels and write its `.cache` next to the user's images.
    """
    if dst.is_symlink() or dst.is_file():
        dst.unlink()
    elif dst.exists():
        shutil.rmtree(dst)  # only links and folders built here; rmtree never follows links
    dst.mkdir(parents=True)
    made = {""}
    for rel, entry in walk_files(src):
        if os.path.splitext(rel)[1].lower() not in extensions:
            continue
        folder = os.path.dirname(rel)
        if folder not in made:
            (dst / folder).mkdir(parents=True, exist_ok=True)
            made.add(folder)
        os.symlink(os.path.abspath(entry.path), dst / rel)


def write_ultralytics_dataset(summary: dict[str, Any], out_dir: Path) -> Path:
    """Lay out `out_dir/images/{split}`, `out_dir/labels/{split}` and `data.yaml`; return it.

    Files are symlinked, not copied, and Ultralytics' label caches (`labels/{split}.cache`)
    and any JPEG repairs it makes land in `out_dir`, never in the user's folder.
    """
    out_dir = Path(out_dir).absolute()
    data: dict[str, Any] = {"path": str(out_dir)}  # absolute: Ultralytics reads a relative
    for split, image_dir in summary["image_dirs"].items():  # `path` under its datasets_dir
        _link_files(Path(image_dir), out_dir / "images" / split, IMAGE_EXTENSIONS)
        label_dir = summary["label_dirs"].get(split)
        if label_dir is not None:
            _link_files(Path(label_dir), out_dir / "labels" / split, frozenset({".txt"}))
        data[split] = f"images/{split}"
    data["names"] = dict(enumerate(summary["classes"]))
    path = out_dir / "data.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False, allow_unicode=True), encoding="utf-8")
    log.info("Wrote Ultralytics dataset %s (%s)", path, ", ".join(summary["image_dirs"]))
    return path


def yolo_samples(summary: dict[str, Any], split: str) -> list[tuple[Path, Path | None]]:
    """(image, label file or None for a background image) of `split`, sorted by path."""
    image_dir = summary["image_dirs"].get(split)
    if image_dir is None:
        raise SparsifyError(
            f"YOLO dataset {summary['root']} has no '{split}' split; "
            f"create {Path(summary['root']) / 'images' / split}"
        )
    label_dir = summary["label_dirs"].get(split)
    samples: list[tuple[Path, Path | None]] = []
    for rel, entry in walk_files(Path(image_dir)):
        stem, ext = os.path.splitext(rel)
        if ext.lower() not in IMAGE_EXTENSIONS:
            continue
        label = Path(label_dir) / f"{stem}.txt" if label_dir else None
        samples.append((Path(entry.path), label if label and label.is_file() else None))
    return samples


def calibration_images(summary: dict[str, Any], n: int, seed: int) -> list[Path]:
    """`n` train images chosen at random with `seed` (all if fewer), sorted."""
    images = [image for image, _ in yolo_samples(summary, "train")]
    rng = np.random.default_rng(seed)
    picked = rng.choice(len(images), size=min(n, len(images)), replace=False)
    return sorted(images[i] for i in picked)
