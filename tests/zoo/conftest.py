"""A real tiny finished run (shared by the zoo tests) and a config pointing at a tmp zoo."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from omegaconf import DictConfig, OmegaConf

import sparsify
from sparsify.config.schema import SparsifyConfig
from tests.conftest import TINY_RUN


@pytest.fixture(scope="session")
def finished_run(tiny_images: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A one-shot run at optim level 1.0 (80 % sparse + INT8) of a tiny classifier."""
    runs = tmp_path_factory.mktemp("zoo_runs")
    result = sparsify.run(
        [f"data.path={tiny_images}", f"working_dir={runs}", "optim_level=1.0", *TINY_RUN]
    )
    assert result.status == "done", result.error
    return result.run_dir


@pytest.fixture
def zoo_cfg(tmp_path: Path) -> DictConfig:
    cfg = OmegaConf.structured(SparsifyConfig)
    cfg.cache_dir = str(tmp_path / "cache")
    cfg.zoo.dir = str(tmp_path / "zoo")
    return cfg


def write_catalog(path: Path, models: list[dict]) -> Path:
    path.write_text(json.dumps({"version": 1, "models": models}), encoding="utf-8")  # YAML ⊃ JSON
    return path


def entry(name: str, **changes: object) -> dict:
    """A valid catalog entry for cv-classification, with `changes` applied."""
    base = {
        "name": name,
        "use_cases": ["cv-classification"],
        "family": "image_classifier",
        "arch": "tinynet",
        "tier": "medium",
        "variant": "pruned_int8",
        "sparsity": 0.75,
        "quantization": "int8",
        "dataset": "tiny",
        "source": {"build": "python scripts/build_zoo.py"},
    }
    return {**base, **changes}
