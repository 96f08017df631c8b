"""A transformers run's pruned model folder goes through the zoo like a file does."""

from __future__ import annotations

from pathlib import Path

import pytest
from omegaconf import DictConfig

import sparsify
from sparsify.zoo import add_run, resolve_foundation, sha256_path
from tests.fixtures.hf_models import make_tiny_bert
from tests.fixtures.text import make_text_classification

pytest.importorskip("transformers")

NLP_RUN = [
    "experiment.train.max_steps=4",
    "experiment.train.batch_size=4",
    "experiment.calibration_samples=4",
    "data.max_length=32",
    "data.batch_size=4",
    "stages=[validate,fetch,sparsify]",
]


@pytest.mark.slow
def test_a_pruned_model_folder(zoo_cfg: DictConfig, tmp_path: Path) -> None:
    data = make_text_classification(tmp_path / "data")
    model = make_tiny_bert(tmp_path / "bert", head="text-classification", labels=["neg", "pos"])
    result = sparsify.run(
        ["use_case=sentiment", f"data.path={data}", f"model={model}", "optim_level=1.0", *NLP_RUN],
        run_dir=tmp_path / "run",
    )
    assert result.status == "done", result.error
    pruned = result.run_dir / "sparsify" / "model.pth"
    assert pruned.is_dir()
    entry = add_run(result.run_dir, "tiny-bert-pruned", "smallest", Path(zoo_cfg.zoo.dir))
    assert entry["family"] == "transformers" and entry["artifact"] == "model.pth"
    assert entry["sparsity"] > 0.5 and entry["metric"] is None  # no benchmark stage ran
    assert entry["sha256"] == sha256_path(pruned)
    zoo_cfg.zoo.arch = str(entry["arch"])
    found = resolve_foundation(zoo_cfg, "nlp-sentiment_analysis", "smallest", "pruned_int8")
    assert found.path.is_dir() and (found.path / "config.json").is_file()
    target = tmp_path / "run2" / "fetch" / "model"
    assert found.copy_to(target) is True
    assert found.copy_to(target) is False
    assert sha256_path(target) == entry["sha256"]
    dense = add_run(result.run_dir, "tiny-bert-dense", "largest", tmp_path / "z2", "dense")
    assert dense["artifact"] == "model"  # the family's fetch artifact
