"""benchmarks/synthetic_ner.py: a seeded BIO set whose val split names no entity train named."""

from __future__ import annotations

import importlib.util
import json
import re
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "synthetic_ner.py"
NAMES = ("PER", "LOC", "ORG", "PRODUCT", "EVENT", "NORP")  # the types drawn from name lexicons


@pytest.fixture(scope="module")
def ner():  # noqa: ANN201
    spec = importlib.util.spec_from_file_location("synthetic_ner", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _rows(root: Path, split: str) -> list[dict]:
    lines = (root / f"{split}.jsonl").read_text(encoding="utf-8").splitlines()
    return [json.loads(line) for line in lines]


def _entities(rows: list[dict]) -> dict[str, set[str]]:
    """Entity strings per type, read back from the BIO tags (which must be well formed)."""
    found: dict[str, set[str]] = {}
    for row in rows:
        assert len(row["tokens"]) == len(row["ner_tags"])
        span: tuple[str, list[str]] | None = None
        for word, tag in [*zip(row["tokens"], row["ner_tags"], strict=True), ("", "O")]:
            if tag.startswith("I-"):
                assert span is not None and span[0] == tag[2:], row
                span[1].append(word)
                continue
            if span is not None:
                found.setdefault(span[0], set()).add(" ".join(span[1]))
            span = (tag[2:], [word]) if tag.startswith("B-") else None
            assert tag == "O" or tag.startswith("B-"), tag
    return found


def test_same_seed_same_files_other_seed_other_files(ner, tmp_path: Path) -> None:
    a, b, c = (
        ner.write_ner(tmp_path / d, n=200, seed=s) for d, s in (("a", 1), ("b", 1), ("c", 2))
    )
    for split in ("train", "val"):
        assert (a / f"{split}.jsonl").read_bytes() == (b / f"{split}.jsonl").read_bytes()
        assert (a / f"{split}.jsonl").read_bytes() != (c / f"{split}.jsonl").read_bytes()
    assert len(_rows(a, "val")) == 40 and len(_rows(a, "train")) == 160


def test_val_names_no_entity_that_train_named(ner, tmp_path: Path) -> None:
    root = ner.write_ner(tmp_path, n=800, seed=0)
    train, val = _entities(_rows(root, "train")), _entities(_rows(root, "val"))
    assert set(train) == set(val) == set(ner.TYPES)  # all 10 types in both splits
    train_names = set().union(*(train[kind] for kind in NAMES))
    for kind in NAMES:
        assert val[kind] and not val[kind] & train_names, kind
    # the multi-token entities that make B/I matter are there
    assert any(len(name.split()) > 2 for name in val["PER"] | val["ORG"] | val["EVENT"])


@pytest.mark.parametrize("seed", [0, 3])
def test_lexicons_templates_and_context_are_disjoint(ner, seed: int) -> None:
    train, val = ner.lexicons("train", seed), ner.lexicons("val", seed)
    all_train = set().union(*train.values())
    for name, items in ner.SPLIT_LEXICONS.items():
        assert val[name] and train[name], name
        assert sorted(val[name] + train[name]) == sorted(items)
        assert not set(val[name]) & all_train, name  # no name crosses over, not even by type
    assert len(train["first"]) * len(train["last"]) > 300  # a few hundred people at least
    for table in (ner.TEMPLATES, ner.FILLERS, ner.PLAIN):
        assert table["val"] and not set(table["val"]) & set(table["train"])
    for split in ("train", "val"):
        kinds = {k for t in ner.TEMPLATES[split] for k in re.findall(r"\{(\w+)\}", t)}
        assert kinds - {"F"} == set(ner.TYPES), split


def test_o_tags_dominate(ner, tmp_path: Path) -> None:
    root = ner.write_ner(tmp_path, n=1000, seed=0)
    for split in ("train", "val"):
        tags = [tag for row in _rows(root, split) for tag in row["ner_tags"]]
        assert 0.78 < sum(tag == "O" for tag in tags) / len(tags) < 0.92, split
    assert 0.8 < ner.o_share(root) < 0.9
