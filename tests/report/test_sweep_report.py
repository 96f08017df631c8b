"""A real sweep through the `sparsify` command: parallel jobs, one failing, and its report."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from sparsify.report.collect import RunRow
from sparsify.report.resources import available_cores
from sparsify.report.summary import table_rows, to_csv
from tests.conftest import TINY_RUN

BIN = Path(sys.executable).parent


def _sparsify(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(BIN / "sparsify"), *args],
        capture_output=True,
        text=True,
        env={**os.environ},
        timeout=600,
    )


def _rows(path: Path) -> list[dict[str, str]]:
    with path.open(newline="", encoding="utf-8") as fh:
        return list(csv.DictReader(fh))


@pytest.fixture(scope="module")
def sweep(tiny_images: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """2 levels x 2 data folders on joblib; the missing folder fails at validation."""
    work = tmp_path_factory.mktemp("sweep")
    proc = _sparsify(
        "-m",
        "hydra/launcher=sparsify_joblib",
        "optim_level=0.0,0.5",
        f"data.path={tiny_images},{work / 'missing'}",
        f"working_dir={work}",
        *TINY_RUN,
    )
    # every job ran and the report was written, and two jobs failed: the command says so
    assert proc.returncode == 1, proc.stderr[-3000:]
    assert "2 of 4 sweep job(s) did not finish" in proc.stderr
    (root,) = (work / "multirun").iterdir()
    return root, proc.stdout + proc.stderr


@pytest.mark.slow
def test_jobs_run_in_parallel_with_one_thread_each(sweep: tuple[Path, str]) -> None:
    root, output = sweep
    assert f"Joblib.Parallel(n_jobs={available_cores()}," in output
    for config in root.glob("*/config.yaml"):
        assert yaml.safe_load(config.read_text())["benchmark"]["num_threads"] == 1


@pytest.mark.slow
def test_summary_has_one_row_per_job_with_the_failures(sweep: tuple[Path, str]) -> None:
    root, output = sweep
    rows = _rows(root / "summary.csv")
    assert len(rows) == 4
    assert sorted(float(r["level"]) for r in rows) == [0.0, 0.0, 0.5, 0.5]
    assert {r["experiment"] for r in rows} == {"one_shot"}
    for row in rows:
        run_dir = Path(row["run_dir"])
        assert run_dir.parent == root
        data_path = yaml.safe_load((run_dir / "config.yaml").read_text())["data"]["path"]
        if data_path.endswith("missing"):
            assert row["status"] == "failed"
            assert "missing" in row["error"] and "does not exist" in row["error"]
            assert (run_dir / "FAILED").is_file()
            assert row["accuracy"] == "" and row["pareto"] == "False"
            assert row["sparsity"] == "" and row["quantization"] == ""  # nothing was made
            continue
        assert row["status"] == "done" and row["error"] == ""
        # the numbers are the run's own benchmark.json rows, dense and result
        table = json.loads((run_dir / "benchmark" / "benchmark.json").read_text())["table"]
        base, result = (
            next(t for t in table if t["model"] == m) for m in ("baseline", "sparsified")
        )
        assert float(row["accuracy"]) == result["accuracy"]
        assert float(row["baseline_accuracy"]) == base["accuracy"]
        assert float(row["latency_ms"]) == result["latency_ms_b1"]
        assert float(row["throughput"]) == result["items_per_sec_b4"]
        assert float(row["speedup"]) == result["speedup_b4"]
        assert float(row["size_mb"]) == result["size_mb"]
        assert row["latency_batch"] == "1" and row["throughput_batch"] == "4"
        manifest = json.loads((run_dir / "manifest.json").read_text())
        quant = manifest["stages"]["sparsify"]["outputs"].get("quantization")
        assert row["quantization"] == (f"int8 ({quant['format']})" if quant else "none")
    by_level = {float(r["level"]): r for r in rows if r["status"] == "done"}
    assert by_level[0.0]["quantization"] == "none" and float(by_level[0.0]["sparsity"]) == 0.0
    assert by_level[0.5]["quantization"].startswith("int8 (")
    assert 0.45 < float(by_level[0.5]["sparsity"]) < 0.6
    assert any(r["pareto"] == "True" for r in by_level.values())
    assert f"Sweep report: {root / 'report.html'}" in output


@pytest.mark.slow
def test_markdown_html_and_plot(sweep: tuple[Path, str]) -> None:
    root, _ = sweep
    md = (root / "summary.md").read_text()
    assert md.count("| failed |") == 2 and md.count("| done |") == 2
    for line in md.splitlines():
        if line.endswith("| failed |"):  # the level asked for, no planned sparsity or INT8
            assert " | one_shot |  |  |" in line and "int8" not in line
    assert "## Failed or unfinished runs" in md and "does not exist" in md
    assert "![accuracy vs latency](accuracy_vs_latency.png)" in md
    html = (root / "report.html").read_text()
    assert "data:image/png;base64," in html and "does not exist" in html
    assert html.count('<tr class="failed"') == 2
    assert (root / "accuracy_vs_latency.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.slow
def test_report_command_rebuilds_the_same_summary(sweep: tuple[Path, str], tmp_path: Path) -> None:
    root, _ = sweep
    proc = _sparsify("report", str(root), "--out", str(tmp_path / "again"))
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "again" / "summary.csv").read_text() == (root / "summary.csv").read_text()
    assert f"report.html: {tmp_path / 'again' / 'report.html'}" in proc.stdout
    # a tree holding the sweep, and a single run directory
    proc = _sparsify("report", str(root.parent.parent), "--out", str(tmp_path / "tree"), "-q")
    assert proc.returncode == 0, proc.stderr
    assert len(_rows(tmp_path / "tree" / "summary.csv")) == 4
    one = next(p for p in root.iterdir() if p.name.startswith("0_"))
    proc = _sparsify("report", str(one), "--out", str(tmp_path / "one"), "-q")
    assert proc.returncode == 0, proc.stderr
    assert [r["run_dir"] for r in _rows(tmp_path / "one" / "summary.csv")] == [str(one)]


def test_report_command_errors_name_the_problem(tmp_path: Path) -> None:
    proc = _sparsify("report", str(tmp_path / "nowhere"))
    assert proc.returncode == 2
    assert "nowhere is not a directory" in proc.stderr and "Traceback" not in proc.stderr
    proc = _sparsify("report", str(tmp_path))
    assert proc.returncode == 2
    assert "no run directories under" in proc.stderr and "Traceback" not in proc.stderr


def test_a_failed_row_shows_no_planned_sparsity_or_int8() -> None:
    planned = {"level": 0.5, "experiment": "one_shot", "sparsity": 0.51}
    rows = [
        RunRow("a", job=0, status="failed", quantization="int8 (qoperator)", **planned),
        RunRow("b", job=1, status="done", quantization="int8 (qoperator)", **planned),
    ]
    headers, cells = table_rows(rows)
    failed, done = ({h: c for h, c in zip(headers, row, strict=True)} for row in cells)
    assert failed["sparsity"] == "" and failed["quantization"] == "" and failed["level"] == "0.5"
    assert done["sparsity"] == "51.0 %" and done["quantization"] == "int8 (qoperator)"
    failed_csv, done_csv = list(csv.DictReader(to_csv(rows).splitlines()))
    assert failed_csv["sparsity"] == "" and failed_csv["quantization"] == ""
    assert done_csv["sparsity"] == "0.51"
