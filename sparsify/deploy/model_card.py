"""README.md of a deployment folder: a model card built from config.json and benchmark.json."""

from __future__ import annotations

from typing import Any

from sparsify.benchmark.table import (
    comparison,
    footnotes,
    format_table,
    other_metrics,
    variant_rows,
)
from sparsify.engines.host import describe_host

EXAMPLES: dict[str, tuple[str, str, str]] = {
    # task -> (Python call, its result, JSON body for POST /predict)
    "image-classification": (
        'pipe("image.jpg", top_k=1)',
        "Classification(label=..., score=..., index=...)",
        '{"inputs": "<base64 image>", "top_k": 3}',
    ),
    "object-detection": (
        'pipe("image.jpg", conf_threshold=0.25)',
        "[Detection(box=[x1, y1, x2, y2], score=..., class_id=..., label=...), ...]",
        '{"inputs": ["<base64 image>"], "conf_threshold": 0.25}',
    ),
    "instance-segmentation": (
        'pipe("image.jpg")',
        "[Detection(box=..., score=..., class_id=..., label=..., mask=<bool HxW>), ...]",
        '{"inputs": "<base64 image>"}',
    ),
    "text-classification": (
        'pipe("the movie was great")',
        "Classification(label=..., score=..., index=...)",
        '{"inputs": "the movie was great"}',
    ),
    "token-classification": (
        'pipe("john lives in paris")',
        "[Entity(entity=..., word=..., start=..., end=..., score=...), ...]",
        '{"inputs": ["john lives in paris"]}',
    ),
    "question-answering": (
        'pipe({"question": "where does john live ?", "context": "john lives in paris ."})',
        "Answer(answer=..., score=..., start=..., end=...)",
        '{"inputs": {"question": "where does john live ?", "context": "john lives in paris ."}}',
    ),
}


def _without_sparsify(config: dict[str, Any]) -> str:
    pre, post = config.get("preprocessing", {}), config.get("postprocessing", {})
    inputs = ", ".join(f"`{i['name']}` {i['dtype']} {i['shape']}" for i in config["inputs"])
    kind = pre.get("type")
    if kind == "image":
        how = (
            f"resize the shorter side to {pre.get('resize_size') or pre['image_size']}, "
            f"center-crop {pre['image_size']}, scale to 0..1, normalize with mean "
            f"{pre['mean']} and std {pre['std']}, CHW; softmax the output"
        )
    elif kind == "letterbox":
        how = (
            f"letterbox to {pre['image_size']}x{pre['image_size']} (keep the aspect ratio, pad "
            f"with {pre.get('pad_value', 114)}), scale to 0..1, CHW RGB; the output is "
            f"(batch, 4 + {post.get('num_classes')} classes{' + 32 mask coefficients' if post.get('masks') else ''}, "
            f"anchors) in xywh input pixels: filter at conf {post.get('conf_threshold')}, "
            f"NMS per class at IoU {post.get('iou_threshold')}, keep {post.get('max_detections')}"
        )
    elif kind == "tokenizer":
        how = (
            f"tokenize with the tokenizer files here (max_length {pre['max_length']}, "
            f"doc_stride {pre.get('doc_stride')} for long QA contexts); post-processing: "
            f"{post.get('type')}"
        )
    else:
        how = "feed the inputs as they are"
    return f"Inputs: {inputs}. {how}."


def _also(benchmark: dict[str, Any], engine: str, metric: str | None) -> str:
    """'; also exact_match 70.1 -> 69.3' : the metrics measured beside the headline one."""
    models = benchmark["engines"][engine]
    base, mine = (other_metrics(models[m], metric) for m in ("baseline", "sparsified"))
    pairs = [f"{k} {base[k]:.4g} -> {mine[k]:.4g}" for k in mine if k in base]
    return f"; also {', '.join(pairs)}" if pairs else ""


def _measurements(benchmark: dict[str, Any] | None, task: str | None = None) -> tuple[str, str]:
    """(summary sentence, table) from benchmark.json; the use case's metric leads."""
    if not benchmark or not benchmark.get("engines"):
        return "No measurements were recorded.", "(no benchmark results)"
    try:
        rows = comparison(benchmark)
    except (KeyError, TypeError, IndexError, ZeroDivisionError):
        return "benchmark.json has no complete comparison.", "(no benchmark results)"
    lines = []
    for engine, models in benchmark["engines"].items():
        if "baseline" not in models or "sparsified" not in models:
            continue
        base = next(r for r in rows if r["engine"] == engine and r["model"] == "baseline")
        mine = next(r for r in rows if r["engine"] == engine and r["model"] == "sparsified")
        speed = next((k for k in mine if k.startswith("speedup_b")), None)
        size = mine.get("size_mb"), base.get("size_mb")
        metric = mine.get("metric")
        acc = (
            f"{metric} {base.get('accuracy')} (dense) -> {mine.get('accuracy')} (this model)"
            + _also(benchmark, engine, metric)
            if metric
            else "no accuracy measured"
        )
        lines.append(
            f"- {engine}: {mine.get(speed) if speed else '?'}x the dense throughput at batch "
            f"{speed.removeprefix('speedup_b') if speed else '?'}; {size[0]} MB vs {size[1]} MB; {acc}"
        )
    notes = footnotes(benchmark, task)
    return "\n".join(lines) or "No dense-vs-result comparison was recorded.", format_table(
        rows, notes
    )


def _threads(n: object) -> str:
    return f"{n} thread" if n == 1 else f"{n} threads"


