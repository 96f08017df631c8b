"""Shared fixtures: tiny data, tiny models, short benchmarks, outputs under tmp_path."""

from __future__ import annotations

import atexit
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.fixtures.images import make_image_folder

# Ultralytics fixes its settings file at first import, wherever in the suite that happens:
# before any test module is imported, so it is never ~/.config; removed when the suite ends
if "YOLO_CONFIG_DIR" not in os.environ:
    os.environ["YOLO_CONFIG_DIR"] = tempfile.mkdtemp(prefix="yolo_config")
    atexit.register(shutil.rmtree, os.environ["YOLO_CONFIG_DIR"], ignore_errors=True)


@pytest.fixture(autouse=True, scope="session")
def _isolated_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Keep demo data and cached baselines out of the user's ~/.cache."""
    cache = tmp_path_factory.mktemp("sparsify_cache")
    old = os.environ.get("SPARSIFY_CACHE")
    os.environ["SPARSIFY_CACHE"] = str(cache)
    yield cache
    if old is None:
        os.environ.pop("SPARSIFY_CACHE", None)
    else:
        os.environ["SPARSIFY_CACHE"] = old


@pytest.fixture(autouse=True, scope="session")
def _baseline_gate_off() -> Iterator[None]:
    """The suite's tiny models train for a few steps and learn nothing: the baseline gate
    (baseline.gate, default error) would stop every run. Its own tests set it explicitly."""
    old = os.environ.get("SPARSIFY_BASELINE_GATE")
    os.environ["SPARSIFY_BASELINE_GATE"] = "off"
    yield
    if old is None:
        os.environ.pop("SPARSIFY_BASELINE_GATE", None)
    else:
        os.environ["SPARSIFY_BASELINE_GATE"] = old


@pytest.fixture(autouse=True, scope="session")
def _configured_int8_only() -> Iterator[None]:
    """quantization.variants (default: the family's set) writes, times and scores several
    INT8 graphs per run and may package another: the suite keeps the configured one
    ([]) unless a test asks for variants (tests/stages/test_variants.py)."""
    old = os.environ.get("SPARSIFY_QUANT_VARIANTS")
    os.environ["SPARSIFY_QUANT_VARIANTS"] = "[]"
    yield
    if old is None:
        os.environ.pop("SPARSIFY_QUANT_VARIANTS", None)
    else:
        os.environ["SPARSIFY_QUANT_VARIANTS"] = old


@pytest.fixture(scope="session")
def tiny_images(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """3 classes, 8 train / 4 val images each, 20x16 PNGs."""
    root = tmp_path_factory.mktemp("images") / "data"
    make_image_folder(
        root, classes=("a", "b", "c"), per_class={"a": 8, "b": 8, "c": 8}, splits=("train",), seed=1
    )
    make_image_folder(root, classes=("a", "b", "c"), per_class=4, splits=("val",), seed=2)
    return root


TINY_RUN = [
    "model.arch=tinynet",
    "data.image_size=16",
    "data.resize_size=16",
    "data.batch_size=8",
    "experiment.train.batch_size=8",
    "experiment.train.max_steps=6",
    "experiment.calibration_samples=8",
    "benchmark.time_s=0.1",
    "benchmark.warmup_s=0.02",
    "benchmark.batch_sizes=[1,4]",
]


@pytest.fixture
def tiny_run(tiny_images: Path, tmp_path: Path) -> list[str]:
    """Overrides for a complete cv-classification one-shot run that takes seconds."""
    return [f"data.path={tiny_images}", f"working_dir={tmp_path / 'runs'}", *TINY_RUN]
