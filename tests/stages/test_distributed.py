"""Training across processes: `torchrun --nproc_per_node 2` on CPU (gloo), tiny models."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

import sparsify
from sparsify import distributed
from sparsify.errors import SparsifyError
from tests.conftest import TINY_RUN

TRAINING = ["experiment=training_aware", "optim_level=0.5"]


def torchrun(args: list[str], run_dir: Path, wait: bool = True) -> subprocess.Popen | int:
    """`torchrun --standalone --nproc_per_node 2 -m sparsify ARGS run_dir=RUN_DIR`; each rank
    writes the hashes of its trained model (SPARSIFY_RANK_FINGERPRINT)."""
    env = {**os.environ, distributed.FINGERPRINT_ENV: "1", "OMP_NUM_THREADS": "1"}
    command = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc_per_node",
        "2",
        "-m",
        "sparsify",
        *args,
        f"run_dir={run_dir}",
    ]
    log = (run_dir.parent / f"{run_dir.name}.out").open("w")
    proc = subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT)
    return proc.wait(timeout=600) if wait else proc


def output(run_dir: Path) -> str:
    return (run_dir.parent / f"{run_dir.name}.out").read_text()


def rank_hashes(run_dir: Path) -> list[dict[str, str]]:
    return [json.loads((run_dir / "ranks" / f"rank-{r}.json").read_text()) for r in (0, 1)]


def manifest(run_dir: Path) -> dict:
    return json.loads((run_dir / "manifest.json").read_text())


def test_classifier_two_processes_agree_and_match_one(tiny_run: list[str], tmp_path: Path) -> None:
    args = [*tiny_run, *TRAINING, "experiment.train.batch_size=4"]
    rc = torchrun(args, tmp_path / "two")
    assert rc == 0, output(tmp_path / "two")
    zero, one = rank_hashes(tmp_path / "two")
    assert zero == one  # same weights, same zeros (masks), same QAT ranges on both ranks
    two = manifest(tmp_path / "two")
    assert two["status"] == "done"
    # rank 1 wrote only under ranks/: its log, nothing of the run's own files
    assert (tmp_path / "two" / "ranks" / "rank-1" / "run.log").is_file()
    assert "Rank 1 of 2" in (tmp_path / "two" / "ranks" / "rank-1" / "run.log").read_text()
    single = sparsify.run(args, run_dir=tmp_path / "one")
    assert single.status == "done", single.error
    spars = two["stages"]["sparsify"]["outputs"]
    assert spars["sparsity"] == pytest.approx(single.outputs["sparsify"]["sparsity"], abs=1e-4)
    assert spars["sparsity"] == pytest.approx(0.7, abs=0.005)
    assert spars["qat"] is True


@pytest.mark.slow
def test_bert_two_processes_agree_and_match_one(tmp_path: Path) -> None:
    pytest.importorskip("transformers")
    from tests.fixtures.hf_models import make_tiny_bert
    from tests.fixtures.text import make_text_classification

    encoder = make_tiny_bert(tmp_path / "bert")
    data = make_text_classification(tmp_path / "data")
    args = [
        "use_case=sentiment",
        f"data.path={data}",
        f"model={encoder}",
        *TRAINING,
        "experiment.train.max_steps=8",
        "experiment.train.batch_size=4",
        "experiment.train.lr=5e-3",
        "experiment.calibration_samples=4",
        "data.max_length=48",
        "data.batch_size=4",
        "benchmark.time_s=0.1",
        "benchmark.warmup_s=0.02",
        "benchmark.batch_sizes=[1,2]",
        "baseline.min_steps=4",
        "baseline.max_epochs=1",
    ]
    # the dense baseline is trained in one process (cached); under torchrun it is refused
    refused = torchrun(args, tmp_path / "refused")
    assert refused != 0 and "train it once in one process" in output(tmp_path / "refused")
    single = sparsify.run(args, run_dir=tmp_path / "one")
    assert single.status == "done", single.error
    rc = torchrun(args, tmp_path / "two")
    assert rc == 0, output(tmp_path / "two")
    zero, one = rank_hashes(tmp_path / "two")
    assert zero == one
    spars = manifest(tmp_path / "two")["stages"]["sparsify"]["outputs"]
    assert spars["sparsity"] == pytest.approx(single.outputs["sparsify"]["sparsity"], abs=1e-4)
    assert spars["qat"] is True


def test_a_killed_rank_fails_the_run_naming_it(tiny_images: Path, tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    args = [f"data.path={tiny_images}", *TINY_RUN, *TRAINING, "experiment.train.max_steps=5000"]
    proc = torchrun(args, run_dir, wait=False)
    follower_log = run_dir / "ranks" / "rank-1" / "run.log"
    deadline = time.monotonic() + 300
    while "PID" not in (follower_log.read_text() if follower_log.is_file() else ""):
        assert proc.poll() is None and time.monotonic() < deadline, output(run_dir)
        time.sleep(0.2)
    time.sleep(1.0)  # into the training loop
    pid = int(follower_log.read_text().split("PID ")[1].split(")")[0])
    os.kill(pid, signal.SIGKILL)
    assert proc.wait(timeout=300) != 0
    # the manifest is written before rank 0 raises; its console line may lose the race with
    # the launcher's SIGTERM
    stage = manifest(run_dir)["stages"]["sparsify"]
    assert stage["status"] == "failed"
    assert "training across 2 processes failed" in stage["error"]
    assert "RankFailed" in stage["error"] and f"rank 1: PID {pid} ended" in stage["error"]


def test_unsupported_under_a_launcher_refused_before_any_collective(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("WORLD_SIZE", "2")
    with pytest.raises(SparsifyError, match="device=0,1"):
        distributed.refuse_unsupported("yolo")
    distributed.refuse_unsupported("image_classifier")  # the others train under torchrun
    with pytest.raises(SparsifyError, match="SyncBatchNorm runs on CUDA only"):
        distributed.refuse_unsupported("image_classifier", sync_batchnorm=True)
    monkeypatch.delenv("WORLD_SIZE")
    monkeypatch.setenv("OMPI_COMM_WORLD_SIZE", "2")  # mpirun: no RANK / WORLD_SIZE to read
    with pytest.raises(SparsifyError, match="launch with torchrun"):
        distributed.refuse_unsupported("image_classifier")
