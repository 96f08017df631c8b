from __future__ import annotations

import io
import logging
import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import yaml
from PIL import Image

from sparsify.config import compose_config
from sparsify.data.yolo import MAX_LINE_PROBLEMS, validate_for_config, validate_yolo_dataset
from sparsify.data.yolo_loader import calibration_images, write_ultralytics_dataset, yolo_samples
from sparsify.errors import Problem, SparsifyError
from tests.fixtures.yolo import (
    HAS_ULTRALYTICS,
    find_font,
    make_yolo_dataset,
    offline_settings,
)

DETECT, SEGMENT = "object-detection", "instance-segmentation"


def keys(problems: list[Problem]) -> list[str]:
    return [p.key for p in problems]


def snapshot(root: Path) -> dict[str, tuple[int, int]]:
    """Relative path -> (mtime, size) of everything below `root`, links not followed."""
    out = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            st = os.lstat(os.path.join(dirpath, name))
            out[os.path.relpath(os.path.join(dirpath, name), root)] = (st.st_mtime_ns, st.st_size)
    return out


def label_lines(folder: Path) -> int:
    return sum(len(p.read_text().split("\n")) - 1 for p in folder.rglob("*.txt"))


@pytest.fixture
def detect(tmp_path: Path) -> Path:
    return make_yolo_dataset(tmp_path / "data", task=DETECT)


@pytest.mark.parametrize(
    ("task", "use_yaml"), [(DETECT, False), (SEGMENT, False), (DETECT, True), (SEGMENT, True)]
)
def test_valid_dataset_summary(tmp_path: Path, task: str, use_yaml: bool) -> None:
    root = make_yolo_dataset(tmp_path / "data", task=task, use_yaml=use_yaml)
    summary, problems = validate_yolo_dataset(root, task)
    assert problems == []
    assert summary is not None
    assert summary.classes == ["box", "disc"]
    assert summary.task == task
    assert summary.splits == {"train": 7, "val": 4}  # 6 + 3 labelled, one background each
    assert summary.background == {"train": 1, "val": 1}
    labels = "annotations" if task == SEGMENT else "labels"
    assert summary.label_dirs == {s: str(root / labels / s) for s in ("train", "val")}
    assert summary.image_dirs == {s: str(root / "images" / s) for s in ("train", "val")}
    for split in ("train", "val"):
        assert set(summary.instances[split]) == {"box", "disc"}
        assert sum(summary.instances[split].values()) == label_lines(root / labels / split)
    as_dict = summary.to_dict()
    assert as_dict["classes"] == ["box", "disc"] and as_dict["splits"]["train"] == 7


