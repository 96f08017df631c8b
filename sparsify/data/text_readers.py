"""Streaming readers for CSV / JSONL / JSON text datasets: records stream out of a file and
malformed ones become problems (at most MAX_PER_KIND of one kind per file are listed)."""

from __future__ import annotations

import codecs
import csv
import json
import re
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any, BinaryIO

from sparsify.data.text_encoding import HEAD_BYTES, wide_encoding
from sparsify.errors import Problem

EXTENSIONS = (".csv", ".json", ".jsonl")

# ---- reading: records stream out of the file, malformed ones become problems ----------------

RECORD_UNITS = {".csv": "row", ".jsonl": "line", ".json": "item"}
MAX_PER_KIND = 10  # problems listed per file and kind; a broken 1M-row file yields ~10, not 1M
_UTF8_FIX = "re-save the file as UTF-8 (e.g. iconv -f latin1 -t utf-8)"
_MAX_RECORD_CHARS = 64 << 20  # a JSON value larger than this is refused, keeping memory bounded
_JSON_CHUNK = 1 << 20  # bytes read at a time from a .json file


class ProblemSink:
    """Collects problems; past `limit` of one kind in one file they are only counted."""

    def __init__(self, problems: list[Problem], limit: int = MAX_PER_KIND) -> None:
        self.problems = problems
        self.limit = limit
        self._counts: Counter[tuple[str, str]] = Counter()
        self._fixes: dict[tuple[str, str], str] = {}
        # files not read to the end (wrong encoding, broken syntax, ...): what was read of
        # them is no reference for the other splits
        self.stopped: set[str] = set()

    def add(
        self,
        path: Path | str,
        number: int | None,
        unit: str,
        kind: str,
        value: Any,
        message: str,
        fix: str,
    ) -> None:
        """A problem in `path`; `number` (a row/line/item, or None for the whole file)."""
        key = (str(path), kind)
        self._counts[key] += 1
        self._fixes.setdefault(key, fix)
        if self._counts[key] > self.limit:
            return
        if number is None:
            self.problems.append(Problem(str(path), value, message, fix))
        else:
            self.problems.append(
                Problem(f"{path}:{number}", value, f"{unit} {number}: {message}", fix)
            )

    def stop(self, path: Path | str) -> None:
        """Mark `path` as not read to its end."""
        self.stopped.add(str(path))

    def has_problems(self, path: Path | str) -> bool:
        return any(p == str(path) for p, _ in self._counts)

    def finish(self) -> None:
        """Add one problem per (file, kind) that went past the limit, saying how many more."""
        for (path, kind), count in self._counts.items():
            if count > self.limit:
                extra = count - self.limit
                message = f"{extra} more records with the same problem ({kind}) are not listed"
                self.problems.append(
                    Problem(path, f"{extra} more", message, self._fixes[(path, kind)])
                )
        self._counts.clear()


def _json_type(value: Any) -> str:
    names = {dict: "object", list: "array", str: "string", bool: "boolean", type(None): "null"}
    return names.get(type(value), "number")


def _short(value: Any, limit: int = 60) -> Any:
    text = value if isinstance(value, str) else repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _decode_line(raw: bytes, number: int) -> tuple[str, UnicodeDecodeError | None]:
    try:
        # utf-8-sig on line 1: Excel and Notepad start UTF-8 files with a byte-order mark
        return raw.decode("utf-8-sig" if number == 1 else "utf-8"), None
    except UnicodeDecodeError as exc:
        return raw.decode("utf-8", errors="replace"), exc


def _utf8_problem(
    sink: ProblemSink, path: Path, number: int, raw: bytes, exc: UnicodeDecodeError
) -> None:
    bad = raw[max(exc.start - 8, 0) : exc.end + 8]
    message = f"not valid UTF-8 ({exc.reason} at byte {exc.start} of the line)"
    sink.add(path, number, "line", "utf-8", bad, message, _UTF8_FIX)


