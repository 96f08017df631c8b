"""`sparsify report DIR [--out OUT]`: rebuild the sweep report from existing run directories."""

from __future__ import annotations

import argparse

from sparsify.report import build_report


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="sparsify report",
        description=(
            "Write summary.csv, summary.md, report.html and accuracy-vs-latency plots for the "
            "runs under DIR: one run directory, a sweep root (sparsify_runs/multirun/<time>) "
            "or a tree holding several sweeps. Runs of different use cases or metrics get a "
            "table and a plot each. Failed runs are listed with their error."
        ),
    )
    parser.add_argument("dir", metavar="DIR", help="a run directory or a folder of runs")
    parser.add_argument(
        "--out", metavar="OUT", default=None, help="where to write the report (default: DIR)"
    )
    parser.add_argument("--quiet", "-q", action="store_true", help="print only the file paths")
    return parser


def main(argv: list[str]) -> int:
    args = build_parser().parse_args(argv)
    report = build_report(args.dir, args.out)
    if not args.quiet:
        print(report.console())
        for row in report.rows:
            if row.status != "done":
                print(f"  {row.run} {row.status}: {' '.join((row.error or '').split())[:300]}")
        print()
    for name, path in report.files.items():
        print(f"{name}: {path}")
    return 0
