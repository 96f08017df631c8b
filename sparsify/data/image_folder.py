"""The image-folder format: `root/{train,val[,test]}/{CLASS}/{image}`.

Class indices are the sorted class folder names of the train split. Validation reads the
folder once, streaming, and never writes to it.
"""

from __future__ import annotations

import logging
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset

from sparsify.data.counts import log_class_counts
from sparsify.data.files import is_file, link_problem, visible_entries
from sparsify.data.image_check import check_image
from sparsify.data.image_sizes import read_sizes, size_stats
from sparsify.data.layouts import layout_problem
from sparsify.deploy.preprocess import ImagePreprocess, load_image, preprocess_image
from sparsify.errors import Problem, SparsifyError
from sparsify.progress import progress

IMAGE_EXTENSIONS = frozenset(
    {".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff", ".ppm"}
)
SPLITS = ("train", "val", "test")
SPLIT_ALIASES = {"train": ("train",), "val": ("val", "validation"), "test": ("test",)}
_EXTENSIONS_TEXT = ", ".join(sorted(IMAGE_EXTENSIONS))
_LAYOUT = "root/{train,val}/{CLASS}/{image}"
_SPLIT_NAMES = frozenset(name for names in SPLIT_ALIASES.values() for name in names)


@dataclass
class ImageFolderSummary:
    root: str
    classes: list[str]
    splits: dict[str, int] = field(default_factory=dict)  # split -> images
    class_counts: dict[str, dict[str, int]] = field(default_factory=dict)  # split -> class -> n
    image_sizes: dict[str, Any] = field(default_factory=dict)  # train: min/median/max [w, h]

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def is_image_file(name: str) -> bool:
    return os.path.splitext(name)[1].lower() in IMAGE_EXTENSIONS


def split_dir(root: Path, split: str) -> Path | None:
    """The folder holding `split` (`val` also finds `validation`), or None."""
    for name in SPLIT_ALIASES.get(split, (split,)):
        if (Path(root) / name).is_dir():
            return Path(root) / name
    return None


def _scan_split(folder: Path, check_images: bool, problems: list[Problem]) -> dict[str, int]:
    """Class -> readable image count for one split folder; problems are appended."""
    counts: dict[str, int] = {}
    for entry in visible_entries(folder):
        broken = link_problem(entry)
        if broken is not None:
            problems.append(broken)
            continue
        if not entry.is_dir():
            problems.append(
                Problem(
                    entry.path,
                    entry.name,
                    "file directly inside a split folder; images must sit in a class folder",
                    f"move it into {folder}/<CLASS>/ or out of the dataset",
                )
            )
            continue
        counts[entry.name] = _scan_class(Path(entry.path), check_images, problems)
    if not counts:
        problems.append(
            Problem(
                str(folder),
                folder.name,
                "split has no class folders",
                f"put images in one folder per class: {folder}/<CLASS>/<image>",
            )
        )
    return counts


def _scan_class(folder: Path, check_images: bool, problems: list[Problem]) -> int:
    count = 0
    seen_files = 0
    with os.scandir(folder) as it:  # streamed: a class folder may hold very many files
        for entry in it:
            if entry.name.startswith("."):
                continue
            broken = link_problem(entry)
            if broken is not None:
                problems.append(broken)
                seen_files += 1
                continue
            if entry.is_dir():
                problems.append(
                    Problem(
                        entry.path,
                        entry.name,
                        "nested folder inside a class folder; nested images are not read",
                        f"move its images up into {folder} or remove the folder",
                    )
                )
                continue
            seen_files += 1
            if not is_image_file(entry.name):
                problems.append(
                    Problem(
                        entry.path,
                        os.path.splitext(entry.name)[1] or entry.name,
                        "file with an unknown image extension",
                        f"convert it to one of {_EXTENSIONS_TEXT}, or remove it",
                    )
                )
                continue
            reason = check_image(entry.path) if check_images else None
            if reason is not None:
                problems.append(
                    Problem(
                        entry.path,
                        entry.name,
                        f"image {reason}",
                        "replace it with a valid image or delete it",
                    )
                )
                continue
            count += 1
    if seen_files == 0:
        problems.append(
            Problem(
                str(folder),
                folder.name,
                "class folder is empty",
                "add images of this class or remove the folder",
            )
        )
    return count


