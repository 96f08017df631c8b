"""benchmarks/budget_vs_uniform.py: the budget search against a uniform sweep, side by side.

The verdict and the table on injected trials (a slower or over-budget search is reported as
missing the target), and the whole script on a generated tiny model: both sweeps run through
the `sparsify` command, share one dense baseline, and are read back into one table.
"""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path
from types import ModuleType

import pytest

from sparsify.budget.trials import DONE, FAILED, TrialResult

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "budget_vs_uniform.py"


@pytest.fixture(scope="module")
def script() -> ModuleType:
    spec = importlib.util.spec_from_file_location("budget_vs_uniform", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _trial(
    number: int, level: float, value: float, speedup: float, **params: object
) -> TrialResult:
    return TrialResult(
        number=number,
        params={"optim_level": level, **params},
        run_dir=f"/runs/{number}",
        status=DONE,
        metric="top1",
        value=value,
        dense=90.0,
        speedup=speedup,
    )


UNIFORM = [
    _trial(0, 0.0, 90.0, 1.0),
    _trial(1, 0.25, 89.5, 2.0),  # the best within 1 point
    _trial(2, 0.5, 88.0, 3.0),  # faster, but 2 points down
    TrialResult(3, {"optim_level": 0.75}, status=FAILED, error="boom"),
]
BUDGET = {"trials": 8, "trials_ran": 8, "finished": 8, "within_budget": 3, "test": None}


def _comparison(script: ModuleType, chosen: TrialResult | None, **budget: object):  # noqa: ANN202
    return script.Comparison(
        "cnn", "a tiny CNN", "top1", "onnxruntime", 1.0, UNIFORM, {**BUDGET, **budget}, chosen
    )


def test_faster_search_within_budget_meets_the_target(script: ModuleType) -> None:
    chosen = _trial(5, 0.4, 89.2, 2.4, **{"quantization.format": "qdq"})
    c = _comparison(script, chosen, test={"drop": 0.6, "value": 89.0, "dense": 89.6})
    assert c.best_uniform is UNIFORM[1]
    assert c.verdict() == (
        True,
        "budget 2.40x >= best uniform 2.00x (optim_level=0.25) within 1 point(s)",
    )
    text = script.table(c)
    rows = {line.split("|")[0].strip() for line in text.splitlines() if "|" in line}
    assert {"uniform", "best", "budget"} <= rows
    assert sum(line.startswith("uniform ") for line in text.splitlines()) == 4
    assert "failed: boom" in text
    budget_row = next(line for line in text.splitlines() if line.startswith("budget "))
    assert "format=qdq" in budget_row and "0.60" in budget_row and "2.40x" in budget_row
    assert "8 trial(s) of at most 8, 8 finished, 3 within budget; chose trial 5" in text
    assert text.splitlines()[-1].startswith("target MET: ")


@pytest.mark.parametrize(
    ("chosen", "test", "why"),
    [
        (_trial(5, 0.3, 89.5, 1.5), None, "budget 1.50x < best uniform 2.00x"),
        (_trial(5, 0.3, 89.5, 2.5), {"drop": 1.7}, "drops 1.7 point(s) on test"),
        (_trial(5, 0.6, 87.0, 3.5), None, "returned no package within 1 point(s)"),
        (None, None, "returned no package within 1 point(s)"),
    ],
    ids=["slower", "over-on-test", "over-on-val", "none-chosen"],
)
def test_a_worse_search_is_reported_as_not_met(
    script: ModuleType, chosen: TrialResult | None, test: dict | None, why: str
) -> None:
    c = _comparison(script, chosen, test=test)
    met, reason = c.verdict()
    assert not met and why in reason
    last = script.table(c).splitlines()[-1]
    assert last.startswith("target NOT MET: ") and why in last


def test_levels_and_models_are_parsed(script: ModuleType) -> None:
    args = script.parse_args(["--models", "cnn,yolo", "--levels", "0,0.5"])
    assert args.models == ["cnn", "yolo"] and args.levels == (0.0, 0.5)
    assert args.batch == 16 and args.trials == 8 and args.max_drop == 1.0
    with pytest.raises(SystemExit):
        script.parse_args(["--models", "cnn,resnet"])


def test_baseline_epochs_and_extra_overrides_reach_every_run(script: ModuleType) -> None:
    args = script.parse_args(
        ["--baseline-epochs", "6", "--set", "baseline.min_steps=100", "--set", "a.b=1"]
    )
    assert args.set == ["baseline.min_steps=100", "a.b=1"]
    setup = script.Setup("x", ["data=digits"], None, 1e-3, 5e-4, baseline_epochs=15)
    assert "experiment.train.epochs=6" in script.experiment_overrides(args, setup)
    default = script.parse_args([])
    assert "experiment.train.epochs=15" in script.experiment_overrides(default, setup)


@pytest.mark.slow
def test_tiny_run_end_to_end(
    script: ModuleType, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = script.main(
        [
            "--tiny",
            "--out",
            str(tmp_path),
            "--levels",
            "0,0.6",
            "--trials",
            "2",
            "--max-drop",
            "100",
        ]
    )
    text = capsys.readouterr().out
    sweeps = tmp_path / "tiny"
    budget = json.loads((sweeps / "budget" / "budget.json").read_text())
    assert budget["trials_ran"] == 2 and budget["chosen"] is not None, text
    # one dense baseline for both searches: trained by the first uniform run only
    assert "Using the cached dense baseline" in (sweeps / "budget.log").read_text()
    c = script.compare("tiny", "tiny", sweeps, "onnxruntime", 100.0, (0.0, 0.0))
    assert [r.params["optim_level"] for r in c.uniform] == [0.0, 0.6]
    assert all(r.status == DONE for r in c.uniform), [r.error for r in c.uniform]
    assert c.chosen is not None and c.chosen.speedup == budget["chosen"]["speedup"]
    # the generated data has a test split: the chosen and the best uniform are measured there
    assert budget["test"]["drop"] is not None and c.uniform_test["drop"] is not None
    lines = text.splitlines()
    assert sum(line.startswith("uniform ") for line in lines) == 2
    assert any(line.startswith("budget ") and "x |" in line for line in lines)
    met = c.verdict()[0]
    assert code == (0 if met else 1)
    assert lines[-1].startswith("target MET" if met else "target NOT MET")
