"""The YOLO format: `classes.txt` (or an Ultralytics data YAML), `images/{split}/`, and
`labels/{split}/*.txt` (boxes) or `annotations/{split}/*.txt` (polygons) for segmentation.

Validation reads every label file once, streaming, and never writes to the user's folder.
`write_ultralytics_dataset` builds the layout Ultralytics trains from inside the run dir.
"""

from __future__ import annotations

import logging
import math
import os
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import yaml

from sparsify.data.counts import log_class_counts
from sparsify.data.files import is_file, link_problem, visible_entries, walk_files
from sparsify.data.image_check import check_image
from sparsify.data.layouts import layout_problem
from sparsify.errors import Problem

log = logging.getLogger("sparsify")

# What both PIL (to verify) and Ultralytics (to train) read; Ultralytics silently skips others.
IMAGE_EXTENSIONS = frozenset({".bmp", ".jpeg", ".jpg", ".mpo", ".png", ".tif", ".tiff", ".webp"})
TASKS = {"object-detection": "detect", "instance-segmentation": "segment"}
SPLITS = ("train", "val", "test")
SPLIT_ALIASES = {"train": ("train",), "val": ("val", "validation"), "test": ("test",)}
# Ultralytics accepts coordinates up to 1% outside 0..1 (verify_image_label); so do we.
EPS = 0.01
MIN_IMAGE_SIDE = 10  # Ultralytics marks smaller images corrupt and drops them
MAX_LINE_PROBLEMS = 5  # per label file: a wholly wrong file would otherwise flood the report
_EXTENSIONS_TEXT = ", ".join(sorted(IMAGE_EXTENSIONS))
_LAYOUT = "classes.txt, images/{train,val}/, labels/{train,val}/*.txt"
_ROOT_NAMES = frozenset({"classes.txt", "images", "labels", "annotations"})


@dataclass
class YoloSummary:
    root: str
    task: str
    classes: list[str]
    splits: dict[str, int] = field(default_factory=dict)  # split -> readable images
    label_dirs: dict[str, str] = field(default_factory=dict)
    image_dirs: dict[str, str] = field(default_factory=dict)
    instances: dict[str, dict[str, int]] = field(default_factory=dict)  # split -> class -> n
    background: dict[str, int] = field(default_factory=dict)  # split -> images without objects
    image_sizes: dict[str, Any] = field(default_factory=dict)  # train: min/median/max [w, h]

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


# ---------------------------------------------------------------- classes and split folders


def _read_classes_txt(path: Path, problems: list[Problem]) -> list[str] | None:
    try:
        lines = path.read_text(encoding="utf-8-sig").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        fix = "save it as UTF-8 text with one class name per line"
        problems.append(Problem(str(path), path.name, f"cannot be read ({exc})", fix))
        return None
    while lines and not lines[-1].strip():
        lines.pop()
    names = [line.strip() for line in lines]
    return _check_names(names, str(path), problems)


def _check_names(names: list[str], key: str, problems: list[Problem]) -> list[str] | None:
    if not names:
        fix = "list one class name per line, in class-id order (line 1 = class 0)"
        problems.append(Problem(key, "", "no class names", fix))
        return None
    ok = True
    for i, name in enumerate(names):
        if not name:
            fix = "give every class id a name; remove blank lines between names"
            problems.append(Problem(f"{key}:{i + 1}", name, f"class {i} has an empty name", fix))
            ok = False
    for name in sorted(n for n, count in Counter(names).items() if n and count > 1):
        fix = "class names must be unique; rename or merge the duplicates"
        problems.append(Problem(key, name, "class name appears more than once", fix))
        ok = False
    return names if ok else None


def _dataset_yamls(root: Path) -> list[Path]:
    return [
        Path(e.path)
        for e in visible_entries(root)
        if is_file(e) and os.path.splitext(e.name)[1].lower() in {".yaml", ".yml"}
    ]


