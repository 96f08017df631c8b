"""The `hf_text` format: one `{split}.{csv,json,jsonl}` file per split in the dataset root.

A file belongs to a split when its name holds `train`, `val`/`validation` or `test` as a word
(`train.csv`, `sst2_train.jsonl`, `validation-00000.json`). Columns follow the Hugging Face
conventions per task (text classification: `label` + `sentence1`/`sentence2`, `text` or
`sentence`; token classification: `tokens` + `ner_tags`/`*_tags`; question answering:
`question`, `context`, SQuAD `answers`), each overridable with `data.<role>_column`.

Validation reads every file once, streaming (memory holds the label set, not the rows), never
writes to the folder and returns every problem. A label in val/test that train lacks is a
Problem, not a warning: the model gets no output for it (as an image class missing in train).
At most `MAX_PER_KIND` problems of one kind are listed per file; the rest are counted in one.
"""

from __future__ import annotations

import json
import logging
import os
import re
from collections import Counter
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from sparsify.data.files import link_problem
from sparsify.data.layouts import layout_problem
from sparsify.data.text_readers import (
    EXTENSIONS,
    RECORD_UNITS,
    ProblemSink,
    _json_type,
    _short,
    read_records,
)
from sparsify.errors import Problem, SparsifyError, ValidationError

SPLITS = ("train", "val", "test")
TASKS = ("text-classification", "token-classification", "question-answering")
ROLES = ("text", "text_pair", "label", "tokens", "tags", "question", "context", "answers")
TARGET_ROLES = frozenset({"label", "tags", "answers"})  # optional in the test split
# "train" as a word, not a substring: "latest.csv" is not a test split, "interval.csv" not val
_SPLIT_WORD = re.compile(r"(?<![a-z])(train|validation|val|test)(?![a-z])")
_SPLIT_OF = {"train": "train", "validation": "val", "val": "val", "test": "test"}
_INT = re.compile(r"[+-]?\d+")
_ID_NAMES = frozenset({"id", "idx", "guid", "uid"})
_LAYOUT = "{train,val[,test]}.{csv,json,jsonl} in the dataset folder"

Issue = tuple[str, Any, str, str]  # (kind, value, message, fix); the caller adds the location


@dataclass
class TextSummary:
    root: str
    task: str
    files: dict[str, str] = field(default_factory=dict)  # split -> file path
    rows: dict[str, int] = field(default_factory=dict)  # split -> records read
    columns: dict[str, str] = field(default_factory=dict)  # role -> column name in the files
    labels: list[Any] = field(default_factory=list)  # sorted label (or tag) set of train
    label_counts: dict[str, int] = field(default_factory=dict)  # train: str(label) -> count

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["classes"] = [str(label) for label in self.labels]  # what the pipeline reads
        return out


def find_split_files(root: Path) -> tuple[dict[str, Path], list[Problem]]:
    """Split -> its file in `root`; files naming no split are ignored (README.md, ...)."""
    root = Path(root)
    files: dict[str, Path] = {}
    problems: list[Problem] = []
    try:
        with os.scandir(root) as it:
            entries = sorted((e for e in it if not e.name.startswith(".")), key=lambda e: e.name)
    except OSError as exc:
        fix = f"point data.path at a readable folder holding {_LAYOUT}"
        return {}, [Problem(str(root), str(root), f"cannot list the folder ({exc})", fix)]
    for entry in entries:
        stem, ext = os.path.splitext(entry.name.lower())
        splits = sorted({_SPLIT_OF[word] for word in _SPLIT_WORD.findall(stem)})
        if not splits:
            continue
        broken = link_problem(entry)  # is_file() raises on a link that loops
        if broken is not None:
            problems.append(broken)
            continue
        if not entry.is_file():
            continue
        if len(splits) > 1:
            problems.append(
                Problem(
                    entry.path,
                    entry.name,
                    f"file name names several splits ({', '.join(splits)})",
                    "rename it so its name holds exactly one of train, val, test",
                )
            )
        elif ext not in EXTENSIONS:
            problems.append(
                Problem(
                    entry.path,
                    ext or entry.name,
                    f"'{splits[0]}' file with an unknown extension",
                    f"convert it to {', '.join(EXTENSIONS)} (UTF-8), or move it out of the folder",
                )
            )
        elif splits[0] in files:
            problems.append(
                Problem(
                    entry.path,
                    entry.name,
                    f"second file for the '{splits[0]}' split (first: {files[splits[0]].name})",
                    "keep one file per split: merge them or move one out of the folder",
                )
            )
        else:
            files[splits[0]] = Path(entry.path)
    return files, problems


