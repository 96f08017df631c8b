"""Datasets broken one way each: image folders, YOLO detection and segmentation (text and
NPZ in cases_text.py); and the helpers every data case uses."""

from __future__ import annotations

import io
import os
import shutil
from collections.abc import Callable
from pathlib import Path

import numpy as np
from PIL import Image

from tests.hardening.harness import Call, Case, Sandbox, known_bug

# kind -> (asset, the overrides choosing its use case and format, the model asset or None)
KINDS: dict[str, tuple[str, list[str], str | None]] = {
    "ic": ("ic", ["use_case=cv-classification", "data=image_folder", "model.arch=tinynet"], None),
    "det": ("det", ["use_case=cv-detection", "data=yolo", "baseline.allow_scratch=true"], None),
    "seg": ("seg", ["use_case=cv-segmentation", "data=yolo", "baseline.allow_scratch=true"], None),
    "tc": ("tc", ["use_case=nlp-text_classification", "data=hf_text"], "bert"),
    "tc_json": ("tc_json", ["use_case=nlp-text_classification", "data=hf_text"], "bert"),
    "tc_jsonl": ("tc_jsonl", ["use_case=nlp-sentiment_analysis", "data=hf_text"], "bert"),
    "tok": ("tok", ["use_case=nlp-token_classification", "data=hf_text"], "bert"),
    "tok_json": ("tok_json", ["use_case=nlp-named_entity_recognition", "data=hf_text"], "bert"),
    "qa": ("qa", ["use_case=nlp-question_answering", "data=hf_text"], "bert"),
    "qa_jsonl": ("qa_jsonl", ["use_case=nlp-question_answering", "data=hf_text"], "bert"),
    "npz": ("npz", ["use_case=custom", "data=npz"], "tiny.onnx"),
}

# breaks the dataset at root (the sandbox for other assets); returns what must be named
Breaker = Callable[[Path, Sandbox], list[str]]


def validate_args(sb: Sandbox, kind: str, data: Path, model: bool = True) -> list[str]:
    """A validate-only `sparsify` call on `data` as dataset of `kind`, with a good model
    when the use case needs one (`model=False`: the caller gives model.path)."""
    _, overrides, asset = KINDS[kind]
    model_args = [f"model.path={sb.copy(asset)}"] if asset and model else []
    return [*overrides, f"data.path={data}", *model_args, *sb.validate_only()]


def data_case(kind: str, id: str, breaker: Breaker, about: str) -> Case:
    def build(sb: Sandbox) -> Call:
        root = sb.copy(KINDS[kind][0], "data")
        names = breaker(root, sb)
        return Call(validate_args(sb, kind, root), names)

    case_id = f"{kind}-{id}"
    return Case(case_id, "sparsify", build, about, known_bug(f"sparsify:{case_id}"))


# --- small file surgery ----------------------------------------------------------------------


def jpeg_bytes(size: tuple[int, int] = (32, 32)) -> bytes:
    buffer = io.BytesIO()
    pixels = np.random.default_rng(0).integers(0, 255, (size[1], size[0], 3), dtype=np.uint8)
    Image.fromarray(pixels).save(buffer, format="JPEG")
    return buffer.getvalue()


