"""Wall time of one training-aware run in 1 process vs `torchrun --nproc_per_node 2` (CPU, gloo),
interleaved (1, 2, 1, 2, ...) so that both see the same machine load; the ratio is taken from
the medians of runs made side by side.

The run: `data=digits` (scikit-learn's 1,437 train images, 32x32), `--arch` (resnet18), level
0.5, `experiment.train.epochs` epochs, stages validate, fetch, sparsify (the dense baseline is
trained once first, in one process, and cached). Timed: the whole command, and the sparsify
stage (the training) from the manifest. Each process gets `--threads` torch threads.

.venv/bin/python benchmarks/distributed_training.py [--repeats 3] [--epochs 2] [--threads 1]
    [--arch resnet18]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def run(procs: int, run_dir: Path, args: list[str], threads: int) -> tuple[float, float]:
    """(wall seconds of the command, seconds of its sparsify stage)."""
    launcher = [sys.executable, "-m", "torch.distributed.run", "--standalone"]
    launcher += ["--nproc_per_node", str(procs)]
    command = [*launcher, "-m", "sparsify"] if procs > 1 else [sys.executable, "-m", "sparsify"]
    env = {**os.environ, "OMP_NUM_THREADS": str(threads)}
    started = time.perf_counter()
    subprocess.run(
        [*command, *args, f"run_dir={run_dir}"], env=env, check=True, capture_output=True
    )
    wall = time.perf_counter() - started
    manifest = json.loads((run_dir / "manifest.json").read_text())
    return wall, manifest["stages"]["sparsify"]["duration_s"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--epochs", type=float, default=2.0)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--arch", default="resnet18")
    opts = parser.parse_args()
    out = Path(tempfile.mkdtemp(prefix="sparsify-ddp-"))
    os.environ.setdefault("SPARSIFY_CACHE", str(out / "cache"))
    args = [
        "data=digits",
        f"model.arch={opts.arch}",
        "experiment=training_aware",
        "optim_level=0.5",
        f"experiment.train.epochs={opts.epochs}",
        "experiment.train.batch_size=32",
        "stages=[validate,fetch,sparsify]",
        "baseline.min_steps=10",  # the dense baseline is not what is timed: one short epoch
        "baseline.max_epochs=1",
    ]
    run(1, out / "warmup", args, opts.threads)  # the cached dense baseline, once
    times: dict[int, list[tuple[float, float]]] = {1: [], 2: []}
    for i in range(opts.repeats):
        for procs in (1, 2):
            times[procs].append(run(procs, out / f"p{procs}-{i}", args, opts.threads))
            print(
                f"{procs} process(es), run {i}: wall {times[procs][-1][0]:.1f} s, "
                f"sparsify stage {times[procs][-1][1]:.1f} s",
                flush=True,
            )
    medians = {p: [statistics.median(t[k] for t in times[p]) for k in (0, 1)] for p in times}
    for p, (wall, stage) in medians.items():
        print(f"median, {p} process(es): wall {wall:.1f} s, sparsify stage {stage:.1f} s")
    print(
        f"2 vs 1 process: wall x{medians[1][0] / medians[2][0]:.2f} faster, "
        f"sparsify stage x{medians[1][1] / medians[2][1]:.2f} faster (cores: {os.cpu_count()})"
    )


if __name__ == "__main__":
    main()