def iter_records_checked(path: Path, problems: list[Problem]) -> Iterator[tuple[int, dict]]:
    """(row/line/item number, record) for every well-formed record; the others become problems.

    Numbers are CSV rows (header = row 1), JSONL lines (from 1) or JSON list indices (from 0).
    """
    sink = ProblemSink(problems)
    yield from read_records(Path(path), sink)
    sink.finish()


def iter_records(path: Path) -> Iterator[tuple[int, dict]]:
    """As `iter_records_checked`, dropping the problems: for files that already validated."""
    yield from iter_records_checked(path, [])


def _label_sort_key(label: Any) -> tuple[int, int, str]:
    # ints numerically, then strings; a mixed set is a reported problem but must still sort
    return (0, label, "") if isinstance(label, int) else (1, 0, str(label))


def _resolve_columns(
    task: str, record: dict, from_csv: bool, overrides: dict[str, str | None]
) -> tuple[dict[str, str], list[tuple[str, str, bool]]]:
    """Role -> column for `record`'s keys, and (role, looked-for, overridden) for missing ones."""
    columns: dict[str, str] = {}
    missing: list[tuple[str, str, bool]] = []

    def pick(role: str, *candidates: str) -> None:
        wanted = overrides.get(role)
        if wanted:
            if wanted in record:
                columns[role] = wanted
            else:
                missing.append((role, wanted, True))
            return
        for name in candidates:
            if name in record:
                columns[role] = name
                return
        missing.append((role, " or ".join(candidates), False))

    if task == "text-classification":
        pick("label", "label")
        if overrides.get("text"):
            pick("text")
            if overrides.get("text_pair"):
                pick("text_pair")
        elif "sentence1" in record and "sentence2" in record:
            columns.update(text="sentence1", text_pair="sentence2")
        elif "text" in record or "sentence" in record:
            pick("text", "text", "sentence")
        else:
            # premise/hypothesis, question1/question2, ...: the first string columns
            others = [
                k
                for k, v in record.items()
                if k != columns.get("label")
                and k.lower() not in _ID_NAMES
                and isinstance(v, str)
                and not (from_csv and _INT.fullmatch(v.strip()))
            ]
            if others:
                columns.update(zip(("text", "text_pair"), others[:2], strict=False))
            else:
                missing.append(("text", "text, sentence or sentence1+sentence2", False))
    elif task == "token-classification":
        pick("tokens", "tokens")
        pick("tags", "ner_tags", *(k for k in record if k.endswith("_tags")))
    else:
        pick("question", "question")
        pick("context", "context")
        pick("answers", "answers")
        if "id" in record:
            columns["id"] = "id"
    return columns, missing


def _string(record: dict, column: str, what: str) -> tuple[str | None, Issue | None]:
    value = record[column]
    if not isinstance(value, str):
        message = f"{what} '{column}' is a JSON {_json_type(value)}, not a string"
        return None, ("not text", value, message, f"make '{column}' a string in every record")
    if not value.strip():
        message = f"{what} '{column}' is empty"
        return None, ("empty text", value, message, "fill it in or drop the record")
    return value, None


