"""Every option of the original `sparsify.run` command line, mapped onto the run config."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import torch
from omegaconf import OmegaConf

import sparsify
from sparsify.algorithms.optimizer_state import resume_optimizer
from sparsify.benchmark.divergence import mean_kl
from sparsify.cli.legacy_run import build_parser, main, to_overrides
from sparsify.config import compose_config
from sparsify.config.checks import config_problems
from sparsify.context import RunContext, load_run_recipe
from sparsify.errors import SparsifyError
from sparsify.models.tiny import tinynet
from tests.fixtures.images import make_image_folder

BASE = ["--use-case", "ic", "--data", "/data/x"]


def _compose(*argv: str) -> Any:
    return compose_config(to_overrides(build_parser().parse_intermixed_args(list(argv))))


@pytest.mark.parametrize(
    ("argv", "key", "expected"),
    [
        (["one-shot", "--eval-metric", "kl"], "benchmark.metric", "kl"),
        (["one-shot", "--eval-metric", "mAP"], "benchmark.metric", "mAP"),
        (["training-aware", "--teacher", "off"], "experiment.train.teacher", "off"),
        (
            ["training-aware", "--teacher", "/t/my teacher.pt"],
            "experiment.train.teacher",
            "/t/my teacher.pt",
        ),
        (["one-shot", "--train-samples", "50"], "data.train_samples", 50),
        (["one-shot", "--val-samples", "7"], "data.val_samples", 7),
        (
            ["one-shot", "--recipe-args", '{"num_epochs": 5, "s": "a b"}'],
            "recipe_args",
            {"num_epochs": 5, "s": "a b"},
        ),
        (["one-shot", "--deploy-engine", "openvino"], "deploy.engine", "openvino"),
        (["one-shot", "--deploy-hardware", "Xeon 8380"], "deploy.hardware", "Xeon 8380"),
        (["one-shot", "--deploy-scenario", "async"], "deploy.scenario", "async"),
        (["one-shot", "--project-id", "p1"], "run.project_id", "p1"),
        (["one-shot", "--experiment-id", "e=1"], "run.experiment_id", "e=1"),
        (["training-aware", "--optimizer", "/o/opt.pt"], "experiment.train.optimizer", "/o/opt.pt"),
        (["--experiment-type", "sparse-transfer"], "experiment.name", "sparse_transfer"),
        (["one-shot", "--run-dir", "/r/one run"], "run_dir", "/r/one run"),
        (["one-shot", "--optim-level", "accuracy"], "optim_level", 0.0),
        (["one-shot", "--optim-level", "balanced"], "optim_level", 0.5),
        (["one-shot", "--optim-level", "performant"], "optim_level", 1.0),
    ],
)
def test_option_sets_its_key(argv: list[str], key: str, expected: Any) -> None:
    cfg = _compose(*argv, *BASE)
    value = OmegaConf.select(cfg, key)
    got = OmegaConf.to_container(value) if OmegaConf.is_config(value) else value
    assert got == expected


def test_option_helps_name_their_keys() -> None:
    text = " ".join(build_parser().format_help().split())  # unwrapped
    for key in (
        "benchmark.metric",
        "experiment.train.teacher",
        "data.train_samples",
        "recipe_args",
        "deploy.engine",
        "deploy.scenario",
        "run.project_id",
        "experiment.train.optimizer",
        "run_dir",
    ):
        assert f"-> {key}" in text, key


def test_experiment_type_with_extra_overrides_and_conflicts() -> None:
    cfg = _compose("--experiment-type", "one-shot", *BASE, "model.arch=tinynet")
    assert cfg.experiment.name == "one_shot" and cfg.model.arch == "tinynet"
    args = build_parser().parse_intermixed_args(
        ["one-shot", "--experiment-type", "training-aware", *BASE]
    )
    with pytest.raises(SparsifyError, match="once"):
        to_overrides(args)
    assert main(BASE) == 2  # no experiment at all: one line, no traceback


def test_named_optim_level_in_the_main_cli() -> None:
    assert compose_config(["optim_level=balanced", "data.path=/x"]).optim_level == 0.5
    swept = compose_config(["optim_level=Performant", "data.path=/x"])
    assert swept.optim_level == 1.0


def test_bad_recipe_args_are_refused_naming_the_recipes_variables() -> None:
    cfg = _compose("training-aware", *BASE, "--recipe-args", '{"bad": 1}')
    problems = [p for p in config_problems(cfg) if p.key.startswith("recipe_args")]
    assert len(problems) == 1
    assert "bad" in str(problems[0]) and "num_epochs" in str(problems[0])
    assert "init_lr" in str(problems[0])


def test_recipe_args_set_the_recipes_variables(tmp_path: Path) -> None:
    cfg = _compose("training-aware", *BASE, "--recipe-args", '{"num_epochs": 4}')
    cfg.optim_level = 0.5
    recipe = load_run_recipe(RunContext(cfg=cfg, run_dir=tmp_path))
    assert recipe.epochs() == 4.0  # EpochRangeModifier's end_epoch: eval(num_epochs)
    assert recipe.variables["pruning_end_epoch"] == pytest.approx(2.4)


@pytest.mark.parametrize(
    ("argv", "key", "words"),
    [
        (["training-aware", "--eval-metric", "kl"], "benchmark.metric", "training_aware"),
        (["one-shot", "--eval-metric", "mAP"], "benchmark.metric", "top1"),
        (["one-shot", "--deploy-scenario", "async"], "deploy.scenario", "deepsparse"),
        (
            ["one-shot", "--deploy-scenario", "elastic", "--deploy-engine", "onnxruntime"],
            "deploy.scenario",
            "deepsparse",
        ),
        (["one-shot", "--optimizer", "/nowhere.pt"], "experiment.train.optimizer", "one_shot"),
        (
            ["training-aware", "--optimizer", "/nowhere.pt"],
            "experiment.train.optimizer",
            "does not exist",
        ),
        (["one-shot", "--teacher", "/t.pt"], "experiment.train.teacher", "one_shot"),
        (["one-shot", "--train-samples", "0"], "data.train_samples", ">= 1"),
    ],
)
def test_impossible_options_are_refused(argv: list[str], key: str, words: str) -> None:
    problems = [p for p in config_problems(_compose(*argv, *BASE)) if p.key == key]
    assert problems and words in str(problems[0])


def test_async_scenario_is_accepted_for_deepsparse() -> None:
    cfg = _compose("one-shot", *BASE, "--deploy-scenario", "async", "--deploy-engine", "deepsparse")
    assert not [p for p in config_problems(cfg) if p.key.startswith("deploy")]


def test_train_samples_cut_the_train_split(tmp_path: Path) -> None:
    from sparsify.models.classifier.family import _loader

    data = make_image_folder(tmp_path / "data", classes=("a", "b", "c"), per_class=20, seed=3)
    result = sparsify.run(
        [
            f"data.path={data}",
            "model.arch=tinynet",
            "stages=[validate]",
            "data.train_samples=50",
            "data.val_samples=7",
        ],
        run_dir=tmp_path / "run",
    )
    assert result.status == "done", result.error
    cfg = compose_config([f"data.path={data}", "data.train_samples=50", "data.val_samples=7"])
    ctx = RunContext(cfg=cfg, run_dir=tmp_path / "run", outputs=result.record.outputs)
    train = _loader(ctx, "train", train=True).dataset
    assert len(train) == 50
    assert len(_loader(ctx, "val", train=False).dataset) == 7
    assert list(_loader(ctx, "train", train=True).dataset.samples) == list(train.samples)
    assert "Using 50 of 60 train samples" in (tmp_path / "run" / "run.log").read_text()


def test_kl_and_deploy_target_on_a_tiny_run(tiny_run: list[str], tmp_path: Path) -> None:
    result = sparsify.run(
        [
            *tiny_run,
            "optim_level=0.5",
            "benchmark.metric=kl",
            "deploy.engine=onnxruntime",
            "deploy.hardware=laptop",
            "run.project_id=p1",
            "run.experiment_id=e1",
        ],
        run_dir=tmp_path / "run",
    )
    assert result.status == "done", result.error
    rows = {row["model"]: row for row in result.table}
    assert rows["baseline"]["metric"] == "kl" and rows["baseline"]["accuracy"] == 0.0
    assert rows["sparsified"]["metric"] == "kl" and rows["sparsified"]["accuracy"] > 0
    bench = json.loads((tmp_path / "run" / "benchmark" / "benchmark.json").read_text())
    assert "top1" in bench["engines"]["onnxruntime"]["sparsified"]["accuracy"]  # kept beside
    deployed = json.loads((tmp_path / "run" / "deployment" / "config.json").read_text())
    assert deployed["deploy"] == {"engine": "onnxruntime", "hardware": "laptop", "scenario": "sync"}
    assert deployed["run"] == {"project_id": "p1", "experiment_id": "e1"}
    manifest = json.loads((tmp_path / "run" / "manifest.json").read_text())
    assert manifest["run"] == {"project_id": "p1", "experiment_id": "e1"}


def test_mean_kl_is_zero_for_equal_outputs_and_matches_the_definition() -> None:
    logits = [torch.randn(4, 3).numpy()]
    assert mean_kl(logits, logits) == pytest.approx(0.0, abs=1e-12)
    other = [logits[0] + torch.randn(4, 3).numpy()]
    p = torch.softmax(torch.tensor(logits[0]), -1)
    q = torch.log_softmax(torch.tensor(other[0]), -1)
    expected = torch.nn.functional.kl_div(q, p, reduction="batchmean").item()
    assert mean_kl(logits, other) == pytest.approx(expected, rel=1e-6)


def test_optimizer_state_is_resumed_and_shape_checked(tmp_path: Path) -> None:
    model = tinynet(3)
    old = torch.optim.AdamW(model.parameters(), lr=1e-3)
    model(torch.randn(2, 3, 16, 16)).sum().backward()
    old.step()
    path = tmp_path / "opt.pt"
    torch.save(old.state_dict(), path)
    saved_step = float(next(iter(old.state_dict()["state"].values()))["step"])

    new = torch.optim.AdamW(model.parameters(), lr=5e-4)
    with resume_optimizer(path, model) as done:
        new.step()  # the hook loads the saved moments before this step
    assert done["loaded"]
    state = next(iter(new.state_dict()["state"].values()))
    assert float(state["step"]) == saved_step + 1
    assert new.param_groups[0]["lr"] == 5e-4  # this run's settings kept

    with pytest.raises(SparsifyError, match="does not fit this model"):
        with resume_optimizer(path, tinynet(5)):
            pass


def test_python_dash_m_and_the_function_are_both_sparsify_run() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "sparsify.run", "--help"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0 and "--eval-metric" in proc.stdout
    code = (
        "import sparsify, types; assert isinstance(sparsify.run, types.FunctionType); "
        "import sparsify.run; assert callable(sparsify.run); print('ok')"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.stdout.strip() == "ok", proc.stderr