def _read_yaml(
    path: Path, root: Path, problems: list[Problem]
) -> tuple[list[str] | None, dict[str, Path]]:
    """Class names and split image folders from an Ultralytics data YAML."""
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8-sig"))
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
        fix = "fix the YAML syntax, or replace it with classes.txt"
        problems.append(Problem(str(path), path.name, f"cannot be parsed ({exc})", fix))
        return None, {}
    if not isinstance(data, dict):
        fix = "write `path`, `train`, `val` and `names` keys (Ultralytics data YAML)"
        problems.append(Problem(str(path), type(data).__name__, "not a mapping", fix))
        return None, {}

    names = _yaml_names(data, str(path), problems)
    base = root
    if data.get("path"):
        candidate = root / str(data["path"])  # an absolute `path` replaces root here
        if candidate.is_dir():
            base = candidate
        else:
            # datasets get moved; data.path (the folder the user pointed at) wins
            log.warning(
                "%s: path %r not found; reading splits relative to %s", path, data["path"], root
            )
    dirs: dict[str, Path] = {}
    for split in SPLITS:
        key = next((k for k in SPLIT_ALIASES[split] if data.get(k)), None)
        if key is None:
            if split != "test":
                fix = f"add `{split}: images/{split}` (relative to `path`)"
                problems.append(Problem(f"{path}:{split}", None, f"no '{split}' entry", fix))
            continue
        value = data[key]
        if not isinstance(value, str) or value.endswith(".txt"):
            fix = f"point `{key}` at one image folder, e.g. `{key}: images/{split}`"
            msg = "only a single image folder is supported (not lists or .txt image lists)"
            problems.append(Problem(f"{path}:{key}", value, msg, fix))
            continue
        folder = base / value
        if not folder.is_dir():
            fix = f"create {folder} with the {split} images, or fix `{key}`"
            problems.append(Problem(f"{path}:{key}", value, "image folder does not exist", fix))
            continue
        dirs[split] = folder
    return names, dirs


def _yaml_names(data: dict[str, Any], key: str, problems: list[Problem]) -> list[str] | None:
    names = data.get("names")
    nc = data.get("nc")
    if names is None and isinstance(nc, int) and nc > 0:
        return [f"class_{i}" for i in range(nc)]  # Ultralytics' own placeholder names
    if isinstance(names, dict):
        ids = sorted(names) if all(isinstance(k, int) for k in names) else None
        if ids != list(range(len(names))):
            fix = "number the names 0, 1, 2, ... without gaps, e.g. `names: {0: cat, 1: dog}`"
            problems.append(Problem(f"{key}:names", names, "class ids are not 0..n-1", fix))
            return None
        names = [names[i] for i in ids]
    if not isinstance(names, list):
        fix = "add `names:` as a list (`[cat, dog]`) or a mapping (`{0: cat, 1: dog}`)"
        problems.append(Problem(f"{key}:names", names, "missing or not a list/mapping", fix))
        return None
    if nc is not None and nc != len(names):
        fix = "make `nc` equal the number of names, or drop `nc`"
        problems.append(Problem(f"{key}:nc", nc, f"does not match {len(names)} names", fix))
    return _check_names([str(n).strip() for n in names], f"{key}:names", problems)


def _standard_image_dirs(root: Path, problems: list[Problem]) -> dict[str, Path]:
    images = root / "images"
    if (images / "val").is_dir() and (images / "validation").is_dir():
        fix = "merge them into one 'val' folder"
        msg = "both 'val' and 'validation' exist; only 'val' is used"
        problems.append(Problem(str(images / "validation"), "validation", msg, fix))
    dirs = {}
    for split in SPLITS:
        folder = next((images / n for n in SPLIT_ALIASES[split] if (images / n).is_dir()), None)
        if folder is not None:
            dirs[split] = folder
    return dirs


def _pick_yaml(root: Path) -> tuple[Path | None, list[Path]]:
    """The dataset YAML in `root` (one with a `train` key when there are several), and all."""
    yamls = _dataset_yamls(root)
    if len(yamls) <= 1:
        return (yamls[0] if yamls else None), yamls
    datasets = []
    for path in yamls:
        try:
            data = yaml.safe_load(path.read_text(encoding="utf-8-sig"))
        except (OSError, UnicodeDecodeError, yaml.YAMLError):
            continue
        if isinstance(data, dict) and "train" in data:
            datasets.append(path)
    return (datasets[0] if len(datasets) == 1 else None), yamls


