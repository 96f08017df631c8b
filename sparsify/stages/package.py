"""package: a self-contained deployment/ folder, loadable by sparsify.deploy.Pipeline.

deployment/ holds model.onnx, config.json (task, inputs and shapes, pre/post-processing,
labels), the family's files (labels.txt for CV, the tokenizer for NLP), recipe.yaml,
benchmark.json, metrics.json and a README.md model card.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

from sparsify import __version__
from sparsify.context import RunContext
from sparsify.deploy.model_card import render_model_card
from sparsify.engines.registry import engine_name
from sparsify.fileio import atomic_write_json
from sparsify.models import get_family
from sparsify.outputs import BenchmarkOutput, FetchOutput, PackageOutput, SparsifyOutput

CONFIG_VERSION = 1


def onnx_io(path: Path) -> dict[str, Any]:
    """Input and output names, shapes (symbolic dims by name) and dtypes of an ONNX model."""
    import onnx

    graph = onnx.load(str(path), load_external_data=False).graph
    initializers = {t.name for t in graph.initializer}

    def describe(values: Any) -> list[dict[str, Any]]:
        out = []
        for v in values:
            if v.name in initializers:  # old exporters list weights as inputs
                continue
            t = v.type.tensor_type
            dims = [d.dim_param or d.dim_value for d in t.shape.dim]
            dtype = onnx.helper.tensor_dtype_to_np_dtype(t.elem_type).name
            out.append({"name": v.name, "shape": dims, "dtype": dtype})
        return out

    return {"inputs": describe(graph.input), "outputs": describe(graph.output)}


def deployment_config(
    model_path: Path, task: str, use_case: str, family_part: dict[str, Any], **meta: Any
) -> dict[str, Any]:
    """config.json: what a Pipeline (or anyone with onnxruntime) needs to run the model."""
    return {
        "format_version": CONFIG_VERSION,
        "sparsify_version": __version__,
        "task": task,
        "use_case": use_case,
        "model": model_path.name,
        **onnx_io(model_path),
        **meta,
        **family_part,
    }


def write_model_card(out: Path, source: str, describe: str) -> Path:
    """README.md from the folder's config.json and benchmark.json."""
    config = json.loads((out / "config.json").read_text(encoding="utf-8"))
    bench_path = out / "benchmark.json"
    benchmark = json.loads(bench_path.read_text(encoding="utf-8")) if bench_path.is_file() else None
    readme = out / "README.md"
    text = render_model_card(config, benchmark, source, describe, str(out))
    readme.write_text(text, encoding="utf-8")
    return readme


def _deploy_target(ctx: RunContext) -> dict[str, Any]:
    """The deployment target (`deploy`: engine, hardware, scenario) and the run's bookkeeping
    ids (`run`), as given; ids left unset are left out."""
    from omegaconf import OmegaConf

    deploy = ctx.cfg.get("deploy")
    ids = OmegaConf.to_container(ctx.cfg.run, resolve=True) if ctx.cfg.get("run") else {}
    target: dict[str, Any] = {}
    if deploy is not None:
        target["deploy"] = {
            "engine": engine_name(str(deploy.engine)) if deploy.engine else None,
            "hardware": deploy.hardware,
            "scenario": str(deploy.scenario).strip().lower(),
        }
    kept = {k: v for k, v in (ids or {}).items() if v is not None}  # type: ignore[union-attr]
    return {**target, **({"run": kept} if kept else {})}


def _measured(path: Path) -> dict[str, Any]:
    """config.json's `measured`: the engines this model was timed on, the fastest of them
    (throughput at the largest batch size), and with quantization.variants the candidate
    chosen, on which engine, why, and each engine's own pick."""
    report = json.loads(path.read_text(encoding="utf-8"))
    speeds: dict[str, float] = {}
    for engine, models in (report.get("engines") or {}).items():
        runs = (models.get("sparsified") or {}).get("benchmarks") or []
        if runs:
            largest = max(runs, key=lambda r: r["batch_size"])
            speeds[engine] = float(largest["benchmark_result"]["items_per_sec"])
    measured: dict[str, Any] = {
        "engines": list(report.get("engines") or {}),
        "fastest_engine": max(speeds, key=speeds.__getitem__) if speeds else None,
    }
    chosen = report.get("chosen")
    if chosen:
        measured.update(
            variant=chosen["variant"],
            kind=chosen["kind"],
            chosen_on=chosen["engine"],
            speedup=chosen["speedup"],
            fallback=chosen["fallback"],
            reason=chosen["reason"],
            fastest_by_engine={e: c["variant"] for e, c in chosen["by_engine"].items()},
        )
    return measured


class PackageStage:
    name = "package"
    out_dir = "deployment"  # what users and `sparsify serve` look for
    output = PackageOutput
    # deploy / run: recorded in config.json
    config_keys = ("use_case", "experiment", "optim_level", "deploy", "run")

    def run(self, ctx: RunContext) -> PackageOutput:
        out = ctx.stage_dir(self.out_dir)
        family = get_family(str(ctx.cfg.use_case.family))
        produced, bench = ctx.output(SparsifyOutput), ctx.output(BenchmarkOutput)
        # quantization.variants: the candidate the benchmark chose (it may be FP32 or dense)
        chosen = bench.chosen or {}
        shutil.copyfile(
            ctx.artifact(str(chosen.get("path") or produced.model_onnx)), out / "model.onnx"
        )
        kind = chosen.get("kind", "int8" if produced.quantization else "fp32")
        shutil.copyfile(ctx.artifact(str(produced.recipe_applied)), out / "recipe.yaml")
        shutil.copyfile(ctx.artifact(bench.benchmark_json), out / "benchmark.json")
        shutil.copyfile(ctx.artifact(bench.metrics_json), out / "metrics.json")
        family_part = family.deployment_files(ctx, out)
        config = deployment_config(
            out / "model.onnx",
            task=str(ctx.cfg.use_case.task),
            use_case=str(ctx.cfg.use_case.name),
            family_part=family_part,
            experiment=str(ctx.cfg.experiment.name),
            optim_level=ctx.level,
            sparsity=0.0 if kind == "dense" else produced.sparsity,
            quantized=bool(produced.quantization) and kind == "int8",
            **(
                {"structured": produced.structured}
                if produced.structured and kind != "dense"
                else {}
            ),
            **_deploy_target(ctx),
            measured=_measured(out / "benchmark.json"),
        )
        atomic_write_json(out / "config.json", config)
        source = str(ctx.output(FetchOutput).source or "?")
        write_model_card(out, source, ctx.derived.describe())
        files = sorted(p.name for p in out.iterdir())
        ctx.log.info("Deployment folder: %s (%s)", out, ", ".join(files))
        return PackageOutput(
            artifacts=[ctx.rel(out / f) for f in files],
            deployment_dir=str(out),
            task=config["task"],
        )
