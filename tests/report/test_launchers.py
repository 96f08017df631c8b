"""The launcher presets in conf/hydra/launcher/ compose, and give each job its thread budget."""

from __future__ import annotations

import importlib.util
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
    "sparsify_ray": "hydra_plugins.hydra_ray_launcher.ray_launcher.RayLauncher",
    "sparsify_slurm": "hydra_plugins.hydra_submitit_launcher.submitit_launcher.SlurmLauncher",
}
PLUGINS = {
    "sparsify_joblib": "hydra_plugins.hydra_joblib_launcher",
    "sparsify_ray": "hydra_plugins.hydra_ray_launcher",
    "sparsify_slurm": "hydra_plugins.hydra_submitit_launcher",
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
    [("sparsify_ray", "ray.remote.num_cpus"), ("sparsify_slurm", "cpus_per_task")],
)
def test_cluster_preset(preset: str, cpus_key: str) -> None:
    raw = yaml.safe_load((PRESETS / f"{preset}.yaml").read_text())
    assert raw["_target_"] == TARGETS[preset]
    cpus = OmegaConf.select(OmegaConf.create(raw), cpus_key)
    assert isinstance(cpus, int) and cpus >= 1
    # the group option composes whether or not the plugin is installed (plain keys, no
    # plugin schema in its defaults), and every job benchmarks with the CPUs it reserves
    cfg = _compose([f"hydra/launcher={preset}"])
    assert cfg.hydra.launcher._target_ == TARGETS[preset]
    assert _job_threads(cfg) == str(cpus)
    assert _job_threads(_compose([f"hydra/launcher={preset}", "benchmark.num_threads=2"])) == "2"
    if not _installed(preset):
        pytest.skip(f"{PLUGINS[preset]} not installed: checked the YAML and its _target_ only")
    # with the plugin: every key is one its schema knows, with the right type
    get_class(TARGETS[preset])
    schema = {
        "sparsify_ray": "hydra_plugins.hydra_ray_launcher._config.RayLauncherConf",
        "sparsify_slurm": "hydra_plugins.hydra_submitit_launcher.config.SlurmQueueConf",
    }[preset]
    OmegaConf.merge(OmegaConf.structured(get_class(schema)), raw)
