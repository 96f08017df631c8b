"""Interleaved measuring rounds: baseline and result timed in turn, each model's rounds merged."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import sparsify
from sparsify.benchmark.measure import measure_models
from sparsify.engines.base import EngineFailure
from sparsify.engines.timing import merge_rounds, summarize, time_runs


def test_rounds_merge_into_one_summary_of_all_their_calls() -> None:
    first = {**summarize([10.0, 10.0, 10.0], 4, 0.03), "latencies_ms": [10.0, 10.0, 10.0]}
    second = {**summarize([20.0, 20.0], 4, 0.04), "latencies_ms": [20.0, 20.0]}
    merged = merge_rounds([first, second])
    assert merged["iterations"] == 5 and merged["rounds"] == 2
    assert merged["median"] == 10.0 and merged["mean"] == pytest.approx(14.0)
    assert merged["items_per_sec"] == pytest.approx(4 * 5 / 0.07)
    assert "latencies_ms" not in merged


def test_time_runs_keeps_latencies_only_when_asked() -> None:
    assert "latencies_ms" not in time_runs(lambda: None, 1, 0.0, 0.0)
    kept = time_runs(lambda: None, 1, 0.0, 0.0, keep_latencies=True)
    assert len(kept["latencies_ms"]) == kept["iterations"] >= 3


class _FakeEngine:
    """Records each benchmark call; `fail_on` = the call number (per engine) that raises."""

    version = "fake"
    num_threads = 1
    analysis: dict[str, Any] = {}

    def __init__(self, name: str, calls: list[tuple[str, float, bool]], fail_on: int | None):
        self.name, self.calls, self.fail_on, self.count = name, calls, fail_on, 0

    def benchmark(
        self, feeds: dict, warmup_s: float, time_s: float, keep_latencies: bool = False
    ) -> dict[str, Any]:
        self.count += 1
        self.calls.append((self.name, time_s, keep_latencies))
        if self.count == self.fail_on:
            raise EngineFailure("fake", "crash", "died (SIGABRT)")
        ms = [5.0] * 3 if self.name == "fast.onnx" else [9.0] * 3
        result = {"engine": "fake", "num_threads": 1, **summarize(ms, 2, sum(ms) / 1000)}
        return {**result, "latencies_ms": ms} if keep_latencies else result

    def close(self) -> None:
        pass


def _measure(
    tmp_path: Path, model: Path, rounds: int, fail_on: dict[str, int] | None = None
) -> tuple[dict[str, Any], list[tuple[str, float, bool]]]:
    paths = {"baseline": tmp_path / "slow.onnx", "sparsified": tmp_path / "fast.onnx"}
    for path in paths.values():
        shutil.copy(model, path)  # read for size and sparsity; the fake engine times it
    calls: list[tuple[str, float, bool]] = []

    def opener(engine: str, path: Path) -> _FakeEngine:
        return _FakeEngine(path.name, calls, (fail_on or {}).get(path.name))

    feeds = {2: {"input": np.zeros((2, 3, 16, 16), np.float32)}}
    out = measure_models(
        ["fake"], paths, feeds, opener=opener, warmup_s=0.0, time_s=0.9, rounds=rounds
    )  # type: ignore[arg-type]
    return out["fake"], calls


def test_models_are_timed_in_turn_and_their_rounds_merged(
    tmp_path: Path, cnn_models: dict[str, Path]
) -> None:
    out, calls = _measure(tmp_path, cnn_models["fp32"], rounds=3)
    assert [name for name, _, _ in calls] == ["slow.onnx", "fast.onnx"] * 3
    assert all(t == pytest.approx(0.3) and keep for _, t, keep in calls)
    for name, ms in (("baseline", 9.0), ("sparsified", 5.0)):
        result = out[name]["benchmarks"][0]["benchmark_result"]
        assert (result["iterations"], result["rounds"], result["median"]) == (9, 3, ms)
        assert "latencies_ms" not in result
        assert out[name]["benchmarks"][0]["seconds_to_run"] == 0.9


def test_one_round_is_one_plain_benchmark_per_model(
    tmp_path: Path, cnn_models: dict[str, Path]
) -> None:
    out, calls = _measure(tmp_path, cnn_models["fp32"], rounds=1)
    assert calls == [("slow.onnx", 0.9, False), ("fast.onnx", 0.9, False)]
    assert "rounds" not in out["baseline"]["benchmarks"][0]["benchmark_result"]


def test_a_round_that_fails_drops_that_models_batch_only(
    tmp_path: Path, cnn_models: dict[str, Path]
) -> None:
    out, calls = _measure(tmp_path, cnn_models["fp32"], rounds=3, fail_on={"fast.onnx": 2})
    # the failed model is not asked again at that batch size; the other finishes its rounds
    order = ["slow.onnx", "fast.onnx", "slow.onnx", "fast.onnx", "slow.onnx"]
    assert [name for name, _, _ in calls] == order
    assert out["sparsified"]["benchmarks"] == []
    assert [f["step"] for f in out["sparsified"]["failures"]] == ["benchmark batch 2"]
    assert "failed" in out["sparsified"]["flags"]
    assert out["baseline"]["benchmarks"][0]["benchmark_result"]["rounds"] == 3


def test_the_stage_measures_in_rounds(tiny_run: list[str]) -> None:
    result = sparsify.run([*tiny_run, "benchmark.rounds=2"])
    assert result.status == "done", result.error
    bench = json.loads((result.run_dir / "benchmark" / "benchmark.json").read_text())
    for model in bench["engines"]["onnxruntime"].values():
        for run in model["benchmarks"]:
            assert run["benchmark_result"]["rounds"] == 2
            assert run["benchmark_result"]["iterations"] >= 6  # >= 3 calls per round


def test_zero_rounds_is_a_config_error(tiny_run: list[str]) -> None:
    result = sparsify.run([*tiny_run, "benchmark.rounds=0"])
    assert result.status == "failed"
    assert "benchmark.rounds" in str(result.error)


def test_engines_take_their_rounds_in_turn_too(tmp_path: Path, cnn_models: dict[str, Path]) -> None:
    """With two engines every (engine, model) is timed once per round, so the speedup over
    dense ONNX Runtime compares numbers taken in the same spells of the machine."""
    paths = {"baseline": tmp_path / "slow.onnx", "sparsified": tmp_path / "fast.onnx"}
    for path in paths.values():
        shutil.copy(cnn_models["fp32"], path)
    calls: list[tuple[str, float, bool]] = []

    def opener(engine: str, path: Path) -> _FakeEngine:
        return _FakeEngine(f"{engine}:{path.name}", calls, None)

    feeds = {2: {"input": np.zeros((2, 3, 16, 16), np.float32)}}
    out = measure_models(
        ["a", "b"], paths, feeds, opener=opener, warmup_s=0.0, time_s=0.4, rounds=2
    )  # type: ignore[arg-type]
    one_round = ["a:slow.onnx", "a:fast.onnx", "b:slow.onnx", "b:fast.onnx"]
    assert [name for name, _, _ in calls] == one_round * 2
    assert list(out) == ["a", "b"] and list(out["b"]) == ["baseline", "sparsified"]
    assert out["b"]["sparsified"]["benchmarks"][0]["engine"] == "b"
    assert out["a"]["baseline"] is not out["b"]["baseline"]
