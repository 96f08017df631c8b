"""How fast `validate_text_dataset` reads a 100,000-row JSONL text-classification set.

.venv/bin/python benchmarks/validate_text.py [--rows 100000] [--labels 4] [--format jsonl]

Peak RSS is the process's high-water mark (`ru_maxrss`): it is sampled after writing the
data and after validating, so the difference is what validation added (it should not grow
with --rows, as validation streams).
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout

from sparsify.data.text import validate_text_dataset  # noqa: E402

WORDS = "the a movie film story plot acting music was is good great bad awful very not".split()


def peak_rss_mib() -> float:
    # ru_maxrss is KiB on Linux, bytes on macOS
    scale = 1 if sys.platform == "darwin" else 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * scale / 2**20


def write_split(path: Path, rows: int, labels: int, fmt: str) -> None:
    """Rows of 12-word sentences; written line by line so set-up does not inflate peak RSS."""
    with open(path, "w", encoding="utf-8") as f:
        if fmt == "csv":
            f.write("text,label\n")
        elif fmt == "json":
            f.write("[\n")
        for i in range(rows):
            text = " ".join(WORDS[(i * 7 + k * 3) % len(WORDS)] for k in range(12))
            record = {"text": f"{text} #{i}", "label": f"label_{i % labels}"}
            if fmt == "csv":
                f.write(f"{record['text']},{record['label']}\n")
            elif fmt == "json":
                f.write(json.dumps(record) + (",\n" if i < rows - 1 else "\n]\n"))
            else:
                f.write(json.dumps(record) + "\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--labels", type=int, default=4)
    parser.add_argument("--format", choices=("jsonl", "json", "csv"), default="jsonl")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="sparsify-bench-") as tmp:
        root = Path(tmp)
        n_val = max(args.rows // 10, 1)
        start = time.perf_counter()
        write_split(root / f"train.{args.format}", args.rows, args.labels, args.format)
        write_split(root / f"val.{args.format}", n_val, args.labels, args.format)
        setup_s = time.perf_counter() - start
        size_mib = sum(p.stat().st_size for p in root.iterdir()) / 2**20
        rss_before = peak_rss_mib()

        start = time.perf_counter()
        summary, problems = validate_text_dataset(root, "text-classification", {})
        seconds = time.perf_counter() - start
        rss_after = peak_rss_mib()

    assert summary is not None and not problems, problems[:5]
    n = sum(summary.rows.values())
    print(f"wrote {n:,} rows ({size_mib:.1f} MiB of {args.format}) in {setup_s:.2f} s")
    print(f"validation: {seconds:.2f} s, {n / seconds:,.0f} rows/s")
    print(
        f"peak RSS: {rss_before:.0f} MiB before validation, {rss_after:.0f} MiB after "
        f"(+{rss_after - rss_before:.1f} MiB for {size_mib:.1f} MiB of data)"
    )


if __name__ == "__main__":
    main()
