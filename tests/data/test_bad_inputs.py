"""Datasets as users break them: each case is one problem naming the file and the fix."""

from __future__ import annotations

import io
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from sparsify.config import compose_config
from sparsify.data import DATA_FORMATS, image_folder, yolo
from sparsify.data.image_folder import validate_image_folder
from sparsify.data.npz import validate_npz_folder
from sparsify.data.text import validate_text_dataset
from sparsify.data.yolo import validate_yolo_dataset
from sparsify.deploy import inputs
from sparsify.deploy.preprocess import load_image
from sparsify.errors import Problem, SparsifyError
from tests.fixtures.images import make_image_folder
from tests.fixtures.npz import make_npz_folder
from tests.fixtures.text import classification_rows, make_token_classification, write_split
from tests.fixtures.yolo import make_yolo_dataset

TC = "text-classification"
DETECT = "object-detection"


def only(problems: list[Problem]) -> Problem:
    assert len(problems) == 1, problems
    return problems[0]


def jpeg_bytes() -> bytes:
    buffer = io.BytesIO()
    pixels = np.random.default_rng(0).integers(0, 255, (32, 32, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(buffer, format="JPEG")
    return buffer.getvalue()


# ---------------------------------------------------------------- symbolic link loops


def _loop(path: Path) -> Path:
    os.symlink(path.name, path)  # `ln -s loop.png loop.png`: a link to itself
    return path


def _validate(fmt: str, root: Path) -> list[Problem]:
    if fmt == "image_folder":
        return validate_image_folder(root)[1]
    if fmt == "yolo":
        return validate_yolo_dataset(root, DETECT)[1]
    if fmt == "hf_text":
        return validate_text_dataset(root, TC, {})[1]
    return validate_npz_folder(root)[1]


@pytest.mark.parametrize(
    ("fmt", "where"),
    [
        ("image_folder", "train/cat/loop.png"),
        ("image_folder", "val/loop"),  # where a class folder is expected
        ("image_folder", "train"),  # would read as "missing 'train' split"
        ("yolo", "images/train/loop.png"),
        ("yolo", "labels/val/loop.txt"),
        ("yolo", "classes.txt"),
        ("hf_text", "train.csv"),
        ("npz", "loop.npz"),
    ],
)
def test_symlink_loop_is_a_problem_naming_the_path(tmp_path: Path, fmt: str, where: str) -> None:
    root = tmp_path / "d"
    if fmt == "image_folder":
        make_image_folder(root)
    elif fmt == "yolo":
        make_yolo_dataset(root)
    elif fmt == "hf_text":
        write_split(root, "val", classification_rows(4), "csv")
    else:
        make_npz_folder(root)
    if (root / where).is_dir():
        shutil.rmtree(root / where)
    elif (root / where).exists():
        (root / where).unlink()
    loop = _loop(root / where)
    problems = _validate(fmt, root)
    problem = next(p for p in problems if p.key == str(loop))
    assert "symbolic link loop" in problem.message
    assert "delete it" in problem.fix and str(loop) in problem.fix


def test_yolo_folder_link_back_up_is_read_once(tmp_path: Path) -> None:
    root = make_yolo_dataset(tmp_path / "d")
    again = root / "images" / "train" / "again"
    os.symlink(".", again)  # `ln -s . again`: would list every image under again/again/...
    summary, problems = validate_yolo_dataset(root, DETECT)
    problem = only(problems)
    assert problem.key == str(again) and "already read" in problem.message
    assert summary is not None and summary.splits["train"] == 7  # 6 + 1 background, once


# ---------------------------------------------------------------- images


def test_truncated_jpeg_fails_image_folder_validation(tmp_path: Path) -> None:
    root = make_image_folder(tmp_path / "d")
    cut = root / "train" / "cat" / "cut.jpg"
    cut.write_bytes(jpeg_bytes()[:-200])
    with Image.open(cut) as image:
        image.verify()  # what validation ran before: it passes
    problem = only(validate_image_folder(root)[1])
    assert problem.key == str(cut) and "truncated" in problem.message
    assert "replace it" in problem.fix
    # one check for both image formats, not a copy per format
    assert image_folder.check_image is yolo.check_image


def test_an_image_broken_after_validation_names_the_file(tmp_path: Path) -> None:
    cut = tmp_path / "cut.jpg"
    cut.write_bytes(jpeg_bytes()[:-200])
    with pytest.raises(SparsifyError, match=f"cannot read image {cut} .*truncated.*replace it"):
        load_image(cut)


def test_single_class_image_folder_is_refused(tmp_path: Path) -> None:
    root = make_image_folder(tmp_path / "d", classes=("cat",))
    problem = only(validate_image_folder(root)[1])
    assert problem.key == str(root / "train") and problem.value == ["cat"]
    assert "single class; nothing to learn" in problem.message
    assert "at least one other class" in problem.fix


@pytest.mark.parametrize("suffix", [".png", ".tif"])
def test_16_bit_images_are_scaled_not_clipped(tmp_path: Path, suffix: str) -> None:
    values = np.array([[0, 255, 32768, 65535]] * 4, dtype=np.uint16)
    path = tmp_path / f"deep{suffix}"
    Image.fromarray(values).save(path)
    with Image.open(path) as opened:
        assert opened.mode == "I;16"  # a real 16-bit file, as cameras and scanners write
    expected = [0, 0, 128, 255]
    loaded = [
        load_image(path),  # training, calibration, evaluation
        inputs.load_image(path),  # the deployed Pipeline, from a path
        inputs.load_image(path.read_bytes()),  # ... and from uploaded bytes
    ]
    for image in loaded:
        array = np.asarray(image)
        assert image.mode == "RGB" and array[0, :, 0].tolist() == expected
        assert (array[..., 0] == array[..., 2]).all()


# ---------------------------------------------------------------- text files


def test_nul_bytes_in_a_csv_field_are_reported(tmp_path: Path) -> None:
    write_split(tmp_path, "val", classification_rows(4), "csv")
    train = tmp_path / "train.csv"
    train.write_text("text,label\ngood,pos\nba\0d,neg\nfine,pos\nawful,neg\n", encoding="utf-8")
    problem = only(validate_text_dataset(tmp_path, TC, {})[1])
    assert problem.key == f"{train}:3" and problem.value == "column 'text'"
    assert "row 3" in problem.message and "NUL" in problem.message
    assert "tr -d" in problem.fix
    assert "\0" not in str(problem)


@pytest.mark.parametrize(
    ("encoding", "name"),
    [
        ("utf-16", "UTF-16"),
        ("utf-16-le", "UTF-16LE"),
        ("utf-16-be", "UTF-16BE"),
        ("utf-32", "UTF-32"),
    ],
)
def test_wide_encodings_are_named_with_the_iconv_fix(
    tmp_path: Path, encoding: str, name: str
) -> None:
    write_split(tmp_path, "val", classification_rows(4), "csv")
    train = tmp_path / "train.csv"
    text = "text,label\n" + "".join(f"{r['text']},{r['label']}\n" for r in classification_rows(6))
    train.write_bytes(text.encode(encoding))
    # val's labels are not checked against a train file that could not be read
    problem = only(validate_text_dataset(tmp_path, TC, {})[1])
    assert problem.key == str(train) and problem.value == name
    assert f"the file is {name}" in problem.message
    assert f"iconv -f {name} -t UTF-8 train.csv" in problem.fix
    assert "latin1" not in problem.fix and "\0" not in str(problem)


def test_a_field_over_the_csv_limit_says_too_long(tmp_path: Path) -> None:
    write_split(tmp_path, "val", classification_rows(4), "csv")
    train = tmp_path / "train.csv"
    train.write_text(f"text,label\ngood,pos\n{'word ' * 30_000},neg\n", encoding="utf-8")
    problem = only(validate_text_dataset(tmp_path, TC, {})[1])
    assert problem.key == f"{train}:3" and "longer than 131072 characters" in problem.message
    assert ".jsonl" in problem.fix and "split the text" in problem.fix
    assert problem.fix != "fix the quoting"


# ---------------------------------------------------------------- a dataset of another kind


@pytest.mark.parametrize(
    ("fmt", "make", "words", "use_case"),
    [
        (
            "image_folder",
            "detect",
            "YOLO detection dataset (classes.txt, images/, labels/)",
            "cv-detection",
        ),
        ("image_folder", "segment", "YOLO segmentation dataset", "cv-segmentation"),
        ("image_folder", "text", "text dataset (train.csv, val.csv)", "nlp-text_classification"),
        ("image_folder", "npz", "NPZ calibration folder (4 .npz files)", "<your own name>"),
        ("yolo", "images", "image folder (train/<CLASS>/<image>)", "cv-classification"),
        ("yolo", "tokens", "text dataset", "nlp-token_classification"),
        ("hf_text", "detect", "YOLO detection dataset", "cv-detection"),
        ("npz", "images", "image folder", "cv-classification"),
    ],
)
def test_a_dataset_of_another_kind_names_its_use_case(
    tmp_path: Path, fmt: str, make: str, words: str, use_case: str
) -> None:
    root = tmp_path / "d"
    if make in ("detect", "segment"):
        task = DETECT if make == "detect" else "instance-segmentation"
        make_yolo_dataset(root, task)
    elif make == "text":
        write_split(root, "train", classification_rows(4), "csv")
        write_split(root, "val", classification_rows(4), "csv")
    elif make == "tokens":
        make_token_classification(root)
    elif make == "npz":
        make_npz_folder(root)
    else:
        make_image_folder(root)
    problem = only(_validate(fmt, root))
    assert problem.key == str(root) and words in problem.message
    assert f"use use_case={use_case}" in problem.fix


def test_use_case_ic_on_a_yolo_dataset_through_the_config(tmp_path: Path) -> None:
    root = make_yolo_dataset(tmp_path / "boxes")
    cfg = compose_config(["use_case=ic"])
    _, problems = DATA_FORMATS.get(str(cfg.data.format))(root, cfg)
    problem = only(problems)
    assert "this looks like a YOLO detection dataset" in problem.message
    assert "use_case=cv-detection" in problem.fix


def test_a_dataset_one_folder_down_says_where(tmp_path: Path) -> None:
    inner = make_image_folder(tmp_path / "download" / "flowers")
    problem = only(validate_image_folder(tmp_path / "download")[1])
    assert "one folder down, in flowers/" in problem.message
    assert problem.fix == f"set data.path={inner}"


def test_an_empty_folder_keeps_the_literal_problems(tmp_path: Path) -> None:
    root = tmp_path / "empty"
    root.mkdir()
    problems = validate_image_folder(root)[1]
    assert [p.key for p in problems] == [str(root / "train"), str(root / "val")]
