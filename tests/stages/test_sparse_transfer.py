"""Sparse transfer from a user's pre-sparsified model: masks held, head re-initialised, QAT."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

import sparsify
from sparsify.algorithms.pruning import select_layers
from sparsify.benchmark.onnx_stats import onnx_weight_sparsity
from sparsify.models.classifier.model import load_model
from tests.fixtures.images import make_image_folder


@pytest.fixture(scope="module")
def sparse_foundation(tiny_images: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tinynet pruned to 80 % by a one-shot run (level 1.0) on the 3-class tiny images."""
    from tests.conftest import TINY_RUN

    run_dir = tmp_path_factory.mktemp("foundation") / "run"
    result = sparsify.run(
        [f"data.path={tiny_images}", "optim_level=1.0", *TINY_RUN], run_dir=run_dir
    )
    assert result.status == "done", result.error
    return run_dir / "sparsify" / "model.pth"


def _zeros(path: Path, classes: int) -> dict[str, torch.Tensor]:
    model = load_model(path, "tinynet", classes, new_head=True)
    return {n: m.weight == 0 for n, m in select_layers(model).items()}


@pytest.mark.slow
def test_same_classes_keep_the_foundation_sparsity(
    sparse_foundation: Path, tiny_run: list[str]
) -> None:
    result = sparsify.run(
        [*tiny_run, "experiment=sparse_transfer", f"model={sparse_foundation}", "optim_level=0.6"]
    )
    assert result.status == "done", result.error
    fetched = result.outputs["fetch"]
    assert abs(fetched["foundation_sparsity"] - 0.8) < 0.005
    produced = result.outputs["sparsify"]
    assert produced["qat"] is True
    assert "masks held fixed" in [e["event"] for e in produced["events"]]
    exported = onnx_weight_sparsity(result.deployment_dir / "model.onnx")["sparsity"]
    assert abs(exported - fetched["foundation_sparsity"]) < 0.005  # within 0.5 points
    # the dense baseline is the foundation fine-tuned without masks: no longer sparse
    baseline = onnx_weight_sparsity(result.run_dir / produced["baseline_onnx"])["sparsity"]
    assert baseline < 0.1
    after = _zeros(result.run_dir / "sparsify" / "model.pth", 3)
    # every foundation zero stays zero; QAT's INT8 grid may round a few more tiny weights to 0
    assert all(torch.equal(after[n] & z, z) for n, z in _zeros(sparse_foundation, 3).items())


@pytest.mark.slow
def test_new_classes_get_a_new_head_and_the_body_keeps_its_zeros(
    sparse_foundation: Path, tmp_path: Path
) -> None:
    from tests.conftest import TINY_RUN

    data = tmp_path / "data"
    make_image_folder(data, classes=("x", "y"), per_class=6, splits=("train",), seed=3)
    make_image_folder(data, classes=("x", "y"), per_class=3, splits=("val",), seed=4)
    result = sparsify.run(
        [
            f"data.path={data}",
            f"working_dir={tmp_path / 'runs'}",
            *TINY_RUN,
            "experiment=sparse_transfer",
            f"model={sparse_foundation}",
            "optim_level=0.2",  # largest tier + INT8
        ]
    )
    assert result.status == "done", result.error
    before = _zeros(sparse_foundation, 3)
    after = _zeros(result.run_dir / "sparsify" / "model.pth", 2)
    head = [n for n in before if before[n].shape != after[n].shape]
    assert len(head) == 1
    assert all(torch.equal(after[n] & before[n], before[n]) for n in before if n not in head)
    assert all(
        after[n].float().mean() - before[n].float().mean() < 0.05 for n in before if n not in head
    )  # no new pruning: only the few weights the INT8 grid rounds to zero
    assert result.outputs["sparsify"]["qat"] is True


def test_a_dense_model_is_flagged(tiny_run: list[str], tiny_images: Path, tmp_path: Path) -> None:
    from tests.conftest import TINY_RUN

    dense = sparsify.run(
        [f"data.path={tiny_images}", "optim_level=0.0", *TINY_RUN], run_dir=tmp_path / "d"
    )
    assert dense.status == "done"
    model = tmp_path / "d" / "sparsify" / "model.pth"
    result = sparsify.run(
        [*tiny_run, "experiment=sparse_transfer", f"model={model}", "optim_level=0.5"]
    )
    assert result.status == "done", result.error
    log = (result.run_dir / "run.log").read_text()
    assert "only 0.0 % sparse" in log


@pytest.mark.slow
def test_the_zoo_supplies_the_foundation_by_optim_level(
    sparse_foundation: Path, tiny_run: list[str], tmp_path: Path
) -> None:
    from sparsify.zoo import add_run

    zoo = tmp_path / "zoo"
    add_run(sparse_foundation.parents[1], "tiny-sparse", "largest", zoo, variant="pruned_int8")
    overrides = [*tiny_run, "experiment=sparse_transfer", f"zoo.dir={zoo}"]
    result = sparsify.run([*overrides, "optim_level=0.4"])  # largest tier, pruned + INT8
    assert result.status == "done", result.error
    fetched = result.outputs["fetch"]
    assert fetched["foundation_entry"]["name"] == "tiny-sparse"
    assert fetched["foundation_sha256"] == fetched["foundation_entry"]["sha256"]
    exported = onnx_weight_sparsity(result.deployment_dir / "model.onnx")["sparsity"]
    assert abs(exported - fetched["foundation_sparsity"]) < 0.005
    # level 0.9 asks for the smallest tier, which this zoo does not have: a clear error (with
    # building on first use off: it would build one from a dense catalog model installed here)
    missing = sparsify.run([*overrides, "optim_level=0.9", "zoo.build_missing=false"])
    assert missing.status == "failed"
    assert "smallest" in missing.error and "zoo add" in missing.error
