from __future__ import annotations

import sys
from typing import Any

import numpy as np
import pytest

from sparsify.data.text_features import (
    IGNORE_INDEX,
    encode_classification,
    encode_qa_eval,
    encode_qa_train,
    encode_token_classification,
    qa_best_span,
)
from sparsify.errors import SparsifyError
from tests.fixtures.text import classification_rows, make_tiny_tokenizer, qa_rows

TAGS = ["B-LOC", "B-ORG", "B-PER", "I-LOC", "O"]


@pytest.fixture(scope="module")
def tokenizer(tmp_path_factory: pytest.TempPathFactory) -> Any:
    return make_tiny_tokenizer(tmp_path_factory.mktemp("tokenizer"))


def test_classification_features(tokenizer: Any) -> None:
    records = classification_rows(4)
    features = encode_classification(records, tokenizer, ["neg", "pos"], max_length=12)
    assert features["labels"] == [1, 0, 1, 0]
    # not padded (the collator pads per batch); max_length truncates
    assert [len(ids) for ids in features["input_ids"]] == [
        min(12, len(tokenizer.tokenize(r["text"])) + 2) for r in records
    ]
    long = encode_classification(
        [{"text": "good " * 40, "label": "pos"}], tokenizer, ["neg", "pos"], 12
    )
    assert len(long["input_ids"][0]) == 12
    assert (
        tokenizer.decode(features["input_ids"][0], skip_special_tokens=True) == records[0]["text"]
    )
    assert sum(features["attention_mask"][0]) == len(tokenizer.tokenize(records[0]["text"])) + 2

    pairs = [
        {"text": r["sentence1"], "text_pair": r["sentence2"], "label": r["label"]}
        for r in classification_rows(2, pair=True)
    ]
    features = encode_classification(pairs, tokenizer, ["neg", "pos"], max_length=24)
    assert 1 in features["token_type_ids"][0]  # the second sentence is segment 1
    # a label list that went through YAML as strings still maps int labels
    ints = [{"text": "good", "label": 1}, {"text": "bad", "label": 0}]
    assert encode_classification(ints, tokenizer, ["0", "1"], 8)["labels"] == [1, 0]
    with pytest.raises(SparsifyError, match="'meh' is not among"):
        encode_classification([{"text": "x", "label": "meh"}], tokenizer, ["neg", "pos"], 8)
    assert "labels" not in encode_classification([{"text": "x"}], tokenizer, [], 8)


def test_token_labels_align_to_first_subword(tokenizer: Any) -> None:
    record = {
        "tokens": ["washington", "found", "an", "unbelievable", "film", "in", "new", "york"],
        "tags": ["B-PER", "O", "O", "O", "O", "O", "B-LOC", "I-LOC"],
    }
    features = encode_token_classification([record], tokenizer, TAGS, max_length=16)
    pieces = tokenizer.convert_ids_to_tokens(features["input_ids"][0])
    assert pieces[:12] == [
        "[CLS]", "washing", "##ton", "found", "an", "un", "##believ", "##able",
        "film", "in", "new", "york",
    ]  # fmt: skip
    o, per, loc, iloc = (TAGS.index(t) for t in ("O", "B-PER", "B-LOC", "I-LOC"))
    x = IGNORE_INDEX
    assert features["labels"][0] == [x, per, x, o, o, o, x, x, o, o, loc, iloc, x]
    assert len(features["input_ids"][0]) == 13  # not padded: the collator pads per batch

    every = encode_token_classification([record], tokenizer, TAGS, 16, label_all_subwords=True)
    assert every["labels"][0][:9] == [x, per, per, o, o, o, o, o, o]

    # truncation keeps the labels the same length as the ids
    short = encode_token_classification([record], tokenizer, TAGS, max_length=5)
    assert len(short["labels"][0]) == len(short["input_ids"][0]) == 5
    assert short["labels"][0] == [x, per, x, o, x]


def _window_holds(offsets: list[Any], start: int, end: int) -> bool:
    spans = [o for o in offsets if o is not None]
    return bool(spans) and spans[0][0] <= start and spans[-1][1] >= end


