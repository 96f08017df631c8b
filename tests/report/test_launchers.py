"""The launcher presets in conf/hydra/launcher/ compose, and give each job its thread budget."""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

import pytest
import yaml
from hydra import compose, initialize_config_module
from hydra.utils import get_class, instantiate
from omegaconf import DictConfig, OmegaConf

from sparsify.config.schema import register_configs
from sparsify.report.resources import available_cores, n_jobs, register_resolvers

PRESETS = Path(__file__).resolve().parents[2] / "conf" / "hydra" / "launcher"
TARGETS = {
    "sparsify_joblib": "hydra_plugins.hydra_joblib_launcher.joblib_launcher.JoblibLauncher",
    "sparsify_ray": "hydra_plugins.sparsify_ray_launcher.ray_launcher.RayLauncher",
    "sparsify_slurm": "hydra_plugins.hydra_submitit_launcher.submitit_launcher.SlurmLauncher",
    "sparsify_submitit_local": "hydra_plugins.hydra_submitit_launcher.submitit_launcher.LocalLauncher",
}
PLUGINS = {
    "sparsify_joblib": "hydra_plugins.hydra_joblib_launcher",
    "sparsify_ray": "ray",  # the launcher is sparsify's own; Ray is the cluster extra
    "sparsify_slurm": "hydra_plugins.hydra_submitit_launcher",
    "sparsify_submitit_local": "hydra_plugins.hydra_submitit_launcher",
}


def _installed(preset: str) -> bool:
    try:
        return importlib.util.find_spec(PLUGINS[preset]) is not None
    except ModuleNotFoundError:
        return False


def _compose(overrides: list[str]) -> DictConfig:
    register_configs()
    register_resolvers()
    with initialize_config_module(version_base="1.3", config_module="sparsify.conf"):
        return compose("config", overrides=overrides, return_hydra_config=True)


def _job_threads(cfg: DictConfig) -> str:
    return OmegaConf.to_container(cfg.hydra.sweeper.params, resolve=True)["benchmark.num_threads"]


def test_every_preset_is_tested() -> None:
    assert {p.stem for p in PRESETS.glob("*.yaml")} == set(TARGETS)


def test_joblib_preset_runs_as_many_jobs_as_cores_allow() -> None:
    cfg = _compose(["hydra/launcher=sparsify_joblib"])
    launcher = OmegaConf.to_container(cfg.hydra.launcher, resolve=True)
    assert launcher["_target_"] == TARGETS["sparsify_joblib"]
    assert launcher["n_jobs"] == available_cores()  # one thread per job by default
    assert _job_threads(cfg) == "1"
    assert launcher["prefer"] == "processes"  # the plugin's schema is underneath
    instantiate(cfg.hydra.launcher)  # the plugin accepts every key


