from __future__ import annotations

import json
import logging
import os
from collections.abc import Callable
from pathlib import Path

import pytest

from sparsify.config import compose_config
from sparsify.data import text_readers
from sparsify.data.text import (
    find_split_files,
    iter_records,
    iter_records_checked,
    load_split,
    validate_for_config,
    validate_text_dataset,
)
from sparsify.errors import Problem, SparsifyError, ValidationError
from tests.fixtures.text import (
    classification_rows,
    make_qa,
    make_text_classification,
    make_token_classification,
    qa_rows,
    token_rows,
    write_split,
)

FORMATS = ("csv", "json", "jsonl")
TC, TOK, QA = "text-classification", "token-classification", "question-answering"
MAKERS: dict[str, Callable[..., Path]] = {
    TC: make_text_classification,
    TOK: make_token_classification,
    QA: make_qa,
}


def at(problems: list[Problem], path: Path, number: int | None = None) -> list[Problem]:
    """Problems keyed by `path` (and, given `number`, by that row/line/item)."""
    key = str(path) if number is None else f"{path}:{number}"
    return [p for p in problems if p.key == key]


def snapshot(root: Path) -> dict[str, tuple[int, int]]:
    out = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            st = os.stat(os.path.join(dirpath, name))
            out[os.path.relpath(os.path.join(dirpath, name), root)] = (st.st_mtime_ns, st.st_size)
    return out


def write_lines(path: Path, lines: list[str | bytes]) -> Path:
    data = b"".join((ln if isinstance(ln, bytes) else ln.encode()) + b"\n" for ln in lines)
    path.write_bytes(data)
    return path


@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize("task", [TC, TOK, QA])
def test_valid_dataset_summary(tmp_path: Path, fmt: str, task: str) -> None:
    root = MAKERS[task](tmp_path / "d", fmt=fmt)
    summary, problems = validate_text_dataset(root, task, {})
    assert problems == []
    assert summary is not None and summary.task == task
    assert summary.files == {"train": str(root / f"train.{fmt}"), "val": str(root / f"val.{fmt}")}
    d = summary.to_dict()
    if task == TC:
        assert summary.rows == {"train": 12, "val": 6}
        assert summary.columns == {"label": "label", "text": "text"}
        assert d["labels"] == ["neg", "pos"] and d["classes"] == ["neg", "pos"]
        assert summary.label_counts == {"neg": 6, "pos": 6}
        assert load_split(root, d, "val")[0] == {"text": "what a good movie !", "label": "pos"}
    elif task == TOK:
        assert summary.columns == {"tokens": "tokens", "tags": "ner_tags"}
        assert summary.labels == ["B-LOC", "B-ORG", "B-PER", "I-LOC", "O"]
        assert summary.label_counts["O"] == 28
        record = load_split(root, d, "train")[2]
        assert record == {
            "tokens": ["washington", "visited", "new", "york"],
            "tags": ["B-PER", "O", "B-LOC", "I-LOC"],
        }
    else:
        assert summary.rows == {"train": 12, "val": 7}  # val holds one unanswerable question
        assert summary.columns["answers"] == "answers" and d["classes"] == []
        val = load_split(root, d, "val")
        assert val[0]["id"] == "q12" and val[0]["answers"]["text"] == ["paris"]
        assert val[-1]["answers"] == {"text": [], "answer_start": []}


def test_sentence_pairs_and_int_labels(tmp_path: Path) -> None:
    root = make_text_classification(tmp_path / "pairs", fmt="csv", pair=True)
    summary, problems = validate_text_dataset(root, TC, {})
    assert problems == [] and summary is not None
    assert summary.columns == {"label": "label", "text": "sentence1", "text_pair": "sentence2"}
    assert (
        load_split(root, summary.to_dict(), "train")[1]["text_pair"] == "i would not watch it again"
    )

    # ints sort numerically, and "10" in a CSV reads as the int 10
    for fmt in ("csv", "jsonl"):
        root = tmp_path / f"ints_{fmt}"
        rows = [{"text": f"row {i}", "label": [2, 10, 0, 1][i % 4]} for i in range(8)]
        write_split(root, "train", rows, fmt)
        write_split(root, "validation", rows[:4], fmt)
        summary, problems = validate_text_dataset(root, TC, {})
        assert problems == [] and summary is not None
        assert summary.labels == [0, 1, 2, 10]
        assert summary.to_dict()["classes"] == ["0", "1", "2", "10"]
        assert load_split(root, summary.to_dict(), "val")[1]["label"] == 10


