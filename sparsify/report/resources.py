"""CPU budget for parallel sweeps: how many jobs fit on this machine, and threads per job.

Registered as OmegaConf resolvers so the launcher presets in conf/hydra/launcher/ can say
`n_jobs: ${sparsify_n_jobs:${benchmark.num_threads}}`.
"""

from __future__ import annotations

from omegaconf import DictConfig, OmegaConf

DEFAULT_THREADS_PER_JOB = 1


def available_cores() -> int:
    """Cores this process may run on (CPU affinity / cgroup cpusets), not the host's count."""
    from sparsify.engines.host import available_cores as usable

    return usable()


def threads_per_job(threads: int | str | None) -> int:
    """`benchmark.num_threads` as given, or DEFAULT_THREADS_PER_JOB when it is null."""
    if threads in (None, "", "null"):
        return DEFAULT_THREADS_PER_JOB
    value = int(threads)
    if value < 1:
        raise ValueError(f"benchmark.num_threads must be >= 1 for a parallel sweep, got {value}")
    return value


def n_jobs(threads: int | str | None, cores: int | None = None) -> int:
    """Jobs that run at once without oversubscribing: max(1, cores // threads_per_job)."""
    return max(1, (cores or available_cores()) // threads_per_job(threads))


def register_resolvers() -> None:
    """Idempotent; called on import of sparsify.report.callback (Hydra imports it first)."""
    OmegaConf.register_new_resolver("sparsify_n_jobs", n_jobs, replace=True)
    OmegaConf.register_new_resolver("sparsify_job_threads", job_threads, replace=True)


def _launcher_cpus(launcher: DictConfig) -> int | None:
    """CPUs a cluster launcher reserves per job (Ray `remote.num_cpus`, Slurm `cpus_per_task`)."""
    target = str(launcher.get("_target_", ""))
    if target.endswith("RayLauncher"):
        return OmegaConf.select(launcher, "ray.remote.num_cpus")
    if target.endswith(("SlurmLauncher", "LocalLauncher")):
        return launcher.get("cpus_per_task")
    if target.endswith("JoblibLauncher"):
        return DEFAULT_THREADS_PER_JOB
    return None


def job_threads(*, _root_: DictConfig) -> str:
    """`benchmark.num_threads` for each sweep job, as an override value.

    What the user set wins; otherwise the launcher's per-job CPU reservation; otherwise
    null (all cores: the basic launcher runs one job at a time).
    """
    given = OmegaConf.select(_root_, "benchmark.num_threads")
    if given is None:
        launcher = OmegaConf.select(_root_, "hydra.launcher")
        given = _launcher_cpus(launcher) if launcher is not None else None
    return "null" if given is None else str(int(given))
