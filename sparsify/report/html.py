"""report.html: the sweep table, the plot (embedded, so the file stands alone) and errors."""

from __future__ import annotations

import base64
from collections.abc import Sequence
from html import escape
from pathlib import Path

from sparsify.report.collect import RunRow
from sparsify.report.summary import table_rows

STYLE = """
body { font-family: system-ui, sans-serif; margin: 2em; color: #222; }
table { border-collapse: collapse; font-size: 0.9em; }
th, td { border: 1px solid #ccc; padding: 4px 8px; text-align: left; }
th { background: #f2f2f2; }
tr.failed td, tr.incomplete td { background: #fff0f0; }
tr.pareto td { font-weight: 600; }
pre { background: #f8f8f8; padding: 0.6em; white-space: pre-wrap; }
"""


def to_html(rows: Sequence[RunRow], root: Path, plot: Path | None) -> str:
    headers, cells = table_rows(rows)
    head = "".join(f"<th>{escape(h)}</th>" for h in headers)
    body = []
    for row, values in zip(rows, cells, strict=True):
        cls = "pareto" if row.pareto else row.status
        tds = "".join(f"<td>{escape(v)}</td>" for v in values)
        body.append(f'<tr class="{cls}" title="{escape(row.run_dir)}">{tds}</tr>')
    parts = [
        "<!doctype html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f"<title>sparsify sweep: {escape(root.name)}</title><style>{STYLE}</style></head><body>",
        f"<h1>Sweep summary</h1><p><code>{escape(str(root))}</code></p>",
        "<p>Latency: median at the smallest batch size; throughput at the largest; dense "
        "baseline in parentheses. Bold rows are on the Pareto front (no other run is both "
        "more accurate and faster).</p>",
        f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>",
    ]
    if plot is not None and plot.is_file():
        data = base64.b64encode(plot.read_bytes()).decode("ascii")
        parts.append(
            f'<h2>Accuracy vs latency</h2><img alt="accuracy vs latency" '
            f'src="data:image/png;base64,{data}">'
        )
    failed = [r for r in rows if r.status != "done"]
    if failed:
        parts.append("<h2>Failed or unfinished runs</h2>")
        for r in failed:
            parts.append(
                f"<h3>job {escape(str(r.job))}: {escape(r.status)}</h3>"
                f"<p><code>{escape(r.run_dir)}</code></p><pre>{escape(r.error or '')}</pre>"
            )
    parts.append("<h2>Run directories</h2><ul>")
    parts += [f"<li>job {escape(str(r.job))}: <code>{escape(r.run_dir)}</code></li>" for r in rows]
    parts.append("</ul></body></html>")
    return "\n".join(parts) + "\n"
