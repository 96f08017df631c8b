"""scripts/build_zoo.py builds tier models with the pipeline and registers them."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType

import pytest
from omegaconf import OmegaConf

from sparsify.config.schema import SparsifyConfig
from sparsify.errors import SparsifyError
from sparsify.zoo import resolve_foundation
from tests.conftest import TINY_RUN

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "build_zoo.py"


def load_script() -> ModuleType:
    spec = importlib.util.spec_from_file_location("build_zoo", SCRIPT)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_tier_arguments() -> None:
    build_zoo = load_script()
    assert build_zoo.parse_tiers("largest=0.6,smallest=0.9") == {"largest": 0.6, "smallest": 0.9}
    for bad in ("huge=0.5", "medium=1.5", "medium"):
        with pytest.raises(SparsifyError):
            build_zoo.parse_tiers(bad)


@pytest.mark.slow
def test_builds_and_registers_a_tier(
    finished_run: Path, tiny_images: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    build_zoo = load_script()
    zoo = tmp_path / "zoo"
    overrides = [o for o in TINY_RUN if not o.startswith("model.arch=")]
    args = ["--data", str(tiny_images), "--arch", "tinynet", "--tiers", "medium=0.5"]
    args += ["--weights", str(finished_run / "fetch" / "model.pth"), "--zoo-dir", str(zoo)]
    args += ["--working-dir", str(tmp_path / "runs"), "--", *overrides]
    assert build_zoo.main(args) == 0
    assert "tinynet-data-pruned50" in capsys.readouterr().out
    assert {p.name for p in zoo.iterdir()} == {"tinynet-data-pruned50", "tinynet-data-dense"}
    cfg = OmegaConf.structured(SparsifyConfig)
    cfg.zoo.dir = str(zoo)
    cfg.zoo.arch = "tinynet"
    model = resolve_foundation(cfg, "cv-classification", "medium", "pruned_int8")
    assert model.entry["name"] == "tinynet-data-pruned50"
    assert model.entry["sparsity"] == pytest.approx(0.5, abs=0.02)
    assert model.entry["run"]["experiment"] == "one_shot"
    dense = resolve_foundation(cfg, "cv-classification", "largest", "dense")
    assert dense.entry["name"] == "tinynet-data-dense" and dense.entry["sparsity"] == 0.0
