"""The shipped catalog loads and validates; bad catalogs are refused with every problem."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from sparsify.errors import SparsifyError, ValidationError
from sparsify.zoo.catalog import TIERS, load_catalog, read_catalog_file, shipped_catalog_text
from tests.zoo.conftest import entry, write_catalog

ROOT = Path(__file__).resolve().parents[2]


def test_the_shipped_catalog_loads_and_covers_every_use_case() -> None:
    catalog = load_catalog()
    assert len(catalog.entries) >= 10
    covered = {u for e in catalog.entries.values() for u in e["use_cases"]}
    assert {"cv-classification", "cv-detection", "nlp-text_classification"} <= covered
    # cv-classification has every tier that sparse_transfer's optim levels ask for
    experiment = yaml.safe_load((ROOT / "conf/experiment/sparse_transfer.yaml").read_text())
    wanted = {(tier, variant) for _, tier, variant in experiment["experiment"]["tiers"]}
    have = {(e["tier"], e["variant"]) for e in catalog.for_use_case("cv-classification")}
    assert {(t, v) for t, v in wanted if v != "int8"} <= have  # int8 falls back to dense
    assert {t for t, _ in wanted} <= set(TIERS)


def test_the_shipped_catalog_is_not_a_hydra_group() -> None:
    assert (ROOT / "conf/zoo_catalog.yaml").is_file()
    defaults = yaml.safe_load((ROOT / "conf/config.yaml").read_text())["defaults"]
    assert not any("zoo" in str(d) for d in defaults)
    assert not (ROOT / "conf/zoo").exists()
    assert "models:" in shipped_catalog_text()


def test_a_bad_catalog_lists_every_problem(tmp_path: Path) -> None:
    bad = [
        entry("a", tier="huge"),
        entry("b", family="yolo"),
        entry("c", colour="red"),
        entry("d", use_cases=["cv-clasification"]),
        entry("e", sha256="not-a-digest"),
        entry("f"),
        entry("f"),
    ]
    with pytest.raises(ValidationError) as err:
        read_catalog_file(write_catalog(tmp_path / "c.yaml", bad).read_text(), "my catalog")
    text = str(err.value)
    assert "6 problem(s)" in text
    assert "'huge' is not one of" in text
    assert "wrong family for use case cv-classification" in text and "set family:" in text
    assert "colour" in text
    assert "cv-clasification" in text and "not a canonical use case" in text
    assert "sha256" in text
    assert "listed twice" in text


def test_a_user_catalog_extends_and_replaces_by_name(tmp_path: Path) -> None:
    path = write_catalog(
        tmp_path / "mine.yaml",
        [entry("mine"), entry("mobilenet_v2-imagenet", arch="mobilenet_v3_small")],
    )
    catalog = load_catalog(extra=str(path))
    assert catalog.origin["mine"] == str(path)
    assert catalog.entries["mobilenet_v2-imagenet"]["arch"] == "mobilenet_v3_small"
    with pytest.raises(SparsifyError, match="is not a file"):
        load_catalog(extra=str(tmp_path / "missing.yaml"))


def test_unknown_names_and_stubs_list_the_close_ones() -> None:
    catalog = load_catalog()
    with pytest.raises(SparsifyError) as err:
        catalog.get("mobilenet_v2-imagenett")
    assert "close matches: mobilenet_v2-imagenet" in str(err.value)
    assert "sparsify zoo add" in str(err.value)
    stub = "zoo:cv/detection/yolov8-s/pytorch/ultralytics/coco/pruned50_quant-none"
    assert catalog.get(stub)["name"] == "yolov8s-coco-sparsezoo-pruned50"
    with pytest.raises(SparsifyError) as err:
        catalog.get(stub.replace("pruned50", "pruned55"))
    assert "SparseZoo stub" in str(err.value) and stub in str(err.value)
