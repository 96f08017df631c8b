"""package: a self-contained deployment/ folder, loadable by sparsify.deploy.Pipeline."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

from sparsify.benchmark.table import format_table
from sparsify.context import RunContext
from sparsify.fileio import atomic_write_json
from sparsify.models import get_family

README = """# {use_case} model — {describe}

Produced by `sparsify` ({experiment}, optim level {level:.2f}) from {source}.

| file | what |
|---|---|
| model.onnx | the model ({describe}) |
| config.json | task, inputs, pre/post-processing, labels |
| labels.txt | class names, one per line, index order |
| recipe.yaml | the recipe as applied |
| benchmark.json | latency / throughput of baseline and this model (deepsparse.benchmark field names) |
| metrics.json | accuracy of the exported baseline and this model on the validation split |

## Measured (same engine, threads and inputs for both)

```
{table}
```

## Run it

```python
from sparsify.deploy import Pipeline

pipe = Pipeline("{path}")          # engine="onnxruntime"
print(pipe(["image.jpg"]))        # [{{"label": ..., "score": ..., "index": ...}}]
```

Without sparsify: feed `input` (float32, N x 3 x {size} x {size}) to onnxruntime after resizing the
shorter side to {resize}, center-cropping {size}, scaling to 0..1 and normalizing with
mean {mean} and std {std}; apply softmax to `logits`.
"""


def onnx_io(path: Path) -> dict[str, Any]:
    """Input and output names, shapes (symbolic dims by name) and dtypes of an ONNX model."""
    import onnx

    graph = onnx.load(str(path), load_external_data=False).graph

    def describe(values: Any) -> list[dict[str, Any]]:
        out = []
        for v in values:
            t = v.type.tensor_type
            dims = [d.dim_param or d.dim_value for d in t.shape.dim]
            dtype = onnx.helper.tensor_dtype_to_np_dtype(t.elem_type).name
            out.append({"name": v.name, "shape": dims, "dtype": dtype})
        return out

    return {"inputs": describe(graph.input), "outputs": describe(graph.output)}


class PackageStage:
    name = "package"
    config_keys = ("use_case", "experiment", "optim_level")

    def run(self, ctx: RunContext) -> dict[str, Any]:
        out = ctx.stage_dir("deployment")
        family = get_family(str(ctx.cfg.use_case.family))
        produced, bench = ctx.outputs["sparsify"], ctx.outputs["benchmark"]
        shutil.copyfile(ctx.artifact(produced["model_onnx"]), out / "model.onnx")
        shutil.copyfile(ctx.artifact(produced["recipe_applied"]), out / "recipe.yaml")
        shutil.copyfile(ctx.artifact(bench["benchmark_json"]), out / "benchmark.json")
        shutil.copyfile(ctx.artifact(bench["metrics_json"]), out / "metrics.json")
        family_part = family.deployment_files(ctx, out)
        derived = ctx.derived
        config = {
            **onnx_io(out / "model.onnx"),
            "task": str(ctx.cfg.use_case.task),
            "use_case": str(ctx.cfg.use_case.name),
            "model": "model.onnx",
            "experiment": str(ctx.cfg.experiment.name),
            "optim_level": ctx.level,
            "sparsity": produced.get("sparsity", 0.0),
            "quantized": bool(produced.get("quantization")),
            **family_part,
        }
        atomic_write_json(out / "config.json", config)
        pre = family_part.get("preprocessing", {})
        (out / "README.md").write_text(
            README.format(
                use_case=config["use_case"],
                describe=derived.describe(),
                experiment=config["experiment"],
                level=ctx.level,
                source=ctx.outputs["fetch"].get("source", "?"),
                table=format_table(bench["table"]),
                path=str(out),
                size=pre.get("image_size"),
                resize=pre.get("resize_size") or pre.get("image_size"),
                mean=pre.get("mean"),
                std=pre.get("std"),
            ),
            encoding="utf-8",
        )
        files = sorted(p.name for p in out.iterdir())
        ctx.log.info("Deployment folder: %s (%s)", out, ", ".join(files))
        return {
            "artifacts": [ctx.rel(out / f) for f in files],
            "deployment_dir": str(out),
            "config": json.loads((out / "config.json").read_text())["task"],
        }
