"""Tokenize canonical text records (see `sparsify.data.text.load_split`) into HF-style features.

Every function takes a Hugging Face *fast* tokenizer: word alignment (`word_ids`) and answer
spans (offset mappings) exist only there. Features are padded to `max_length`, so every split
and the exported ONNX model see one fixed shape.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from sparsify.errors import SparsifyError

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase

IGNORE_INDEX = -100  # what torch's cross-entropy (and HF models) skip

log = logging.getLogger("sparsify")
_noted: set[tuple[str, int, int]] = set()  # (split, examples, max_length) already said


def note_truncation(split: str, cut: int, total: int, max_length: int, how: str) -> None:
    """Say once per split how many examples `data.max_length` cut (`how`: what happened to
    them), so a long-text set whose tails the model never sees is visible in the log; more
    than half cut is a warning with the fix."""
    key = (split, total, max_length)
    if key in _noted:
        return
    _noted.add(key)
    if cut == 0:
        return
    share = 100.0 * cut / max(1, total)
    message = "data.max_length=%d: %s of %s %s examples (%.1f %%) were longer and %s"
    args = (max_length, f"{cut:,}", f"{total:,}", split, share, how)
    if share > 50:
        log.warning(message + "; raise data.max_length if their ends matter", *args)
    else:
        log.info(message, *args)


def note_split(
    split: str,
    records: Sequence[dict[str, Any]],
    tokenizer: PreTrainedTokenizerBase,
    max_length: int,
    doc_stride: int,
) -> None:
    """`note_truncation` for a split the evaluation tokenizes its own way (the deployed
    runner): its records tokenized once here, the first time only."""
    if (split, len(records), max_length) in _noted or not records:
        return
    if "question" in records[0]:
        _encode_qa(records, tokenizer, max_length, doc_stride, split)
        return
    if "tokens" in records[0]:
        words = [list(r["tokens"]) for r in records]
        encoding = tokenizer(
            words, is_split_into_words=True, truncation=True, max_length=max_length
        )
    else:
        pairs = [r["text_pair"] for r in records] if "text_pair" in records[0] else None
        encoding = tokenizer(
            [r["text"] for r in records], pairs, truncation=True, max_length=max_length
        )
    note_truncation(split, _truncated(encoding), len(records), max_length, "were truncated")


def _truncated(encoding: Any) -> int:
    """How many rows of a fast tokenizer's batch lost tokens to truncation (the Rust
    encodings keep what was cut in `overflowing`, asked for or not)."""
    return sum(1 for e in getattr(encoding, "encodings", None) or [] if e.overflowing)


def _require_fast(tokenizer: PreTrainedTokenizerBase) -> None:
    try:
        import transformers  # noqa: F401  (the tokenizer's own package must be importable)
    except ImportError:
        raise SparsifyError(
            "text use cases need Hugging Face transformers: pip install 'sparsify[nlp]'"
        ) from None
    if not getattr(tokenizer, "is_fast", False):
        raise SparsifyError(
            f"{type(tokenizer).__name__} is a slow tokenizer; text features need a fast one "
            "(AutoTokenizer.from_pretrained(..., use_fast=True), or a folder with tokenizer.json)"
        )


def _label_index(label_list: Sequence[Any]) -> dict[Any, int]:
    # str keys too: a summary that went through YAML/JSON may hold "1" where the data holds 1
    index: dict[Any, int] = {str(label): i for i, label in enumerate(label_list)}
    index.update({label: i for i, label in enumerate(label_list)})
    return index


def _lookup(index: dict[Any, int], label: Any, what: str) -> int:
    found = index.get(label, index.get(str(label)))
    if found is None:
        raise SparsifyError(
            f"{what} {label!r} is not among the model's labels {sorted(index, key=str)[:20]}; "
            "validate the dataset (labels outside train are reported) or retrain the head"
        )
    return found


def _as_lists(encoding: Any, keys: Sequence[str]) -> dict[str, list]:
    return {key: list(encoding[key]) for key in keys if key in encoding}


_MODEL_INPUTS = ("input_ids", "attention_mask", "token_type_ids")


def encode_classification(
    records: Sequence[dict[str, Any]],
    tokenizer: PreTrainedTokenizerBase,
    label_list: Sequence[Any],
    max_length: int,
    split: str = "train",
) -> dict[str, list]:
    """input_ids, attention_mask (token_type_ids where the tokenizer makes them), labels.

    Not padded: the training collator pads each batch to its longest row, so short texts do
    not pay for `max_length` (which only truncates; how many it cut is logged per `split`)."""
    _require_fast(tokenizer)
    texts = [r["text"] for r in records]
    pairs = [r["text_pair"] for r in records] if records and "text_pair" in records[0] else None
    encoding = tokenizer(texts, pairs, truncation=True, max_length=max_length)
    note_truncation(split, _truncated(encoding), len(records), max_length, "were truncated")
    features = _as_lists(encoding, _MODEL_INPUTS)
    if records and all("label" in r for r in records):
        index = _label_index(label_list)
        features["labels"] = [_lookup(index, r["label"], "label") for r in records]
    return features


def encode_token_classification(
    records: Sequence[dict[str, Any]],
    tokenizer: PreTrainedTokenizerBase,
    label_list: Sequence[Any],
    max_length: int,
    label_all_subwords: bool = False,
    split: str = "train",
) -> dict[str, list]:
    """Words tokenized as given; each word's tag goes to its first sub-word.

    Later sub-words get -100 (or the same tag with `label_all_subwords`), special tokens -100,
    so the loss and entity metrics count each word once. Not padded (the token-classification
    collator pads ids and labels, labels with -100, per batch).
    """
    _require_fast(tokenizer)
    encoding = tokenizer(
        [list(r["tokens"]) for r in records],
        is_split_into_words=True,
        truncation=True,
        max_length=max_length,
    )
    # the words past the cut get no prediction: for NER, their entities are missed
    note_truncation(split, _truncated(encoding), len(records), max_length, "were truncated")
    features = _as_lists(encoding, _MODEL_INPUTS)
    if not records or not all("tags" in r for r in records):
        return features
    index = _label_index(label_list)
    labels: list[list[int]] = []
    for i, record in enumerate(records):
        tags = [_lookup(index, tag, "tag") for tag in record["tags"]]
        row: list[int] = []
        previous: int | None = None
        for word in encoding.word_ids(i):
            if word is None:
                row.append(IGNORE_INDEX)
            elif word != previous:
                row.append(tags[word])
            else:
                row.append(tags[word] if label_all_subwords else IGNORE_INDEX)
            previous = word
        labels.append(row)
    features["labels"] = labels
    return features


def _encode_qa(
    records: Sequence[dict[str, Any]],
    tokenizer: PreTrainedTokenizerBase,
    max_length: int,
    doc_stride: int,
    split: str = "train",
) -> tuple[Any, int]:
    """Question/context windows: long contexts overflow into windows overlapping by `doc_stride`."""
    _require_fast(tokenizer)
    if doc_stride >= max_length:
        raise SparsifyError(
            f"doc_stride ({doc_stride}) must be smaller than max_length ({max_length})"
        )
    # the context is the truncated side; with left padding it comes first
    context_index = 1 if tokenizer.padding_side == "right" else 0
    # leading spaces in questions only waste the window
    questions = [r["question"].lstrip() for r in records]
    contexts = [r["context"] for r in records]
    first, second = (questions, contexts) if context_index == 1 else (contexts, questions)
    encoding = tokenizer(
        first,
        second,
        truncation="only_second" if context_index == 1 else "only_first",
        max_length=max_length,
        stride=doc_stride,
        return_overflowing_tokens=True,
        return_offsets_mapping=True,
        padding="max_length",
    )
    windows = np.bincount(encoding["overflow_to_sample_mapping"], minlength=len(records))
    note_truncation(
        split,
        int((windows > 1).sum()),
        len(records),
        max_length,
        f"were read in overlapping windows (doc stride {doc_stride})",
    )
    return encoding, context_index


def encode_qa_train(
    records: Sequence[dict[str, Any]],
    tokenizer: PreTrainedTokenizerBase,
    max_length: int,
    doc_stride: int,
    split: str = "train",
) -> dict[str, list]:
    """Windows with start_positions/end_positions of the first answer (token indices).

    A window that does not hold the whole answer, and an unanswerable question, point both
    positions at the CLS token (index 0 for BERT-style tokenizers).
    """
    encoding, context_index = _encode_qa(records, tokenizer, max_length, doc_stride, split)
    features = _as_lists(encoding, _MODEL_INPUTS)
    starts: list[int] = []
    ends: list[int] = []
    for i, offsets in enumerate(encoding["offset_mapping"]):
        input_ids = encoding["input_ids"][i]
        cls_id = tokenizer.cls_token_id
        cls = input_ids.index(cls_id) if cls_id is not None and cls_id in input_ids else 0
        answers = records[encoding["overflow_to_sample_mapping"][i]]["answers"]
        sequence_ids = encoding.sequence_ids(i)
        context = [t for t, s in enumerate(sequence_ids) if s == context_index]
        if not answers["answer_start"] or not context:
            starts.append(cls)
            ends.append(cls)
            continue
        start_char = answers["answer_start"][0]
        end_char = start_char + len(answers["text"][0])
        first, last = context[0], context[-1]
        if not (offsets[first][0] <= start_char and offsets[last][1] >= end_char):
            starts.append(cls)
            ends.append(cls)
            continue
        start = first
        while start <= last and offsets[start][0] <= start_char:
            start += 1
        end = last
        while end >= first and offsets[end][1] >= end_char:
            end -= 1
        starts.append(start - 1)
        ends.append(end + 1)
    features["start_positions"] = starts
    features["end_positions"] = ends
    return features


def encode_qa_eval(
    records: Sequence[dict[str, Any]],
    tokenizer: PreTrainedTokenizerBase,
    max_length: int,
    doc_stride: int,
    split: str = "val",
) -> dict[str, list]:
    """Windows with `example_id` (the record's id) and `offset_mapping`, None off the context.

    `qa_best_span` turns a window's logits back into answer text with these offsets.
    """
    encoding, context_index = _encode_qa(records, tokenizer, max_length, doc_stride, split)
    features = _as_lists(encoding, _MODEL_INPUTS)
    example_ids: list[str] = []
    offset_mapping: list[list[tuple[int, int] | None]] = []
    for i, offsets in enumerate(encoding["offset_mapping"]):
        record_index = encoding["overflow_to_sample_mapping"][i]
        example_ids.append(str(records[record_index].get("id", record_index)))
        sequence_ids = encoding.sequence_ids(i)
        offset_mapping.append(
            [
                tuple(o) if s == context_index else None
                for o, s in zip(offsets, sequence_ids, strict=True)
            ]
        )
    features["example_id"] = example_ids
    features["offset_mapping"] = offset_mapping
    return features


def qa_best_span(
    start_logits: Sequence[float] | np.ndarray,
    end_logits: Sequence[float] | np.ndarray,
    offsets: Sequence[Sequence[int] | None],
    context: str,
    max_answer_len: int = 30,
    n_best: int = 20,
    allow_empty: bool = False,
) -> str:
    """The highest-scoring valid answer text in one window ('' when none is valid).

    Only the `n_best` top start and end tokens are paired (as the HF QA examples do); a span
    must lie in the context (offset not None), end at or after its start and be at most
    `max_answer_len` tokens. With `allow_empty`, '' wins when the CLS score (SQuAD v2 "no
    answer") beats the best span.
    """
    start = np.asarray(start_logits, dtype=np.float64)
    end = np.asarray(end_logits, dtype=np.float64)
    n = min(len(start), len(end), len(offsets))
    top_starts = np.argsort(start[:n])[::-1][:n_best]
    top_ends = np.argsort(end[:n])[::-1][:n_best]
    best_score, best = -np.inf, ""
    for s in top_starts:
        for e in top_ends:
            if offsets[s] is None or offsets[e] is None or e < s or e - s + 1 > max_answer_len:
                continue
            score = start[s] + end[e]
            if score > best_score:
                best_score, best = score, context[offsets[s][0] : offsets[e][1]]
    if allow_empty and n and start[0] + end[0] > best_score:
        return ""
    return best
