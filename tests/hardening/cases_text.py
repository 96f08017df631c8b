"""Datasets broken one way each: text csv / json / jsonl for each NLP task, and NPZ
calibration folders."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np

from tests.hardening.cases_data import (
    Breaker,
    data_case,
    gone,
    loop,
    one_file,
    other_kind,
    remove,
    replace_rows,
    write,
)
from tests.hardening.harness import Case, Sandbox

CASES: list[Case] = []

# --- text: csv / json / jsonl for each NLP task -----------------------------------------------

TC_ROWS = "the movie was good,pos\nthe film was bad,neg\na great story,pos\nawful acting,neg\n"


def rows_of(label: str) -> str:
    return "".join(f"text {i},{label}\n" for i in range(8))


def columns_differ(root: Path, sb: Sandbox) -> list[str]:
    write(root / "train.csv", "body,label\n" + TC_ROWS)  # read as the text column: the only other
    return [str(root / "val.csv"), "body", "data.text_column"]


TC: list[tuple[str, Breaker, str]] = [
    ("missing-folder", gone(""), "data.path does not exist"),
    ("no-train-file", gone("train.csv", "train"), "only val.csv"),
    (
        "no-label-column",
        one_file("train.csv", "text,polarity\n" + TC_ROWS),
        "label column named polarity",
    ),
    ("columns-differ", columns_differ, "train's text column is body, val's is text"),
    (
        "nul-byte",
        one_file("train.csv", "text,label\ngood,pos\nba\0d,neg\n" + TC_ROWS),
        "NUL in a field",
    ),
    ("utf16", one_file("train.csv", ("text,label\n" + TC_ROWS).encode("utf-16")), "a UTF-16 CSV"),
    (
        "latin1",
        one_file("val.csv", "text,label\ncaf\xe9 was good,pos\n".encode("latin-1")),
        "Latin-1 bytes",
    ),
    (
        "field-too-long",
        one_file("train.csv", f"text,label\n{'word ' * 30_000},neg\n" + TC_ROWS),
        "a 150 kB field",
    ),
    ("single-label", one_file("train.csv", "text,label\n" + rows_of("pos")), "one label only"),
    ("empty-text", one_file("train.csv", "text,label\n,pos\n" + TC_ROWS), "an empty text cell"),
    ("header-only", one_file("train.csv", "text,label\n"), "a train.csv with no rows"),
    ("empty-file", one_file("val.csv", b""), "a zero-byte val.csv"),
    ("unseen-val-label", one_file("val.csv", "text,label\nso so,meh\nok,pos\n"), "val label meh"),
    (
        "unknown-extension",
        lambda r, sb: [remove(r / "train.csv"), write(r / "train.txt", "x")][1],
        "train.txt",
    ),
    ("two-train-files", one_file("train.jsonl", '{"text": "a", "label": "pos"}\n'), "train twice"),
    ("binary-garbage", one_file("train.csv", bytes(range(256)) * 4), "random bytes as CSV"),
]
TC_JSON: list[tuple[str, Breaker, str]] = [
    ("trailing-comma", one_file("train.json", '[{"text": "a", "label": "pos"},]'), "bad JSON"),
    ("object-not-list", one_file("train.json", '{"text": "a", "label": "pos"}'), "not a list"),
    ("label-is-list", one_file("val.json", '[{"text": "a", "label": ["pos"]}]'), "a list label"),
    ("text-is-number", one_file("val.json", '[{"text": 5, "label": "pos"}]'), "a number as text"),
    (
        "records-not-objects",
        one_file("train.json", '[["a", "pos"], ["b", "neg"]]'),
        "rows as lists",
    ),
    ("empty-list", one_file("train.json", "[]"), "no records"),
]
TC_JSONL: list[tuple[str, Breaker, str]] = [
    (
        "one-bad-line",
        lambda r, sb: replace_rows(r / "train.jsonl", '"label": "neg"}', '"label": '),
        "a cut line",
    ),
    ("array-line", one_file("val.jsonl", '["a", "pos"]\n'), "a line that is an array"),
    ("empty-label", one_file("val.jsonl", '{"text": "fine", "label": ""}\n'), "an empty label"),
    ("null-text", one_file("val.jsonl", '{"text": null, "label": "pos"}\n'), "null text"),
    (
        "bom-utf16",
        one_file("train.jsonl", '{"text": "a", "label": "pos"}\n'.encode("utf-16")),
        "a UTF-16 jsonl",
    ),
]
TOK: list[tuple[str, Breaker, str]] = [
    (
        "length-mismatch",
        one_file("val.jsonl", '{"tokens": ["a", "b"], "ner_tags": ["O"]}\n'),
        "2 words, 1 tag",
    ),
    (
        "tags-not-list",
        one_file("val.jsonl", '{"tokens": ["a"], "ner_tags": "O"}\n'),
        "a tag string",
    ),
    (
        "tokens-string",
        one_file("val.jsonl", '{"tokens": "a b", "ner_tags": ["O", "O"]}\n'),
        "a sentence string",
    ),
    (
        "empty-word",
        one_file("val.jsonl", '{"tokens": ["a", ""], "ner_tags": ["O", "O"]}\n'),
        "an empty word",
    ),
    ("no-tags-field", one_file("train.jsonl", '{"tokens": ["a", "b"]}\n' * 4), "no ner_tags"),
    (
        "unseen-tag",
        one_file("val.jsonl", '{"tokens": ["a"], "ner_tags": ["B-XYZ"]}\n'),
        "a tag train lacks",
    ),
]
TOK_JSON: list[tuple[str, Breaker, str]] = [
    (
        "cut-file",
        lambda r, sb: write(r / "train.json", (r / "train.json").read_text()[:-40]),
        "a truncated JSON file",
    ),
    (
        "tags-are-numbers-and-words",
        one_file("val.json", '[{"tokens": ["a", "b"], "ner_tags": [0, {"x": 1}]}]'),
        "a dict as tag",
    ),
]
QA_ANSWER = '"answers": {"text": ["paris"], "answer_start": [96]}'
QA: list[tuple[str, Breaker, str]] = [
    (
        "answer-not-at-start",
        lambda r, sb: replace_rows(
            r / "train.json",
            '"answer_start": [\n',
            '"answer_start": [\n     3,\n    7\n    ],\n    "x": [\n',
        ),
        "answer_start off",
    ),
    (
        "answers-not-dict",
        one_file("val.json", '[{"question": "q ?", "context": "c", "answers": "c"}]'),
        "answers as a string",
    ),
    (
        "no-context",
        one_file("val.json", '[{"question": "q ?", "answers": {"text": [], "answer_start": []}}]'),
        "no context",
    ),
    (
        "empty-question",
        one_file(
            "val.json",
            '[{"question": "", "context": "c", "answers": {"text": [], "answer_start": []}}]',
        ),
        "an empty question",
    ),
]
QA_JSONL: list[tuple[str, Breaker, str]] = [
    (
        "answer-elsewhere",
        lambda r, sb: replace_rows(
            r / "train.jsonl", '"answer_start": [96]', '"answer_start": [5]'
        ),
        "the answer is not at answer_start",
    ),
    (
        "starts-without-texts",
        lambda r, sb: replace_rows(r / "val.jsonl", '"text": [', '"text": [], "unused": ['),
        "answer_start without text",
    ),
]

# --- NPZ calibration folders ----------------------------------------------------------------


def npz(path: Path, **arrays: np.ndarray) -> Breaker:
    return lambda root, sb: [np.savez(root / path, **arrays), str(root / path)][1:]


def all_npz(**arrays: np.ndarray) -> Breaker:
    def run(root: Path, sb: Sandbox) -> list[str]:
        for path in root.glob("*.npz"):
            np.savez(path, **arrays)
        return ["model.path", str(sb.inputs / "tiny.onnx")]

    return run


NPZ: list[tuple[str, Breaker, str]] = [
    ("missing-folder", gone(""), "data.path does not exist"),
    ("empty-folder", lambda r, sb: [shutil.rmtree(r), r.mkdir()] and [str(r)], "no .npz files"),
    ("not-a-zip", one_file("sample_001.npz", b"PK\x03\x04 not really"), "a broken archive"),
    ("text-file", one_file("sample_002.npz", "input = [1, 2, 3]"), "text named .npz"),
    ("other-keys", npz(Path("sample_003.npz"), x=np.zeros((3, 8, 8), np.float32)), "key x"),
    (
        "shape-not-the-models",
        all_npz(input=np.zeros((3, 9, 9), np.float32)),
        "9x9 samples for a model taking 8x8",
    ),
    (
        "rank-not-the-models",
        all_npz(input=np.zeros((1, 3, 8, 8), np.float32)),
        "samples saved with a batch axis",
    ),
    (
        "one-odd-shape",
        npz(Path("sample_002.npz"), input=np.zeros((3, 9, 9), np.float32)),
        "one 9x9 sample among 8x8 ones",
    ),
    (
        "object-array",
        npz(Path("sample_001.npz"), input=np.array([{"a": 1}], dtype=object)),
        "a pickled object array",
    ),
    ("no-arrays", npz(Path("sample_002.npz")), "an archive with no arrays"),
    ("loop", lambda r, sb: loop(r / "sample_003.npz"), "a link to itself"),
    ("image-folder-layout", other_kind("ic"), "an image folder under a custom use case"),
]

for _kind, _table in (
    ("tc", TC),
    ("tc_json", TC_JSON),
    ("tc_jsonl", TC_JSONL),
    ("tok", TOK),
    ("tok_json", TOK_JSON),
    ("qa", QA),
    ("qa_jsonl", QA_JSONL),
    ("npz", NPZ),
):
    CASES += [data_case(_kind, id, b, about) for id, b, about in _table]
