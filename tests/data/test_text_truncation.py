"""data.max_length truncation is said once per split, with how many examples it cut."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from sparsify.data import text_features as tf
from tests.fixtures.text import make_tiny_tokenizer


def test_truncated_examples_counted_once_per_split(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(tf, "_noted", set())
    tokenizer = make_tiny_tokenizer(tmp_path / "tok")
    long = {"text": "the movie was good " * 10, "label": "pos"}
    short = {"text": "a good film", "label": "pos"}
    records = [long, short, short, long]
    with caplog.at_level(logging.INFO, logger="sparsify"):
        tf.encode_classification(records, tokenizer, ["neg", "pos"], max_length=16)
        tf.encode_classification(records, tokenizer, ["neg", "pos"], max_length=16)  # again
        words = [{"tokens": ["john", "lives", "in", "paris"] * 8, "tags": ["O"] * 32}]
        tf.note_split("val", words, tokenizer, max_length=16, doc_stride=4)
        tf.note_split("test", [short], tokenizer, max_length=16, doc_stride=4)  # nothing cut
    lines = [r.getMessage() for r in caplog.records]
    assert lines == [
        "data.max_length=16: 2 of 4 train examples (50.0 %) were longer and were truncated",
        "data.max_length=16: 1 of 1 val examples (100.0 %) were longer and were truncated; "
        "raise data.max_length if their ends matter",
    ]
    assert caplog.records[1].levelname == "WARNING"
