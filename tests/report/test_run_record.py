"""RunRecord: the one reader of a run directory, for the report, the zoo and the runner."""

from __future__ import annotations

import json
from pathlib import Path

from sparsify.outputs import BenchmarkOutput, SparsifyOutput, ValidateOutput
from sparsify.run_record import RunRecord

CONFIG = "use_case:\n  name: cv-classification\nexperiment:\n  name: one_shot\noptim_level: 60\n"


def _write_run(run_dir: Path, stages: dict, status: str | None = "done") -> Path:
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "config.yaml").write_text(CONFIG)
    manifest: dict = {"stages": stages}
    if status:
        manifest["status"] = status
    (run_dir / "manifest.json").write_text(json.dumps(manifest))
    return run_dir


def test_a_finished_run_reads_typed(tmp_path: Path) -> None:
    bench = {"benchmark_json": "benchmark/benchmark.json", "table": [{"model": "baseline"}]}
    run = _write_run(
        tmp_path / "run",
        {
            "validate": {"status": "done", "outputs": {"optim_level": 0.6, "artifacts": []}},
            "sparsify": {"status": "done", "outputs": {"sparsity": 0.5, "quantization": {}}},
            "benchmark": {"status": "done", "outputs": bench},
        },
    )
    (run / "benchmark").mkdir()
    (run / "benchmark" / "benchmark.json").write_text('{"engines": {}}')
    record = RunRecord.load(run)
    assert record.status == "done" and record.saved_config
    assert record.cfg.use_case.name == "cv-classification"
    assert record.output(SparsifyOutput).sparsity == 0.5  # type: ignore[union-attr]
    assert record.output(BenchmarkOutput).table == [{"model": "baseline"}]  # type: ignore[union-attr]
    assert record.benchmark() == {"engines": {}}
    assert record.metrics() is None  # not written: None, not an exception
    assert record.level == 0.6
    assert record.unfinished("validate", "fetch", "sparsify") == ["fetch"]


def test_unfinished_stages_have_no_output_and_the_error_is_found(tmp_path: Path) -> None:
    run = _write_run(
        tmp_path / "run",
        {
            "validate": {"status": "done", "outputs": {"optim_level": 0.6}},
            "fetch": {"status": "running", "pid": 1},
            "sparsify": {"status": "interrupted", "error": "KeyboardInterrupt: "},
        },
        status=None,
    )
    record = RunRecord.load(run)
    assert record.status is None and list(record.outputs) == ["validate"]
    assert record.output(SparsifyOutput) is None
    assert record.error() == "stage sparsify: KeyboardInterrupt: "


def test_an_old_config_with_a_percent_and_no_manifest(tmp_path: Path) -> None:
    (tmp_path / ".hydra").mkdir()
    (tmp_path / ".hydra" / "config.yaml").write_text(CONFIG)
    (tmp_path / "FAILED").write_text("RuntimeError: boom\n")
    record = RunRecord.load(tmp_path)
    assert record.manifest is None and not record.saved_config
    assert record.level == 0.6  # 60 read as percent, as the run would have
    assert record.output(ValidateOutput) is None
    assert record.error() == "RuntimeError: boom"


def test_nothing_there_reads_as_empty(tmp_path: Path) -> None:
    (tmp_path / "manifest.json").write_text("{not json")
    record = RunRecord.load(tmp_path)
    assert (record.config, record.manifest, record.stages, record.level) == ({}, None, {}, None)
    assert record.error() is None and record.benchmark() is None
