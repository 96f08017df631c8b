"""Choosing among trials, the space, the outputs: no runs, injected trial results."""

from __future__ import annotations

import csv
import io
from pathlib import Path

import pytest

from sparsify.budget.held_out import held_out_view
from sparsify.budget.results import message, trials_csv
from sparsify.budget.space import merge_spaces, parse_space, to_overrides
from sparsify.budget.trials import DONE, FAILED, TrialResult, select
from sparsify.errors import ValidationError


def _trial(n: int, drop: float | None, speedup: float | None, status: str = DONE) -> TrialResult:
    dense = 90.0
    value = None if drop is None else dense - drop
    return TrialResult(
        n, {"optim_level": n / 10}, f"/runs/{n}", status, "top1", value, dense, speedup
    )


def test_the_fastest_within_budget_is_chosen() -> None:
    trials = [
        _trial(0, 0.2, 1.5),
        _trial(1, 0.9, 2.4),  # fastest within 1 point
        _trial(2, 3.0, 3.9),  # faster, but over budget
        _trial(3, None, None, FAILED),
        _trial(4, 0.9, 2.4),  # a tie: the earlier trial wins
    ]
    picked = select(trials, max_drop=1.0)
    assert picked.chosen is trials[1]
    assert picked.closest is None
    assert (picked.finished, picked.feasible) == (4, 3)


def test_a_tie_on_speed_goes_to_the_smaller_drop() -> None:
    assert select([_trial(0, 0.8, 2.0), _trial(1, 0.1, 2.0)], 1.0).chosen.number == 1  # type: ignore[union-attr]


def test_no_fit_names_the_closest_trial() -> None:
    trials = [_trial(0, 4.0, 3.0), _trial(1, 1.5, 1.2), _trial(2, None, None, FAILED)]
    picked = select(trials, max_drop=1.0)
    assert picked.chosen is None and picked.closest is trials[1]
    data = {
        "metric": "top1",
        "engine": "onnxruntime",
        "max_drop": 1.0,
        "trials_ran": 3,
        "finished": 2,
        "within_budget": 0,
        "chosen": None,
        "closest": {"trial": 1, "run_dir": "/runs/1", "drop": 1.5, "speedup": 1.2},
    }
    text = message(data)
    assert "no trial fits" in text and "Closest: trial 1" in text and "/runs/1" in text


def test_trials_csv_has_every_trial_and_marks_the_chosen(tmp_path: Path) -> None:
    trials = [_trial(0, 0.2, 1.5), _trial(1, 3.0, 4.0), _trial(2, None, None, FAILED)]
    trials[2].error = "stage sparsify: boom"
    trials[0].speedups = {"onnxruntime": 1.5, "openvino": 1.1}
    rows = list(csv.DictReader(io.StringIO(trials_csv(trials, select(trials, 1.0), 1.0))))
    assert [r["status"] for r in rows] == ["done", "done", "failed"]
    assert [r["chosen"] for r in rows] == ["yes", "", ""]
    assert [r["fits"] for r in rows] == ["yes", "no", ""]
    assert rows[0]["speedup_openvino"] == "1.1" and rows[2]["error"] == "stage sparsify: boom"
    assert rows[0]["optim_level"] == "0.0"


def test_space_merges_defaults_and_parses() -> None:
    defaults = {"optim_level": {"low": 0.0, "high": 1.0}, "quantization": {"format": ["qdq"]}}
    family = {"quantization": {"format": ["qoperator", "dynamic"]}}
    user = {"optim_level": None, "recipe_args": {"unstructured_sparsity": {"low": 0, "high": 0.5}}}
    dims = parse_space(merge_spaces(defaults, family, user))
    assert [d.describe() for d in dims] == [
        "quantization.format in ['qoperator', 'dynamic']",
        "recipe_args.unstructured_sparsity in [0, 0.5]",
    ]
    assert to_overrides({"optim_level": 0.123456, "recipe": "a b"}) == [
        "optim_level=0.1235",
        "recipe='a b'",
    ]


