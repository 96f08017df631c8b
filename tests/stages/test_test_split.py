"""A data set with a test split: the final dense-vs-result metrics are reported on it too,
and the table says which split each number is from; val stays what pruning looks at."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

import sparsify
from sparsify.benchmark.table import comparison, footnotes
from tests.fixtures.images import make_image_folder


@pytest.fixture
def with_test(tiny_images: Path, tmp_path: Path) -> Path:
    """The tiny image folder plus a 2-per-class test split (6 items: val has 12)."""
    root = tmp_path / "data"
    shutil.copytree(tiny_images, root)
    make_image_folder(root, classes=("a", "b", "c"), per_class=2, splits=("test",), seed=3)
    return root


def test_result_and_dense_scored_on_test(
    with_test: Path, tiny_run: list[str], tmp_path: Path
) -> None:
    overrides = [o for o in tiny_run if not o.startswith("data.path=")]
    result = sparsify.run([*overrides, f"data.path={with_test}"], run_dir=tmp_path / "run")
    assert result.status == "done", result.error
    bench = result.run_dir / "benchmark"
    report = json.loads((bench / "benchmark.json").read_text())
    test = report["test"]
    assert test["engine"] == "onnxruntime" and test["samples"] == 6
    for name in ("baseline", "sparsified"):
        assert test["models"][name]["samples"] == 6  # the test split, not val's 12
        assert 0.0 <= test["models"][name]["top1"] <= 100.0
        val = report["engines"]["onnxruntime"][name]["accuracy"]
        assert val["samples"] == 12
    metrics = json.loads((bench / "metrics.json").read_text())
    assert metrics["test"] == test["models"]
    rows = {r["model"]: r for r in report["table"] if r["engine"] == "onnxruntime"}
    assert rows["baseline"]["split"] == "val"
    assert rows["sparsified"]["test_accuracy"] == round(test["models"]["sparsified"]["top1"], 3)
    assert any("test split, 6 items" in note for note in report["footnotes"])
    log = (result.run_dir / "run.log").read_text(encoding="utf-8")
    assert "On the test split (6 items): dense top1" in log


def test_table_without_test_split_is_unchanged() -> None:
    model = {"accuracy": {"top1": 90.0, "samples": 400}, "benchmarks": []}
    report = {"engines": {"onnxruntime": {"baseline": model, "sparsified": model}}}
    rows = comparison(report, "top1")
    assert "split" not in rows[0] and "test_accuracy" not in rows[0]
    assert footnotes(report) == []
    report["test"] = {
        "engine": "onnxruntime",
        "samples": 50,
        "models": {"baseline": {"top1": 88.0, "samples": 50}, "sparsified": {"top1": 86.0}},
    }
    rows = comparison(report, "top1")
    assert [(r["split"], r["accuracy"], r["test_accuracy"]) for r in rows] == [
        ("val", 90.0, 88.0),
        ("val", 90.0, 86.0),
    ]
