from __future__ import annotations

import logging
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from sparsify.config import compose_config
from sparsify.data import DATA_FORMATS
from sparsify.data.image_folder import (
    ImageFolderDataset,
    calibration_arrays,
    list_samples,
    log_summary,
    validate_image_folder,
)
from sparsify.deploy.preprocess import ImagePreprocess
from sparsify.errors import Problem, SparsifyError
from tests.fixtures.images import make_image_folder

PARAMS = ImagePreprocess(image_size=12, mean=[0.5, 0.5, 0.5], std=[0.25, 0.25, 0.25])


def keys(problems: list[Problem]) -> list[str]:
    return [p.key for p in problems]


def snapshot(root: Path) -> dict[str, tuple[int, int]]:
    out = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            st = os.stat(os.path.join(dirpath, name))
            out[os.path.relpath(os.path.join(dirpath, name), root)] = (st.st_mtime_ns, st.st_size)
    return out


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    return make_image_folder(tmp_path / "data", classes=("cat", "dog", "fox"), per_class=4)


def test_valid_folder_summary(folder: Path) -> None:
    summary, problems = validate_image_folder(folder)
    assert problems == []
    assert summary is not None
    assert summary.classes == ["cat", "dog", "fox"]
    assert summary.splits == {"train": 12, "val": 12}
    assert summary.class_counts["val"] == {"cat": 4, "dog": 4, "fox": 4}
    assert summary.to_dict()["root"] == str(folder)


def test_registry_validator_returns_dict(folder: Path) -> None:
    summary, problems = DATA_FORMATS.get("image-folder")(folder, compose_config([]))
    assert problems == [] and summary is not None and summary["splits"]["train"] == 12
    with pytest.raises(SparsifyError, match="image_folder"):
        DATA_FORMATS.get("parquet")


def test_validation_alias_and_hidden_files(tmp_path: Path) -> None:
    root = make_image_folder(tmp_path / "d", splits=("train", "validation", "test"))
    (root / "train" / "cat" / ".DS_Store").write_bytes(b"junk")
    (root / ".complete").write_text("")
    summary, problems = validate_image_folder(root)
    assert problems == []
    assert summary is not None and summary.splits == {"train": 8, "val": 8, "test": 8}
    assert len(list_samples(root, "val", summary.classes)) == 8


@pytest.mark.parametrize("target", ["missing", "file"])
def test_root_missing_or_file(tmp_path: Path, target: str) -> None:
    root = tmp_path / "nope"
    if target == "file":
        root.write_text("x")
    summary, problems = validate_image_folder(root)
    assert summary is None
    assert keys(problems) == [str(root)]
    assert problems[0].fix


def test_missing_train_and_val(tmp_path: Path) -> None:
    root = make_image_folder(tmp_path / "d", splits=("test",))
    summary, problems = validate_image_folder(root)
    assert summary is None
    assert keys(problems)[:2] == [str(root / "train"), str(root / "val")]


def test_missing_val(tmp_path: Path) -> None:
    root = make_image_folder(tmp_path / "d", splits=("train",))
    summary, problems = validate_image_folder(root)
    assert summary is not None and summary.classes == ["cat", "dog"]
    assert keys(problems) == [str(root / "val")]
    assert "val" in problems[0].message


def test_each_broken_variant_reported_together(folder: Path) -> None:
    empty = folder / "train" / "fox"
    for f in empty.iterdir():
        f.unlink()
    corrupt = folder / "train" / "cat" / "x.png"
    corrupt.write_bytes(b"this is not a png at all")
    unknown = folder / "val" / "dog" / "notes.txt"
    unknown.write_text("hello")
    only_val = folder / "val" / "wolf"
    extra = make_image_folder(folder.parent / "extra", classes=("wolf",), splits=("val",))
    shutil.move(str(extra / "val" / "wolf"), only_val)
    stray = folder / "train" / "readme.md"
    stray.write_text("stray")
    nested = folder / "train" / "dog" / "sub"
    nested.mkdir()
    before = snapshot(folder)

    summary, problems = validate_image_folder(folder)

    found = set(keys(problems))
    expected = {str(p) for p in (empty, corrupt, unknown, only_val, stray, nested)}
    assert expected <= found, problems
    assert len(problems) == len(expected)
    for p in problems:
        assert p.message and p.fix
    by_key = {p.key: p for p in problems}
    assert "empty" in by_key[str(empty)].message
    assert "cannot be read" in by_key[str(corrupt)].message
    assert by_key[str(unknown)].value == ".txt"
    assert "not in 'train'" in by_key[str(only_val)].message
    # corrupt images are not counted; the summary still describes the folder
    assert summary is not None and summary.class_counts["train"]["cat"] == 4
    assert summary.classes == ["cat", "dog", "fox"]
    assert snapshot(folder) == before, "validation must not modify the user's folder"