def _csv_records(path: Path, sink: ProblemSink) -> Iterator[tuple[int, dict]]:
    bad_lines: list[int] = []

    def lines(f: BinaryIO) -> Iterator[str]:
        for number, raw in enumerate(f, 1):
            text, exc = _decode_line(raw, number)
            if exc is not None:
                _utf8_problem(sink, path, number, raw, exc)
                bad_lines.append(number)
            yield text

    row = 1
    with open(path, "rb") as f:
        reader = csv.reader(lines(f))
        started = 1  # line the current row starts on
        try:
            header = [name.strip() for name in next(reader, [])]
            if not header:
                return
            bad_lines.clear()
            if any("\0" in name for name in header):
                _nul_problem(sink, path, 1, "the header", sum(n.count("\0") for n in header))
                sink.stop(path)
                return
            dupes = sorted({name for name in header if header.count(name) > 1})
            if dupes:
                fix = "give every column a distinct name"
                sink.add(path, 1, "row", "header", dupes, "duplicate column names", fix)
            started = reader.line_num + 1
            for fields in reader:
                row += 1
                if bad_lines:  # the row holding an undecodable line, already reported by line
                    bad_lines.clear()
                elif not fields:  # blank line
                    pass
                elif len(fields) != len(header):
                    message = f"{len(fields)} fields, the header has {len(header)}"
                    fix = 'quote fields that hold commas or quotes ("a, b"), one record per row'
                    sink.add(path, row, "row", "field count", len(fields), message, fix)
                elif any("\0" in field for field in fields):
                    for column, field in zip(header, fields, strict=True):
                        if "\0" in field:
                            _nul_problem(sink, path, row, f"column {column!r}", field.count("\0"))
                else:
                    yield row, dict(zip(header, fields, strict=True))
                started = reader.line_num + 1
        except csv.Error as exc:
            sink.stop(path)
            limit = csv.field_size_limit()
            if "field larger than field limit" in str(exc):
                message = (
                    f"a field starting on line {started} is longer than {limit} characters "
                    f"({limit >> 10} KiB), the limit of the CSV reader; rows after it are not read"
                )
                fix = (
                    f"split the text into records under {limit >> 10} KiB (a model reads only "
                    "its first max_length tokens), or save the split as .jsonl, which has no "
                    f"field limit; if no text is this long, close the quote opened on line {started}"
                )
                sink.add(path, row + 1, "row", "field too long", limit, message, fix)
                return
            message = f"CSV cannot be parsed ({exc}); rows after it are not read"
            sink.add(path, row + 1, "row", "csv syntax", path.name, message, "fix the quoting")


def _nul_problem(sink: ProblemSink, path: Path, row: int, where: str, count: int) -> None:
    """NUL bytes in a UTF-8 file: never printed raw (they cut terminal output short)."""
    message = f"{where} holds {count} NUL byte(s) (\\x00), which no text should contain"
    fix = f"remove them, e.g. tr -d '\\000' < {path.name} > clean.csv, and check those rows"
    sink.add(path, row, "row", "nul", where, message, fix)


def _jsonl_records(path: Path, sink: ProblemSink) -> Iterator[tuple[int, dict]]:
    with open(path, "rb") as f:
        for number, raw in enumerate(f, 1):
            line, exc = _decode_line(raw, number)
            if exc is not None:
                _utf8_problem(sink, path, number, raw, exc)
                continue
            if not line.strip():
                continue
            # a JSON list saved as .jsonl shows up on line 1 (parsed or not): say what to do
            as_list = number == 1 and line.lstrip().startswith("[")
            list_fix = "this file holds one JSON list: rename it to .json"
            try:
                record = json.loads(line)
            except json.JSONDecodeError as err:
                fix = list_fix if as_list else "write one complete JSON object per line"
                message = f"not valid JSON ({err.msg} at column {err.colno})"
                sink.add(path, number, "line", "not json", _short(line.strip()), message, fix)
                continue
            if not isinstance(record, dict):
                message = f"a JSON {_json_type(record)} where an object is expected"
                fix = list_fix if as_list else 'write one object per line, e.g. {"text": "..."}'
                sink.add(path, number, "line", "not object", _short(record), message, fix)
                continue
            yield number, record


class _JsonSyntaxError(Exception):
    def __init__(self, line: int, message: str, kind: str = "not json") -> None:
        super().__init__(message)
        self.line = line
        self.kind = kind


class _JsonStream:
    """A JSON document read in 1 MiB chunks and decoded value by value.

    json.load would hold the whole file (and every record) in memory; here only the current
    record and one chunk are.
    """

    _decoder = json.JSONDecoder()
    _blank = re.compile(r"[ \t\n\r]*")

    def __init__(self, f: BinaryIO, chunk: int | None = None) -> None:
        self._f = f
        self._chunk = chunk or _JSON_CHUNK
        self._utf8 = codecs.getincrementaldecoder("utf-8-sig")()
        self._lines_before = 0  # newlines in the text already dropped from the buffer
        self._bytes_read = 0
        self.buf = ""
        self.pos = 0
        self.eof = False

    def line_at(self, pos: int) -> int:
        return self._lines_before + self.buf.count("\n", 0, pos) + 1

    def _more(self) -> bool:
        """Append the next chunk, dropping consumed text; False at end of file."""
        if self.eof:
            return False
        if len(self.buf) - self.pos > _MAX_RECORD_CHARS:
            raise _JsonSyntaxError(self.line_at(self.pos), "a single value is larger than 64 MiB")
        raw = self._f.read(self._chunk)
        try:
            text = self._utf8.decode(raw, final=not raw)
        except UnicodeDecodeError as exc:
            where = self._bytes_read + exc.start
            line = self.line_at(len(self.buf)) + raw.count(b"\n", 0, exc.start)
            raise _JsonSyntaxError(line, f"not valid UTF-8 at byte {where}", "utf-8") from None
        self._bytes_read += len(raw)
        self._lines_before += self.buf.count("\n", 0, self.pos)
        self.buf = self.buf[self.pos :] + text
        self.pos = 0
        self.eof = not raw
        return True

    def peek(self) -> str:
        """The next non-blank character, not consumed ('' at the end of the file)."""
        while True:
            match = self._blank.match(self.buf, self.pos)
            self.pos = match.end() if match else self.pos
            if self.pos < len(self.buf):
                return self.buf[self.pos]
            if not self._more():
                return ""

    def value(self) -> Any:
        self.peek()
        while True:
            try:
                value, end = self._decoder.raw_decode(self.buf, self.pos)
            except json.JSONDecodeError as exc:
                # a value cut by the chunk's end fails at (or, for strings, starts before) the end
                cut = exc.pos >= len(self.buf) - 1 or exc.msg.startswith("Unterminated")
                if cut and self._more():
                    continue
                raise _JsonSyntaxError(self.line_at(exc.pos), exc.msg) from None
            if end == len(self.buf) and self._more():  # a number may go on in the next chunk
                continue
            self.pos = end
            return value

    def expect(self, chars: str, after: str) -> str:
        char = self.peek()
        if not char or char not in chars:
            wanted = " or ".join(repr(c) for c in chars)
            raise _JsonSyntaxError(self.line_at(self.pos), f"expected {wanted} {after}")
        self.pos += 1
        return char


