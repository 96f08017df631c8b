"""Reading runs back: broken, unfinished and interrupted run directories still get a row."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest
from omegaconf import OmegaConf

from sparsify.errors import SparsifyError
from sparsify.report import build_report
from sparsify.report.callback import SweepReport
from sparsify.report.collect import find_run_dirs, read_run
from sparsify.report.summary import mark_pareto, one_line

CONFIG = "use_case:\n  name: cv-classification\nexperiment:\n  name: one_shot\noptim_level: 60\n"


def test_a_job_killed_before_the_pipeline_started(tmp_path: Path) -> None:
    job = tmp_path / "3_cv-classification_one_shot_level-0.6"
    (job / ".hydra").mkdir(parents=True)
    (job / ".hydra" / "config.yaml").write_text(CONFIG)
    (row,) = [read_run(d) for d in find_run_dirs(tmp_path)]
    assert (row.job, row.status, row.level, row.experiment) == (3, "incomplete", 0.6, "one_shot")
    assert "did not finish" in row.error


def test_an_interrupted_stage_reports_its_error(tmp_path: Path) -> None:
    (tmp_path / "config.yaml").write_text(CONFIG)
    stages = {"validate": {"status": "done"}, "sparsify": {"status": "failed", "error": "OOM"}}
    (tmp_path / "manifest.json").write_text(json.dumps({"stages": stages}))
    row = read_run(tmp_path)
    assert row.status == "incomplete" and row.error == "stage sparsify: OOM"


def test_unreadable_files_do_not_stop_the_report(tmp_path: Path) -> None:
    good, bad = tmp_path / "0_a", tmp_path / "1_b"
    for d in (good, bad):
        d.mkdir()
    (good / "config.yaml").write_text(CONFIG)
    (good / "FAILED").write_text("RuntimeError: boom\n")
    (bad / "manifest.json").write_text("{not json")
    report = build_report(tmp_path)
    assert [(r.job, r.status) for r in report.rows] == [(0, "failed"), (1, "incomplete")]
    assert report.rows[0].error == "RuntimeError: boom"
    assert "plot" not in report.files  # nothing measured: no empty plot
    assert "RuntimeError: boom" in (tmp_path / "summary.md").read_text()


def test_nothing_to_report_is_an_error_that_says_what_to_give(tmp_path: Path) -> None:
    with pytest.raises(SparsifyError, match="no run directories"):
        build_report(tmp_path)


def test_callback_never_fails_the_sweep(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    cfg = OmegaConf.create({"hydra": {"sweep": {"dir": str(tmp_path)}}})
    with caplog.at_level(logging.ERROR, logger="sparsify.report"):
        SweepReport().on_multirun_end(cfg)
    assert f"sparsify report {tmp_path}" in caplog.text


def _row(acc: float | None, lat: float | None, status: str = "done"):  # noqa: ANN202
    from sparsify.report.collect import RunRow

    return RunRow(run_dir="x", status=status, accuracy=acc, latency_ms=lat)


def test_pareto_front() -> None:
    fast, best, dominated, tie, failed = (
        _row(70.0, 1.0),
        _row(90.0, 3.0),
        _row(80.0, 4.0),  # slower and less accurate than `best`
        _row(90.0, 3.0),
        _row(99.0, 0.1, status="failed"),
    )
    front = mark_pareto([fast, best, dominated, tie, failed])
    assert front[0] is fast and {id(r) for r in front[1:]} == {id(best), id(tie)}
    assert not dominated.pareto and not failed.pareto


def test_one_line() -> None:
    assert one_line("a\n  b\tc") == "a b c"
    assert one_line("x" * 500, limit=10) == "x" * 9 + "…"