_WORDS_EXAMPLE = '["EU", "rejects", "German", "call"]'
_TAGS_EXAMPLE = '["B-ORG", "O", "B-MISC", "O"]'
_ANSWERS_EXAMPLE = '{"text": ["Denver Broncos"], "answer_start": [177]} (empty lists: unanswerable)'


def _json_field(
    record: dict, column: str, from_csv: bool, example: str
) -> tuple[Any, Issue | None]:
    value = record[column]
    if from_csv:
        try:  # CSV cells hold word lists and SQuAD answers as JSON text
            return json.loads(value), None
        except ValueError as exc:
            fix = f"write the cell as JSON, e.g. {example}"
            return None, ("cell json", _short(value), f"'{column}' is not JSON ({exc})", fix)
    return value, None


def _target(value: Any, column: str, what: str) -> tuple[Any, Issue | None]:
    """A label or tag as stored: a non-empty string or an int."""
    if isinstance(value, str) and value.strip():
        return value, None
    if isinstance(value, int) and not isinstance(value, bool):
        return value, None
    kind, message = (
        ("empty label", f"{what} in '{column}' is empty")
        if value in ("", None)
        else (
            "label type",
            f"{what} in '{column}' is a JSON {_json_type(value)}, not a string or an integer",
        )
    )
    return None, (kind, value, message, f"give every record a string or integer {what}")


def canonical_record(
    task: str, record: dict, columns: dict[str, str], from_csv: bool, split: str
) -> tuple[dict | None, list[Issue]]:
    """The record with canonical keys (see `load_split`), or None and what is wrong with it."""
    out: dict[str, Any] = {}
    issues: list[Issue] = []
    for role, column in columns.items():
        if column not in record:
            if split == "test" and role in TARGET_ROLES or role == "id":
                continue
            fix = f"add '{column}' to every record, or set data.{role}_column"
            issues.append(("missing field", column, f"no '{column}' field", fix))
    if issues:
        return None, issues

    def text(role: str, what: str) -> None:
        if role in columns and columns[role] in record:
            value, issue = _string(record, columns[role], what)
            out[role] = value
            if issue:
                issues.append(issue)

    if task == "text-classification":
        text("text", "text")
        text("text_pair", "text")
        if "label" in columns and columns["label"] in record:
            raw = record[columns["label"]]
            # "1" (any CSV cell, some JSON exports) and 1 are one label, whatever the format
            if isinstance(raw, str):
                raw = int(raw) if _INT.fullmatch(raw.strip()) else raw.strip()
            out["label"], issue = _target(raw, columns["label"], "label")
            if issue:
                issues.append(issue)
    elif task == "token-classification":
        _token_record(record, columns, from_csv, out, issues)
    else:
        text("question", "question")
        text("context", "context")
        if "answers" in columns and columns["answers"] in record:
            answers, issue = _json_field(record, columns["answers"], from_csv, _ANSWERS_EXAMPLE)
            issues += [issue] if issue else _answer_issues(answers, out.get("context"))
            out["answers"] = answers
        if "id" in columns and columns["id"] in record:
            out["id"] = str(record[columns["id"]])
    return (None, issues) if issues else (out, [])