def _measured_how(benchmark: dict[str, Any] | None) -> str:
    if not benchmark:
        return ""
    runs = [
        run
        for models in benchmark.get("engines", {}).values()
        for model in models.values()
        if isinstance(model, dict)
        for run in model.get("benchmarks", [])
    ]
    if not runs:
        return ""
    batches = sorted({r.get("batch_size") for r in runs if r.get("batch_size") is not None})
    cores = runs[0].get("num_cores")
    seconds = runs[0].get("seconds_to_run")
    engines = {f"{r.get('engine')} {r.get('engine_version')}": r.get("num_cores") for r in runs}
    on = ", ".join(f"{name} ({_threads(n)})" for name, n in engines.items())
    return (
        f"Dense baseline and this model were exported to ONNX and timed on the same engine, "
        f"inputs and threads ({_threads(cores)}, batch sizes {batches}, {seconds} s per "
        "measurement, median latency in ms per batch); accuracy is that of the exported "
        "models on the validation split, with the pre/post-processing this folder runs.\n"
        f"Measured on {describe_host(runs[0].get('host'))}, with {on}: the speedups hold "
        "for a CPU with these instruction sets."
    )


def _structured(config: dict[str, Any]) -> str:
    """A sentence per structured pruning the model went through (empty when none)."""
    what = {
        "ffn_neurons": "feed-forward layers were narrowed from {width} to {kept} neurons",
        "attention_heads": "self-attention layers were cut from {width} to {kept} heads",
        "channels": "coupled convolution channels were cut from {width} to {kept}",
    }
    return "".join(
        f"\nIts {s['blocks']} blocks' "
        + what[s["structure"]].format(width=s["width"], kept=s["kept"])
        + " (structured pruning; the zeros above are of what is left)."
        + (
            f" MACs per sample {s['macs'][0]:,} -> {s['macs'][1]:,} (conv and linear layers), "
            f"parameters {s['params'][0]:,} -> {s['params'][1]:,}."
            if s.get("macs")
            else ""
        )
        for s in config.get("structured") or []
        if s.get("structure") in what
    )


def _choice(benchmark: dict[str, Any] | None) -> str:
    """Why this file was packaged (quantization.variants) and what else was measured; empty
    when no choice was made."""
    chosen = (benchmark or {}).get("chosen")
    if not chosen:
        return ""
    rule = (
        f"the fastest candidate on {chosen['engine']} within benchmark.max_drop="
        f"{chosen['max_drop']:g} points of dense {chosen['metric']}, INT8 only at "
        f"benchmark.min_speedup={chosen['min_speedup']:g}x dense or more"
    )
    return (
        f"\n**Why this model** ({chosen['variant']}, {rule}): {chosen['reason']}.\n\n"
        f"Candidates (speedup: throughput over dense, geometric mean over the batch sizes):\n\n"
        f"```\n{format_table(variant_rows(benchmark))}\n```\n"  # type: ignore[arg-type]
    )


def render_model_card(
    config: dict[str, Any],
    benchmark: dict[str, Any] | None,
    source: str,
    describe: str,
    path: str = ".",
) -> str:
    """The model card: what the model is, how it was measured, how to run and serve it."""
    task = config["task"]
    call, result, body = EXAMPLES.get(task, ("pipe(inputs)", "...", '{"inputs": ...}'))
    summary, table = _measurements(benchmark, task)
    labels = config.get("labels") or []
    shown = ", ".join(map(str, labels[:20])) + (" ..." if len(labels) > 20 else "")
    extra_files = (
        "| tokenizer files | the tokenizer the model was trained with |"
        if config.get("preprocessing", {}).get("type") == "tokenizer"
        else "| labels.txt | class names, one per line, index order |"
    )
    return f"""# {config["use_case"]} — {describe}

**What**: a `{task}` model, produced by `sparsify`
({config["experiment"]}, optim level {config["optim_level"]:.2f}) from {source}:
{config.get("sparsity", 0.0):.1%} of its prunable weights are zero, {"INT8-quantized" if config.get("quantized") else "not quantized (fp32)"}.{_structured(config)}
Labels ({len(labels)}): {shown or "none"}.

| file | what |
|---|---|
| model.onnx | the model |
| config.json | task, inputs and shapes, pre/post-processing parameters, labels |
{extra_files}
| recipe.yaml | the recipe as applied |
| benchmark.json | latency / throughput of the dense baseline and this model (deepsparse.benchmark field names) |
| metrics.json | accuracy of the exported baseline and this model on the validation split |

## How it was measured

{_measured_how(benchmark)}

{summary}

```
{table}
```
{_choice(benchmark)}
## Run it with Python

```python
from sparsify.deploy import Pipeline

pipe = Pipeline("{path}")  # engine="onnxruntime" (or "openvino", "deepsparse")
result = {call}
# {result}; result.to_dict() is JSON-ready; a list of inputs gives a list of results
```

## Serve it over HTTP

```bash
pip install 'sparsify[serve]'
sparsify serve {path} --port 8000      # 127.0.0.1 unless --host is given
curl -s localhost:8000/health
curl -s localhost:8000/info
curl -s -X POST localhost:8000/predict -H 'content-type: application/json' \\
     -d '{body}'
```
{"Images may also be uploaded as multipart files: `curl -F file=@image.jpg localhost:8000/predict`." if task in ("image-classification", "object-detection", "instance-segmentation") else ""}

## Without sparsify

{_without_sparsify(config)}
"""
