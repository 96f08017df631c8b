"""The machine a measurement ran on is recorded, and engines keep to the CPUs they may use."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from sparsify.algorithms.ort_fusions import cpu_has_amx
from sparsify.engines import host
from sparsify.report.resources import available_cores

ROOT = Path(__file__).resolve().parents[2]

# measure_model and the deployment engines under one CPU of affinity, as `taskset -c 0` runs
PINNED = """
import json, os, sys
os.sched_setaffinity(0, {0})
from omegaconf import OmegaConf
from sparsify.benchmark.measure import engine_opener, measure_model
from sparsify.deploy.model_card import _measured_how
from sparsify.engines.ort import OnnxRuntimeEngine, make_random_feeds
from sparsify.engines.registry import load_engine
from pathlib import Path
path = Path(sys.argv[1])
cfg = OmegaConf.create({"num_threads": None, "timeout_s": 120, "deepsparse_python": None})
feeds = {2: make_random_feeds(OnnxRuntimeEngine(path), 2)}
engines = [e for e in ("onnxruntime", "openvino") if e != "openvino" or sys.argv[2] == "1"]
out = {}
for engine in engines:
    model = measure_model(engine, path, feeds, opener=engine_opener(cfg), warmup_s=0, time_s=0.05)
    (run,) = model["benchmarks"]
    out[engine] = {
        "num_cores": run["num_cores"],
        "threads": run["benchmark_result"]["num_threads"],
        "host": run["host"],
        "card": _measured_how({"engines": {engine: {"model": model}}}),
    }
deployed = load_engine("onnxruntime", path)
out["in_process"] = deployed.num_threads
print(json.dumps(out))
"""


@pytest.mark.skipif(
    not hasattr(os, "sched_setaffinity") or os.cpu_count() == 1, reason="needs CPU affinity"
)
def test_one_cpu_of_affinity_is_one_thread_recorded(cnn_models: dict[str, Path]) -> None:
    has_openvino = "1" if _has("openvino") else "0"
    done = subprocess.run(
        [sys.executable, "-c", PINNED, str(cnn_models["qdq"]), has_openvino],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    out = json.loads(done.stdout.strip().splitlines()[-1])
    assert out.pop("in_process") == 1
    assert set(out) == ({"onnxruntime", "openvino"} if has_openvino == "1" else {"onnxruntime"})
    for engine, rec in out.items():
        assert rec["num_cores"] == rec["threads"] == 1, engine
        assert rec["host"]["cpus_available"] == 1
        assert rec["host"]["cpu_count"] == os.cpu_count()
        assert "(1 thread, batch sizes [2]" in rec["card"]
        assert f"1 of {os.cpu_count()} CPUs usable, with {engine} " in rec["card"]
        assert " (1 thread): the speedups hold" in rec["card"]


def _has(module: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(module) is not None


def test_host_record_names_the_cpu_and_its_flags() -> None:
    record = host.host_record()
    assert record["cpu"] and record["cpu_count"] == os.cpu_count()
    assert record["cpus_available"] == available_cores() == host.available_cores()
    assert set(record["cpu_flags"]) <= set(host.SPEED_FLAGS.values())
    flags = host.cpu_flags()
    assert ("AMX-INT8" in record["cpu_flags"]) == ("amx_int8" in flags) == cpu_has_amx()
    assert ("AVX2" in record["cpu_flags"]) == ("avx2" in flags)


def test_describe_and_read_back_the_host() -> None:
    record = {"cpu": "Xeon X", "cpu_flags": ["AVX2", "AMX-INT8"], "cpus_available": 1}
    record["cpu_count"] = 4
    benchmark = {"engines": {"onnxruntime": {"baseline": {"benchmarks": [
        {"host": record, "num_cores": 1}
    ]}}}}  # fmt: skip
    found = host.benchmark_host(benchmark)
    assert found == {**record, "threads": 1}
    assert host.describe_host(found) == "Xeon X (AVX2, AMX-INT8), 1 thread on 1 of 4 CPUs usable"
    assert host.describe_host({**record, "cpu_flags": []}) == "Xeon X (no AVX2), 1 of 4 CPUs usable"
    assert host.benchmark_host({"engines": {}}) is None and host.benchmark_host(None) is None
    assert host.describe_host(None) == "host not recorded"
