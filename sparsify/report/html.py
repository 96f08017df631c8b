"""report.html: a table and a plot per use case and metric (plots embedded, so the file
stands alone), then the failed runs and every run directory."""

from __future__ import annotations

import base64
from collections.abc import Sequence
from html import escape
from pathlib import Path

from sparsify.report.groups import Group
from sparsify.report.summary import host_lines, table_rows

STYLE = """
body { font-family: system-ui, sans-serif; margin: 1.5em; color: #222; }
div.table { overflow-x: auto; max-width: 100%; }
table { border-collapse: collapse; font-size: 0.85em; }
th, td { border: 1px solid #ccc; padding: 3px 6px; text-align: left; vertical-align: top; }
th { background: #f2f2f2; }
tr.failed td, tr.incomplete td { background: #fff0f0; }
tr.pareto td { font-weight: 600; }
section.group { margin-bottom: 2.5em; }
img { max-width: 100%; height: auto; display: block; margin-top: 1em; }
pre { background: #f8f8f8; padding: 0.6em; white-space: pre-wrap; }
"""


def _runs(n: int) -> str:
    return f"{n} run{'s' if n != 1 else ''}"


def _table(group: Group) -> str:
    headers, cells = table_rows(group.rows, group.metric)
    head = "".join(f"<th>{escape(h)}</th>" for h in headers)
    body = []
    for row, values in zip(group.rows, cells, strict=True):
        cls = "pareto" if row.pareto else row.status
        # long run / use-case names may wrap after an underscore (copied text is unchanged)
        tds = "".join(f"<td>{escape(v).replace('_', '_<wbr>')}</td>" for v in values)
        body.append(f'<tr class="{cls}" title="{escape(row.run_dir)}">{tds}</tr>')
    # a wide table scrolls inside its box, so the page (and the plot under it) does not
    table = f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"
    return f'<div class="table">{table}</div>'


def _plot(group: Group, plots: Path) -> str:
    path = plots / group.plot if group.plot else None
    if path is None or not path.is_file():
        return ""
    data = base64.b64encode(path.read_bytes()).decode("ascii")
    return (
        f'<img alt="accuracy vs latency: {escape(group.title)}" src="data:image/png;base64,{data}">'
    )


def to_html(groups: Sequence[Group], root: Path, plots: Path) -> str:
    """The whole report; each group's plot is read from `plots` and embedded."""
    rows = [r for g in groups for r in g.rows]
    parts = [
        "<!doctype html>",
        '<html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>sparsify sweep: {escape(root.name)}</title><style>{STYLE}</style></head><body>",
        f"<h1>Sweep summary</h1><p><code>{escape(str(root))}</code></p>",
        "<p>Latency: median at the smallest batch size; throughput at the largest; dense "
        "baseline in parentheses. One table and one plot per use case and metric. Bold rows "
        "are on the Pareto front (no other run on the same dense baseline is both better on "
        "the metric and faster).</p>",
        *(f"<p>{escape(text)}.</p>" for text in host_lines(rows)),
    ]
    if len(groups) > 1:
        links = "".join(
            f'<li><a href="#{escape(g.slug)}">{escape(g.title)}</a> ({_runs(len(g.rows))})</li>'
            for g in groups
        )
        parts.append(f"<ul>{links}</ul>")
    for group in groups:
        parts.append(
            f'<section class="group" id="{escape(group.slug)}"><h2>{escape(group.title)}</h2>'
            f"{_table(group)}{_plot(group, plots)}</section>"
        )
    failed = [r for r in rows if r.status != "done"]
    if failed:
        parts.append("<h2>Failed or unfinished runs</h2>")
        for r in failed:
            parts.append(
                f"<h3>{escape(r.run or r.run_dir)}: {escape(r.status)}</h3>"
                f"<p><code>{escape(r.run_dir)}</code></p><pre>{escape(r.error or '')}</pre>"
            )
    parts.append("<h2>Run directories</h2><ul>")
    parts += [f"<li>{escape(r.run or '')}: <code>{escape(r.run_dir)}</code></li>" for r in rows]
    parts.append("</ul></body></html>")
    return "\n".join(parts) + "\n"
