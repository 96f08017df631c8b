"""The machine a measurement ran on: the CPUs this process may use, the CPU model and the flags
INT8 and BF16 speed depend on. One reader of /proc/cpuinfo for the whole project.

Standalone on purpose (stdlib only): the engine worker loads this file by path in interpreters
that do not have sparsify's dependencies, e.g. the DeepSparse virtualenv.
"""

from __future__ import annotations

import functools
import os
import platform
from pathlib import Path
from typing import Any

# /proc/cpuinfo flag -> the name a reader knows. VNNI: 4-wide int8 dot products in one
# instruction (without it an INT8 GEMM is at most about twice an FP32 one); AMX: int8/bf16
# tile matrix multiplies (what ONNX Runtime's INT8 GEMM and OpenVINO use where present).
SPEED_FLAGS = {
    "avx2": "AVX2",
    "avx512f": "AVX-512",
    "avx512_vnni": "AVX512-VNNI",
    "avx_vnni": "AVX-VNNI",
    "avx512_bf16": "AVX512-BF16",
    "amx_int8": "AMX-INT8",
    "amx_bf16": "AMX-BF16",
}


def available_cores() -> int:
    """CPUs this process may run on (affinity / cgroup cpuset, e.g. `taskset -c 0` gives 1),
    not the host's count: what an engine should use when no thread count is given."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):  # not on Linux
        return max(1, os.cpu_count() or 1)


@functools.lru_cache(maxsize=1)
def _cpuinfo() -> tuple[str, frozenset[str]]:
    """(model name, flags) of the first processor in /proc/cpuinfo; ("", {}) elsewhere."""
    try:
        lines = Path("/proc/cpuinfo").read_text(encoding="utf-8", errors="replace").splitlines()
    except OSError:
        return platform.processor() or "", frozenset()
    value = lambda key: next(  # noqa: E731
        (ln.split(":", 1)[1].strip() for ln in lines if ln.split(":", 1)[0].strip() == key), ""
    )
    return value("model name"), frozenset(value("flags").split())


def cpu_flags() -> frozenset[str]:
    """Every flag of /proc/cpuinfo (empty when it cannot be read)."""
    return _cpuinfo()[1]


def cpu_has_amx() -> bool:
    """Whether this CPU has Intel AMX INT8 tiles (Linux: the amx_int8 flag of /proc/cpuinfo)."""
    return "amx_int8" in cpu_flags()


def host_record() -> dict[str, Any]:
    """What benchmark.json says about the machine: CPU model, the SPEED_FLAGS it has, the CPUs
    this process could use and the host's count."""
    model, flags = _cpuinfo()
    return {
        "cpu": model or platform.machine() or "unknown",
        "cpu_flags": [name for flag, name in SPEED_FLAGS.items() if flag in flags],
        "cpus_available": available_cores(),
        "cpu_count": os.cpu_count(),
    }


def describe_host(host: dict[str, Any] | None) -> str:
    """One line for a model card or a report: 'Intel Xeon (AVX2, AMX-INT8), 1 thread on 1 of 2
    CPUs usable' (the threads when `host` has them, as `benchmark_host` gives)."""
    if not host:
        return "host not recorded"
    flags = ", ".join(host.get("cpu_flags") or []) or "no AVX2"
    threads = host.get("threads")
    used = f"{threads} thread{'s' if threads != 1 else ''} on " if threads else ""
    return (
        f"{host.get('cpu') or 'unknown CPU'} ({flags}), {used}{host.get('cpus_available')} "
        f"of {host.get('cpu_count')} CPUs usable"
    )


def benchmark_host(benchmark: dict[str, Any] | None) -> dict[str, Any] | None:
    """The host recorded in a benchmark.json (its first timed run's, with that run's `threads`),
    or None."""
    engines = (benchmark or {}).get("engines") or {}
    models = [m for ms in engines.values() if isinstance(ms, dict) for m in ms.values()]
    runs = [r for m in models if isinstance(m, dict) for r in m.get("benchmarks") or []]
    run = next((r for r in runs if isinstance(r, dict) and r.get("host")), None)
    return {**run["host"], "threads": run.get("num_cores")} if run else None