def test_check_images_false_skips_decoding(folder: Path) -> None:
    (folder / "train" / "cat" / "x.png").write_bytes(b"garbage")
    _, problems = validate_image_folder(folder, check_images=False)
    assert problems == []


def test_log_summary_warnings(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    root = make_image_folder(tmp_path / "d", per_class={"cat": 30, "dog": 3}, size=(4, 4))
    summary, _ = validate_image_folder(root)
    assert summary is not None
    with caplog.at_level(logging.INFO):
        log_summary(summary, logging.getLogger("test"))
    text = caplog.text
    assert "2 classes" in text and "train=33 images" in text
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert any("imbalanced" in w for w in warnings)
    assert any("fewer than 5" in w and "dog" in w for w in warnings)
    assert not any("Validation split" in w for w in warnings)  # val has 33 images


def test_log_summary_small_val(folder: Path, caplog: pytest.LogCaptureFixture) -> None:
    summary, _ = validate_image_folder(folder)
    assert summary is not None
    with caplog.at_level(logging.INFO):
        log_summary(summary, logging.getLogger("test"))
    assert "Validation split has only 12" not in caplog.text
    summary.splits["val"] = 6
    log_summary(summary, logging.getLogger("test"))
    assert "Validation split has only 6" in caplog.text


def test_list_samples_sorted_and_labelled(folder: Path) -> None:
    samples = list_samples(folder, "train", ["cat", "dog", "fox"])
    assert len(samples) == 12
    assert [label for _, label in samples] == [0] * 4 + [1] * 4 + [2] * 4
    assert samples == sorted(samples, key=lambda s: (s[1], s[0].name))
    assert samples == list_samples(folder, "train", ["cat", "dog", "fox"])
    with pytest.raises(SparsifyError, match="test"):
        list_samples(folder, "test", ["cat"])


@pytest.mark.parametrize("augment", [False, True])
def test_dataset_shapes_and_labels(folder: Path, augment: bool) -> None:
    samples = list_samples(folder, "val", ["cat", "dog", "fox"])
    dataset = ImageFolderDataset(samples, PARAMS, augment=augment)
    assert len(dataset) == 12
    image, label = dataset[5]
    assert isinstance(image, torch.Tensor) and image.dtype == torch.float32
    assert image.shape == (3, 12, 12)
    assert label == 1 and isinstance(label, int)
    batch, labels = next(iter(torch.utils.data.DataLoader(dataset, batch_size=12)))
    assert batch.shape == (12, 3, 12, 12)
    assert labels.tolist() == [0] * 4 + [1] * 4 + [2] * 4
    # class colour survives pre-processing: class k is brightest in channel k
    for k in range(3):
        assert batch[labels == k].mean(dim=(0, 2, 3)).argmax().item() == k


def test_augment_flips_horizontally(tmp_path: Path) -> None:
    # 24x12 -> 12x12 crops 6 columns off each side, so a flip mirrors the output exactly
    root = make_image_folder(tmp_path / "d", classes=("cat",), per_class=1, size=(24, 12))
    samples = list_samples(root, "train", ["cat"])
    plain = ImageFolderDataset(samples, PARAMS)[0][0]
    augmented = ImageFolderDataset(samples, PARAMS, augment=True)
    torch.manual_seed(0)
    outputs = [augmented[0][0] for _ in range(20)]
    flipped = [o for o in outputs if not torch.equal(o, plain)]
    assert 0 < len(flipped) < 20
    for o in flipped:
        assert torch.allclose(o, plain.flip(-1), atol=1e-5)


def test_calibration_arrays_count_and_determinism(folder: Path) -> None:
    samples = list_samples(folder, "train", ["cat", "dog", "fox"])
    arrays = calibration_arrays(samples, PARAMS, n=5, seed=3)
    assert len(arrays) == 5
    assert all(a.shape == (3, 12, 12) and a.dtype == np.float32 for a in arrays)
    again = calibration_arrays(samples, PARAMS, n=5, seed=3)
    assert all(np.array_equal(a, b) for a, b in zip(arrays, again, strict=True))
    other = calibration_arrays(samples, PARAMS, n=5, seed=4)
    assert not all(np.array_equal(a, b) for a, b in zip(arrays, other, strict=True))
    assert len(calibration_arrays(samples, PARAMS, n=100, seed=0)) == 12
