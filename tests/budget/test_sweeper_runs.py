"""The budget sweeper as a user runs it: `sparsify -m hydra/sweeper=sparsify_budget ...` on a
tiny classifier, through the basic and the joblib launcher."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import TINY_RUN

BIN = Path(sys.executable).parent
# the cheapest complete trial: magnitude pruning, nearest INT8 rounding, one INT8 graph
FAST = ["recipe=one_shot", "quantization.weight_rounding=nearest", "quantization.variants=[]"]


def _search(
    tiny_images: Path, tmp_path: Path, sweep: Path, *extra: str
) -> subprocess.CompletedProcess[str]:
    args = [
        str(BIN / "sparsify"),
        "-m",
        "hydra/sweeper=sparsify_budget",
        "budget.max_drop=100",
        f"hydra.sweep.dir={sweep}",
        f"data.path={tiny_images}",
        f"working_dir={tmp_path / 'runs'}",
        *TINY_RUN,
        *FAST,
        *extra,
    ]
    return subprocess.run(args, capture_output=True, text=True, env={**os.environ}, timeout=600)


def _trials(sweep: Path) -> list[dict[str, str]]:
    return list(csv.DictReader((sweep / "trials.csv").open()))


@pytest.mark.slow
def test_basic_launcher_search_then_resume(tiny_images: Path, tmp_path: Path) -> None:
    sweep = tmp_path / "sweep"
    proc = _search(tiny_images, tmp_path, sweep, "budget.trials=2")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert len(_trials(sweep)) == 2
    data = json.loads((sweep / "budget.json").read_text())
    assert data["chosen"] is not None and data["trials_ran"] == 2
    assert (sweep / "best" / "model.onnx").is_file()
    for name in ("report.html", "summary.csv", "accuracy_vs_latency.png"):
        assert any(sweep.glob(f"*{name}")), name
    assert "is the fastest within 100 point(s) of top1" in proc.stdout

    def stamps() -> dict[str, float]:
        return {m.parent.name: m.stat().st_mtime for m in sweep.glob("*_cv-*/manifest.json")}

    first = stamps()

    # the same command with one more trial: only that one runs
    proc = _search(tiny_images, tmp_path, sweep, "budget.trials=3")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert len(_trials(sweep)) == 3
    runs = sorted(sweep.glob("*_cv-classification_*"))
    assert [r.name.split("_")[0] for r in runs] == ["0", "1", "2"]
    assert {k: v for k, v in stamps().items() if k in first} == first  # not run again


@pytest.mark.slow
def test_joblib_launcher_runs_trials_side_by_side(tiny_images: Path, tmp_path: Path) -> None:
    sweep = tmp_path / "sweep"
    proc = _search(
        tiny_images, tmp_path, sweep, "hydra/launcher=sparsify_joblib", "budget.trials=3"
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    rows = _trials(sweep)
    assert len(rows) == 3 and {r["status"] for r in rows} == {"done"}
    assert sum(r["chosen"] == "yes" for r in rows) == 1