def _classes_and_image_dirs(
    root: Path, problems: list[Problem]
) -> tuple[list[str] | None, dict[str, Path]]:
    """Class names and split image folders, from classes.txt + images/{split} or a data YAML."""
    dataset_yaml, yamls = _pick_yaml(root)
    if not (root / "classes.txt").is_file() and dataset_yaml is not None:
        return _read_yaml(dataset_yaml, root, problems)
    classes = None
    if (root / "classes.txt").is_file():
        classes = _read_classes_txt(root / "classes.txt", problems)
    elif yamls:
        fix = "keep one dataset YAML (with `train`, `val`, `names`) in the root, or add classes.txt"
        names = ", ".join(p.name for p in yamls)
        problems.append(Problem(str(root), names, "several YAML files; which is the dataset?", fix))
    else:
        fix = "add classes.txt (one class name per line, line 1 = class 0) or a data.yaml"
        problems.append(Problem(str(root / "classes.txt"), None, "no class names found", fix))
    image_dirs = _standard_image_dirs(root, problems)
    for split in ("train", "val"):
        if split not in image_dirs:
            fix = f"create {root / 'images' / split} with the {split} images"
            problems.append(Problem(str(root / "images" / split), split, "missing split", fix))
    return classes, image_dirs


def _label_dir(image_dir: Path, segment: bool) -> Path | None:
    """The label folder of `image_dir`: its last `images` component swapped for `labels`
    (Ultralytics' rule), or for `annotations` first when segmenting."""
    parts = image_dir.parts
    if "images" not in parts:
        return None
    i = len(parts) - 1 - parts[::-1].index("images")
    for name in ("annotations", "labels") if segment else ("labels",):
        candidate = Path(*parts[:i], name, *parts[i + 1 :])
        if candidate.is_dir():
            return candidate
    return None


# ---------------------------------------------------------------- images and label files


def _scan_images(folder: Path, problems: list[Problem]) -> tuple[dict[str, str], set[str]]:
    """(label stem -> image path for readable images, stems of unreadable ones)."""
    good: dict[str, str] = {}
    bad: set[str] = set()
    for rel, entry in walk_files(folder, problems):
        stem, ext = os.path.splitext(rel)
        if ext.lower() not in IMAGE_EXTENSIONS:
            fix = f"convert it to one of {_EXTENSIONS_TEXT}, or move it out of {folder}"
            problems.append(Problem(entry.path, ext or entry.name, "unknown image extension", fix))
            continue
        if stem in good or stem in bad:
            other = good.get(stem, stem)
            fix = "rename one of them: images pair with labels by file name without extension"
            msg = f"shares its label file {stem}.txt with {other}"
            problems.append(Problem(entry.path, entry.name, msg, fix))
            continue
        reason = check_image(entry.path, MIN_IMAGE_SIDE)
        if reason is not None:
            fix = "replace it with a valid image (Ultralytics drops images under 10x10 pixels)"
            fix += " or delete it"
            problems.append(Problem(entry.path, entry.name, f"image {reason}", fix))
            bad.add(stem)
            continue
        good[stem] = entry.path
    return good, bad


