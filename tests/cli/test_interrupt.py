"""Ctrl-C during a run: `sparsify` and `sparsify.run` print the same one line, with the run
directory to go on from, and exit 130, without a traceback."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

BIN = Path(sys.executable).parent
# the tiny images would get 32 px (data.image_size unset): a baseline trained in 4 s, which a
# loaded machine can finish before the signal comes
SLOW = "data.image_size=224"


def _stage_status(run_dir: Path, stage: str) -> str | None:
    try:
        manifest = json.loads((run_dir / "manifest.json").read_text())
    except (OSError, ValueError):  # not written yet, or being replaced
        return None
    return manifest.get("stages", {}).get(stage, {}).get("status")


def _interrupt_during_fetch(command: list[str], run_dir: Path) -> subprocess.CompletedProcess[str]:
    """Start `command`, wait until its fetch stage trains the dense baseline (a resnet18 on
    224 px images: at least 10 epochs before early stopping, tens of seconds on a CPU; in a
    cache of its own, so no earlier test's baseline is found there), send SIGINT as Ctrl-C
    does."""
    env = {**os.environ, "SPARSIFY_CACHE": str(run_dir.parent / "cache")}
    proc = subprocess.Popen(
        command,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        # as from a terminal: a suite started in the background (`pytest &`) ignores SIGINT,
        # and an ignored SIGINT is inherited, so the run would never see the Ctrl-C
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    deadline = time.monotonic() + 240
    while _stage_status(run_dir, "fetch") != "running":
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            out, err = proc.communicate()
            pytest.fail(f"fetch never ran (exit {proc.returncode}):\n{err[-3000:]}")
        time.sleep(0.2)
    time.sleep(1.0)  # inside the training loop
    proc.send_signal(signal.SIGINT)
    try:
        out, err = proc.communicate(timeout=120)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, err = proc.communicate()
        pytest.fail(f"still running two minutes after SIGINT:\n{err[-3000:]}")
    return subprocess.CompletedProcess(command, proc.returncode, out, err)


def _assert_one_line(proc: subprocess.CompletedProcess[str], prog: str, run_dir: Path) -> None:
    assert proc.returncode == 130, proc.stderr[-3000:]
    assert "Traceback" not in proc.stderr and "KeyboardInterrupt" not in proc.stderr
    lines = [line for line in proc.stderr.splitlines() if "interrupted" in line]
    assert lines == [
        f"{prog}: interrupted. Finished stages are kept in {run_dir}; run the same command "
        f"with run_dir='{run_dir}' to go on from the unfinished stage."
    ]
    assert _stage_status(run_dir, "fetch") == "interrupted"
    assert _stage_status(run_dir, "validate") == "done"


@pytest.mark.slow
def test_ctrl_c_under_sparsify(tiny_images: Path, tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    command = [str(BIN / "sparsify"), f"data.path={tiny_images}", f"run_dir={run_dir}", SLOW]
    _assert_one_line(_interrupt_during_fetch(command, run_dir), "sparsify", run_dir)


@pytest.mark.slow
def test_ctrl_c_under_the_seed_cli(tiny_images: Path, tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    command = [
        str(BIN / "sparsify.run"),
        "one-shot",
        "--use-case",
        "ic",
        "--data",
        str(tiny_images),
        f"run_dir={run_dir}",
        SLOW,
    ]
    _assert_one_line(_interrupt_during_fetch(command, run_dir), "sparsify.run", run_dir)
