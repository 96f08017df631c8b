"""`add_run` registers a real finished run; the local zoo lists, skips broken entries, removes."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

import sparsify
from sparsify.errors import SparsifyError
from sparsify.stages.fetch import sha256_path as fetch_sha
from sparsify.zoo import LocalZoo, add_run, load_catalog, sha256_path
from sparsify.zoo.checksum import sha256_path as zoo_sha
from tests.conftest import TINY_RUN


def test_add_records_the_runs_metadata_and_checksum(finished_run: Path, tmp_path: Path) -> None:
    zoo = tmp_path / "zoo"
    entry = add_run(finished_run, "tiny-pruned", "smallest", zoo)
    manifest = json.loads((finished_run / "manifest.json").read_text())["stages"]
    assert entry["variant"] == "pruned_int8"  # the run pruned, so that is the default
    assert entry["arch"] == "tinynet"
    assert entry["use_cases"] == ["cv-classification"]
    assert entry["family"] == "image_classifier"
    assert entry["sparsity"] == pytest.approx(manifest["sparsify"]["outputs"]["sparsity"], abs=1e-6)
    assert entry["sparsity"] > 0.5
    assert entry["quantization"] == "int8"
    assert entry["dataset"] == manifest["validate"]["outputs"]["data_path"]
    metrics = json.loads((finished_run / "benchmark/metrics.json").read_text())
    assert entry["metric"] == {"name": "top1", "value": metrics["sparsified"]["top1"]}
    copied = zoo / "tiny-pruned" / "model.pth"
    assert (
        entry["sha256"] == sha256_path(copied) == sha256_path(finished_run / "sparsify/model.pth")
    )
    assert json.loads((zoo / "tiny-pruned" / "zoo.json").read_text()) == entry
    assert load_catalog(zoo).origin["tiny-pruned"] == "local"


def test_dense_takes_the_model_the_run_started_from(finished_run: Path, tmp_path: Path) -> None:
    entry = add_run(finished_run, "tiny-dense", "largest", tmp_path, variant="dense")
    fetch = json.loads((finished_run / "manifest.json").read_text())["stages"]["fetch"]
    assert entry["sha256"] == fetch["outputs"]["sha256"]
    assert entry["sparsity"] == 0.0 and entry["quantization"] == "none"
    assert (
        entry["metric"]["value"]
        == json.loads((finished_run / "benchmark/metrics.json").read_text())["baseline"]["top1"]
    )


def test_the_zoo_digest_is_the_fetch_stages_digest(finished_run: Path) -> None:
    for path in (finished_run / "sparsify/model.pth", finished_run / "deployment"):
        assert zoo_sha(path) == fetch_sha(path)


def test_add_refuses_what_it_cannot_register(finished_run: Path, tmp_path: Path) -> None:
    add_run(finished_run, "once", "medium", tmp_path)
    with pytest.raises(SparsifyError, match="already holds 'once'.*--force"):
        add_run(finished_run, "once", "medium", tmp_path)
    again = add_run(finished_run, "once", "largest", tmp_path, force=True)
    assert again["tier"] == "largest"
    with pytest.raises(SparsifyError, match="not a run directory"):
        add_run(tmp_path, "x", "medium", tmp_path)
    with pytest.raises(SparsifyError, match="tier"):
        add_run(finished_run, "x", "huge", tmp_path)
    with pytest.raises(SparsifyError, match="wrong family|needs a yolo model"):
        add_run(finished_run, "x", "medium", tmp_path, use_case="cv-detection")
    unfinished = tmp_path / "unfinished"
    shutil.copytree(finished_run, unfinished)
    manifest = json.loads((unfinished / "manifest.json").read_text())
    manifest["stages"]["sparsify"]["status"] = "failed"
    (unfinished / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(SparsifyError, match="sparsify did not finish"):
        add_run(unfinished, "x", "medium", tmp_path)


def test_broken_local_entries_are_skipped_with_the_reason(
    finished_run: Path, tmp_path: Path
) -> None:
    add_run(finished_run, "good", "medium", tmp_path)
    (tmp_path / "junk").mkdir()
    (tmp_path / "junk" / "zoo.json").write_text("{not json")
    shutil.copytree(tmp_path / "good", tmp_path / "renamed")
    shutil.copytree(tmp_path / "good", tmp_path / "nofile")
    meta = json.loads((tmp_path / "nofile" / "zoo.json").read_text())
    (tmp_path / "nofile" / "zoo.json").write_text(json.dumps({**meta, "name": "nofile"}))
    (tmp_path / "nofile" / "model.pth").unlink()
    shutil.copytree(tmp_path / "good", tmp_path / ".good.in-progress")
    zoo = LocalZoo(tmp_path)
    assert [e["name"] for e in zoo.entries()] == ["good"]
    text = "\n".join(str(p) for p in zoo.problems)
    assert "not readable JSON" in text
    assert "differs from its folder name 'renamed'" in text
    assert "names no file or folder" in text
    assert "in-progress" not in text


def test_remove(finished_run: Path, tmp_path: Path) -> None:
    add_run(finished_run, "gone", "medium", tmp_path)
    zoo = LocalZoo(tmp_path)
    zoo.remove("gone")
    assert not (tmp_path / "gone").exists() and zoo.entries() == []
    with pytest.raises(SparsifyError, match="not in the local zoo"):
        zoo.remove("gone")


def test_an_int8_only_run(tiny_images: Path, tmp_path: Path) -> None:
    result = sparsify.run(
        [
            f"data.path={tiny_images}",
            f"working_dir={tmp_path / 'runs'}",
            "optim_level=0.2",
            *TINY_RUN,
        ]
    )
    assert result.status == "done", result.error
    entry = add_run(result.run_dir, "tiny-int8", "largest", tmp_path / "zoo")
    assert entry["variant"] == "dense"  # nothing was pruned
    entry = add_run(result.run_dir, "tiny-int8", "largest", tmp_path / "zoo", "int8", force=True)
    assert entry["run"]["checkpoint"] == "sparsify/model.pth" and entry["quantization"] == "int8"
    with pytest.raises(SparsifyError, match="pruned nothing.*--variant dense"):
        add_run(result.run_dir, "tiny-x", "medium", tmp_path / "zoo", "pruned_int8")
