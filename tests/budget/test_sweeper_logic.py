"""The budget sweeper's search loop with a fake launcher whose jobs write run dirs with
injected metrics: batches, failures, resume, the choice and the no-fit outcome."""

from __future__ import annotations

import csv
import json
from collections.abc import Callable, Sequence
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from hydra.core.utils import JobReturn, JobStatus
from omegaconf import OmegaConf

from sparsify.budget import budget_outcome
from sparsify.budget.study import open_study
from sparsify.budget.sweeper import BudgetSweeper

Metrics = Callable[[float], tuple[float, float] | None]  # level -> (top1, speedup) or failure
DENSE = 90.0
GUARD_DROP = 100.0  # a fake run ships dense past this drop (the latency guard's max_drop)


def _model(top1: float, items_per_sec: float) -> dict[str, Any]:
    result = {"items_per_sec": items_per_sec, "median": 1000.0 / items_per_sec}
    return {
        "accuracy": {"top1": top1, "samples": 100},
        "benchmarks": [{"batch_size": 4, "benchmark_result": result}],
    }


class FakeLauncher:
    """Writes each job's run dir as a finished (or failed) run would, without running it."""

    def __init__(self, sweep_dir: Path, metrics: Metrics) -> None:
        self.sweep_dir, self.metrics = sweep_dir, metrics
        self.jobs: list[int] = []

    def launch(
        self, job_overrides: Sequence[Sequence[str]], initial_job_idx: int
    ) -> list[JobReturn]:
        returns = []
        for i, overrides in enumerate(job_overrides):
            job = initial_job_idx + i
            self.jobs.append(job)
            values = dict(o.split("=", 1) for o in overrides)
            run_dir = self.sweep_dir / f"{job}_trial"
            run_dir.mkdir(parents=True, exist_ok=True)
            outcome = self.metrics(float(values["optim_level"]))
            if outcome is None:
                (run_dir / "FAILED").write_text("SparsifyError: injected failure\n")
            else:
                top1, speedup = outcome
                report: dict[str, Any] = {"metric": "top1"}
                if DENSE - top1 > GUARD_DROP:  # the run's guard ships the dense model
                    fp32 = {"status": "accuracy", "top1": top1, "speedup": speedup}
                    report["chosen"] = {"variant": "baseline", "kind": "dense", "fallback": True}
                    report["variants"] = {
                        "baseline": {"kind": "dense", "engines": {"onnxruntime": {}}},
                        "fp32": {"kind": "fp32", "engines": {"onnxruntime": fp32}},
                    }
                    top1, speedup = DENSE, 1.0
                report["engines"] = {
                    "onnxruntime": {
                        "baseline": _model(DENSE, 100.0),
                        "sparsified": _model(top1, 100.0 * speedup),
                    }
                }
                (run_dir / "benchmark").mkdir(exist_ok=True)
                (run_dir / "benchmark" / "benchmark.json").write_text(json.dumps(report))
                (run_dir / "manifest.json").write_text(json.dumps({"status": "done", "stages": {}}))
            hydra_cfg = OmegaConf.create({"hydra": {"runtime": {"output_dir": str(run_dir)}}})
            returns.append(
                JobReturn(
                    overrides=list(overrides), hydra_cfg=hydra_cfg, status=JobStatus.COMPLETED
                )
            )
        return returns


def _sweeper(sweep_dir: Path, metrics: Metrics, parallel: int = 1, **budget: Any) -> BudgetSweeper:
    sweeper = BudgetSweeper(
        parallel=parallel,
        startup_trials=2,
        spaces={"one_shot": {"optim_level": {"low": 0.0, "high": 1.0}}},
    )
    settings = {
        "max_drop": 1.0,
        "trials": 3,
        "max_time": None,
        "engine": "onnxruntime",
        "metric": None,
        "space": {},
        "resume": None,
        "keep": None,
    }
    sweeper.config = OmegaConf.create(
        {
            "hydra": {"sweep": {"dir": str(sweep_dir)}},
            "budget": {**settings, **budget},
            "use_case": {
                "name": "cv-classification",
                "family": "image_classifier",
                "metric": "top1",
            },
            "experiment": {"name": "one_shot"},
            "benchmark": {"engines": ["onnxruntime"]},
            "seed": 0,
        }
    )
    sweeper.hydra_context = SimpleNamespace(config_loader=None)  # type: ignore[assignment]
    sweeper.launcher = FakeLauncher(sweep_dir, metrics)
    return sweeper


