"""Re-running stages in a finished run dir: clean output folders, honest fingerprints."""

from __future__ import annotations

from pathlib import Path

import pytest

import sparsify
from sparsify.config.compose import compose_config
from sparsify.context import RunContext
from sparsify.stages.benchmark_stage import BenchmarkStage
from sparsify.stages.package import PackageStage
from sparsify.stages.pipeline import _stage_fingerprint

DIFFERENT = "Using validate results made with different inputs"


def _log_of(run_dir: Path, action: object) -> str:
    """What run.log gained while `action()` ran (the log is appended to by every run)."""
    log = run_dir / "run.log"
    before = len(log.read_text()) if log.exists() else 0
    action()  # type: ignore[operator]
    return log.read_text()[before:]


@pytest.fixture(scope="module")
def full_run(tiny_images: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    from tests.conftest import TINY_RUN

    run_dir = tmp_path_factory.mktemp("rerun") / "r"
    result = sparsify.run([f"data.path={tiny_images}", *TINY_RUN], run_dir=run_dir)
    assert result.status == "done", result.error
    return run_dir


def test_package_rerun_empties_the_deployment_folder(full_run: Path, tiny_images: Path) -> None:
    from tests.conftest import TINY_RUN

    assert PackageStage.out_dir == "deployment"
    stale = full_run / "deployment" / "stale_from_an_earlier_run.onnx"
    stale.write_text("old")
    overrides = [f"data.path={tiny_images}", *TINY_RUN, "stages=[package]"]
    log = _log_of(full_run, lambda: sparsify.run(overrides, run_dir=full_run))
    assert "Stage package: done" in log
    assert not stale.exists()
    assert (full_run / "deployment" / "model.onnx").is_file()
    # nothing changed: the stages package used were made with these very inputs
    assert "different inputs" not in log


def test_a_subset_warns_when_an_earlier_stage_had_other_inputs(
    full_run: Path, tiny_images: Path
) -> None:
    from tests.conftest import TINY_RUN

    # benchmark.time_s is one of validate's inputs (it checks it), not of package's
    overrides = [f"data.path={tiny_images}", *TINY_RUN, "benchmark.time_s=0.2", "stages=[package]"]
    result: list[sparsify.runner.RunResult] = []
    log = _log_of(full_run, lambda: result.append(sparsify.run(overrides, run_dir=full_run)))
    assert result[0].status == "done", result[0].error
    assert DIFFERENT in log


def test_a_changed_use_case_reruns_the_benchmark(tmp_path: Path) -> None:
    ctx = RunContext(cfg=compose_config(["data.path=/x"]), run_dir=tmp_path)
    before = _stage_fingerprint(ctx, BenchmarkStage.config_keys, "up", "ext")
    ctx.cfg.use_case.metric = "top5"  # the metric the benchmark reports
    assert _stage_fingerprint(ctx, BenchmarkStage.config_keys, "up", "ext") != before