def test_fallback_string_columns_and_json_data_object(tmp_path: Path) -> None:
    rows = [
        {"idx": i, "premise": f"p {i}", "hypothesis": f"h {i}", "label": i % 2} for i in range(4)
    ]
    (tmp_path / "train.json").write_text(json.dumps({"version": "1", "data": rows}))
    (tmp_path / "val.json").write_text(json.dumps({"data": rows, "extra": [1, {"a": 2}]}))
    summary, problems = validate_text_dataset(tmp_path, TC, {})
    assert problems == [] and summary is not None
    assert summary.columns == {"label": "label", "text": "premise", "text_pair": "hypothesis"}


def test_column_overrides(tmp_path: Path) -> None:
    rows = [{"review": f"very {a} film", "stars": a} for a in ("good", "bad") * 3]
    write_split(tmp_path, "train", rows, "csv")
    write_split(tmp_path, "val", rows, "csv")
    summary, problems = validate_text_dataset(
        tmp_path, TC, {"text_column": "review", "label_column": "stars"}
    )
    assert problems == [] and summary is not None
    assert summary.columns == {"label": "stars", "text": "review"}
    assert load_split(tmp_path, summary.to_dict(), "val")[0] == {
        "text": "very good film",
        "label": "good",
    }

    # an override naming no column is reported once, with the columns that exist
    summary, problems = validate_text_dataset(tmp_path, TC, {"text": "body", "label": "stars"})
    assert [p.key for p in problems] == [str(tmp_path / "train.csv")]
    assert "data.text_column='body'" in problems[0].fix and "review" in problems[0].fix

    rows = [{"words": ["john", "ran"], "pos_tags": ["NN", "VB"]} for _ in range(3)]
    write_split(tmp_path / "tok", "train", rows, "jsonl")
    write_split(tmp_path / "tok", "val", rows, "jsonl")
    summary, problems = validate_text_dataset(tmp_path / "tok", TOK, {"tokens": "words"})
    assert problems == [] and summary is not None
    assert summary.columns == {"tokens": "words", "tags": "pos_tags"}  # any *_tags column


