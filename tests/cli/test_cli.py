"""The `sparsify` and `sparsify.run` commands as a user types them."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import sparsify
from sparsify.cli.legacy_run import build_parser, to_overrides
from sparsify.config import compose_config
from sparsify.models.tiny import tinynet
from tests.conftest import TINY_RUN
from tests.fixtures.images import make_image_folder

BIN = Path(sys.executable).parent


def _sparsify(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(BIN / "sparsify"), *args],
        capture_output=True,
        text=True,
        cwd=cwd,
        env={**os.environ},
        timeout=300,
    )


@pytest.mark.parametrize("level", ["1.7", "abc"])
def test_bad_optim_level_exits_with_a_clear_message(level: str, tmp_path: Path) -> None:
    proc = _sparsify(f"optim_level={level}", f"data.path={tmp_path}")
    assert proc.returncode == 2
    assert "optim_level" in proc.stderr and "0.0 to 1.0" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_unknown_use_case_for_sparse_transfer_lists_known_names(tmp_path: Path) -> None:
    proc = _sparsify(
        "use_case=speech-to-text",
        "experiment=sparse_transfer",
        f"data.path={tmp_path}",
        f"working_dir={tmp_path / 'runs'}",
    )
    assert proc.returncode == 1
    assert "speech-to-text" in proc.stderr
    assert "cv-classification" in proc.stderr and "nlp-named_entity_recognition" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_missing_data_dir(tmp_path: Path) -> None:
    proc = _sparsify(f"data.path={tmp_path / 'nowhere'}", f"working_dir={tmp_path / 'runs'}")
    assert proc.returncode == 1
    assert "nowhere" in proc.stderr and "does not exist" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_every_data_and_model_problem_in_one_report(tmp_path: Path) -> None:
    data = make_image_folder(tmp_path / "data", classes=("a", "b", "c"), per_class=3)
    shutil.rmtree(data / "train" / "b")
    (data / "train" / "b").mkdir()  # empty class
    (data / "train" / "a" / "broken.png").write_bytes(b"not a png at all")
    ckpt = tmp_path / "tiny.pth"
    torch.save(tinynet(3).state_dict(), ckpt)
    result = sparsify.run(
        [f"data.path={data}", f"model.path={ckpt}", "model.arch=resnet18"], run_dir=tmp_path / "run"
    )
    assert result.status == "failed"
    assert "empty" in result.error and str(data / "train" / "b") in result.error
    assert "broken.png" in result.error
    manifest = json.loads((tmp_path / "run" / "manifest.json").read_text())
    assert manifest["stages"]["validate"]["status"] == "failed"
    assert "fetch" not in manifest["stages"]


def test_checkpoint_of_the_wrong_architecture(tiny_images: Path, tmp_path: Path) -> None:
    ckpt = tmp_path / "tiny.pth"
    torch.save(tinynet(3).state_dict(), ckpt)
    result = sparsify.run(
        [f"data.path={tiny_images}", f"model.path={ckpt}", "model.arch=resnet18"],
        run_dir=tmp_path / "run",
    )
    assert result.status == "failed"
    assert "does not fit architecture 'resnet18'" in result.error
    assert "model.arch" in result.error


def test_checkpoint_with_other_classes_gets_a_new_head(tiny_images: Path, tmp_path: Path) -> None:
    ckpt = tmp_path / "ten.pth"
    torch.save(tinynet(10).state_dict(), ckpt)
    result = sparsify.run(
        [f"data.path={tiny_images}", f"model.path={ckpt}", "model.arch=tinynet", *TINY_RUN],
        run_dir=tmp_path / "run",
    )
    assert result.status == "done", result.error
    assert "prepared here as the dense baseline" in result.outputs["fetch"]["source"]
    log = (tmp_path / "run" / "run.log").read_text()
    assert "not trained on this dataset's classes" in log
    assert "Re-initialised the classifier head (classifier.weight, classifier.bias)" in log
    head = torch.load(tmp_path / "run" / "fetch" / "model.pth", weights_only=True)["state_dict"]
    assert head["classifier.weight"].shape == (3, 64)


def test_user_checkpoint_runs(tiny_images: Path, tmp_path: Path) -> None:
    ckpt = tmp_path / "mine.pt"
    torch.save({"state_dict": tinynet(3).state_dict(), "arch_key": "tinynet"}, ckpt)
    result = sparsify.run(
        [f"data.path={tiny_images}", f"model={ckpt}", "optim_level=0.2", *TINY_RUN],
        run_dir=tmp_path / "run",
    )
    assert result.status == "done", result.error
    assert result.outputs["fetch"]["source"] == str(ckpt.resolve())
    assert result.outputs["sparsify"]["sparsity"] == 0.0  # < 0.3: INT8 only
    quantization = result.outputs["sparsify"]["quantization"]
    assert quantization["format"] == "qoperator"  # DeepSparse runs it
    assert quantization["weight_rounding"] == "gptq" and quantization["rounded_layers"] > 0


def test_seed_cli_maps_onto_the_same_config(tiny_images: Path) -> None:
    args = build_parser().parse_intermixed_args(
        [
            "one-shot",
            "--use-case",
            "image-classification",
            "--data",
            str(tiny_images),
            "--optim-level",
            "50",
            "--model",
            "m.pth",
            "--working-dir",
            "/tmp/w",
            "model.arch=tinynet",
        ]
    )
    seed = compose_config(to_overrides(args))
    direct = compose_config(
        [
            "experiment=one_shot",
            "use_case=cv-classification",
            f"data.path={tiny_images}",
            "optim_level=50",
            "model=m.pth",
            "working_dir=/tmp/w",
            "model.arch=tinynet",
        ]
    )
    seed.run_dir = direct.run_dir = "x"  # timestamps
    assert seed == direct


def test_seed_cli_runs_end_to_end(tiny_images: Path, tmp_path: Path) -> None:
    proc = subprocess.run(
        [
            str(BIN / "sparsify.run"),
            "one-shot",
            "--use-case",
            "ic",
            "--data",
            str(tiny_images),
            "--optim-level",
            "0.3",
            "--working-dir",
            str(tmp_path / "w"),
            *TINY_RUN,
        ],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ},
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    deployments = list((tmp_path / "w").rglob("deployment/model.onnx"))
    assert len(deployments) == 1
    assert "Deployment folder:" in proc.stdout


def test_seed_cli_refuses_unknown_use_case_for_training_aware(tmp_path: Path) -> None:
    proc = subprocess.run(
        [
            str(BIN / "sparsify.run"),
            "training-aware",
            "--use-case",
            "speech",
            "--data",
            str(tmp_path),
            "--working-dir",
            str(tmp_path / "w"),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 1
    assert "cv-classification" in proc.stderr and "Traceback" not in proc.stderr


def test_multirun_one_job_per_level(tiny_images: Path, tmp_path: Path) -> None:
    proc = _sparsify(
        "-m",
        "optim_level=0.0,0.5,1.0",
        f"data.path={tiny_images}",
        f"working_dir={tmp_path}",
        *TINY_RUN,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    manifests = sorted((tmp_path / "multirun").rglob("manifest.json"))
    assert len(manifests) == 3
    levels = []
    for m in manifests:
        data = json.loads(m.read_text())
        assert data["status"] == "done"
        levels.append(data["stages"]["validate"]["outputs"]["optim_level"])
        assert (m.parent / "deployment" / "model.onnx").is_file()
    assert sorted(levels) == [0.0, 0.5, 1.0]
    assert len({m.parent for m in manifests}) == 3


def test_cfg_job_prints_the_resolved_config(tmp_path: Path) -> None:
    proc = _sparsify("--cfg", "job", "use_case=ner", "data.path=/x")
    assert proc.returncode == 0, proc.stderr
    assert "nlp-named_entity_recognition" in proc.stdout and "hf_text" in proc.stdout
