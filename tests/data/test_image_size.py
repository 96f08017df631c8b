"""Validation reports the image sizes and warns, with the fix, when data.image_size is far
larger than the images (sparsify/data/image_sizes.py)."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

import sparsify
from sparsify.data.image_folder import validate_image_folder
from sparsify.data.image_sizes import fitting_size, report_sizes, size_stats
from sparsify.outputs import ValidateOutput
from tests.fixtures.images import make_image_folder


def test_stats_and_the_size_that_fits() -> None:
    stats = size_stats([(28, 28), (8, 8), (30, 20), (640, 480)])
    assert stats == {"images": 4, "min": [8, 8], "median": [28, 28], "max": [640, 480]}
    assert fitting_size(stats, 224) == 32  # 28 rounded up to a multiple of 32
    assert fitting_size({"median": [40, 30]}, 224) == 64
    assert fitting_size({"median": [8, 8]}, 224) == 32  # at least 32
    assert fitting_size({"median": [500, 375]}, 224) == 224  # at most the family's default
    assert fitting_size({"median": [500, 375]}, 640) == 512
    assert size_stats([]) == {}


def test_warns_only_when_far_too_large(caplog: pytest.LogCaptureFixture) -> None:
    stats = size_stats([(8, 8)] * 5)
    with caplog.at_level(logging.INFO, logger="sparsify"):
        report_sizes(stats, 64, 224)  # 2x the fitting 32: no warning
        report_sizes(stats, 224, 224)
    warnings = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert warnings == [
        "data.image_size=224 upscales images of 8x8 (median) about 49x in pixels: set "
        "data.image_size=32 to train and run much faster at the same information"
    ]
    assert "min 8x8, median 8x8, max 8x8" in caplog.records[0].getMessage()


def test_image_folder_summary_holds_train_sizes(tmp_path: Path) -> None:
    root = make_image_folder(tmp_path / "data", size=(12, 10), classes=("a", "b"))
    summary, problems = validate_image_folder(root)
    assert not problems and summary is not None
    assert summary.image_sizes == {
        "images": 8,
        "min": [12, 10],
        "median": [12, 10],
        "max": [12, 10],
    }


def test_validate_stage_warns_on_the_default_size(tmp_path: Path) -> None:
    root = make_image_folder(tmp_path / "data", size=(8, 8), classes=("a", "b"))
    result = sparsify.run(
        [f"data.path={root}", "stages=[validate]", f"working_dir={tmp_path / 'runs'}"],
        run_dir=tmp_path / "run",
    )
    assert result.status == "done", result.error
    log = (result.run_dir / "run.log").read_text(encoding="utf-8")
    assert "data.image_size=224 upscales images of 8x8 (median)" in log
    assert "set data.image_size=32" in log
    validated = result.output(ValidateOutput)
    assert validated is not None and validated.summary["image_sizes"]["median"] == [8, 8]
