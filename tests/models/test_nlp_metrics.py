"""The NLP metrics against hand-computed values."""

from __future__ import annotations

import sys

import pytest

from sparsify.errors import SparsifyError
from sparsify.models.transformers.metrics import (
    accuracy_f1,
    entities,
    entity_f1,
    normalize_answer,
    squad_scores,
)


def test_accuracy_and_macro_f1() -> None:
    scores = accuracy_f1([0, 1, 1, 0], [0, 1, 0, 0])
    assert scores["accuracy"] == 75.0
    # class 0: tp 2 fp 0 fn 1 -> 0.8; class 1: tp 1 fp 1 fn 0 -> 2/3
    assert scores["f1"] == pytest.approx(100 * (0.8 + 2 / 3) / 2)


def test_entities_bio_and_broken_sequences() -> None:
    assert entities(["B-PER", "I-PER", "O", "B-LOC"]) == {("PER", 0, 2), ("LOC", 3, 4)}
    assert entities(["I-PER", "I-PER", "B-PER"]) == {("PER", 0, 2), ("PER", 2, 3)}
    assert entities(["B-PER", "I-LOC"]) == {("PER", 0, 1), ("LOC", 1, 2)}
    assert entities(["O", "O"]) == set()


def test_entity_f1_counts_exact_spans() -> None:
    ref = [["B-PER", "I-PER", "O", "B-LOC"]]
    pred = [["B-PER", "O", "O", "B-LOC"]]  # PER span is cut short -> wrong
    scores = entity_f1(pred, ref)
    assert scores["precision"] == pytest.approx(50.0)
    assert scores["recall"] == pytest.approx(50.0)
    assert scores["entity_f1"] == pytest.approx(50.0)
    assert scores["accuracy"] == pytest.approx(75.0)


def test_squad_normalization_and_scores() -> None:
    assert normalize_answer("The  Eiffel-Tower!") == "eiffeltower"
    scores = squad_scores(
        ["the Eiffel Tower", "in Paris France"], [["Eiffel Tower"], ["Paris", "Lyon"]]
    )
    assert scores["exact_match"] == 50.0
    assert scores["f1"] == pytest.approx(100 * (1.0 + 2 * (1 / 3) * 1 / (1 / 3 + 1)) / 2)
    assert squad_scores([""], [[]])["exact_match"] == 100.0


def test_missing_seqeval_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    # a None entry in sys.modules makes the import fail as if seqeval were not installed
    monkeypatch.setitem(sys.modules, "seqeval.metrics.sequence_labeling", None)
    with pytest.raises(SparsifyError, match=r"sparsify\[nlp\]"):
        entity_f1([["O"]], [["O"]])