def _token_record(
    record: dict, columns: dict[str, str], from_csv: bool, out: dict, issues: list[Issue]
) -> None:
    tokens: list | None = None
    if "tokens" in columns:
        column = columns["tokens"]
        value, issue = _json_field(record, column, from_csv, _WORDS_EXAMPLE)
        if issue:
            issues.append(issue)
        elif not isinstance(value, list) or not value:
            fix = f"make it a non-empty list of words, e.g. {_WORDS_EXAMPLE}"
            issues.append(("tokens shape", value, f"'{column}' is not a list of words", fix))
        elif not all(isinstance(t, str) and t.strip() for t in value):
            bad = next(i for i, t in enumerate(value) if not (isinstance(t, str) and t.strip()))
            message = f"word {bad} of '{column}' is empty or not a string"
            issues.append(("empty text", value[bad], message, "remove empty words and their tags"))
        else:
            tokens = out["tokens"] = value
    if "tags" not in columns or columns["tags"] not in record:
        return
    column = columns["tags"]
    tags, issue = _json_field(record, column, from_csv, _TAGS_EXAMPLE)
    if issue or not isinstance(tags, list):
        fix = f"make it a list with one tag per word, e.g. {_TAGS_EXAMPLE}"
        issues.append(issue or ("tags shape", _short(tags), f"'{column}' is not a list", fix))
        return
    for tag in tags:
        _, tag_issue = _target(tag, column, "tag")
        if tag_issue:
            issues.append(tag_issue)
            return
    if tokens is not None and len(tokens) != len(tags):
        message = f"{len(tokens)} words but {len(tags)} tags"
        issues.append(("length mismatch", len(tags), message, "give exactly one tag per word"))
    out["tags"] = tags


def _answer_issues(answers: Any, context: str | None) -> list[Issue]:
    if not (
        isinstance(answers, dict)
        and isinstance(answers.get("text"), list)
        and isinstance(answers.get("answer_start"), list)
        and len(answers["text"]) == len(answers["answer_start"])
        and all(isinstance(t, str) and t for t in answers["text"])
        and all(isinstance(s, int) and not isinstance(s, bool) for s in answers["answer_start"])
    ):
        return [
            (
                "answers shape",
                answers,
                "answers are not in SQuAD shape",
                f"write them as {_ANSWERS_EXAMPLE}",
            )
        ]
    issues: list[Issue] = []
    for answer, start in zip(answers["text"], answers["answer_start"], strict=True):
        if context is None or context[start : start + len(answer)] == answer:
            continue
        found = context.find(answer) if start >= 0 else -1
        where = f"; it occurs at {found}" if found >= 0 else "; it is not in the context at all"
        message = f"answer {answer!r} is not at answer_start {start} of the context{where}"
        issues.append(("answer position", start, message, "fix answer_start (a character offset)"))
    return issues


class _Scanner:
    """Reads the split files in order, train first, so val/test labels check against train."""

    def __init__(self, task: str, overrides: dict[str, str | None], sink: ProblemSink) -> None:
        self.task = task
        self.overrides = overrides
        self.sink = sink
        self.columns: dict[str, str] | None = None
        self.train_counts: Counter[Any] | None = None
        self.train_reference = False
        self.answerable = 0

    def scan(self, split: str, path: Path) -> int:
        from_csv = path.suffix.lower() == ".csv"
        unit = RECORD_UNITS[path.suffix.lower()]
        counts: Counter[Any] = Counter()
        rows = 0
        columns: dict[str, str] = {}
        for number, record in read_records(path, self.sink):
            rows += 1
            if rows == 1:
                columns = self._file_columns(split, path, record, from_csv)
            canonical, issues = canonical_record(self.task, record, columns, from_csv, split)
            for kind, value, message, fix in issues:
                self.sink.add(path, number, unit, kind, value, message, fix)
            if canonical is not None:
                self._count(split, path, number, unit, canonical, counts)
        if rows == 0 and not self.sink.has_problems(path):
            fix = "add records or remove the file"
            self.sink.add(path, None, unit, "no records", path.name, "the file has no records", fix)
        if split == "train":
            self.train_counts = counts
            # a train file read only in part (or with no usable label) is no reference: its
            # own problem is reported, not one "not in train" per val/test record
            self.train_reference = bool(counts) and str(path) not in self.sink.stopped
        return rows

    def _file_columns(self, split: str, path: Path, first: dict, from_csv: bool) -> dict[str, str]:
        """The columns this file is checked with; missing ones are reported once, here."""
        if self.columns is None:
            self.columns, missing = _resolve_columns(self.task, first, from_csv, self.overrides)
        else:
            missing = [
                (r, c, bool(self.overrides.get(r)))
                for r, c in self.columns.items()
                if c not in first and r != "id"
            ]
        for role, wanted, overridden in missing:
            if split == "test" and role in TARGET_ROLES:
                continue
            setting, found = f"data.{role}_column", ", ".join(first)
            if overridden:
                fix = f"{setting}={wanted!r} is not a column; set it to one of: {found}"
            else:
                fix = f"rename a column to {wanted.split(' or ')[0]!r} or set {setting} ({found})"
            if self.task == "question-answering" and "paragraphs" in first:
                fix = "flatten nested SQuAD to one record per question (question, context, answers)"
            self.sink.add(
                path, None, "", "missing column", wanted, f"no {role} column ({wanted})", fix
            )
        return {r: c for r, c in self.columns.items() if c in first}

    def _count(
        self, split: str, path: Path, number: int, unit: str, record: dict, counts: Counter[Any]
    ) -> None:
        if self.task == "question-answering":
            self.answerable += split == "train" and bool(record.get("answers", {}).get("text"))
            return
        values = [record["label"]] if "label" in record else record.get("tags", [])
        counts.update(values)
        known = self.train_counts
        if known is None or split == "train" or not self.train_reference:
            return
        what = "tag" if self.task == "token-classification" else "label"
        fix = "add training records with it, fix its spelling, or drop the record"
        for value in dict.fromkeys(values):
            if value not in known:
                message = f"{what} {value!r} is not in train"
                self.sink.add(path, number, unit, "unseen label", value, message, fix)