def test_validate_for_config_uses_task_and_logs(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    root = make_yolo_dataset(tmp_path / "data", task=SEGMENT)
    (root / "classes.txt").write_text("box\ndisc\nghost\n")  # a class nothing is labelled with
    with caplog.at_level(logging.INFO, logger="sparsify"):
        summary, problems = validate_for_config(root, compose_config(["use_case=cv-segmentation"]))
    assert problems == [] and summary is not None
    assert summary["task"] == SEGMENT and summary["instances"]["train"]["ghost"] == 0
    text = caplog.text
    assert "train=7 images (1 background)" in text
    assert "no instances in train: ghost" in text
    assert "Validation split has only 4 images" in text
    # detection reads labels/, not annotations/
    _, problems = validate_for_config(root, compose_config(["use_case=cv-detection"]))
    assert keys(problems) == [str(root / "images" / "train"), str(root / "images" / "val")]


def test_aliases_test_split_hidden_files_and_labels_for_segmentation(tmp_path: Path) -> None:
    root = make_yolo_dataset(tmp_path / "data", task=SEGMENT)
    (root / "annotations").rename(root / "labels")  # segmentation also reads labels/
    for kind in ("images", "labels"):
        (root / kind / "val").rename(root / kind / "validation")
        shutil.copytree(root / kind / "validation", root / kind / "test")
    (root / "images" / "train" / ".DS_Store").write_bytes(b"junk")
    (root / "labels" / "train" / ".hidden.txt").write_text("not a label")
    nested = root / "images" / "train" / "more"
    nested.mkdir()
    shutil.copy(root / "images" / "train" / "bg.png", nested / "bg2.png")

    summary, problems = validate_yolo_dataset(root, SEGMENT)
    assert problems == []
    assert summary is not None
    assert summary.splits == {"train": 8, "val": 4, "test": 4}
    assert summary.background["train"] == 2
    assert summary.image_dirs["val"] == str(root / "images" / "validation")
    assert summary.label_dirs["test"] == str(root / "labels" / "test")


@pytest.mark.parametrize("target", ["missing", "file"])
def test_root_missing_or_file(tmp_path: Path, target: str) -> None:
    root = tmp_path / "nope"
    if target == "file":
        root.write_text("x")
    summary, problems = validate_yolo_dataset(root, DETECT)
    assert summary is None
    assert keys(problems) == [str(root)] and problems[0].fix


def test_no_classes_and_empty_classes(detect: Path) -> None:
    (detect / "classes.txt").unlink()
    summary, problems = validate_yolo_dataset(detect, DETECT)
    assert summary is None
    assert keys(problems) == [str(detect / "classes.txt")]
    assert "data.yaml" in problems[0].fix

    (detect / "classes.txt").write_text("\n\n")
    summary, problems = validate_yolo_dataset(detect, DETECT)
    assert summary is None
    assert keys(problems) == [str(detect / "classes.txt")]
    assert "no class names" in problems[0].message


def test_missing_train_and_val_images(tmp_path: Path) -> None:
    root = tmp_path / "data"
    (root / "labels").mkdir(parents=True)
    (root / "classes.txt").write_text("a\n")
    summary, problems = validate_yolo_dataset(root, DETECT)
    assert summary is None
    assert keys(problems) == [str(root / "images" / "train"), str(root / "images" / "val")]


def test_unknown_task(detect: Path) -> None:
    _, problems = validate_yolo_dataset(detect, "image-classification")
    assert keys(problems) == ["use_case.task"]


def test_each_broken_variant_reported_together(detect: Path) -> None:
    labels, images = detect / "labels" / "train", detect / "images" / "train"
    corrupt = images / "train_000.png"
    corrupt.write_bytes(b"this is not a png")
    unknown = images / "notes.gif"
    shutil.copy(images / "bg.png", unknown)
    orphan = labels / "ghost.txt"
    orphan.write_text("0 0.5 0.5 0.1 0.1\n")
    bad = labels / "train_001.txt"
    bad.write_text(
        "0 0.5 0.5 0.2 0.2\n"  # fine
        "7 0.5 0.5 0.2 0.2\n"  # class out of range
        "x 0.5 0.5 0.2 0.2\n"  # class not an int
        "1 0.5 0.5 0.2\n"  # 4 values
        "1 1.5 0.5 0.2 0.2\n"  # outside 0..1
        "\n"  # blank lines are fine
        "1 0.5 0.5 0.0 0.2\n"  # zero width
        "1 1.005 -0.005 0.2 0.2\n"  # inside Ultralytics' tolerance
    )
    stray = labels / "train_002.json"
    stray.write_text("{}")
    tiny = detect / "images" / "val" / "tiny.png"
    Image.new("RGB", (8, 8)).save(tiny)
    before = snapshot(detect)

    summary, problems = validate_yolo_dataset(detect, DETECT)

    by_key = {p.key: p for p in problems}
    expected = {
        str(corrupt): "cannot be read",
        str(unknown): "unknown image extension",
        str(orphan): "has no image",
        f"{bad}:2": "out of range",
        f"{bad}:3": "not an integer",
        f"{bad}:4": "4 values, expected 5",
        f"{bad}:5": "outside 0..1",
        f"{bad}:7": "width and height",
        str(stray): "not a .txt",
        str(tiny): "8x8",
    }
    assert set(by_key) == set(expected), problems
    for key, text in expected.items():
        assert text in by_key[key].message, by_key[key]
        assert by_key[key].fix
    # the corrupt image's label is neither an orphan nor counted; the summary stays usable
    assert summary is not None and summary.splits["train"] == 6
    assert snapshot(detect) == before, "validation must not modify the user's folder"


def test_segmentation_polygon_problems(tmp_path: Path) -> None:
    root = make_yolo_dataset(tmp_path / "data", task=SEGMENT)
    bad = root / "annotations" / "val" / "val_000.txt"
    bad.write_text(
        "0 0.1 0.1 0.5 0.1 0.5 0.5\n"  # triangle: fine
        "0 0.1 0.1 0.5 0.1 0.5\n"  # odd count
        "1 0.5 0.5 0.2 0.2\n"  # a box: 2 points
    )
    _, problems = validate_yolo_dataset(root, SEGMENT)
    assert keys(problems) == [f"{bad}:2", f"{bad}:3"]
    assert "odd number" in problems[0].message
    assert "2 points" in problems[1].message and "cv-detection" in problems[1].fix


def test_many_bad_lines_are_capped_per_file(detect: Path) -> None:
    bad = detect / "labels" / "val" / "val_000.txt"
    bad.write_text("9 0.5 0.5 0.1 0.1\n" * 40)
    _, problems = validate_yolo_dataset(detect, DETECT)
    assert len(problems) == MAX_LINE_PROBLEMS + 1
    assert problems[-1].key == str(bad) and "35 more" in problems[-1].message


def test_missing_label_folder(detect: Path) -> None:
    shutil.rmtree(detect / "labels" / "val")
    _, problems = validate_yolo_dataset(detect, DETECT)
    assert keys(problems) == [str(detect / "images" / "val")]
    assert "no label folder" in problems[0].message


def test_yaml_variants(tmp_path: Path) -> None:
    root = make_yolo_dataset(tmp_path / "data", use_yaml=True)
    data_yaml = root / "data.yaml"
    moved = {"path": "/no/such/place", "train": "images/train", "validation": "images/val"}
    data_yaml.write_text(yaml.safe_dump({**moved, "names": ["box", "disc"]}))
    summary, problems = validate_yolo_dataset(root, DETECT)  # a moved dataset still validates
    assert problems == [] and summary is not None and summary.classes == ["box", "disc"]

    data_yaml.write_text(yaml.safe_dump({"train": "images/train", "names": {0: "a", 2: "b"}}))
    summary, problems = validate_yolo_dataset(root, DETECT)
    assert summary is None
    assert keys(problems) == [f"{data_yaml}:names", f"{data_yaml}:val"]

    data_yaml.write_text("train: [unclosed")
    _, problems = validate_yolo_dataset(root, DETECT)
    assert keys(problems) == [str(data_yaml)] and "parsed" in problems[0].message


def test_yaml_with_split_first_layout(tmp_path: Path) -> None:
    """Roboflow exports: {split}/images and {split}/labels, found through the YAML."""
    root = make_yolo_dataset(tmp_path / "data", use_yaml=True)
    for split in ("train", "val"):
        (root / split).mkdir()
        (root / "images" / split).rename(root / split / "images")
        (root / "labels" / split).rename(root / split / "labels")
    spec = {"train": "train/images", "val": "val/images", "names": ["box", "disc"]}
    (root / "data.yaml").write_text(yaml.safe_dump(spec))
    summary, problems = validate_yolo_dataset(root, DETECT)
    assert problems == [] and summary is not None
    assert summary.label_dirs["val"] == str(root / "val" / "labels")
    assert summary.background == {"train": 1, "val": 1}


def test_samples_and_calibration(detect: Path) -> None:
    summary, _ = validate_yolo_dataset(detect, DETECT)
    assert summary is not None
    as_dict = summary.to_dict()
    samples = yolo_samples(as_dict, "val")
    assert [image.name for image, _ in samples] == [
        "bg.png",
        "val_000.png",
        "val_001.png",
        "val_002.png",
    ]
    assert samples[0][1] is None
    assert samples[1][1] == detect / "labels" / "val" / "val_000.txt"
    picked = calibration_images(as_dict, 3, seed=0)
    assert len(picked) == 3 and picked == sorted(picked)
    assert picked == calibration_images(as_dict, 3, seed=0)
    assert len(calibration_images(as_dict, 100, seed=0)) == 7
    with pytest.raises(SparsifyError, match="test"):
        yolo_samples(as_dict, "test")


# ---------------------------------------------------------------- Ultralytics reads our layout


@pytest.fixture(scope="module")
def ultralytics_offline(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """Ultralytics with no network, no auto-install and its settings in a temp dir."""
    if find_font() is None:
        pytest.skip("no TTF font found (fc-list, matplotlib); Ultralytics would download Arial.ttf")
    if not HAS_ULTRALYTICS:  # checked without importing: the import must see our settings
        pytest.skip("ultralytics is not installed")
    with offline_settings(tmp_path_factory.mktemp("yolo_config")):
        yield


def _jpeg_bytes(seed: int = 0) -> bytes:
    buffer = io.BytesIO()
    pixels = np.random.default_rng(seed).integers(0, 255, (32, 32, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(buffer, format="JPEG")
    return buffer.getvalue()


def test_truncated_jpeg_is_a_problem(detect: Path) -> None:
    # PIL's verify() accepts it; Ultralytics would drop it as corrupt
    truncated = detect / "images" / "val" / "cut.jpg"
    truncated.write_bytes(_jpeg_bytes()[:-200])
    (detect / "images" / "val" / "tail.jpg").write_bytes(_jpeg_bytes() + b"\0\0")  # decodable
    _, problems = validate_yolo_dataset(detect, DETECT)
    assert keys(problems) == [str(truncated)] and "truncated" in problems[0].message


@pytest.mark.parametrize(("task", "ultra_task"), [(DETECT, "detect"), (SEGMENT, "segment")])
def test_ultralytics_dataset_stays_in_run_dir(
    tmp_path: Path, ultralytics_offline: None, task: str, ultra_task: str
) -> None:
    from ultralytics.data import YOLODataset
    from ultralytics.data.utils import check_det_dataset

    root = make_yolo_dataset(tmp_path / "user", task=task)
    labels = root / ("annotations" if task == SEGMENT else "labels")
    # bytes after the end marker: Ultralytics re-saves the image "to repair it"
    (root / "images" / "train" / "broken.jpg").write_bytes(_jpeg_bytes() + b"\0\0")
    shutil.copy(labels / "train" / "train_000.txt", labels / "train" / "broken.txt")
    summary, problems = validate_yolo_dataset(root, task)
    assert problems == [] and summary is not None
    before = snapshot(root)
    out = tmp_path / "run"

    data_yaml = write_ultralytics_dataset(summary.to_dict(), out)
    data_yaml = write_ultralytics_dataset(summary.to_dict(), out)  # re-running rebuilds it
    assert data_yaml == out / "data.yaml"
    written = yaml.safe_load(data_yaml.read_text())
    assert written == {
        "path": str(out),
        "train": "images/train",
        "val": "images/val",
        "names": {0: "box", 1: "disc"},
    }
    data = check_det_dataset(str(data_yaml))
    assert Path(data["train"]) == out / "images" / "train"  # not resolved into the user's folder
    for split, n_images, n_labelled in (("train", 8, 7), ("val", 4, 3)):
        dataset = YOLODataset(
            img_path=data[split], data=data, task=ultra_task, imgsz=64, augment=False
        )
        assert len(dataset) == n_images
        assert sum(len(lb["cls"]) > 0 for lb in dataset.labels) == n_labelled
        if task == SEGMENT:
            assert all(len(lb["segments"]) == len(lb["cls"]) for lb in dataset.labels)
        assert (out / "labels" / f"{split}.cache").is_file()
    # the repaired JPEG replaced our link, not the user's file
    assert not (out / "images" / "train" / "broken.jpg").is_symlink()
    assert (out / "images" / "train" / "train_000.png").is_symlink()
    assert snapshot(root) == before, "Ultralytics must not write to the user's folder"
    assert not list(root.rglob("*.cache"))