def test_qa_train_positions_decode_to_the_answer(tokenizer: Any) -> None:
    records = qa_rows(4) + [
        {
            "question": "what is the capital of mars ?",
            "context": "the capital of france is paris .",
            "answers": {"text": [], "answer_start": []},
        }
    ]
    features = encode_qa_train(records, tokenizer, max_length=64, doc_stride=16)
    assert len(features["input_ids"]) == len(records)  # short contexts: one window each
    for i, record in enumerate(records[:4]):
        s, e = features["start_positions"][i], features["end_positions"][i]
        answer = tokenizer.decode(features["input_ids"][i][s : e + 1])
        assert 0 < s <= e and answer == record["answers"]["text"][0]
    assert (features["start_positions"][4], features["end_positions"][4]) == (0, 0)


def test_long_context_windows(tokenizer: Any) -> None:
    filler = " ".join(["it is a big city with many people ."] * 6)
    context = f"{filler} the capital of spain is madrid . {filler}"
    answer_start = context.index("madrid")
    record = {
        "id": "long",
        "question": "what is the capital of spain ?",
        "context": context,
        "answers": {"text": ["madrid"], "answer_start": [answer_start]},
    }
    train = encode_qa_train([record], tokenizer, max_length=32, doc_stride=8)
    evaluation = encode_qa_eval([record], tokenizer, max_length=32, doc_stride=8)
    windows = len(train["input_ids"])
    assert windows >= 4 and len(evaluation["input_ids"]) == windows
    assert evaluation["example_id"] == ["long"] * windows
    holds = [
        _window_holds(offsets, answer_start, answer_start + 6)
        for offsets in evaluation["offset_mapping"]
    ]
    assert 1 <= sum(holds) < windows
    for i in range(windows):
        s, e = train["start_positions"][i], train["end_positions"][i]
        if holds[i]:
            assert tokenizer.decode(train["input_ids"][i][s : e + 1]) == "madrid"
        else:
            assert (s, e) == (0, 0)


def test_qa_eval_offsets_and_best_span(tokenizer: Any) -> None:
    record = qa_rows(1)[0]
    features = encode_qa_eval([record], tokenizer, max_length=64, doc_stride=16)
    offsets = features["offset_mapping"][0]
    ids = features["input_ids"][0]
    sequence = features["token_type_ids"][0]
    # None everywhere but on context tokens: CLS, the question, SEP and padding
    assert [o is None for o in offsets] == [
        t == 0 or i == tokenizer.pad_token_id or i == tokenizer.sep_token_id
        for t, i in zip(sequence, ids, strict=True)
    ]
    context = record["context"]
    answer_start = record["answers"]["answer_start"][0]
    target = next(i for i, o in enumerate(offsets) if o is not None and o[0] == answer_start)

    start = np.zeros(len(ids))
    end = np.zeros(len(ids))
    start[target] = end[target] = 5.0
    start[1] = end[1] = 9.0  # a question token: outside the context, never an answer
    end[target - 3] = 8.0  # ends before the best start: not a span
    assert qa_best_span(start, end, offsets, context) == "paris"

    # a longer span wins when its score is higher, unless it exceeds max_answer_len
    end[target + 3] = 7.0
    assert (
        qa_best_span(start, end, offsets, context) == context[answer_start : offsets[target + 3][1]]
    )
    assert qa_best_span(start, end, offsets, context, max_answer_len=3) == "paris"
    start[0] = end[0] = 20.0  # CLS: "no answer" when allowed
    assert qa_best_span(start, end, offsets, context, allow_empty=True) == ""
    assert qa_best_span(start, end, [None] * len(ids), context) == ""


def test_needs_a_fast_tokenizer_and_transformers(
    tokenizer: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    slow = type("SlowTokenizer", (), {"is_fast": False})()
    with pytest.raises(SparsifyError, match="slow tokenizer"):
        encode_classification([{"text": "x", "label": "pos"}], slow, ["pos"], 8)
    monkeypatch.setitem(sys.modules, "transformers", None)  # import now raises ImportError
    with pytest.raises(SparsifyError, match=r"pip install 'sparsify\[nlp\]'"):
        encode_token_classification([{"tokens": ["x"]}], tokenizer, [], 8)


def test_doc_stride_must_fit(tokenizer: Any) -> None:
    with pytest.raises(SparsifyError, match="doc_stride"):
        encode_qa_train(qa_rows(1), tokenizer, max_length=16, doc_stride=16)