def validate_text_dataset(
    root: Path, task: str, columns: dict[str, str | None]
) -> tuple[TextSummary | None, list[Problem]]:
    """Check files, columns and every record; return the summary and ALL problems found.

    `columns` maps roles (`text`, `label`, ... or `text_column`, ...) to column names, None
    meaning the convention. The summary is None when the root, the task or train is unusable.
    """
    root = Path(root)
    if task not in TASKS:
        fix = f"use a text use case (task one of {', '.join(TASKS)}) with data.format=hf_text"
        return None, [Problem("use_case.task", task, "the hf_text format has no such task", fix)]
    if not root.is_dir():
        what = "does not exist" if not root.exists() else "is not a folder"
        fix = f"point data.path at a folder holding {_LAYOUT}"
        return None, [Problem(str(root), str(root), f"dataset folder {what}", fix)]
    overrides = {key.removesuffix("_column"): value for key, value in columns.items()}
    files, problems = find_split_files(root)
    if "train" not in files and not problems:
        wrong_kind = layout_problem(root, "hf_text")
        if wrong_kind is not None:  # the one problem that matters; the rest follow from it
            return None, [wrong_kind]
    for split in ("train", "val"):
        if split not in files:
            fix = f"add {split}.csv, {split}.json or {split}.jsonl to {root}"
            problems.append(Problem(str(root / split), split, f"no '{split}' file", fix))
    sink = ProblemSink(problems)
    scanner = _Scanner(task, overrides, sink)
    rows = {split: scanner.scan(split, files[split]) for split in SPLITS if split in files}
    if "train" not in files:
        sink.finish()
        return None, problems
    counts = scanner.train_counts or Counter()
    labels = sorted(counts, key=_label_sort_key)
    train = str(files["train"])
    if len({type(label) for label in labels}) > 1:
        fix = "use only strings or only integers as labels"
        sink.add(
            train, None, "", "mixed labels", labels[:10], "labels mix strings and integers", fix
        )
    if (
        task != "question-answering"
        and rows.get("train")
        and len(labels) == 1
        and train not in sink.stopped
    ):
        fix = "add training records of at least one other label"
        sink.add(
            train, None, "", "one label", labels, "train has a single label; nothing to learn", fix
        )
    if (
        task == "question-answering"
        and rows.get("train")
        and not scanner.answerable
        and not sink.has_problems(train)
    ):
        fix = "add answered questions; unanswerable ones alone teach nothing"
        sink.add(train, None, "", "no answers", 0, "every train question is unanswerable", fix)
    sink.finish()
    summary = TextSummary(
        root=str(root),
        task=task,
        files={split: str(path) for split, path in files.items()},
        rows=rows,
        columns=dict(scanner.columns or {}),
        labels=labels,
        label_counts={str(label): counts[label] for label in labels},
    )
    return summary, problems


