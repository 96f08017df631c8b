from __future__ import annotations

from pathlib import Path

import pytest
from PIL import Image

from sparsify.data.demo import COMPLETE_MARKER, DEMO_DATASETS, materialize_demo
from sparsify.data.image_folder import validate_image_folder
from sparsify.errors import SparsifyError


@pytest.fixture(scope="module")
def digits_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("cache")


def test_digits_materialize(digits_cache: Path) -> None:
    root = materialize_demo("digits", digits_cache)
    assert root == digits_cache / "datasets" / "digits"
    assert (root / COMPLETE_MARKER).is_file()
    summary, problems = validate_image_folder(root)
    assert problems == []
    assert summary is not None
    assert summary.classes == [str(i) for i in range(10)]
    assert summary.splits == {"train": 1437, "val": 360}
    assert set(summary.class_counts["val"]) == set(summary.classes)
    # stratified: every class holds about a fifth of its images in val
    for c in summary.classes:
        val, train = summary.class_counts["val"][c], summary.class_counts["train"][c]
        assert 0.15 < val / (val + train) < 0.25
    with Image.open(next((root / "train" / "3").iterdir())) as image:
        assert image.size == (32, 32)
    # no temporary build folders are left behind
    assert [p.name for p in (digits_cache / "datasets").iterdir()] == ["digits"]


def test_digits_second_call_does_no_work(digits_cache: Path) -> None:
    root = materialize_demo("digits", digits_cache)
    marker = root / COMPLETE_MARKER
    image = next((root / "val" / "0").iterdir())
    stamps = marker.stat().st_mtime_ns, image.stat().st_mtime_ns
    assert materialize_demo("Digits", digits_cache) == root
    assert (marker.stat().st_mtime_ns, image.stat().st_mtime_ns) == stamps


def test_half_written_copy_is_replaced(tmp_path: Path) -> None:
    stale = tmp_path / "datasets" / "digits" / "train" / "0"
    stale.mkdir(parents=True)
    (stale / "junk.png").write_bytes(b"partial")
    root = materialize_demo("digits", tmp_path)
    assert not (root / "train" / "0" / "junk.png").exists()
    assert (root / COMPLETE_MARKER).is_file()


def test_unknown_demo_lists_known_names(tmp_path: Path) -> None:
    with pytest.raises(SparsifyError, match="digits"):
        materialize_demo("mnist-but-bigger", tmp_path)
    assert not (tmp_path / "datasets").exists()
    assert "digits" in DEMO_DATASETS