def test_validate_for_config_logs_and_returns_dict(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    root = tmp_path / "d"
    rows = classification_rows(12)
    write_split(root, "train", rows + [r for r in rows if r["label"] == "pos"] * 6, "jsonl")
    write_split(root, "val", rows[:4], "jsonl")
    cfg = compose_config(["use_case=nlp-sentiment_analysis", "data=hf_text", f"data.path={root}"])
    with caplog.at_level(logging.INFO, logger="sparsify"):
        summary, problems = validate_for_config(root, cfg)
    assert problems == [] and summary is not None
    assert summary["classes"] == ["neg", "pos"] and summary["rows"] == {"train": 48, "val": 4}
    assert "train labels: neg=6, pos=42" in caplog.text
    assert "imbalanced" in caplog.text and "val split has only 4 rows" in caplog.text

    cfg.data.text_column = "nope"
    summary, problems = validate_for_config(root, cfg)
    assert problems and "data.text_column" in problems[0].fix


def test_find_split_files(tmp_path: Path) -> None:
    for name in ("sst2_train.jsonl", "validation-00000.csv", "README.md", "latest.csv", ".hidden"):
        (tmp_path / name).write_text("")
    (tmp_path / "test").mkdir()
    files, problems = find_split_files(tmp_path)
    assert problems == []
    assert files == {
        "train": tmp_path / "sst2_train.jsonl",
        "val": tmp_path / "validation-00000.csv",
    }

    for name in ("train.parquet", "val.csv", "train_val.csv", "test.jsonl", "test.json"):
        (tmp_path / name).write_text("")
    files, problems = find_split_files(tmp_path)
    by_key = {p.key: p.message for p in problems}
    assert "unknown extension" in by_key[str(tmp_path / "train.parquet")]
    assert "second file for the 'val' split" in by_key[str(tmp_path / "validation-00000.csv")]
    assert "several splits" in by_key[str(tmp_path / "train_val.csv")]
    assert "second file for the 'test' split" in by_key[str(tmp_path / "test.jsonl")]


def test_root_task_and_missing_splits(tmp_path: Path) -> None:
    summary, problems = validate_text_dataset(tmp_path / "nope", TC, {})
    assert summary is None and [p.key for p in problems] == [str(tmp_path / "nope")]
    summary, problems = validate_text_dataset(tmp_path, "image-classification", {})
    assert summary is None and problems[0].key == "use_case.task"

    summary, problems = validate_text_dataset(tmp_path, TC, {})
    assert summary is None
    assert [p.key for p in problems] == [str(tmp_path / "train"), str(tmp_path / "val")]
    write_split(tmp_path, "train", classification_rows(4), "csv")
    summary, problems = validate_text_dataset(tmp_path, TC, {})
    assert summary is not None and [p.key for p in problems] == [str(tmp_path / "val")]


def test_every_problem_in_one_call(tmp_path: Path) -> None:
    """Broken records across all three formats, each reported with its file and position."""
    train = write_lines(
        tmp_path / "train.csv",
        [
            "text,label",
            "a good film,pos",  # row 2
            ",neg",  # row 3: empty text
            "a bad film,neg,extra",  # row 4: field count
            b"caf\xe9 was good,pos",  # row 5 / line 5: latin-1, not UTF-8
            "an awful film,",  # row 6: empty label
            "a great film,pos",
            "a bad film,neg",
        ],
    )
    val = write_lines(
        tmp_path / "val.jsonl",
        [
            '{"text": "good", "label": "pos"}',
            "{not json",  # line 2
            '["a list"]',  # line 3
            "",  # blank lines are skipped
            '{"text": "fine", "label": "meh"}',  # line 5: label not in train
            '{"label": "pos"}',  # line 6: no text field
            '{"text": 3, "label": "neg"}',  # line 7: text is a number
            '{"text": "ok", "label": 1.5}',  # line 8: float label
        ],
    )
    test = tmp_path / "test.json"
    test.write_text('[{"text": "good", "label": "pos"},\n 7,\n {"text": "x" "label": 1}]')
    summary, problems = validate_text_dataset(tmp_path, TC, {})
    assert summary is not None and summary.labels == ["neg", "pos"]
    expected = {
        (train, 3): "empty",
        (train, 4): "3 fields, the header has 2",
        (train, 5): "not valid UTF-8",
        (train, 6): "empty",
        (val, 2): "not valid JSON",
        (val, 3): "array where an object is expected",
        (val, 5): "label 'meh' is not in train",
        (val, 6): "no 'text' field",
        (val, 7): "is a JSON number, not a string",
        (val, 8): "is a JSON number, not a string or an integer",
        (test, 1): "item 1: a JSON number",
        (test, 3): "line 3: Expecting ',' delimiter",
    }
    for (path, number), words in expected.items():
        found = at(problems, path, number)
        assert len(found) == 1 and words in found[0].message, (path, number, problems)
        assert found[0].fix
    assert len(problems) == len(expected)


def test_many_bad_lines_are_capped(tmp_path: Path) -> None:
    write_split(tmp_path, "train", classification_rows(4), "jsonl")
    write_lines(tmp_path / "val.jsonl", ["oops"] * 25)
    _, problems = validate_text_dataset(tmp_path, TC, {})
    assert len(problems) == text_readers.MAX_PER_KIND + 1
    assert "15 more records with the same problem" in problems[-1].message


@pytest.mark.parametrize("fmt", FORMATS)
def test_token_problems(tmp_path: Path, fmt: str) -> None:
    rows = token_rows(6)
    rows[1]["ner_tags"] = rows[1]["ner_tags"][:-1]  # one tag short
    rows[2]["tokens"] = []
    rows[3]["ner_tags"] = "B-PER O"  # not a list
    write_split(tmp_path, "train", rows, fmt)
    val = write_split(tmp_path, "val", [{"tokens": ["x"], "ner_tags": ["B-FOO"]}], fmt)
    _, problems = validate_text_dataset(tmp_path, TOK, {})
    train = tmp_path / f"train.{fmt}"
    n = {"csv": 2, "jsonl": 1, "json": 0}[fmt]  # where the first record sits
    assert "6 words but 5 tags" in at(problems, train, n + 1)[0].message
    assert "not a list of words" in at(problems, train, n + 2)[0].message
    assert at(problems, train, n + 3)  # CSV: not JSON; JSON(L): a string, not a list
    assert "tag 'B-FOO' is not in train" in at(problems, val, n)[0].message
    assert len(problems) == 4


@pytest.mark.parametrize("fmt", FORMATS)
def test_qa_problems(tmp_path: Path, fmt: str) -> None:
    rows = qa_rows(5)
    rows[0]["answers"]["answer_start"] = [3]  # the text is elsewhere
    rows[1]["answers"] = {"text": "paris", "answer_start": 0}  # scalars, not lists
    rows[2]["answers"] = {"text": ["rome"], "answer_start": [5]}  # not in the context at all
    rows[3]["question"] = "  "
    write_split(tmp_path, "train", rows, fmt)
    write_split(tmp_path, "val", qa_rows(2, unanswerable=True), fmt)
    _, problems = validate_text_dataset(tmp_path, QA, {})
    train = tmp_path / f"train.{fmt}"
    n = {"csv": 2, "jsonl": 1, "json": 0}[fmt]
    assert (
        "is not at answer_start 3 of the context; it occurs at" in at(problems, train, n)[0].message
    )
    assert "SQuAD shape" in at(problems, train, n + 1)[0].message
    assert "not in the context at all" in at(problems, train, n + 2)[0].message
    assert "question 'question' is empty" in at(problems, train, n + 3)[0].message
    assert len(problems) == 4


def test_csv_missing_label_column_and_test_without_labels(tmp_path: Path) -> None:
    write_split(tmp_path, "train", classification_rows(6), "csv")
    write_split(tmp_path, "val", [{"text": "good"}], "csv")
    write_split(tmp_path, "test", [{"text": "good"}], "jsonl")  # test may lack labels
    summary, problems = validate_text_dataset(tmp_path, TC, {})
    assert [p.key for p in problems] == [str(tmp_path / "val.csv")]
    assert "no label column" in problems[0].message and "data.label_column" in problems[0].fix
    assert summary is not None
    assert load_split(tmp_path, summary.to_dict(), "test") == [{"text": "good"}]


def test_mixed_and_single_labels(tmp_path: Path) -> None:
    write_split(
        tmp_path, "train", [{"text": "a", "label": 1}, {"text": "b", "label": "x"}], "jsonl"
    )
    write_split(tmp_path, "val", [{"text": "a", "label": 1}], "jsonl")
    _, problems = validate_text_dataset(tmp_path, TC, {})
    assert [p.message for p in problems] == ["labels mix strings and integers"]
    write_split(tmp_path, "train", [{"text": "a", "label": "x"}] * 3, "jsonl")
    write_split(tmp_path, "val", [{"text": "a", "label": "x"}], "jsonl")
    _, problems = validate_text_dataset(tmp_path, TC, {})
    assert ["single label" in p.message for p in problems] == [True]


def test_utf8_and_json_errors_in_json_file(tmp_path: Path) -> None:
    write_split(tmp_path, "train", classification_rows(4), "jsonl")
    val = tmp_path / "val.json"
    val.write_bytes(b'[\n{"text": "ok", "label": "pos"},\n{"text": "caf\xe9", "label": "pos"}\n]')
    _, problems = validate_text_dataset(tmp_path, TC, {})
    assert [p.key for p in problems] == [f"{val}:3"]
    assert "not valid UTF-8" in problems[0].message

    empty = tmp_path / "empty"
    write_split(empty, "train", classification_rows(4), "jsonl")
    (empty / "val.json").write_text('{"rows": []}')
    (empty / "test.csv").write_text("")
    _, problems = validate_text_dataset(empty, TC, {})
    assert ["no 'data' list" in problems[0].message, "no records" in problems[1].message] == [
        True,
        True,
    ]


def test_json_streams_across_chunks(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Tiny chunks cut values, strings and numbers mid-way; the records must come out whole."""
    rows = [{"text": f'caf\u00e9 n\u00b0{i} \\ "q"', "label": 12345 + i} for i in range(40)]
    path = tmp_path / "train.json"
    path.write_text(json.dumps({"meta": {"x": [1, 2]}, "data": rows}, indent=2, ensure_ascii=False))
    monkeypatch.setattr(text_readers, "_JSON_CHUNK", 7)
    problems: list[Problem] = []
    records = [r for _, r in iter_records_checked(path, problems)]
    assert problems == [] and records == rows
    assert [n for n, _ in iter_records(path)] == list(range(40))


def test_load_split_refuses_broken_or_missing(tmp_path: Path) -> None:
    root = make_text_classification(tmp_path, fmt="jsonl")
    summary, _ = validate_text_dataset(root, TC, {})
    assert summary is not None
    with pytest.raises(SparsifyError, match="no 'test' file"):
        load_split(root, summary.to_dict(), "test")
    with open(root / "val.jsonl", "a") as f:
        f.write("broken\n")
    with pytest.raises(ValidationError, match="line 7"):
        load_split(root, summary.to_dict(), "val")


def test_validation_leaves_folder_unchanged(tmp_path: Path) -> None:
    root = make_qa(tmp_path / "qa", fmt="csv")
    write_lines(root / "test.jsonl", ["{bad"])
    (root / "notes.txt").write_text("not data")
    before = snapshot(root)
    validate_text_dataset(root, QA, {})
    summary, _ = validate_text_dataset(root, QA, {})
    assert summary is not None
    load_split(root, summary.to_dict(), "train")
    assert snapshot(root) == before


def test_excel_style_csv(tmp_path: Path) -> None:
    """Byte-order mark, CRLF line ends, quoted commas and newlines, as Excel writes them."""
    body = 'text,label\r\n"good, really\r\ngood",pos\r\nbad,neg\r\n"an ""awful"" film",neg\r\n'
    (tmp_path / "train.csv").write_bytes(b"\xef\xbb\xbf" + body.encode())
    write_lines(tmp_path / "val.jsonl", ['{"text": "good", "label": "pos"}'])
    summary, problems = validate_text_dataset(tmp_path, TC, {})
    assert problems == [] and summary is not None and summary.columns["text"] == "text"
    train = load_split(tmp_path, summary.to_dict(), "train")
    assert [r["text"] for r in train] == ["good, really\r\ngood", "bad", 'an "awful" film']


def test_jsonl_holding_a_json_list_says_so(tmp_path: Path) -> None:
    write_split(tmp_path, "train", classification_rows(4), "jsonl")
    (tmp_path / "val.jsonl").write_text(json.dumps(classification_rows(2)))
    _, problems = validate_text_dataset(tmp_path, TC, {})
    assert [p.key for p in problems] == [f"{tmp_path / 'val.jsonl'}:1"]
    assert "rename it to .json" in problems[0].fix
