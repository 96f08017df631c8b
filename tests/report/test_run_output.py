"""What `sparsify` prints: the end-of-run table and deployment path, --help and --cfg job."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

BIN = Path(sys.executable).parent


def _sparsify(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(BIN / "sparsify"), *args],
        capture_output=True,
        text=True,
        env={**os.environ},
        timeout=300,
    )


def test_a_run_ends_with_dense_vs_result_and_the_deployment_folder(tiny_run: list[str]) -> None:
    proc = _sparsify("optim_level=0.5", *tiny_run)
    assert proc.returncode == 0, proc.stderr[-2000:]
    lines = proc.stdout.splitlines()
    header = next(i for i, line in enumerate(lines) if line.startswith("engine"))
    assert lines[header].split()[:3] == ["engine", "model", "accuracy"]
    assert "latency" in lines[header] and "speedup" in lines[header]
    assert lines[header + 2].split()[1] == "baseline"
    assert lines[header + 3].split()[1] == "sparsified"
    deployment = Path(lines[-1].removeprefix("Deployment folder: "))
    assert lines[-1].startswith("Deployment folder: ") and (deployment / "model.onnx").is_file()


def test_help_lists_groups_options_and_the_composed_config() -> None:
    proc = _sparsify("--help", "use_case=ner")
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    assert out.startswith("sparsify: prune + INT8-quantize")
    assert "sparsify -m optim_level=" in out and "sparsify report DIR" in out
    assert "experiment: one_shot, sparse_transfer, training_aware" in out
    assert "hydra/launcher=sparsify_joblib" in out
    # the config shown is the one these overrides compose
    config = yaml.safe_load(
        out.split("Override anything in the config (foo.bar=value)")[1].split("\n\n")[1]
    )
    assert config["use_case"]["name"] == "nlp-named_entity_recognition"
    assert config["data"]["format"] == "hf_text"


def test_cfg_job_shows_the_config_as_composed_and_resolve_resolves_it() -> None:
    plain = _sparsify("--cfg", "job", "use_case=qa", "working_dir=/w", "optim_level=40")
    assert plain.returncode == 0, plain.stderr
    cfg = yaml.safe_load(plain.stdout)
    assert cfg["use_case"]["name"] == "nlp-question_answering" and cfg["optim_level"] == 40
    assert cfg["run_dir"].startswith("${working_dir}/")  # interpolations kept, as in Hydra
    assert "hydra" not in cfg  # job config only
    resolved = _sparsify("--cfg", "job", "--resolve", "use_case=qa", "working_dir=/w")
    assert resolved.returncode == 0, resolved.stderr
    run_dir = yaml.safe_load(resolved.stdout)["run_dir"]
    assert run_dir.startswith("/w/one_shot_nlp-question_answering/")


@pytest.mark.parametrize("preset", ["sparsify_joblib", "sparsify_ray", "sparsify_slurm"])
def test_cfg_hydra_shows_the_launcher_preset(preset: str) -> None:
    proc = _sparsify("--cfg", "hydra", "-p", "hydra.launcher", f"hydra/launcher={preset}")
    assert proc.returncode == 0, proc.stderr
    assert "_target_: hydra_plugins." in proc.stdout