def log_summary(summary: TextSummary, logger: logging.Logger) -> None:
    """Log split sizes, columns and label counts; warn about imbalance and tiny splits."""
    logger.info(
        "Text dataset %s (%s): %s; columns %s",
        summary.root,
        summary.task,
        ", ".join(f"{split}={n} rows" for split, n in summary.rows.items()),
        ", ".join(f"{role}={column}" for role, column in summary.columns.items()),
    )
    counts = summary.label_counts
    if counts and len(counts) <= 20:
        logger.info(
            "  train %s: %s",
            "tags" if summary.task == "token-classification" else "labels",
            ", ".join(f"{k}={n}" for k, n in counts.items()),
        )
    elif counts:
        values = sorted(counts.values())
        logger.info(
            "  train: %d labels, per label min=%d median=%d max=%d",
            len(values),
            values[0],
            values[len(values) // 2],
            values[-1],
        )
    # "O" dominates every NER set, so imbalance is only worth a warning for sentence labels
    if summary.task == "text-classification" and counts:
        smallest, largest = min(counts.values()), max(counts.values())
        if largest > 5 * smallest:
            logger.warning(
                "Train labels are imbalanced: largest has %d rows, smallest %d (>5x); "
                "accuracy may favour the large labels",
                largest,
                smallest,
            )
    for split, n in summary.rows.items():
        if n < 10:
            logger.warning("The %s split has only %d rows; its results will be noisy", split, n)


def validate_for_config(root: Path, cfg: Any) -> tuple[dict[str, Any] | None, list[Problem]]:
    """The `hf_text` validator: task from `cfg.use_case.task`, columns from `cfg.data`."""
    data = cfg.data
    columns = {role: getattr(data, f"{role}_column", None) for role in ROLES}
    summary, problems = validate_text_dataset(Path(root), str(cfg.use_case.task), columns)
    if summary is not None and not problems:
        log_summary(summary, logging.getLogger("sparsify"))
    return (summary.to_dict() if summary else None), problems


def load_split(root: Path, summary: dict[str, Any], split: str) -> list[dict[str, Any]]:
    """Records of `split` with canonical keys: `text`(+`text_pair`)/`label` |
    `tokens`/`tags` | `id`/`question`/`context`/`answers` (the test split may lack targets).

    Raises ValidationError if the file no longer validates (it changed since validation).
    """
    files = summary["files"]
    if split not in files:
        raise SparsifyError(
            f"text dataset {root} has no '{split}' file; add {split}.jsonl (or .csv/.json)"
        )
    path = Path(root) / Path(files[split]).name  # root wins: the folder may have moved
    task, columns = summary["task"], dict(summary["columns"])
    from_csv = path.suffix.lower() == ".csv"
    unit = RECORD_UNITS.get(path.suffix.lower(), "record")
    problems: list[Problem] = []
    records: list[dict[str, Any]] = []
    for number, record in iter_records_checked(path, problems):
        canonical, issues = canonical_record(task, record, columns, from_csv, split)
        problems += [
            Problem(f"{path}:{number}", v, f"{unit} {number}: {m}", f) for _, v, m, f in issues
        ]
        if canonical is not None:
            if task == "question-answering" and not canonical.get("id"):
                canonical["id"] = f"{split}-{number}"
            records.append(canonical)
    if problems:
        raise ValidationError(problems, str(path))
    return records