def validate_image_folder(
    root: Path, check_images: bool = True
) -> tuple[ImageFolderSummary | None, list[Problem]]:
    """Check layout, labels and every file; return the summary and ALL problems found.

    The summary is None only when the root or its train split is missing.
    """
    root = Path(root)
    problems: list[Problem] = []
    if not root.exists():
        fix = f"point data.path at a folder laid out as {_LAYOUT}"
        return None, [Problem(str(root), str(root), "dataset folder does not exist", fix)]
    if not root.is_dir():
        fix = f"point data.path at a folder (not a file) laid out as {_LAYOUT}"
        return None, [Problem(str(root), str(root), "dataset path is not a folder", fix)]

    if (root / "val").is_dir() and (root / "validation").is_dir():
        problems.append(
            Problem(
                str(root / "validation"),
                "validation",
                "both 'val' and 'validation' exist; only 'val' is used",
                "merge them into one 'val' folder",
            )
        )
    for entry in visible_entries(root):
        broken = link_problem(entry) if entry.name in _SPLIT_NAMES else None
        if broken is not None:  # a split folder link that loops reads as "missing"
            problems.append(broken)
    found = {split: split_dir(root, split) for split in SPLITS}
    if found["train"] is None:
        wrong_kind = None if problems else layout_problem(root, "image_folder")
        if wrong_kind is not None:  # the one problem that matters; the rest follow from it
            return None, [wrong_kind]
    for split, fix in (
        ("train", "create it with one folder per class: train/<CLASS>/<image>"),
        ("val", "create it with the same class folders as train (val/<CLASS>/<image>)"),
    ):
        if found[split] is None:
            problems.append(
                Problem(str(root / split), split, f"missing '{split}' split folder", fix)
            )

    class_counts: dict[str, dict[str, int]] = {}
    for split, folder in found.items():
        if folder is not None:
            class_counts[split] = _scan_split(folder, check_images, problems)

    if "train" not in class_counts:
        return None, problems
    classes = sorted(class_counts["train"])
    if len(classes) == 1:
        # worded as the text formats' single-label refusal: one class gives 100 % top-1
        train = found["train"]
        fix = f"add training images of at least one other class: {train}/<CLASS>/<image>"
        msg = "train has a single class; nothing to learn"
        problems.append(Problem(str(train), classes, msg, fix))
    for split, counts in class_counts.items():
        folder = found[split]
        assert folder is not None
        for name in sorted(set(counts) - set(classes)):
            problems.append(
                Problem(
                    str(folder / name),
                    name,
                    f"class is in '{folder.name}' but not in 'train', so it has no label",
                    f"add {root / 'train' / name} with training images, or remove the folder",
                )
            )
    summary = ImageFolderSummary(
        root=str(root),
        classes=classes,
        splits={split: sum(counts.values()) for split, counts in class_counts.items()},
        class_counts=class_counts,
    )
    if check_images and not problems:  # the headers of readable images only
        train = list_samples(root, "train", classes)
        summary.image_sizes = size_stats(read_sizes([str(p) for p, _ in train]))
    return summary, problems


def log_summary(summary: ImageFolderSummary, logger: logging.Logger) -> None:
    """Log split sizes and class counts; warn about imbalance and tiny splits."""
    logger.info(
        "Image folder %s: %d classes; %s",
        summary.root,
        len(summary.classes),
        ", ".join(f"{split}={n} images" for split, n in summary.splits.items()),
    )
    for split, counts in summary.class_counts.items():
        log_class_counts(logger, split, counts)
    train = summary.class_counts.get("train", {})
    if train:
        smallest, largest = min(train.values()), max(train.values())
        if smallest > 0 and largest > 5 * smallest:
            logger.warning(
                "Train classes are imbalanced: largest has %d images, smallest %d (>5x); "
                "accuracy may favour the large classes",
                largest,
                smallest,
            )
        tiny = sorted(c for c, n in train.items() if n < 5)
        if tiny:
            logger.warning(
                "Train classes with fewer than 5 images: %s; fine-tuning will be unreliable",
                ", ".join(tiny[:20]) + (" ..." if len(tiny) > 20 else ""),
            )
    if "val" in summary.splits and summary.splits["val"] < 10:
        logger.warning(
            "Validation split has only %d images; measured accuracy will be noisy",
            summary.splits["val"],
        )


def list_samples(root: Path, split: str, classes: list[str]) -> list[tuple[Path, int]]:
    """(image path, class index) for `split`, ordered by class index then file name."""
    folder = split_dir(Path(root), split)
    if folder is None:
        raise SparsifyError(
            f"image folder {root} has no '{split}' split; create {Path(root) / split}"
        )
    samples: list[tuple[Path, int]] = []
    for index, name in enumerate(classes):
        class_folder = folder / name
        if not class_folder.is_dir():
            continue
        samples += [
            (Path(e.path), index)
            for e in visible_entries(class_folder)
            if is_file(e) and is_image_file(e.name)
        ]
    return samples


class ImageFolderDataset(Dataset):
    """(CHW float tensor, label) through the shared `preprocess_image`."""

    def __init__(
        self, samples: list[tuple[Path, int]], params: ImagePreprocess, augment: bool = False
    ) -> None:
        self.samples = list(samples)
        self.params = params
        self.augment = augment

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        path, label = self.samples[index]
        image = load_image(path)
        # torch's RNG, not numpy's: DataLoader seeds it differently in every worker.
        if self.augment and torch.rand(()).item() < 0.5:
            image = image.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
        return torch.from_numpy(preprocess_image(image, self.params)), int(label)


def calibration_arrays(
    samples: list[tuple[Path, int]], params: ImagePreprocess, n: int, seed: int
) -> list[np.ndarray]:
    """`n` randomly chosen samples (all if fewer), preprocessed to CHW float32."""
    rng = np.random.default_rng(seed)
    picked = rng.choice(len(samples), size=min(n, len(samples)), replace=False)
    return [
        preprocess_image(load_image(samples[i][0]), params)
        for i in progress(picked, desc="calibration samples")
    ]
