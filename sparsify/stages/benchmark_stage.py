"""benchmark: dense baseline and result measured on the same engines, inputs and threads."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from sparsify.benchmark.measure import engine_opener, measure_models
from sparsify.benchmark.table import comparison, footnotes, format_table
from sparsify.context import RunContext
from sparsify.engines.base import ModelInputs
from sparsify.engines.ort import make_random_feeds
from sparsify.engines.registry import check_engine_names, deepsparse_python
from sparsify.fileio import atomic_write_json
from sparsify.models import get_family
from sparsify.outputs import BenchmarkOutput, SparsifyOutput

MODELS = ("baseline", "sparsified")
# symbolic dims that mean "sequence length" in the exports of the text families
SEQUENCE_DIMS = ("sequence", "seq", "sequence_length")


def benchmark_feeds(path: Path, ctx: RunContext) -> dict[int, dict[str, np.ndarray]]:
    """One set of random inputs per batch size, shared by every model and engine."""
    seq = int(ctx.cfg.data.get("max_length") or 128)
    inputs = ModelInputs(path)
    return {
        int(batch): make_random_feeds(
            inputs,
            int(batch),
            seed=int(ctx.cfg.seed),
            dim_defaults=dict.fromkeys(SEQUENCE_DIMS, seq),
        )
        for batch in ctx.cfg.benchmark.batch_sizes
    }


class BenchmarkStage:
    name = "benchmark"
    out_dir = "benchmark"
    output = BenchmarkOutput
    # use_case: the family that evaluates accuracy, and the metric reported
    config_keys = ("benchmark", "data", "seed", "use_case")

    def run(self, ctx: RunContext) -> BenchmarkOutput:
        cfg = ctx.cfg.benchmark
        engines = check_engine_names(list(cfg.engines))
        if "deepsparse" in engines:
            deepsparse_python(cfg.get("deepsparse_python"))  # a missing venv fails here, clearly
        out = ctx.stage_dir(self.out_dir)
        produced = ctx.output(SparsifyOutput)
        paths = {
            "baseline": ctx.artifact(str(produced.baseline_onnx)),
            "sparsified": ctx.artifact(str(produced.model_onnx)),
        }
        feeds = benchmark_feeds(paths["baseline"], ctx)
        family = get_family(str(ctx.cfg.use_case.family))
        evaluate = (lambda engine: family.evaluate_onnx(engine, ctx)) if cfg.accuracy else None
        engines_report = measure_models(
            engines,
            {name: paths[name] for name in MODELS},
            feeds,
            opener=engine_opener(cfg),
            warmup_s=float(cfg.warmup_s),
            time_s=float(cfg.time_s),
            rounds=int(cfg.rounds),
            evaluate=evaluate,
            rel=ctx.rel,
        )
        # metric: the use case's, the accuracy column of the table and the model card
        report: dict[str, Any] = {"engines": engines_report, "metric": str(ctx.cfg.use_case.metric)}
        metrics = _metrics(report, engines)
        metrics["metric"] = str(ctx.cfg.use_case.metric)
        report["table"] = comparison(report)
        report["footnotes"] = footnotes(report, str(ctx.cfg.use_case.task))
        ctx.log.info("Dense vs result:\n%s", format_table(report["table"], report["footnotes"]))
        atomic_write_json(out / "benchmark.json", report)
        atomic_write_json(out / "metrics.json", metrics)
        return BenchmarkOutput(
            artifacts=[ctx.rel(out / "benchmark.json"), ctx.rel(out / "metrics.json")],
            benchmark_json=ctx.rel(out / "benchmark.json"),
            metrics_json=ctx.rel(out / "metrics.json"),
            table=report["table"],
            extra={"footnotes": report["footnotes"]},
        )


def _metrics(report: dict[str, Any], engines: list[str]) -> dict[str, Any]:
    """Accuracy per model from the first engine that measured it (onnxruntime unless it failed)."""
    metrics: dict[str, Any] = {}
    for name in MODELS:
        measured = [e for e in engines if report["engines"][e][name].get("accuracy")]
        metrics[name] = report["engines"][measured[0]][name]["accuracy"] if measured else None
        metrics[f"{name}_engine"] = measured[0] if measured else None
    return metrics
