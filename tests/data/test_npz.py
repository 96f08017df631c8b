from __future__ import annotations

import logging
import os
from pathlib import Path

import numpy as np
import pytest

from sparsify.config import compose_config
from sparsify.data.npz import load_npz_samples, validate_for_config, validate_npz_folder
from sparsify.errors import Problem, SparsifyError
from tests.fixtures.npz import make_npz_folder

TWO_INPUTS = {"input_ids": (16,), "pixel_values": (3, 8, 8)}


def keys(problems: list[Problem]) -> list[str]:
    return [p.key for p in problems]


def snapshot(root: Path) -> dict[str, tuple[int, int]]:
    return {e.name: (e.stat().st_mtime_ns, e.stat().st_size) for e in os.scandir(root)}


def test_valid_folder_summary(tmp_path: Path) -> None:
    root = make_npz_folder(tmp_path / "calib", n=5, inputs=TWO_INPUTS)
    (root / ".DS_Store").write_bytes(b"junk")
    summary, problems = validate_npz_folder(root)
    assert problems == []
    assert summary is not None and summary.files == 5
    assert summary.inputs == {
        "input_ids": {"dtype": "float32", "shape": [16]},
        "pixel_values": {"dtype": "float32", "shape": [3, 8, 8]},
    }
    as_dict = summary.to_dict()
    assert as_dict["classes"] == [] and as_dict["root"] == str(root)


def test_shapes_may_differ_within_a_rank(tmp_path: Path) -> None:
    root = make_npz_folder(tmp_path / "calib", n=2, inputs={"tokens": (12,)})
    np.savez(root / "sample_009.npz", tokens=np.zeros(30, dtype=np.float32))
    summary, problems = validate_npz_folder(root)
    assert problems == [] and summary is not None and summary.files == 3


def test_validate_for_config_logs(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    root = tmp_path / "calib"
    root.mkdir()
    np.savez(root / "0.npz", np.zeros((3, 4), dtype=np.float32))  # positional: arr_0
    cfg = compose_config(["use_case=my-custom-task", "experiment=one_shot"])
    with caplog.at_level(logging.INFO, logger="sparsify"):
        summary, problems = validate_for_config(root, cfg)
    assert problems == [] and summary is not None
    assert summary["inputs"] == {"arr_0": {"dtype": "float32", "shape": [3, 4]}}
    assert "1 samples" in caplog.text
    assert "Only 1 calibration samples" in caplog.text
    assert "look positional" in caplog.text


@pytest.mark.parametrize("target", ["missing", "file"])
def test_root_missing_or_file(tmp_path: Path, target: str) -> None:
    root = tmp_path / "nope"
    if target == "file":
        root.write_text("x")
    summary, problems = validate_npz_folder(root)
    assert summary is None and keys(problems) == [str(root)]


def test_empty_folder(tmp_path: Path) -> None:
    summary, problems = validate_npz_folder(tmp_path)
    assert summary is None
    assert keys(problems) == [str(tmp_path)] and "no .npz" in problems[0].message


def test_each_broken_variant_reported_together(tmp_path: Path) -> None:
    root = make_npz_folder(tmp_path / "calib", n=2, inputs=TWO_INPUTS)
    other_keys = root / "a_keys.npz"
    np.savez(other_keys, input_ids=np.zeros(16, np.float32), mask=np.zeros(16, np.float32))
    other_dtype = root / "b_dtype.npz"
    np.savez(
        other_dtype, input_ids=np.zeros(16, np.int64), pixel_values=np.zeros((3, 8, 8), np.float32)
    )
    batched = root / "c_batched.npz"
    np.savez(
        batched,
        input_ids=np.zeros(16, np.float32),
        pixel_values=np.zeros((1, 3, 8, 8), np.float32),
    )
    pickled = root / "d_pickled.npz"
    np.savez(pickled, input_ids=np.array([{"a": 1}], dtype=object))
    garbage = root / "e_garbage.npz"
    garbage.write_bytes(b"not a zip file")
    cut = root / "h_cut.npz"
    cut.write_bytes((root / "sample_000.npz").read_bytes()[:300])
    npy = root / "f_single.npz"
    with open(npy, "wb") as f:
        np.save(f, np.zeros(3))
    empty = root / "g_empty.npz"
    np.savez(empty)
    notes = root / "notes.txt"
    notes.write_text("hello")
    (root / "nested").mkdir()
    before = snapshot(root)

    summary, problems = validate_npz_folder(root)

    by_key = {p.key: p for p in problems}
    expected = {
        str(other_keys): "keys differ",
        f"{other_dtype}:input_ids": "int64",
        f"{batched}:pixel_values": "4 axes",
        str(pickled): "pickled",
        str(garbage): "no zip header",
        str(npy): "not an .npz archive",
        str(empty): "no arrays",
        str(notes): "not an .npz file",
        str(root / "nested"): "nested folder",
        str(cut): "cannot be read",
    }
    assert set(by_key) == set(expected), problems
    for key, text in expected.items():
        assert text in by_key[key].message, by_key[key]
        assert by_key[key].fix
    assert "missing pixel_values; extra mask" in by_key[str(other_keys)].message
    # compared with the most common signature, not with a_keys.npz, the first in name order
    assert "sample_000.npz" in by_key[str(other_keys)].message
    assert summary is not None and summary.inputs["input_ids"]["shape"] == [16]
    assert summary.files == 5
    assert snapshot(root) == before


def test_load_npz_samples_adds_batch_dimension(tmp_path: Path) -> None:
    root = make_npz_folder(tmp_path / "calib", n=6, inputs=TWO_INPUTS)
    samples = load_npz_samples(root)
    assert len(samples) == 6
    assert samples[0]["pixel_values"].shape == (1, 3, 8, 8)
    assert samples[0]["input_ids"].shape == (1, 16)
    assert samples[0]["pixel_values"].dtype == np.float32
    with np.load(root / "sample_000.npz") as first:
        np.testing.assert_array_equal(samples[0]["pixel_values"][0], first["pixel_values"])

    picked = load_npz_samples(root, n=3, seed=1)
    assert len(picked) == 3
    again = load_npz_samples(root, n=3, seed=1)
    for a, b in zip(picked, again, strict=True):
        np.testing.assert_array_equal(a["input_ids"], b["input_ids"])
    assert len(load_npz_samples(root, n=100)) == 6


def test_load_npz_samples_empty_folder(tmp_path: Path) -> None:
    with pytest.raises(SparsifyError, match="no .npz files"):
        load_npz_samples(tmp_path)