def _check_line(values: list[str], nc: int | None, segment: bool) -> tuple[str, str] | None:
    """(message, fix) for a bad label line, None for a good one."""
    layout = "class x1 y1 x2 y2 x3 y3 ..." if segment else "class x_center y_center width height"
    try:
        cls = int(values[0])
    except ValueError:
        return (
            f"class id {values[0]!r} is not an integer",
            f"start the line with a class id: {layout}",
        )
    if nc is not None and not 0 <= cls < nc:
        fix = "use ids 0..n-1 in classes.txt order, or add the missing class names"
        return f"class id {cls} is out of range for {nc} classes (0..{nc - 1})", fix
    try:
        coords = [float(v) for v in values[1:]]
    except ValueError:
        return "coordinates are not all numbers", f"write numbers only: {layout}"
    if not all(math.isfinite(c) for c in coords):  # nan compares false with every bound below
        return "coordinates are not all finite (nan / inf)", f"write numbers only: {layout}"
    if segment:
        if len(coords) % 2:
            return f"odd number of coordinates ({len(coords)})", f"write x y pairs: {layout}"
        if len(coords) < 6:
            fix = f"outline each object with 3+ points: {layout} (boxes belong in cv-detection)"
            return f"polygon has {len(coords) // 2} points, needs at least 3", fix
    elif len(values) != 5:
        hint = " (polygons belong to cv-segmentation)" if len(values) > 6 else ""
        return f"{len(values)} values, expected 5", f"write one box per line: {layout}{hint}"
    if any(c < -EPS or c > 1 + EPS for c in coords):
        fix = "divide x by the image width and y by its height: YOLO coordinates are 0..1"
        return "coordinates outside 0..1", fix
    if not segment and (coords[2] <= 0 or coords[3] <= 0):
        return "box width and height must be > 0", "drop empty boxes or fix their size"
    return None


def _check_label_file(
    path: str, nc: int | None, segment: bool, counts: list[int] | None, problems: list[Problem]
) -> int:
    """Objects in the file (bad lines left out); adds each line's class to `counts`."""
    try:
        with open(path, encoding="utf-8-sig") as f:
            text = f.read()
    except (OSError, UnicodeDecodeError) as exc:
        fix = "save it as UTF-8 text with one object per line"
        problems.append(Problem(path, os.path.basename(path), f"cannot be read ({exc})", fix))
        return 0
    objects = bad = 0
    for number, line in enumerate(text.splitlines(), 1):
        values = line.split()
        if not values:
            continue
        wrong = _check_line(values, nc, segment)
        if wrong is None:
            objects += 1
            if counts is not None:
                counts[int(values[0])] += 1
            continue
        bad += 1
        if bad <= MAX_LINE_PROBLEMS:
            problems.append(Problem(f"{path}:{number}", line.strip()[:80], *wrong))
    if bad > MAX_LINE_PROBLEMS:
        msg = f"{bad - MAX_LINE_PROBLEMS} more bad lines not listed ({bad} in all)"
        problems.append(
            Problem(path, bad, msg, "fix the lines above; the rest likely share the cause")
        )
    return objects


def _scan_split(
    split: str,
    image_dir: Path,
    label_dir: Path | None,
    classes: list[str] | None,
    segment: bool,
    problems: list[Problem],
) -> tuple[int, dict[str, int], int]:
    """(readable images, instances per class, background images) of one split."""
    images, bad_images = _scan_images(image_dir, problems)
    if not images and not bad_images:
        fix = f"put the {split} images in {image_dir}"
        problems.append(Problem(str(image_dir), image_dir.name, "image folder is empty", fix))
    nc = len(classes) if classes is not None else None
    counts = [0] * nc if nc is not None else None
    labelled = 0
    if label_dir is not None:
        for rel, entry in walk_files(label_dir, problems):
            stem, ext = os.path.splitext(rel)
            if ext.lower() != ".txt":
                fix = f"label files are .txt; move it out of {label_dir}"
                problems.append(Problem(entry.path, entry.name, "not a .txt label file", fix))
                continue
            has_image = stem in images
            if not has_image and stem not in bad_images:
                fix = (
                    f"add its image to {image_dir / os.path.dirname(rel)} or delete the label file"
                )
                msg = "label file has no image (any of " + _EXTENSIONS_TEXT + ")"
                problems.append(Problem(entry.path, entry.name, msg, fix))
            objects = _check_label_file(
                entry.path, nc, segment, counts if has_image else None, problems
            )
            labelled += bool(has_image and objects)
    per_class = dict(zip(classes or [], counts or [], strict=False))
    return len(images), per_class, len(images) - labelled


