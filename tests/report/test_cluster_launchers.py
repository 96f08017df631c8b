"""Sweeps through the cluster launchers for real: a Ray cluster on 127.0.0.1 that the
`sparsify -m hydra/launcher=sparsify_ray` command joins, and submitit's local executor standing
in for Slurm, with one job killed mid-stage and the sweep command run again to resume it."""

from __future__ import annotations

import csv
import json
import os
import pickle
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from omegaconf import OmegaConf

from sparsify.errors import SparsifyError
from tests.conftest import TINY_RUN
from tests.report.test_launchers import _compose

BIN = Path(sys.executable).parent
LEVELS = "optim_level=0.0,0.5"


def _sparsify(*args: str, timeout: int = 420) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(BIN / "sparsify"), *args], capture_output=True, text=True, timeout=timeout
    )


def _check_sweep(root: Path) -> list[dict[str, Any]]:
    """Both jobs finished with their artifacts, and the report is at the sweep root."""
    manifests = sorted(root.glob("*/manifest.json"))
    assert len(manifests) == 2, sorted(p.name for p in root.iterdir())
    for m in manifests:
        assert json.loads(m.read_text())["status"] == "done", m
        assert (m.parent / "deployment" / "model.onnx").is_file()
    for name in ("summary.csv", "summary.md", "report.html"):
        assert (root / name).is_file(), name
    with (root / "summary.csv").open() as f:
        rows = list(csv.DictReader(f))
    assert sorted(float(r["level"]) for r in rows) == [0.0, 0.5]
    assert {r["status"] for r in rows} == {"done"}
    return rows


@pytest.fixture(scope="module")
def ray_cluster() -> Iterator[str]:
    """A 2-CPU Ray head on 127.0.0.1, started by this process and stopped with it. Its workers
    inherit this process's environment (the suite's cache and baseline-gate settings)."""
    ray = pytest.importorskip("ray")
    ctx = ray.init(
        address="local",
        num_cpus=2,
        include_dashboard=False,
        object_store_memory=75 * 2**20,
        _node_ip_address="127.0.0.1",
        log_to_driver=False,
    )
    try:
        yield ctx.address_info["gcs_address"]
    finally:
        ray.shutdown()


def test_ray_sweep_runs_every_job_on_the_cluster(
    ray_cluster: str, tiny_images: Path, tmp_path: Path
) -> None:
    proc = _sparsify(
        "-m",
        "hydra/launcher=sparsify_ray",
        f"hydra.launcher.ray.init.address={ray_cluster}",
        "hydra.launcher.ray.remote.num_cpus=1",  # both jobs at once on the 2-CPU head
        LEVELS,
        f"data.path={tiny_images}",
        f"working_dir={tmp_path}",
        *TINY_RUN,
    )
    assert proc.returncode == 0, (proc.stdout[-2000:], proc.stderr[-4000:])
    assert "Ray launcher: 2 jobs" in proc.stderr + proc.stdout
    (root,) = (tmp_path / "multirun").iterdir()
    _check_sweep(root)
    for config in root.glob("*/config.yaml"):  # each job benchmarked with the CPU it reserved
        assert OmegaConf.load(config).benchmark.num_threads == 1


def test_a_job_bigger_than_the_cluster_is_refused_or_warned(
    ray_cluster: str, caplog: pytest.LogCaptureFixture
) -> None:
    from sparsify.launchers.ray_launcher import check_jobs_fit

    check_jobs_fit({"num_cpus": 2, "num_gpus": 0}, local=True)
    with pytest.raises(SparsifyError, match=r"ray.remote.num_cpus=4 .* 2 CPU"):
        check_jobs_fit({"num_cpus": 4}, local=True)
    with pytest.raises(SparsifyError, match="num_gpus=1"):
        check_jobs_fit({"num_cpus": 1, "num_gpus": 1}, local=True)
    check_jobs_fit({"num_cpus": 4}, local=False)  # a cluster may scale up: a warning only
    assert "ray.remote.num_cpus=4" in caplog.text


def _wait_for_a_stage_to_run(manifest: Path, proc: subprocess.Popen[str]) -> dict[str, Any]:
    """The job's manifest once `sparsify` is done and `benchmark` is running."""
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and proc.poll() is None:
        try:
            stages = json.loads(manifest.read_text()).get("stages", {})
        except (OSError, ValueError):
            stages = {}
        if stages.get("benchmark", {}).get("status") == "running":
            return stages
        time.sleep(0.2)
    raise AssertionError(f"job never reached its benchmark stage: {proc.poll()=}")


@pytest.mark.slow
def test_submitit_sweep_resumes_a_killed_job(tiny_images: Path, tmp_path: Path) -> None:
    pytest.importorskip("hydra_plugins.hydra_submitit_launcher")
    root = tmp_path / "sweep"
    args = [
        "-m",
        "hydra/launcher=sparsify_submitit_local",
        f"hydra.sweep.dir={root}",  # what a re-run needs to land in the same run dirs
        LEVELS,
        f"data.path={tiny_images}",
        f"working_dir={tmp_path / 'runs'}",
        *TINY_RUN,
        "benchmark.time_s=0.5",  # a benchmark stage long enough to be killed in
    ]
    proc = subprocess.Popen(
        [str(BIN / "sparsify"), *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        manifest = root / "1_cv-classification_one_shot_level-0.5" / "manifest.json"
        before = _wait_for_a_stage_to_run(manifest, proc)
        owner = json.loads((manifest.parent / ".sparsify.lock").read_text())
        assert owner["pid"] != proc.pid  # the job runs in its own submitit process
        os.kill(owner["pid"], signal.SIGKILL)  # as a preempted node would
        out, _ = proc.communicate(timeout=300)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode != 0, out[-3000:]  # the launcher reports the job that died
    assert json.loads(manifest.read_text()).get("status") != "done"

    again = _sparsify(*args)
    assert again.returncode == 0, (again.stdout[-2000:], again.stderr[-4000:])
    _check_sweep(root)
    after = json.loads(manifest.read_text())["stages"]
    for stage in ("validate", "fetch", "sparsify"):  # finished before the kill: not redone
        assert after[stage]["started_at"] == before[stage]["started_at"], stage
    assert after["benchmark"]["started_at"] >= before["benchmark"]["started_at"]
    log = (manifest.parent / "run.log").read_text()
    assert "Stage sparsify: finished earlier with the same inputs, skipped" in log


def test_a_requeued_job_lands_in_the_same_run_dir() -> None:
    """submitit requeues a preempted job by re-running the pickled launcher, whose config holds
    the sweep's resolved ${now:...}: the job's run dir comes out the same, later."""
    cfg = _compose(["hydra/launcher=sparsify_slurm", "hydra.job.num=1", "optim_level=0.5"])

    def run_dir(c: Any) -> str:
        return f"{c.hydra.sweep.dir}/{c.hydra.sweep.subdir}"

    first = run_dir(cfg)
    assert first.endswith("/1_cv-classification_one_shot_level-0.5")
    time.sleep(1.1)  # the sweep dir's timestamp has seconds
    assert run_dir(pickle.loads(pickle.dumps(cfg))) == first
