"""A worker that aborts keeps its last words: the stderr tail ends with what it printed last."""

from __future__ import annotations

from pathlib import Path

import pytest

from sparsify.benchmark.measure import measure_models
from sparsify.benchmark.table import comparison, format_table
from sparsify.deploy.model_card import render_model_card
from sparsify.engines.base import EngineFailure, ModelInputs
from sparsify.engines.ort import make_random_feeds
from sparsify.engines.worker_client import SubprocessEngine
from tests.benchmark.conftest import ASSERTION


@pytest.mark.parametrize(
    "env",
    [None, {"PYTHONUNBUFFERED": ""}],
    ids=["as-started", "worker-unbuffers-c-stdout-itself"],
)
def test_abort_keeps_the_last_line_printed_from_c(
    cnn_models: dict[str, Path],
    banner_then_abort_python: Path,
    monkeypatch: pytest.MonkeyPatch,
    env: dict[str, str] | None,
) -> None:
    """C stdout is unbuffered in the worker, so an abort() loses nothing it printed."""
    # as in a user's shell: with it set, Python itself unbuffers C stdio and hides the bug
    monkeypatch.delenv("PYTHONUNBUFFERED", raising=False)
    with SubprocessEngine(
        "deepsparse", cnn_models["fp32"], python=banner_then_abort_python, env=env
    ) as engine:
        with pytest.raises(EngineFailure) as info:
            engine.benchmark(make_random_feeds(engine, 1), warmup_s=0.0, time_s=0.1)
    failure = info.value
    assert failure.kind == "crash" and failure.signal_name == "SIGABRT"
    lines = [ln for ln in failure.stderr_tail.splitlines() if ln.strip()]
    assert lines[-1] == ASSERTION
    assert lines[-2] == "[nm_ort] compiling the graph"  # stderr and stdout stay in order
    assert "banner line 199" in failure.stderr_tail
    assert "banner line 0:" not in failure.stderr_tail  # the tail, not the head


def test_table_and_model_card_name_the_last_line(
    cnn_models: dict[str, Path], banner_then_abort_python: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The end-of-run table note and the model card say why the engine failed."""
    monkeypatch.delenv("PYTHONUNBUFFERED", raising=False)
    python = banner_then_abort_python
    feeds = {1: make_random_feeds(ModelInputs(cnn_models["fp32"]), 1)}
    engines = measure_models(
        ["deepsparse"],
        {"baseline": cnn_models["fp32"], "sparsified": cnn_models["qdq"]},
        feeds,
        opener=lambda engine, path: SubprocessEngine(engine, path, python=python),
        warmup_s=0.0,
        time_s=0.05,
    )
    benchmark = {"engines": engines}
    rows = comparison(benchmark)
    note = f"benchmark batch 1 failed (SIGABRT): {ASSERTION}"
    assert [r["notes"] for r in rows] == [note, note]
    assert note in format_table(rows)
    config = {
        "task": "image-classification",
        "use_case": "cv-classification",
        "experiment": "one_shot",
        "optim_level": 0.5,
        "inputs": [{"name": "input", "dtype": "float32", "shape": ["batch", 3, 16, 16]}],
        "preprocessing": {},
        "postprocessing": {},
    }
    card = render_model_card(config, benchmark, "a tiny CNN", "tiny")
    assert note in card


def test_long_last_line_is_cut_to_one_cell() -> None:
    failure = {"step": "loading", "kind": "error", "stderr_tail": "first\n\n" + "x" * 500 + "\n \n"}
    (row,) = comparison(
        {"engines": {"deepsparse": {"baseline": {"failures": [failure], "benchmarks": []}}}}
    )
    assert row["notes"].startswith("loading failed (error): xxx") and row["notes"].endswith("…")
    assert len(row["notes"]) < 200
