"""Which known dataset layout a folder has, so a dataset of the wrong kind for the use case
gets one problem naming the use case that reads it, not the literal "no train folder".

Every format's "nothing found" path calls `layout_problem`; it looks only at the top of the
folder (and peeks into a few files), so it is cheap even for a large dataset.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from PIL import Image

from sparsify.data.files import is_dir, is_file, visible_entries
from sparsify.errors import Problem

_SPLITS = ("train", "val", "validation", "test")
_PEEK = 20  # entries looked at per folder when looking for images or label files

# what each data format expects, in the words of a fix
EXPECTED = {
    "image_folder": ("an image folder", "root/{train,val}/{CLASS}/{image}"),
    "yolo": ("a YOLO dataset", "classes.txt, images/{train,val}/, labels/{train,val}/*.txt"),
    "hf_text": ("a text dataset", "{train,val}.{csv,json,jsonl} in the dataset folder"),
    "npz": ("an NPZ folder", "a folder of .npz files, one sample each"),
}


@dataclass(frozen=True)
class Layout:
    format: str  # the data format that reads it (a DATA_FORMATS name)
    what: str  # "a YOLO detection dataset"
    evidence: tuple[str, ...]  # what gave it away: "classes.txt", "images/", ...
    use_case: str  # the use case to run it with, as the user writes it


def _is_image(name: str) -> bool:
    return os.path.splitext(name)[1].lower() in Image.registered_extensions()


def _entries(folder: Path) -> list[os.DirEntry[str]]:
    try:
        return visible_entries(folder)
    except OSError:
        return []


def _has_images(folder: Path) -> bool:
    return any(is_file(e) and _is_image(e.name) for e in _entries(folder)[:_PEEK])


def _yolo(root: Path, names: dict[str, os.DirEntry[str]]) -> Layout | None:
    marks = [n for n in ("classes.txt", "data.yaml", "dataset.yaml") if n in names]
    folders = [n for n in ("images", "labels", "annotations") if n in names and is_dir(names[n])]
    if "images" not in folders or not (marks or len(folders) > 1):
        # Roboflow exports: train/images/ + train/labels/ (and a data.yaml naming them)
        split = next((s for s in _SPLITS if s in names and is_dir(names[s])), None)
        if split is None or not all((root / split / n).is_dir() for n in ("images", "labels")):
            return None
        folders = [f"{split}/images", f"{split}/labels"]
        root = root / split
    evidence = (*marks, *(f + "/" for f in folders))
    if "annotations" in folders or _has_polygons(root / "labels"):
        return Layout("yolo", "a YOLO segmentation dataset", evidence, "cv-segmentation")
    return Layout("yolo", "a YOLO detection dataset", evidence, "cv-detection")


def _has_polygons(labels: Path) -> bool:
    """Whether the first label line found has more than a box's 5 values."""
    folders = [labels]
    while folders:
        for entry in _entries(folders.pop())[:_PEEK]:
            if is_dir(entry):
                folders.append(Path(entry.path))
            elif entry.name.endswith(".txt"):
                try:
                    with open(entry.path, encoding="utf-8", errors="replace") as f:
                        line = next((ln for ln in f if ln.strip()), "")
                except OSError:
                    continue
                if line:
                    return len(line.split()) > 5
    return False


def _image_folder(root: Path, names: dict[str, os.DirEntry[str]]) -> Layout | None:
    for split in _SPLITS:
        if split in names and is_dir(names[split]):
            classes = [e for e in _entries(Path(names[split].path)) if is_dir(e)]
            if any(_has_images(Path(c.path)) for c in classes[:_PEEK]):
                evidence = (f"{split}/<CLASS>/<image>",)
                return Layout("image_folder", "an image folder", evidence, "cv-classification")
    return None


def _text(root: Path) -> Layout | None:
    # imported here: the text readers are not needed unless the folder holds text files
    from sparsify.data.text import find_split_files, iter_records

    files, _ = find_split_files(root)
    if not files:
        return None
    evidence = tuple(path.name for path in files.values())
    first = next(iter_records(next(iter(files.values()))), (0, {}))[1]
    if "tokens" in first:
        use_case = "nlp-token_classification"
    elif "question" in first and "context" in first:
        use_case = "nlp-question_answering"
    else:
        use_case = "nlp-text_classification (or nlp-sentiment_analysis)"
    return Layout("hf_text", "a text dataset", evidence, use_case)


def _npz(names: dict[str, os.DirEntry[str]]) -> Layout | None:
    found = [n for n, e in names.items() if n.lower().endswith(".npz") and is_file(e)]
    if not found:
        return None
    evidence = (f"{len(found)} .npz files",)
    return Layout("npz", "an NPZ calibration folder", evidence, "<your own name> (one-shot only)")


def detect_layout(root: Path) -> Layout | None:
    """The known layout `root` has (YOLO, image folder, text files, NPZ), or None."""
    names = {e.name: e for e in _entries(Path(root))}
    return (
        _yolo(Path(root), names)
        or _image_folder(Path(root), names)
        or _text(Path(root))
        or _npz(names)
    )


def layout_problem(root: Path, fmt: str) -> Problem | None:
    """One problem for a dataset of another known kind than `fmt` (naming the use case that
    reads it) or one level down in a single subfolder; None when neither, so the caller
    reports what it did not find."""
    root = Path(root)
    what, layout = EXPECTED[fmt]
    found = detect_layout(root)
    if found is not None and found.format != fmt:
        message = f"this looks like {found.what} ({', '.join(found.evidence)}), not {what}"
        fix = f"use use_case={found.use_case} for it, or point data.path at {what} ({layout})"
        return Problem(str(root), str(root), message, fix)
    if found is None:
        folders = [e for e in _entries(root) if is_dir(e)]
        if len(folders) == 1:
            inner = detect_layout(Path(folders[0].path))
            if inner is not None and inner.format == fmt:
                message = f"the dataset is one folder down, in {folders[0].name}/"
                return Problem(str(root), str(root), message, f"set data.path={folders[0].path}")
    return None
