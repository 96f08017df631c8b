"""The sweep tables: Pareto front, summary.csv (every run) and summary.md (a table per group)."""

from __future__ import annotations

import csv
import io
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from sparsify.fileio import atomic_write_text
from sparsify.report.collect import COLUMNS, RunRow

if TYPE_CHECKING:  # groups.py builds on mark_pareto here
    from sparsify.report.groups import Group


def _measured(row: RunRow) -> bool:
    return row.status == "done" and row.accuracy is not None and row.latency_ms is not None


def mark_pareto(rows: Sequence[RunRow]) -> list[RunRow]:
    """Set `pareto` on the finished runs no other run beats on both accuracy and latency.

    A run is dominated when another is at least as accurate and at least as fast, and
    strictly better in one of the two. Returns the front sorted by latency.
    """
    measured = [r for r in rows if _measured(r)]
    for row in rows:
        row.pareto = False
    front = []
    for row in measured:
        dominated = any(
            o is not row
            and o.accuracy >= row.accuracy  # type: ignore[operator]
            and o.latency_ms <= row.latency_ms  # type: ignore[operator]
            and (o.accuracy > row.accuracy or o.latency_ms < row.latency_ms)  # type: ignore[operator]
            for o in measured
        )
        if not dominated:
            row.pareto = True
            front.append(row)
    return sorted(front, key=lambda r: (r.latency_ms, -(r.accuracy or 0.0)))


# what a run was asked for (read from its config): shown only for a run that finished, so
# that a failed row does not read as a pruned / INT8 result
PLANNED = ("sparsity", "quantization")


def shown(row: RunRow) -> dict[str, object]:
    """The row's values as the tables show them: a run that did not finish has no sparsity
    or quantization of its own."""
    values = row.as_dict()
    if row.status != "done":
        values.update(dict.fromkeys(PLANNED))
    return values


def to_csv(rows: Sequence[RunRow]) -> str:
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=COLUMNS, lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: ("" if v is None else v) for k, v in shown(row).items()})
    return buf.getvalue()


def one_line(text: str | None, limit: int = 240) -> str:
    """An error message squeezed onto one table cell."""
    if not text:
        return ""
    flat = " ".join(text.split())
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"


def _fmt(value: object, digits: int = 3) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "yes" if value else ""
    if isinstance(value, float):
        return f"{value:.{digits}f}".rstrip("0").rstrip(".") if value % 1 else f"{value:.1f}"
    return str(value)


def table_rows(
    rows: Sequence[RunRow], metric: str | None = None
) -> tuple[list[str], list[list[str]]]:
    """Headers and cells of the human-readable table (markdown, console, HTML): one group's
    rows, headed by the group's `metric` (default: the first one the rows recorded)."""
    lat_b = next((r.latency_batch for r in rows if r.latency_batch), None)
    tp_b = next((r.throughput_batch for r in rows if r.throughput_batch), None)
    metric = metric or next((r.metric for r in rows if r.metric), "accuracy")
    headers = [
        "run",
        "use case",
        "data",
        "level",
        "experiment",
        "sparsity",
        "quantization",
        f"{metric} (dense)",
        f"latency ms b{lat_b or '?'} (dense)",
        f"items/s b{tp_b or '?'}",
        "speedup",
        "size MB",
        "pareto",
        "status",
    ]
    cells = []
    for r in rows:
        own = shown(r)
        acc = "" if r.accuracy is None else f"{_fmt(r.accuracy)} ({_fmt(r.baseline_accuracy)})"
        lat = (
            "" if r.latency_ms is None else f"{_fmt(r.latency_ms)} ({_fmt(r.baseline_latency_ms)})"
        )
        sparsity = "" if own["sparsity"] is None else f"{100 * float(own['sparsity']):.1f} %"  # type: ignore[arg-type]
        cells.append(
            [
                r.run or r.run_dir,
                r.use_case or "",
                r.data or "",
                _fmt(r.level, 2),
                r.experiment or "",
                sparsity,
                str(own["quantization"] or ""),
                acc,
                lat,
                _fmt(r.throughput, 1),
                "" if r.speedup is None else f"{_fmt(r.speedup)}x",
                _fmt(r.size_mb),
                _fmt(r.pareto),
                r.status,
            ]
        )
    return headers, cells


def host_lines(rows: Sequence[RunRow]) -> list[str]:
    """'Measured on <host> (runs ...)', one line per host the runs were timed on."""
    runs: dict[str, list[str]] = {}
    for r in rows:
        if r.host:
            runs.setdefault(r.host, []).append(r.run or r.run_dir)
    if len(runs) == 1:
        ((host, names),) = runs.items()
        return [
            f"Measured on {host} ({'all ' if len(names) == len(rows) else ''}"
            f"{len(names)} run{'s' if len(names) != 1 else ''})"
        ]
    return [f"Measured on {host} (runs {', '.join(names)})" for host, names in runs.items()]


INTRO = (
    "Latency is the median at the smallest batch size, throughput at the largest; dense-baseline "
    "values in parentheses; `pareto` marks runs that no other run on the same dense baseline "
    "beats on both the metric and latency. One table per use case and metric."
)


def to_markdown(groups: Sequence[Group], root: Path) -> str:
    rows = [r for g in groups for r in g.rows]

    def line(values: Sequence[str]) -> str:
        return "| " + " | ".join(v.replace("|", "\\|") for v in values) + " |"

    done = sum(r.status == "done" for r in rows)
    out = [
        f"# Sweep summary: {root}",
        "",
        f"{len(rows)} run(s): {done} done, {len(rows) - done} failed or unfinished. {INTRO}",
        *(f"{text}." for text in host_lines(rows)),
    ]
    for group in groups:
        headers, cells = table_rows(group.rows, group.metric)
        out += ["", f"## {group.title}", "", line(headers), line(["---"] * len(headers))]
        out += [line(c) for c in cells]
        if group.plot:
            out += ["", f"![accuracy vs latency]({group.plot})"]
    failed = [r for r in rows if r.status != "done"]
    if failed:
        out += ["", "## Failed or unfinished runs", ""]
        out += [f"- {r.run} `{r.run_dir}`: {one_line(r.error)}" for r in failed]
    out += ["", "Run directories:", ""]
    out += [f"- {r.run}: `{r.run_dir}`" for r in rows]
    return "\n".join(out) + "\n"


def _console_table(headers: list[str], cells: list[list[str]]) -> list[str]:
    widths = [max(len(h), *(len(c[i]) for c in cells)) for i, h in enumerate(headers)]
    fmt = lambda vals: "  ".join(v.ljust(w) for v, w in zip(vals, widths, strict=True))  # noqa: E731
    return [fmt(headers), fmt(["-" * w for w in widths]), *(fmt(c) for c in cells)]


def to_console(groups: Sequence[Group]) -> str:
    lines: list[str] = []
    for group in groups:
        if lines:
            lines.append("")
        lines.append(f"{group.title} ({len(group.rows)} run{'s' if len(group.rows) != 1 else ''})")
        lines += _console_table(*table_rows(group.rows, group.metric))
    return "\n".join(lines + host_lines([r for g in groups for r in g.rows]))


def write_tables(rows: Sequence[RunRow], groups: Sequence[Group], out: Path, root: Path) -> None:
    atomic_write_text(out / "summary.csv", to_csv(rows))
    atomic_write_text(out / "summary.md", to_markdown(groups, root))