def _json_list(stream: _JsonStream, path: Path, sink: ProblemSink) -> Iterator[tuple[int, dict]]:
    stream.expect("[", "to open the list of records")
    if stream.peek() == "]":
        stream.pos += 1
        return
    index = 0
    while True:
        item = stream.value()
        if isinstance(item, dict):
            yield index, item
        else:
            message = f"a JSON {_json_type(item)} where an object is expected"
            fix = 'make every item of the list an object, e.g. {"text": "...", "label": "pos"}'
            sink.add(path, index, "item", "not object", _short(item), message, fix)
        if stream.expect(",]", f"after item {index}") == "]":
            return
        index += 1


def _json_records(path: Path, sink: ProblemSink) -> Iterator[tuple[int, dict]]:
    """Items of a top-level list, or of the `data` list of a top-level object."""
    with open(path, "rb") as f:
        stream = _JsonStream(f)
        try:
            first = stream.peek()
            if first == "[":
                yield from _json_list(stream, path, sink)
            elif first == "{":
                yield from _json_data_list(stream, path, sink)
            elif first:
                message = "the file is not a JSON list of records nor an object with a 'data' list"
                fix = 'write [{"text": ..., "label": ...}, ...] or {"data": [...]}'
                sink.add(path, None, "", "json shape", _short(first), message, fix)
                return
            if stream.peek():
                raise _JsonSyntaxError(
                    stream.line_at(stream.pos), "extra text after the JSON document"
                )
        except _JsonSyntaxError as exc:
            sink.stop(path)
            fix = (
                _UTF8_FIX
                if exc.kind == "utf-8"
                else "fix the JSON syntax there (a JSON linter shows it)"
            )
            message = f"{exc}; the rest of the file is not read"
            sink.add(path, exc.line, "line", exc.kind, path.name, message, fix)


def _json_data_list(
    stream: _JsonStream, path: Path, sink: ProblemSink
) -> Iterator[tuple[int, dict]]:
    stream.expect("{", "")
    found = False
    while stream.peek() != "}":
        key = stream.value()
        if not isinstance(key, str):
            raise _JsonSyntaxError(stream.line_at(stream.pos), "expected a property name")
        stream.expect(":", f"after {key!r}")
        if key == "data" and stream.peek() == "[":
            found = True
            yield from _json_list(stream, path, sink)
        else:
            stream.value()  # other top-level keys (version, ...) are read and dropped
        if stream.expect(",}", f"after the value of {key!r}") == "}":
            break
    else:
        stream.pos += 1
    if not found:
        message = "the JSON object has no 'data' list of records"
        fix = 'put the records in a list under "data": {"data": [{...}, ...]}'
        sink.add(path, None, "", "json shape", "no data", message, fix)


def read_records(path: Path, sink: ProblemSink) -> Iterator[tuple[int, dict]]:
    """Well-formed records of one file, by its extension; the rest go to `sink`."""
    readers = {".csv": _csv_records, ".jsonl": _jsonl_records, ".json": _json_records}
    reader = readers.get(path.suffix.lower())
    if reader is None:
        fix = f"use one of {', '.join(EXTENSIONS)}"
        sink.add(path, None, "", "extension", path.suffix, "unknown extension", fix)
        return
    try:
        with open(path, "rb") as f:
            head = f.read(HEAD_BYTES)
        wide = wide_encoding(head)
        if wide is not None:
            sink.stop(path)
            encoding, how = wide
            message = f"the file is {encoding} ({how}), not UTF-8"
            fix = (
                f"convert it: iconv -f {encoding} -t UTF-8 "
                f"{path.name} > {path.stem}.utf8{path.suffix}, then replace {path.name} with it"
            )
            sink.add(path, None, "", "encoding", encoding, message, fix)
            return
        yield from reader(path, sink)
    except OSError as exc:
        sink.stop(path)
        fix = "check that the file exists and is readable"
        sink.add(path, None, "", "unreadable", path.name, f"cannot read the file ({exc})", fix)
