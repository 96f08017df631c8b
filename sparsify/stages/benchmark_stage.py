"""benchmark: dense baseline and result measured on the same engines, inputs and threads."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import numpy as np

from sparsify.benchmark.choice import DENSE, FP32, INT8, choose_all, short_host
from sparsify.benchmark.divergence import OutputRecorder, mean_kl
from sparsify.benchmark.measure import engine_opener, measure_models
from sparsify.benchmark.table import (
    REFERENCE_ENGINE,
    comparison,
    footnotes,
    format_table,
    variant_rows,
)
from sparsify.config.metrics import KL, resolve_metric
from sparsify.context import RunContext
from sparsify.engines.base import ModelInputs
from sparsify.engines.host import host_record
from sparsify.engines.ort import make_random_feeds
from sparsify.engines.registry import check_engine_names, deepsparse_python, engine_name
from sparsify.engines.worker_client import SubprocessEngine
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
    # use_case: the family that evaluates accuracy, and the metric reported; deploy: its
    # engine is measured too
    config_keys = ("benchmark", "data", "seed", "use_case", "deploy")

    def run(self, ctx: RunContext) -> BenchmarkOutput:
        cfg = ctx.cfg.benchmark
        engines = check_engine_names(_engines(ctx.cfg))
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
        use_case = ctx.cfg.use_case
        # the validate stage reported a metric that does not fit; here it is settled
        metric, _ = resolve_metric(
            cfg.get("metric"), str(use_case.name), str(use_case.family), str(use_case.metric)
        )
        recorded: dict[tuple[str, Path], list[np.ndarray]] = {}

        def evaluate(engine: SubprocessEngine) -> dict[str, float]:
            if metric != KL:
                return family.evaluate_onnx(engine, ctx)
            recorder = OutputRecorder(engine)  # kl: both models' outputs on val, kept
            scores = family.evaluate_onnx(recorder, ctx)
            recorded[(engine.name, Path(engine.model_path))] = recorder.outputs
            return scores

        # quantization.variants: every candidate timed side by side, the package's chosen
        candidates = _candidates(produced, ctx)
        timed = {n: p for n, (_, p) in candidates.items()} if candidates else paths
        engines_report = measure_models(
            engines,
            timed,
            feeds,
            opener=engine_opener(cfg),
            warmup_s=float(cfg.warmup_s),
            time_s=float(cfg.time_s),
            rounds=int(cfg.rounds),
            # the choice needs every candidate's accuracy, whatever benchmark.accuracy says
            evaluate=evaluate if cfg.accuracy or metric == KL or candidates else None,
            rel=ctx.rel,
        )
        chosen = variants = None
        if candidates:
            chosen, variants = _choose(engines_report, candidates, produced, engines, ctx)
            paths["sparsified"] = timed[chosen["variant"]]
            engines_report = {
                e: {"baseline": m["baseline"], "sparsified": copy.deepcopy(m[chosen["variant"]])}
                for e, m in engines_report.items()
            }
        if metric == KL:
            _add_kl(engines_report, recorded, paths, ctx)
        test = _test_scores(family, paths, ctx) if metric != KL else None
        # metric: benchmark.metric or the use case's, the accuracy column of the table and
        # the model card
        report: dict[str, Any] = {"engines": engines_report, "metric": metric}
        if chosen:
            report.update(chosen=chosen, variants=variants)
        if test:
            report["test"] = test
        metrics = _metrics(report, engines)
        metrics["metric"] = metric
        if test:
            metrics["test"] = test["models"]
        report["table"] = comparison(report)
        report["footnotes"] = footnotes(report, str(ctx.cfg.use_case.task))
        ctx.log.info("Dense vs result:\n%s", format_table(report["table"], report["footnotes"]))
        if variants:
            ctx.log.info("Candidates:\n%s", format_table(variant_rows(report)))
        atomic_write_json(out / "benchmark.json", report)
        atomic_write_json(out / "metrics.json", metrics)
        return BenchmarkOutput(
            artifacts=[ctx.rel(out / "benchmark.json"), ctx.rel(out / "metrics.json")],
            benchmark_json=ctx.rel(out / "benchmark.json"),
            metrics_json=ctx.rel(out / "metrics.json"),
            table=report["table"],
            chosen=chosen,
            extra={"footnotes": report["footnotes"]},
        )


def _candidates(produced: SparsifyOutput, ctx: RunContext) -> dict[str, tuple[str, Path]] | None:
    """name -> (kind, file) of what the package may ship: dense ("baseline"), the FP32
    pruned model ("fp32") and each INT8 variant written (one per file); None when the
    sparsify stage wrote no variants (quantization.variants=[]: the configured model ships)."""
    if not produced.variants or not produced.quantization:
        return None
    found = {"baseline": (DENSE, ctx.artifact(str(produced.baseline_onnx)))}
    if produced.model_fp32_onnx:
        found["fp32"] = (FP32, ctx.artifact(produced.model_fp32_onnx))
    for name, record in produced.variants.items():
        if "path" in record and "same_as" not in record:
            found[name] = (INT8, ctx.artifact(record["path"]))
    return found


def _deploy_engine(cfg: Any, engines: list[str]) -> str:
    """The engine the package is chosen for: deploy.engine, else onnxruntime, else the first
    benchmarked."""
    target = cfg.get("deploy", {}).get("engine")
    name = engine_name(str(target)) if target else REFERENCE_ENGINE
    return name if name in engines else engines[0]


def _choose(
    measured: dict[str, dict[str, dict[str, Any]]],
    candidates: dict[str, tuple[str, Path]],
    produced: SparsifyOutput,
    engines: list[str],
    ctx: RunContext,
) -> tuple[dict[str, Any], dict[str, Any]]:
    """benchmark.json's `chosen` (with the shipped file's path) and `variants` (every
    candidate: its file, what it is, and per engine its speedup, metric and status)."""
    cfg = ctx.cfg.benchmark
    deploy = _deploy_engine(ctx.cfg, engines)
    chosen, scored = choose_all(
        measured,
        {name: kind for name, (kind, _) in candidates.items()},
        deploy_engine=deploy,
        max_drop=float(cfg.max_drop),
        min_speedup=float(cfg.min_speedup),
        metric=str(ctx.cfg.use_case.metric),
        host=short_host(host_record()),
    )
    chosen["path"] = ctx.rel(candidates[chosen["variant"]][1])
    variants: dict[str, Any] = {}
    for name, (_, path) in candidates.items():
        variants[name] = {
            "path": ctx.rel(path),
            **(produced.variants or {}).get(name, {}),
            **scored[name],
        }
    for name, record in (produced.variants or {}).items():  # same graph as another, or failed
        variants.setdefault(name, {"kind": INT8, **record})
    for engine, pick in chosen["by_engine"].items():
        ctx.log.info("Fastest within accuracy on %s: %s", engine, pick["reason"])
    log = ctx.log.warning if chosen["fallback"] else ctx.log.info
    log("Packaging %s (chosen on %s): %s", chosen["variant"], deploy, chosen["reason"])
    return chosen, variants


def _engines(cfg: Any) -> list[str]:
    """benchmark.engines, and deploy.engine after them when it is not among them."""
    engines = [str(e) for e in cfg.benchmark.engines]
    target = cfg.get("deploy", {}).get("engine")
    if target and engine_name(str(target)) not in {engine_name(e) for e in engines}:
        engines.append(str(target))
    return engines


def _test_scores(family: Any, paths: dict[str, Path], ctx: RunContext) -> dict[str, Any] | None:
    """The dense model's and the result's metrics on the test split, on ONNX Runtime in
    this process, when the data has a labelled test split; None without one. Val stays what
    pruning, the gate and the variant choice look at: test is scored once, at the end."""
    from sparsify.engines.ort import OnnxRuntimeEngine

    if not ctx.cfg.benchmark.accuracy or not family.has_labelled_split(ctx, "test"):
        return None
    models: dict[str, Any] = {}
    for name in MODELS:
        engine = OnnxRuntimeEngine(paths[name], ctx.cfg.benchmark.num_threads)
        try:
            models[name] = dict(family.evaluate_onnx(engine, ctx, split="test"))
        finally:
            engine.close()
    samples = max(int(m.get("samples") or 0) for m in models.values())
    ctx.log.info(
        "On the test split (%d items): dense %s, result %s",
        samples,
        _headline(models["baseline"]),
        _headline(models["sparsified"]),
    )
    return {"engine": REFERENCE_ENGINE, "samples": samples, "models": models}


def _headline(scores: dict[str, Any]) -> str:
    name, value = next(((k, v) for k, v in scores.items() if k != "samples"), ("", None))
    return f"{name} {value:.2f}" if isinstance(value, int | float) else "n/a"


def _add_kl(
    report: dict[str, dict[str, dict[str, Any]]],
    recorded: dict[tuple[str, Path], list[np.ndarray]],
    paths: dict[str, Path],
    ctx: RunContext,
) -> None:
    """KL(dense || result) per engine, from the outputs each model gave on val there: the
    result's `kl` (the dense model's is 0 by definition)."""
    for engine, models in report.items():
        dense = recorded.get((engine, paths["baseline"].resolve()))
        result = recorded.get((engine, paths["sparsified"].resolve()))
        if dense is None or result is None:  # an engine that failed its accuracy pass
            continue
        try:
            kl = mean_kl(dense, result)
        except ValueError as exc:
            ctx.log.warning("No KL divergence on %s: %s", engine, exc)
            continue
        for name, value in (("baseline", 0.0), ("sparsified", kl)):
            accuracy = models[name].get("accuracy") or {}
            # first: the table and metrics.json lead with it
            models[name]["accuracy"] = {"kl": round(value, 6), **accuracy}
        ctx.log.info("KL divergence of the result from the dense model on %s: %.6f", engine, kl)


def _metrics(report: dict[str, Any], engines: list[str]) -> dict[str, Any]:
    """Accuracy per model from the first engine that measured it (onnxruntime unless it failed)."""
    metrics: dict[str, Any] = {}
    for name in MODELS:
        measured = [e for e in engines if report["engines"][e][name].get("accuracy")]
        metrics[name] = report["engines"][measured[0]][name]["accuracy"] if measured else None
        metrics[f"{name}_engine"] = measured[0] if measured else None
    return metrics