@pytest.mark.parametrize("threads", [1, 2, 3, 64])
def test_joblib_jobs_times_threads_fit_the_cores(threads: int) -> None:
    cfg = _compose(["hydra/launcher=sparsify_joblib", f"benchmark.num_threads={threads}"])
    jobs = OmegaConf.to_container(cfg.hydra.launcher, resolve=True)["n_jobs"]
    assert jobs == max(1, available_cores() // threads)
    assert jobs * threads <= max(available_cores(), threads)
    assert _job_threads(cfg) == str(threads)


def test_n_jobs_arithmetic() -> None:
    assert n_jobs(None, cores=16) == 16
    assert n_jobs(4, cores=16) == 4
    assert n_jobs(5, cores=16) == 3
    assert n_jobs(32, cores=16) == 1
    with pytest.raises(ValueError, match="num_threads"):
        n_jobs(0, cores=16)


def test_basic_launcher_leaves_benchmark_threads_alone() -> None:
    assert _job_threads(_compose([])) == "null"
    assert _job_threads(_compose(["benchmark.num_threads=6"])) == "6"


@pytest.mark.parametrize(
    ("preset", "cpus_key"),
    [
        ("sparsify_ray", "launcher.ray.remote.num_cpus"),
        ("sparsify_slurm", "cpus_per_task"),
        ("sparsify_submitit_local", "cpus_per_task"),
    ],
)
def test_cluster_preset(preset: str, cpus_key: str) -> None:
    raw = yaml.safe_load((PRESETS / f"{preset}.yaml").read_text())
    cpus = OmegaConf.select(OmegaConf.create(raw), cpus_key)
    assert isinstance(cpus, int) and cpus >= 1
    # the group option composes whether or not the plugin (Ray for sparsify_ray) is installed:
    # the submitit presets are plain keys, the Ray one builds on our own schema; every job
    # benchmarks with the CPUs it reserves
    cfg = _compose([f"hydra/launcher={preset}"])
    assert cfg.hydra.launcher._target_ == TARGETS[preset]
    assert _job_threads(cfg) == str(cpus)
    assert _job_threads(_compose([f"hydra/launcher={preset}", "benchmark.num_threads=2"])) == "2"
    if not _installed(preset):
        pytest.skip(f"{PLUGINS[preset]} not installed: checked the YAML and its _target_ only")
    # with the plugin: every key is one its schema knows, with the right type
    get_class(TARGETS[preset])
    if preset == "sparsify_ray":  # composed on its schema above: instantiating is the check
        instantiate(cfg.hydra.launcher)
        return
    schema = {
        "sparsify_slurm": "hydra_plugins.hydra_submitit_launcher.config.SlurmQueueConf",
        "sparsify_submitit_local": "hydra_plugins.hydra_submitit_launcher.config.LocalQueueConf",
    }[preset]
    OmegaConf.merge(OmegaConf.structured(get_class(schema)), raw)


def test_slurm_preset_makes_a_requeueable_sbatch_script(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The keys a cluster needs reach sbatch as submitit writes it, with the USR2 signal that
    makes submitit requeue a preempted job (it resumes in the same run dir)."""
    if not _installed("sparsify_slurm"):
        pytest.skip("hydra-submitit-launcher not installed")
    import submitit
    from hydra_plugins.hydra_submitit_launcher.config import BaseQueueConf

    srun = tmp_path / "bin" / "srun"  # submitit only checks that srun exists before writing
    srun.parent.mkdir()
    srun.write_text("#!/bin/sh\nexit 1\n")
    srun.chmod(0o755)
    monkeypatch.setenv("PATH", f"{srun.parent}{os.pathsep}{os.environ['PATH']}")
    cfg = _compose(
        [
            "hydra/launcher=sparsify_slurm",
            "hydra.launcher.partition=cpu",
            "hydra.launcher.gpus_per_node=1",
        ]
    )
    params = OmegaConf.to_container(cfg.hydra.launcher, resolve=False)
    params.pop("_target_")
    for key in ("partition", "timeout_min", "cpus_per_task", "gpus_per_node", "tasks_per_node"):
        assert key in params, key
    assert params["array_parallelism"] >= 1 and params["signal_delay_s"] > 0
    # what hydra-submitit-launcher's launch() does with them
    executor = submitit.AutoExecutor(
        cluster="slurm", folder=tmp_path / "jobs", slurm_max_num_timeout=params["max_num_timeout"]
    )
    base = set(OmegaConf.structured(BaseQueueConf).keys())
    executor.update_parameters(
        **{
            k if k in base else f"slurm_{k}": v
            for k, v in params.items()
            if k not in {"submitit_folder", "max_num_timeout"}
        }
    )
    script = executor._executor._make_submission_file_text("python -m x", "uid")
    for line in (
        "#SBATCH --partition=cpu",
        "#SBATCH --time=240",
        "#SBATCH --cpus-per-task=8",
        "#SBATCH --gpus-per-node=1",
        "#SBATCH --ntasks-per-node=1",
        "#SBATCH --signal=USR2@120",
        "#SBATCH --open-mode=append",  # a requeued job appends to its logs
    ):
        assert line in script, (line, script)