def write(path: Path, data: bytes | str) -> list[str]:
    """Replace (or create) `path` with `data`; the message must name the file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.is_symlink() or path.is_file():
        path.unlink()
    if isinstance(data, str):
        path.write_text(data, encoding="utf-8")
    else:
        path.write_bytes(data)
    return [str(path)]


def remove(path: Path) -> list[str]:
    """Delete `path`; the message must name it."""
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    else:
        path.unlink()
    return [str(path)]


def loop(path: Path) -> list[str]:
    """`ln -s name name` in place of `path`: a link to itself."""
    remove(path)
    os.symlink(path.name, path)
    return [str(path)]


def dangling(path: Path) -> list[str]:
    remove(path)
    os.symlink(path.parent / "gone.png", path)
    return [str(path)]


def replace_rows(path: Path, old: str, new: str, count: int = 1) -> list[str]:
    text = path.read_text(encoding="utf-8")
    assert old in text, (path, old)
    path.write_text(text.replace(old, new, count), encoding="utf-8")
    return [str(path)]


def other_kind(kind: str) -> Breaker:
    """The dataset replaced by one of another kind (a YOLO set given to cv-classification)."""

    def swap(root: Path, sb: Sandbox) -> list[str]:
        shutil.rmtree(root)
        shutil.copytree(sb.assets / KINDS[kind][0], root)
        return [str(root)]

    return swap


def empty_folder(root: Path, sb: Sandbox) -> list[str]:
    shutil.rmtree(root)
    root.mkdir()
    return [str(root / "train")]


def path_is_a_file(root: Path, sb: Sandbox) -> list[str]:
    shutil.rmtree(root)
    return write(root, "not a folder")


def one_level_down(root: Path, sb: Sandbox) -> list[str]:
    inner = root.with_name("flowers")
    shutil.move(root, inner)
    root.mkdir()
    shutil.move(inner, root / "flowers")
    return [str(root / "flowers")]


def empty_class(root: Path, sb: Sandbox) -> list[str]:
    shutil.rmtree(root / "train" / "dog")
    (root / "train" / "dog").mkdir()
    return [str(root / "train" / "dog")]


def images_without_classes(root: Path, sb: Sandbox) -> list[str]:
    shutil.rmtree(root / "train")
    write(root / "train" / "0.png", jpeg_bytes())
    return [str(root / "train")]


def val_class_not_in_train(root: Path, sb: Sandbox) -> list[str]:
    shutil.copytree(root / "val" / "dog", root / "val" / "bird")
    return ["bird"]


def one_file(name: str, data: bytes | str) -> Breaker:
    return lambda root, sb: write(root / name, data)


def gone(name: str, named: str | None = None) -> Breaker:
    """Delete `name` under the root; the message must name `named` (default: the path)."""

    def run(root: Path, sb: Sandbox) -> list[str]:
        path = remove(root / name if name else root)
        return [named] if named else path

    return run


IC: list[tuple[str, Breaker, str]] = [
    ("missing-folder", gone(""), "data.path does not exist"),
    ("path-is-a-file", path_is_a_file, "data.path is a file"),
    ("empty-folder", empty_folder, "no splits at all"),
    ("no-val-split", gone("val", "val"), "only a train split"),
    ("no-train-split", gone("train", "train"), "only a val split"),
    ("single-class", gone("train/dog", "cat"), "one class only: nothing to learn"),
    ("truncated-jpeg", one_file("train/cat/cut.jpg", jpeg_bytes()[:-200]), "a cut JPEG"),
    ("text-as-png", one_file("train/cat/0.png", "<html>oops</html>"), "not an image"),
    ("empty-png", one_file("train/dog/1.png", b""), "a zero-byte image"),
    (
        "png-header-only",
        one_file("val/cat/0.png", b"\x89PNG\r\n\x1a\n" + b"\0" * 40),
        "a PNG signature and nothing else",
    ),
    ("symlink-loop", lambda r, sb: loop(r / "train/cat/0.png"), "ln -s 0.png 0.png"),
    ("loop-class-folder", lambda r, sb: loop(r / "val/dog"), "a class folder linking to itself"),
    ("dangling-link", lambda r, sb: dangling(r / "train/dog/2.png"), "a link to nothing"),
    ("val-class-not-in-train", val_class_not_in_train, "val has a class train lacks"),
    ("empty-class", empty_class, "a class folder with no images"),
    ("images-without-classes", images_without_classes, "images right in train/"),
    ("one-level-down", one_level_down, "the dataset is one folder down"),
    ("yolo-layout", other_kind("det"), "a YOLO dataset under cv-classification"),
    ("text-layout", other_kind("tc"), "a text dataset under cv-classification"),
    ("npz-layout", other_kind("npz"), "an NPZ folder under cv-classification"),
]

CASES: list[Case] = [data_case("ic", id, b, about) for id, b, about in IC]

# --- YOLO detection and segmentation --------------------------------------------------------

LABEL = "labels/train/train_000.txt"
POLY = "annotations/train/train_000.txt"
DET: list[tuple[str, Breaker, str]] = [
    ("missing-folder", gone(""), "data.path does not exist"),
    ("no-classes-file", gone("classes.txt"), "no classes.txt / data.yaml"),
    ("empty-classes-file", one_file("classes.txt", ""), "classes.txt lists no class"),
    ("class-id-out-of-range", one_file(LABEL, "7 0.5 0.5 0.2 0.2\n"), "class 7 of 2"),
    ("negative-class-id", one_file(LABEL, "-1 0.5 0.5 0.2 0.2\n"), "class -1"),
    ("four-fields", one_file(LABEL, "0 0.5 0.5 0.2\n"), "a box line with 4 numbers"),
    ("not-a-number", one_file(LABEL, "0 0.5 abc 0.2 0.2\n"), "abc in a box line"),
    ("coords-out-of-range", one_file(LABEL, "0 1.7 0.5 0.2 0.2\n"), "x centre 1.7"),
    ("negative-size", one_file(LABEL, "1 0.5 0.5 -0.2 0.2\n"), "a negative width"),
    ("nan-coordinate", one_file(LABEL, "0 nan 0.5 0.2 0.2\n"), "nan in a box line"),
    ("binary-label", one_file(LABEL, b"\xff\xfe\x00\x01garbage"), "a label file that is not text"),
    (
        "orphan-label",
        one_file("labels/train/ghost.txt", "0 0.5 0.5 0.2 0.2\n"),
        "a label with no image",
    ),
    (
        "truncated-image",
        one_file("images/train/train_001.png", b"\x89PNG\r\n\x1a\n\0\0"),
        "a cut PNG",
    ),
    ("text-as-image", one_file("images/val/val_000.png", "hello"), "not an image"),
    ("empty-train", gone("images/train", "images/train"), "no train images"),
    ("no-val", gone("images/val", "val"), "no val split"),
    ("image-loop", lambda r, sb: loop(r / "images/train/train_000.png"), "a link to itself"),
    ("label-loop", lambda r, sb: loop(r / "labels/val/val_000.txt"), "a label linking to itself"),
    ("image-folder-layout", other_kind("ic"), "an image folder under cv-detection"),
    ("text-layout", other_kind("tok"), "a token dataset under cv-detection"),
]
SEG: list[tuple[str, Breaker, str]] = [
    ("odd-coordinates", one_file(POLY, "0 0.1 0.1 0.5 0.1 0.5\n"), "a polygon with 5 numbers"),
    ("two-points", one_file(POLY, "1 0.1 0.1 0.5 0.5\n"), "a polygon of 2 points"),
    ("class-out-of-range", one_file(POLY, "9 0.1 0.1 0.5 0.1 0.5 0.5\n"), "class 9 of 2"),
    ("coords-out-of-range", one_file(POLY, "0 0.1 0.1 1.5 0.1 0.5 0.5\n"), "x = 1.5"),
    ("not-a-number", one_file(POLY, "0 0.1 x 0.5 0.1 0.5 0.5\n"), "x in a polygon"),
    ("no-annotations", gone("annotations", "annotations"), "no polygons for segmentation"),
    (
        "classes-yaml-broken",
        lambda r, sb: gone("classes.txt")(r, sb) and write(r / "data.yaml", "names: [box, disc\n"),
        "an unreadable data.yaml",
    ),
    ("image-folder-layout", other_kind("ic"), "an image folder under cv-segmentation"),
]

SEG.append(("inf-coordinate", one_file(POLY, "0 0.1 0.1 inf 0.1 0.5 0.5\n"), "inf in a polygon"))
CASES += [data_case("det", id, b, about) for id, b, about in DET]
CASES += [data_case("seg", id, b, about) for id, b, about in SEG]
