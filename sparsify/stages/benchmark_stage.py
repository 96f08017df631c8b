"""benchmark: dense baseline and result measured on the same engine, inputs and threads."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from sparsify.benchmark.onnx_stats import file_size_mb, onnx_weight_sparsity
from sparsify.benchmark.onnxruntime_engine import OnnxRuntimeEngine, make_random_feeds
from sparsify.benchmark.table import comparison
from sparsify.context import RunContext
from sparsify.fileio import atomic_write_json
from sparsify.models import get_family

MODELS = ("baseline", "sparsified")


def measure_model(path: Path, ctx: RunContext, evaluate: bool) -> dict[str, Any]:
    cfg = ctx.cfg.benchmark
    threads = int(cfg.num_threads) if cfg.num_threads else None
    engine = OnnxRuntimeEngine(path, num_threads=threads)
    runs = []
    for batch in cfg.batch_sizes:
        feeds = make_random_feeds(engine, int(batch), seed=int(ctx.cfg.seed))
        ctx.log.info("Benchmarking %s at batch %d on %s", path.name, batch, engine.name)
        result = engine.benchmark(feeds, warmup_s=float(cfg.warmup_s), time_s=float(cfg.time_s))
        runs.append(
            {
                "engine": engine.name,
                "model_path": ctx.rel(path),
                "batch_size": int(batch),
                "input_shapes": [list(v.shape) for v in feeds.values()],
                "num_cores": threads or os.cpu_count(),
                "scenario": "sync",
                "seconds_to_run": float(cfg.time_s),
                "benchmark_result": result,
            }
        )
    sparsity = onnx_weight_sparsity(path)
    out: dict[str, Any] = {
        "model_path": ctx.rel(path),
        "size_mb": round(file_size_mb(path), 4),
        "sparsity": round(sparsity["sparsity"], 6),
        "benchmarks": runs,
    }
    if evaluate:
        family = get_family(str(ctx.cfg.use_case.family))
        out["accuracy"] = family.evaluate_onnx(engine, ctx)
    return out


class BenchmarkStage:
    name = "benchmark"
    config_keys = ("benchmark", "data", "seed")

    def run(self, ctx: RunContext) -> dict[str, Any]:
        out = ctx.stage_dir(self.name)
        produced = ctx.outputs["sparsify"]
        paths = {
            "baseline": ctx.artifact(produced["baseline_onnx"]),
            "sparsified": ctx.artifact(produced["model_onnx"]),
        }
        report: dict[str, Any] = {"engines": {}}
        for engine_name in ctx.cfg.benchmark.engines:
            per_model = {
                name: measure_model(paths[name], ctx, bool(ctx.cfg.benchmark.accuracy))
                for name in MODELS
            }
            report["engines"][str(engine_name)] = per_model
        metrics = {
            name: report["engines"][str(ctx.cfg.benchmark.engines[0])][name].get("accuracy")
            for name in MODELS
        }
        metrics["metric"] = str(ctx.cfg.use_case.metric)
        report["table"] = comparison(report)
        atomic_write_json(out / "benchmark.json", report)
        atomic_write_json(out / "metrics.json", metrics)
        return {
            "artifacts": [ctx.rel(out / "benchmark.json"), ctx.rel(out / "metrics.json")],
            "benchmark_json": ctx.rel(out / "benchmark.json"),
            "metrics_json": ctx.rel(out / "metrics.json"),
            "table": report["table"],
        }
