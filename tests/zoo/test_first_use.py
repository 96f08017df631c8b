"""Sparse transfer builds a missing pruned tier on first use from a dense model, stores it in
the local zoo with its provenance, and reuses it; without a dense model the error says how to
build one (sparsify/zoo/first_use.py)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import sparsify
from sparsify.zoo import LocalZoo, sha256_path
from tests.conftest import TINY_RUN


@pytest.fixture(scope="module")
def dense_model(tiny_images: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A dense tinynet fine-tuned on the tiny images (a level 0.0 run: nothing pruned)."""
    run_dir = tmp_path_factory.mktemp("dense") / "run"
    result = sparsify.run(
        [f"data.path={tiny_images}", "optim_level=0.0", *TINY_RUN], run_dir=run_dir
    )
    assert result.status == "done", result.error
    return run_dir / "sparsify" / "model.pth"


def _transfer(tiny_run: list[str], zoo: Path, *extra: str) -> list[str]:
    return [*tiny_run, "experiment=sparse_transfer", f"zoo.dir={zoo}", "optim_level=0.5", *extra]


def test_a_dense_model_builds_the_tier_once_then_it_is_reused(
    dense_model: Path, tiny_run: list[str], tiny_images: Path, tmp_path: Path
) -> None:
    zoo = tmp_path / "zoo"
    first = sparsify.run(_transfer(tiny_run, zoo, f"model={dense_model}"))
    assert first.status == "done", first.error
    log = (first.run_dir / "run.log").read_text()
    assert "Building a foundation model, because model.path" in log
    assert "only 0.0 % sparse" in log and "training steps" in log
    fetched = first.outputs["fetch"]
    name = fetched["foundation_entry"]["name"]
    assert name.startswith("tinynet-medium-pruned75-")
    assert fetched["foundation_sparsity"] == pytest.approx(0.75, abs=0.01)
    assert fetched["foundation_sha256"] == fetched["foundation_entry"]["sha256"]
    # the zoo holds the whole entry (nothing half-built beside it) with its provenance
    assert sorted(p.name for p in zoo.iterdir()) == ["_build", name]
    entry = json.loads((zoo / name / "zoo.json").read_text())
    assert entry["tier"] == "medium" and entry["variant"] == "pruned_int8"
    provenance = entry["provenance"]
    assert provenance["source"]["sha256"] == sha256_path(dense_model)
    assert provenance["data"]["path"] == str(tiny_images)
    assert len(provenance["data"]["fingerprint"]) == 16
    assert provenance["recipe"]["name"] == "training_aware"
    assert "GMPruningModifier" in provenance["recipe_applied"]
    assert provenance["sparsity"] == pytest.approx(0.75, abs=0.01)
    assert provenance["date"] and provenance["steps"] > 0 and provenance["seconds"] > 0
    assert [e["name"] for e in LocalZoo(zoo).entries()] == [name]

    second = sparsify.run(_transfer(tiny_run, zoo, f"model={dense_model}"))
    assert second.status == "done", second.error
    log = (second.run_dir / "run.log").read_text()
    assert "Building a foundation model" not in log
    assert f"{name}, built here earlier" in log
    assert second.outputs["fetch"]["foundation_sha256"] == fetched["foundation_sha256"]
    assert json.loads((zoo / name / "zoo.json").read_text())["added"] == entry["added"]


def test_build_missing_false_stops_with_the_command(
    dense_model: Path, tiny_run: list[str], tmp_path: Path
) -> None:
    zoo = tmp_path / "zoo"
    result = sparsify.run(
        _transfer(tiny_run, zoo, f"model={dense_model}", "zoo.build_missing=false")
    )
    assert result.status == "failed"
    assert "zoo.build_missing is false" in result.error
    assert (
        "python scripts/build_zoo.py --use-case cv-classification --data "
        f"{tiny_run[0].split('=', 1)[1]} --experiment training_aware --tiers medium=0.75 "
        f"--weights {dense_model} --arch tinynet"
    ) in result.error
    assert (
        "sparsify zoo add RUN_DIR --name NAME --tier medium --variant pruned_int8" in result.error
    )
    assert not zoo.exists() or not any(zoo.iterdir())


def test_a_dense_level_transfers_the_model_as_given(
    dense_model: Path, tiny_run: list[str], tmp_path: Path
) -> None:
    """A dense level (largest/dense at 0.0) never builds: the model is transferred as given."""
    zoo = tmp_path / "zoo"
    overrides = [*_transfer(tiny_run, zoo, f"model={dense_model}"), "optim_level=0.0"]
    overrides += ["stages=[validate,fetch]"]
    result = sparsify.run(overrides)
    assert result.status == "done", result.error
    assert result.outputs["fetch"]["foundation_entry"]["source"] == "model.path"
    assert not zoo.exists()


def test_no_dense_model_names_the_commands_for_the_use_case(tmp_path: Path) -> None:
    """The original quickstart with nothing on this machine: no detection foundation, no
    dense detector to build one from (the catalog's SparseZoo stubs need the network)."""
    from sparsify.cli.legacy_run import main
    from tests.fixtures.yolo import make_yolo_dataset

    data = make_yolo_dataset(tmp_path / "boxes")
    argv = ["sparse-transfer", "--use-case", "cv-detection", "--data", str(data)]
    argv += ["--working-dir", str(tmp_path / "runs"), f"zoo.dir={tmp_path / 'zoo'}"]
    assert main(argv) == 1
    [run_dir] = (tmp_path / "runs").glob("*/*")
    error = (run_dir / "run.log").read_text()
    assert "No dense cv-detection model is on this machine to build the medium tier" in error
    assert "model=PATH (sparsify.run --model PATH)" in error
    assert (
        f"python scripts/build_zoo.py --use-case cv-detection --data {data} --experiment "
        "training_aware --tiers medium=0.75 --weights DENSE_CHECKPOINT --arch yolov8n"
    ) in error
    assert "sparsify zoo add RUN_DIR --name NAME --tier medium --variant pruned_int8" in error
