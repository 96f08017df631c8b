"""Mistakes on the command line of `sparsify` and `sparsify.run`: one clear error, a non-zero
exit status, no traceback; values the original-style CLI passes on reach the config intact."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from sparsify.cli.legacy_run import build_parser, to_overrides
from sparsify.cli.main import main
from sparsify.config import compose_config

BIN = Path(sys.executable).parent


def _cli(name: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(BIN / name), *args],
        capture_output=True,
        text=True,
        env={**os.environ},
        timeout=300,
    )


def test_nan_level_is_not_a_number(tmp_path: Path) -> None:
    proc = _cli("sparsify", "optim_level=nan", "data=digits", f"working_dir={tmp_path}")
    assert proc.returncode == 2
    assert "optim_level = 'nan': is not a number" in proc.stderr
    assert "negative" not in proc.stderr and "Traceback" not in proc.stderr


def test_plus_unknown_key_is_refused_and_nothing_is_written(tmp_path: Path) -> None:
    proc = _cli("sparsify", "+foo=1", "++data.pth=x", "data=digits", f"working_dir={tmp_path}")
    assert proc.returncode == 2
    assert "+foo = '1': is not a key of the run config" in proc.stderr
    assert "++data.pth" in proc.stderr and "did you mean data.path" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert list(tmp_path.iterdir()) == []


def test_negative_calibration_samples_fail_validation(tmp_path: Path) -> None:
    proc = _cli(
        "sparsify",
        "experiment.calibration_samples=-5",
        "data=digits",
        "stages=[validate]",
        f"run_dir={tmp_path / 'run'}",
    )
    assert proc.returncode == 1
    assert "experiment.calibration_samples = -5: must not be negative" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_seed_cli_unknown_use_case_lists_the_known_ones(tmp_path: Path) -> None:
    proc = _cli(
        "sparsify.run",
        "one-shot",
        "--use-case",
        "not a use case!",
        "--data",
        str(tmp_path),
        "--working-dir",
        str(tmp_path / "w"),
    )
    assert proc.returncode == 2
    assert "use_case = 'not a use case!': is not a known use case" in proc.stderr
    assert "cv-classification" in proc.stderr and "nlp-named_entity_recognition" in proc.stderr
    assert "Traceback" not in proc.stderr and "LexerNoViableAlt" not in proc.stderr


@pytest.mark.parametrize(
    "odd",
    ["my data (v2)", "a=b,c", "it's [x]", 'say "hi"', "back\\slash\\", "cost ${HOME}"],
)
def test_seed_cli_values_reach_the_config_intact(odd: str, tmp_path: Path) -> None:
    args = build_parser().parse_intermixed_args(
        [
            "one-shot",
            "--use-case",
            "Object Detection",
            "--data",
            f"/d/{odd}",
            "--model",
            f"/m/{odd}.pt",
            "--working-dir",
            str(tmp_path / odd),
            "--recipe",
            f"/r/{odd}.yaml",
            "--optim-level",
            "50",
        ]
    )
    cfg = compose_config(to_overrides(args))
    assert cfg.use_case.name == "cv-detection"
    assert cfg.data.path == f"/d/{odd}" and cfg.model.path == f"/m/{odd}.pt"
    assert cfg.working_dir == str(tmp_path / odd) and cfg.recipe == f"/r/{odd}.yaml"
    assert cfg.optim_level == 50


def test_seed_cli_writes_an_odd_data_path_into_config_yaml(tmp_path: Path) -> None:
    data = tmp_path / "my data, v=2 [it's]"
    proc = _cli(
        "sparsify.run",
        "one-shot",
        "--use-case",
        "ic",
        "--data",
        str(data),
        "--working-dir",
        str(tmp_path / "w"),
    )
    assert proc.returncode == 1  # the folder does not exist: reported by validate, by name
    assert f"{data}" in proc.stderr and "does not exist" in proc.stderr
    (config,) = (tmp_path / "w").rglob("config.yaml")
    assert yaml.safe_load(config.read_text())["data"]["path"] == str(data)


def test_a_sweep_with_failed_jobs_exits_non_zero_after_its_report(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = [
        "-m",
        "optim_level=0.0,0.5",
        f"data.path={tmp_path / 'missing'}",
        f"working_dir={tmp_path}",
    ]
    old_argv = sys.argv
    try:
        with pytest.raises(SystemExit) as info:
            main(argv)
    finally:
        sys.argv = old_argv
    assert info.value.code == 1
    err = capsys.readouterr()
    assert "2 of 2 sweep job(s) did not finish" in err.err
    (root,) = (tmp_path / "multirun").iterdir()
    assert (root / "summary.md").is_file()  # the report was written first
    assert "Sweep report:" in err.out


def test_an_earlier_budget_search_does_not_decide_a_later_sweeps_exit(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from sparsify.budget import set_outcome

    set_outcome("")  # a budget search in this process chose a package, nobody read it
    test_a_sweep_with_failed_jobs_exits_non_zero_after_its_report(tmp_path, capsys)
