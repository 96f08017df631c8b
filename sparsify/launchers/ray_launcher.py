"""A Hydra launcher that runs each sweep job as a Ray task (`hydra/launcher=sparsify_ray`).

Why not hydra-ray-launcher 1.2.2: it requires cloudpickle<3 while joblib 1.6 (under
scikit-learn and hydra-joblib-launcher) requires cloudpickle>=3, so installing it downgrades
joblib to 1.5.3 and cloudpickle to 2.2.1, and it pulls in ray[default] (the dashboard: ~40 more
packages). Its local/cluster code path is what this module does, on plain `ray`: connect to the
cluster at `ray.init.address` (or start a Ray on this machine), submit every job with
`ray.remote(**ray.remote)`, and return Hydra's JobReturns.

Hydra instantiates it as hydra_plugins.sparsify_ray_launcher.ray_launcher.RayLauncher.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hydra.core.hydra_config import HydraConfig
from hydra.core.singleton import Singleton
from hydra.core.utils import JobReturn, configure_log, filter_overrides, run_job, setup_globals
from hydra.plugins.launcher import Launcher
from hydra.types import HydraContext, TaskFunction
from omegaconf import DictConfig, OmegaConf, open_dict

from sparsify.errors import SparsifyError

log = logging.getLogger(__name__)

TARGET = "hydra_plugins.sparsify_ray_launcher.ray_launcher.RayLauncher"
# A Ray started here only carries the jobs' small return values; Ray's default (30% of RAM in
# /dev/shm) is what hydra-ray-launcher also cut to this on shared machines.
LOCAL_OBJECT_STORE_BYTES = 75 * 2**20


@dataclass
class RayConf:
    # keyword arguments of ray.init: address null starts a Ray on this machine, "auto" joins
    # the cluster this node belongs to, "<head>:6379" or "ray://<head>:10001" a remote one
    init: dict[str, Any] = field(default_factory=lambda: {"address": None})
    # keyword arguments of ray.remote for every job: num_cpus, num_gpus, max_calls, max_retries
    remote: dict[str, Any] = field(default_factory=lambda: {"num_cpus": 1})


@dataclass
class RayLauncherConf:
    _target_: str = TARGET
    ray: RayConf = field(default_factory=RayConf)


def _import_ray() -> Any:
    try:
        import ray
    except ModuleNotFoundError as exc:
        raise SparsifyError(
            "hydra/launcher=sparsify_ray needs Ray: pip install 'sparsify[cluster]'"
        ) from exc
    return ray


def start_ray(init: dict[str, Any]) -> None:
    """Connect to the cluster `init` names, or start a Ray on this machine (address null)."""
    ray = _import_ray()
    if ray.is_initialized():
        log.info("Ray is already initialized in this process: using it")
        return
    if init.get("address") is None:
        init = {"include_dashboard": False, "object_store_memory": LOCAL_OBJECT_STORE_BYTES, **init}
    log.info("Initializing Ray with %s", init)
    ray.init(**init)


def check_jobs_fit(remote: dict[str, Any], local: bool) -> None:
    """A job that reserves more CPUs or GPUs than the cluster has would wait forever: an error
    for a Ray started here, a warning for a cluster (its autoscaler may add nodes)."""
    ray = _import_ray()
    have = ray.cluster_resources()
    for key, resource in (("num_cpus", "CPU"), ("num_gpus", "GPU")):
        want = remote.get(key) or 0
        if want <= have.get(resource, 0):
            continue
        message = (
            f"each sweep job reserves hydra.launcher.ray.remote.{key}={want} but the Ray "
            f"cluster has {have.get(resource, 0):g} {resource}: no job could start; lower "
            f"hydra.launcher.ray.remote.{key}, or point hydra.launcher.ray.init.address at a "
            "cluster with bigger nodes"
        )
        if local:
            raise SparsifyError(message)
        log.warning("%s (waiting, in case the cluster scales up)", message)


def _run_job(
    hydra_context: HydraContext,
    sweep_config: DictConfig,
    task_function: TaskFunction,
    singleton_state: dict[Any, Any],
) -> JobReturn:
    """One sweep job, inside a Ray worker."""
    setup_globals()
    Singleton.set_state(singleton_state)
    HydraConfig.instance().set_config(sweep_config)
    # Ray workers do not start in the directory the sweep was started from: relative paths in
    # the config (data.path=./flowers) mean what they meant there, when this node has it
    origin = str(sweep_config.hydra.runtime.cwd)
    if os.path.isdir(origin):
        os.chdir(origin)
    return run_job(
        hydra_context=hydra_context,
        task_function=task_function,
        config=sweep_config,
        job_dir_key="hydra.sweep.dir",
        job_subdir_key="hydra.sweep.subdir",
    )


class RayLauncher(Launcher):
    """Each sweep job as a Ray task; every job's run dir is decided here, before it is sent,
    so a task Ray retries after its worker or node died lands in the same run dir and resumes
    from the stages it finished."""

    def __init__(self, ray: DictConfig | dict[str, Any]) -> None:
        self.ray = OmegaConf.create(ray)
        self.config: DictConfig | None = None
        self.hydra_context: HydraContext | None = None
        self.task_function: TaskFunction | None = None

    def setup(
        self, *, hydra_context: HydraContext, task_function: TaskFunction, config: DictConfig
    ) -> None:
        self.config = config
        self.hydra_context = hydra_context
        self.task_function = task_function

    def launch(
        self, job_overrides: Sequence[Sequence[str]], initial_job_idx: int
    ) -> Sequence[JobReturn]:
        assert self.config is not None and self.hydra_context is not None
        assert self.task_function is not None
        ray = _import_ray()
        setup_globals()
        configure_log(self.config.hydra.hydra_logging, self.config.hydra.verbose)
        sweep_dir = Path(str(self.config.hydra.sweep.dir))
        sweep_dir.mkdir(parents=True, exist_ok=True)
        init = OmegaConf.to_container(self.ray.init, resolve=True) or {}
        remote = OmegaConf.to_container(self.ray.remote, resolve=True) or {}
        start_ray(init)
        check_jobs_fit(remote, local=init.get("address") is None)
        log.info("Ray launcher: %d jobs, sweep output dir %s", len(job_overrides), sweep_dir)
        job = ray.remote(**remote)(_run_job)
        refs = []
        for idx, overrides in enumerate(job_overrides, start=initial_job_idx):
            log.info("\t#%d : %s", idx, " ".join(filter_overrides(overrides)))
            sweep_config = self.hydra_context.config_loader.load_sweep_config(
                self.config, list(overrides)
            )
            with open_dict(sweep_config):
                sweep_config.hydra.job.id = f"{sweep_config.hydra.job.name}_{idx}"
                sweep_config.hydra.job.num = idx
            refs.append(
                job.remote(
                    self.hydra_context, sweep_config, self.task_function, Singleton.get_state()
                )
            )
        # wait for every job before reading any: a job that died would otherwise raise here and
        # end this process (and a Ray started here, with the jobs still running in it)
        ray.wait(refs, num_returns=len(refs), timeout=None)
        return ray.get(refs)
