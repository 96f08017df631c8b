"""data.image_size: unset, the validate stage chooses it from the train images (and says so);
set, it is kept, with a warning and the fix when it is far larger than the images
(sparsify/data/image_sizes.py)."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

import sparsify
from sparsify.config import compose_config
from sparsify.data.image_folder import validate_image_folder
from sparsify.data.image_sizes import (
    fitting_size,
    report_sizes,
    settle_image_size,
    size_stats,
    smallest_that_runs,
)
from sparsify.data.yolo import validate_for_config
from sparsify.outputs import ValidateOutput
from tests.fixtures.images import make_image_folder
from tests.fixtures.yolo import make_yolo_dataset


def test_stats_and_the_size_that_fits() -> None:
    stats = size_stats([(28, 28), (8, 8), (30, 20), (640, 480)])
    assert stats == {"images": 4, "min": [8, 8], "median": [28, 28], "max": [640, 480]}
    assert fitting_size(stats, 224) == 32  # 28 rounded up to a multiple of 32
    assert fitting_size({"median": [40, 30]}, 224) == 64
    assert fitting_size({"median": [8, 8]}, 224) == 32  # at least 32
    assert fitting_size({"median": [500, 375]}, 224) == 224  # at most the family's default
    assert fitting_size({"median": [500, 375]}, 640) == 512
    assert fitting_size({"median": [64, 48]}, 640, 160) == 160  # YOLO's floor
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


def _validate(root: Path, tmp_path: Path, *overrides: str) -> tuple[ValidateOutput, str]:
    result = sparsify.run(
        [f"data.path={root}", "stages=[validate]", f"working_dir={tmp_path / 'runs'}", *overrides],
        run_dir=tmp_path / "run",
    )
    assert result.status == "done", result.error
    validated = result.output(ValidateOutput)
    assert validated is not None
    return validated, (result.run_dir / "run.log").read_text(encoding="utf-8")


def test_unset_size_is_chosen_from_the_images(tmp_path: Path) -> None:
    root = make_image_folder(tmp_path / "data", size=(28, 28), classes=("a", "b"))
    assert compose_config([]).data.image_size is None  # the default: unset
    validated, log = _validate(root, tmp_path)
    assert (
        "data.image_size=32 chosen from the images (median 28x28); set data.image_size to "
        "override" in log
    )
    assert "upscales" not in log
    # handed to the later stages (and to a rerun that skips validate) through the manifest
    assert validated.config_overrides == {"data.image_size": 32}
    assert validated.summary["image_sizes"]["median"] == [28, 28]


def test_a_set_size_is_kept_and_warned_about(tmp_path: Path) -> None:
    root = make_image_folder(tmp_path / "data", size=(8, 8), classes=("a", "b"))
    validated, log = _validate(root, tmp_path, "data.image_size=224")
    assert "data.image_size=224 upscales images of 8x8 (median)" in log
    assert "set data.image_size=32" in log
    assert "chosen from the images" not in log
    assert validated.config_overrides is None  # the user's value stands


def test_a_given_model_keeps_the_family_default(caplog: pytest.LogCaptureFixture) -> None:
    """A trained model's input size is unknown: not changed behind the user's back."""
    stats = size_stats([(28, 28)] * 3)
    cfg = compose_config(["model.path=/somewhere/resnet.pt"])
    with caplog.at_level(logging.INFO, logger="sparsify"):
        assert settle_image_size(cfg, stats) == 224
    text = caplog.text
    assert "data.image_size=224, the image_classifier default (model.path given" in text
    assert "set data.image_size=32" in text  # the warning with the fix
    cfg = compose_config(["data.resize_size=256"])
    assert settle_image_size(cfg, stats) == 224
    assert settle_image_size(compose_config([]), {}) == 224  # no image read


def test_the_arch_raises_the_size_it_needs() -> None:
    assert smallest_that_runs("resnet18", 32, 224) == 32
    assert smallest_that_runs("inception_v3", 32, 224) == 96  # its stem pools past 1x1 below
    assert smallest_that_runs("vit_b_16", 32, 224) == 224  # fixed to its position embeddings
    stats = size_stats([(28, 28)])
    assert settle_image_size(compose_config(["model.arch=inception_v3"]), stats) == 96


def test_text_runs_read_no_image_size() -> None:
    assert settle_image_size(compose_config(["use_case=ner"]), {}) is None


@pytest.mark.parametrize(("size", "chosen"), [((64, 48), 160), ((300, 200), 320)])
def test_yolo_size_from_the_images(
    tmp_path: Path, size: tuple[int, int], chosen: int, caplog: pytest.LogCaptureFixture
) -> None:
    root = make_yolo_dataset(tmp_path / "data", size=size)
    cfg = compose_config(["use_case=cv-detection"])
    summary, problems = validate_for_config(root, cfg)
    assert not problems and summary is not None
    with caplog.at_level(logging.INFO, logger="sparsify"):
        assert settle_image_size(cfg, summary["image_sizes"]) == chosen
    assert f"data.image_size={chosen} chosen from the images (median {size[0]}x{size[1]})" in (
        caplog.text
    )
    set_cfg = compose_config(["use_case=cv-detection", "data.image_size=640"])
    assert settle_image_size(set_cfg, summary["image_sizes"]) is None


@pytest.mark.slow
def test_cached_baseline_follows_the_size_run_with(tmp_path: Path) -> None:
    """The dense baseline's cache key reads the settled size: the chosen 32 and a given 32
    share one baseline, a given 64 trains its own."""
    root = make_image_folder(tmp_path / "data", size=(28, 28), classes=("a", "b"))
    tiny = ["model.arch=tinynet", "data.batch_size=8", "experiment.train.max_steps=2"]

    def fetch_log(name: str, *overrides: str) -> str:
        result = sparsify.run(
            [f"data.path={root}", "stages=[validate,fetch]", *tiny, *overrides],
            run_dir=tmp_path / name,
        )
        assert result.status == "done", result.error
        return (result.run_dir / "run.log").read_text(encoding="utf-8")

    assert "Using the cached dense baseline" not in fetch_log("chosen")
    assert "Using the cached dense baseline" in fetch_log("given", "data.image_size=32")
    assert "Using the cached dense baseline" not in fetch_log("other", "data.image_size=64")