def _rows(sweep_dir: Path) -> list[dict[str, str]]:
    return list(csv.DictReader((sweep_dir / "trials.csv").open()))


def _linear(level: float) -> tuple[float, float]:
    """Faster and less accurate with the level: within 1 point up to level 0.5."""
    return DENSE - 2.0 * level, 1.0 + 2.0 * level


def test_the_search_chooses_the_fastest_trial_within_budget(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    sweeper = _sweeper(tmp_path, _linear, parallel=2, trials=5)
    data = sweeper.sweep(["data.path=/x"])
    rows = _rows(tmp_path)
    assert len(rows) == 5 and all(r["status"] == "done" for r in rows)
    fitting = [r for r in rows if float(r["drop"]) <= 1.0]
    best = max(fitting, key=lambda r: float(r["speedup"]))
    assert data["chosen"]["trial"] == int(best["trial"]) and best["chosen"] == "yes"
    # the first trial runs alone (it caches the dense baseline), then two at a time
    assert sweeper.launcher.jobs == [0, 1, 2, 3, 4]
    assert budget_outcome() == ""
    assert "is the fastest within 1 point(s) of top1" in capsys.readouterr().out


def test_a_failed_trial_is_recorded_and_the_search_goes_on(tmp_path: Path) -> None:
    failing = lambda level: None if level > 0.7 else _linear(level)  # noqa: E731
    _sweeper(tmp_path, failing, trials=4).sweep([])
    rows = _rows(tmp_path)
    assert len(rows) == 4
    statuses = {r["status"] for r in rows}
    assert "failed" in statuses and "done" in statuses, rows
    assert all("injected failure" in r["error"] for r in rows if r["status"] == "failed")
    assert budget_outcome() == ""


def test_resume_runs_only_the_missing_trials(tmp_path: Path) -> None:
    _sweeper(tmp_path, _linear, trials=2).sweep([])
    again = _sweeper(tmp_path, _linear, trials=3)
    again.sweep([])
    assert again.launcher.jobs == [2]  # one new trial, numbered after the first two
    assert len(_rows(tmp_path)) == 3


def test_an_interrupted_trial_runs_again_in_its_own_run_dir(tmp_path: Path) -> None:
    _sweeper(tmp_path, _linear, trials=1).sweep([])
    study = open_study(tmp_path, seed=0, startup_trials=2)
    left = study.ask()  # as a Ctrl-C leaves it: asked, launched, never told
    left.suggest_float("optim_level", 0.0, 1.0)
    left.set_user_attr("job", 1)
    again = _sweeper(tmp_path, _linear, trials=2)
    again.sweep([])
    assert again.launcher.jobs == [1]
    assert [r["trial"] for r in _rows(tmp_path)] == ["0", "2"]


def test_no_fit_sets_the_outcome_with_the_closest_trial(tmp_path: Path) -> None:
    far = lambda level: (DENSE - 5.0 - level, 2.0 + level)  # noqa: E731
    data = _sweeper(tmp_path, far, trials=2).sweep([])
    outcome = budget_outcome()
    assert data["chosen"] is None and outcome
    assert f"Closest: trial {data['closest']['trial']}" in outcome
    assert not (tmp_path / "best").exists()


def test_a_trial_shipping_dense_for_accuracy_is_outside_the_budget_to_the_search(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setitem(globals(), "GUARD_DROP", 1.0)
    caplog.set_level("INFO", logger="sparsify")
    _sweeper(tmp_path, _linear, trials=4).sweep([])
    rows = _rows(tmp_path)
    too_far = [r for r in rows if float(r["optim_level"]) > 0.5]
    assert too_far, rows  # the seed's startup trials reach past level 0.5
    for row in too_far:  # shipped dense: in budget at 1x, the drop of its package in overshoot
        assert (float(row["drop"]), float(row["speedup"])) == (0.0, 1.0)
        assert float(row["overshoot"]) == pytest.approx(2.0 * float(row["optim_level"]), 1e-3)
    assert all(r["overshoot"] == "" for r in rows if float(r["optim_level"]) <= 0.5)
    assert "outside the budget to the search" in caplog.text
    assert budget_outcome() == ""  # a package was chosen


def test_a_sweep_override_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from hydra.core.override_parser.overrides_parser import OverridesParser

    sweeper = _sweeper(tmp_path, _linear)
    assert OverridesParser.create(config_loader=None)
    with pytest.raises(SystemExit) as exit_:
        sweeper.sweep(["quantization.format=qdq,qoperator"])
    assert exit_.value.code == 2
    assert "budget.space.quantization.format" in capsys.readouterr().err