def validate_yolo_dataset(root: Path, task: str) -> tuple[YoloSummary | None, list[Problem]]:
    """Check layout, classes, every image and every label line; return ALL problems found.

    The summary is None when the root, the class names or the train images are missing.
    """
    root = Path(root)
    problems: list[Problem] = []
    if not root.is_dir():
        what = "is not a folder" if root.exists() else "does not exist"
        fix = f"point data.path at a folder laid out as {_LAYOUT}"
        return None, [Problem(str(root), str(root), f"dataset folder {what}", fix)]
    if task not in TASKS:
        fix = "use cv-detection or cv-segmentation with the yolo data format"
        problems.append(Problem("use_case.task", task, "the yolo format has no such task", fix))
    segment = task == "instance-segmentation"
    # classes.txt, data.yaml or images/ as a link that loops would read as "missing"
    links = [
        broken
        for entry in visible_entries(root)
        if entry.name in _ROOT_NAMES or os.path.splitext(entry.name)[1] in {".yaml", ".yml"}
        if (broken := link_problem(entry)) is not None
    ]
    problems += links

    classes, image_dirs = _classes_and_image_dirs(root, problems)
    if not image_dirs and not links:
        wrong_kind = layout_problem(root, "yolo")
        if wrong_kind is not None:  # the one problem that matters; the rest follow from it
            return None, [wrong_kind]
    summary = YoloSummary(root=str(root), task=task, classes=classes or [])
    for split, image_dir in image_dirs.items():
        label_dir = _label_dir(image_dir, segment)
        if label_dir is None:
            where = "annotations/ (or labels/)" if segment else "labels/"
            fix = f"put its label files in {where} beside images/, mirroring {image_dir.name}/"
            msg = f"no label folder for the {split} images"
            problems.append(Problem(str(image_dir), split, msg, fix))
        n, per_class, background = _scan_split(
            split, image_dir, label_dir, classes, segment, problems
        )
        summary.image_dirs[split] = str(image_dir)
        if label_dir is not None:
            summary.label_dirs[split] = str(label_dir)
        summary.splits[split] = n
        summary.instances[split] = per_class
        summary.background[split] = background
    if classes is None or "train" not in image_dirs:
        return None, problems
    return summary, problems


def log_summary(summary: YoloSummary, logger: logging.Logger) -> None:
    """Log split sizes and instances per class; warn about empty classes and tiny splits."""
    logger.info(
        "YOLO dataset %s (%s): %d classes; %s",
        summary.root,
        summary.task,
        len(summary.classes),
        ", ".join(
            f"{s}={n} images ({summary.background.get(s, 0)} background)"
            for s, n in summary.splits.items()
        ),
    )
    for split, counts in summary.instances.items():
        log_class_counts(logger, f"{split} instances", counts)
    empty = [c for c, n in summary.instances.get("train", {}).items() if n == 0]
    if empty:
        logger.warning(
            "Classes with no instances in train: %s; the model cannot learn them",
            ", ".join(empty[:20]) + (" ..." if len(empty) > 20 else ""),
        )
    if summary.splits.get("train", 0) < 20:
        logger.warning(
            "Train split has only %d images; fine-tuning will be unreliable",
            summary.splits.get("train", 0),
        )
    if "val" in summary.splits and summary.splits["val"] < 10:
        logger.warning(
            "Validation split has only %d images; measured mAP will be noisy", summary.splits["val"]
        )


def validate_for_config(root: Path, cfg: Any) -> tuple[dict[str, Any] | None, list[Problem]]:
    """The `yolo` entry of DATA_FORMATS: validate for `cfg.use_case.task` and log a summary."""
    from sparsify.data.image_sizes import read_sizes, size_stats
    from sparsify.data.yolo_loader import yolo_samples

    summary, problems = validate_yolo_dataset(Path(root), str(cfg.use_case.task))
    if summary is not None and not problems:
        log_summary(summary, log)
        train = yolo_samples(summary.to_dict(), "train")
        # the validate stage reports them and settles data.image_size (data/image_sizes.py)
        summary.image_sizes = size_stats(read_sizes([str(image) for image, _ in train]))
    return (summary.to_dict() if summary else None), problems


# ---------------------------------------------------------------- using a validated dataset