def test_space_refuses_what_would_change_the_baseline_and_bad_leaves() -> None:
    space = {
        "experiment": {"train": {"lr": [1e-3, 1e-4]}},
        "data": {"image_size": [16, 32]},
        "optim_level": {"low": 1.0, "high": 0.0},
        "quantization": {"format": []},
        "recipe": "one_shot",
    }
    with pytest.raises(ValidationError) as err:
        parse_space(merge_spaces(space))
    text = str(err.value)
    assert "5 problem(s)" in text
    for key in ("experiment.train.lr", "data.image_size", "optim_level", "quantization.format"):
        assert f"budget.space.{key}" in text


def test_test_view_puts_test_where_val_was(tmp_path: Path) -> None:
    data = tmp_path / "data"
    for split in ("train", "val", "test"):
        (data / "images" / split).mkdir(parents=True)
        (data / "images" / split / f"{split}.jpg").write_bytes(b"x")
    (data / "classes.txt").write_text("a\n")
    (data / "validation.jsonl").write_text("{}\n")
    (data / "test.jsonl").write_text("{}\n")
    view = held_out_view(data, tmp_path / "view")
    assert view is not None
    assert (view / "images" / "val" / "test.jpg").is_file()
    assert not (view / "images" / "val" / "val.jpg").exists()
    assert (view / "validation.jsonl").resolve() == (data / "test.jsonl").resolve()
    assert (view / "classes.txt").is_file() and (view / "images" / "train" / "train.jpg").is_file()
    (tmp_path / "plain" / "val").mkdir(parents=True)
    assert held_out_view(tmp_path / "plain", tmp_path / "view2") is None


def _shipped_dense_run(run_dir: Path, statuses: dict[str, tuple[str, float]]) -> Path:
    """A finished run whose guard shipped the dense model; `statuses`: variant -> (its status
    on ONNX Runtime, its top1)."""
    import json

    def model(top1: float) -> dict[str, object]:
        timing = {"items_per_sec": 100.0, "median": 10.0}
        return {
            "accuracy": {"top1": top1, "samples": 360},
            "benchmarks": [{"batch_size": 16, "benchmark_result": timing}],
        }

    variants: dict[str, object] = {
        "baseline": {"kind": "dense", "engines": {"onnxruntime": {"status": "chosen"}}},
        "qdq_fp32_depthwise": {"kind": "int8", "same_as": "qdq"},
    }
    for name, (status, top1) in statuses.items():
        variants[name] = {
            "kind": "int8",
            "engines": {"onnxruntime": {"status": status, "top1": top1}},
        }
    report = {
        "metric": "top1",
        "engines": {"onnxruntime": {"baseline": model(90.0), "sparsified": model(90.0)}},
        "chosen": {"engine": "onnxruntime", "variant": "baseline", "kind": "dense"},
        "variants": variants,
    }
    (run_dir / "benchmark").mkdir(parents=True)
    (run_dir / "benchmark" / "benchmark.json").write_text(json.dumps(report))
    (run_dir / "manifest.json").write_text(json.dumps({"status": "done", "stages": {}}))
    return run_dir


def test_a_trial_whose_packages_all_lost_too_much_is_outside_the_budget_to_the_sampler(
    tmp_path: Path,
) -> None:
    from sparsify.budget.study import open_study, tell
    from sparsify.budget.trials import read_trial

    too_far = _shipped_dense_run(
        tmp_path / "0", {"fp32": ("accuracy", 87.5), "qdq": ("accuracy", 86.0)}
    )
    result = read_trial(0, {"optim_level": 0.9}, too_far, "onnxruntime", "top1")
    # the shipped package is dense: in budget at 1x, and what the selection sees
    assert (result.status, result.drop, result.speedup) == (DONE, 0.0, 1.0)
    assert result.overshoot == 2.5 and select([result], 1.0).chosen is result
    # a trial where one package was refused for speed only did find accuracy: no overshoot
    slow = _shipped_dense_run(tmp_path / "1", {"fp32": ("slower", 89.5), "qdq": ("accuracy", 86.0)})
    assert read_trial(1, {}, slow, "onnxruntime", "top1").overshoot is None

    study = open_study(tmp_path / "sweep", seed=0, startup_trials=2)
    trial = study.ask()
    trial.suggest_float("optim_level", 0.0, 1.0)
    tell(study, trial, result, max_drop=1.0)
    assert study.trials[0].constraints == {"drop": 1.5}  # infeasible, by 1.5 points
    assert study.trials[0].user_attrs["overshoot"] == 2.5
