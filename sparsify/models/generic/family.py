"""The custom use case: any ONNX (or TorchScript) model plus NPZ calibration samples.

There is no task, so no pre/post-processing and no task metric (as the original documented);
the benchmark reports how closely the result's outputs follow the dense model's instead.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np
import onnx

from sparsify.context import RunContext
from sparsify.errors import Problem, SparsifyError
from sparsify.models.base import ModelFamily
from sparsify.outputs import SparsifyOutput, ValidateOutput

log = logging.getLogger("sparsify")


def _samples(ctx: RunContext, n: int | None = None) -> list[dict[str, np.ndarray]]:
    from sparsify.data.npz import load_npz_samples

    return load_npz_samples(ctx.output(ValidateOutput).data_dir, n, int(ctx.cfg.seed))


def output_fidelity(
    reference: list[list[np.ndarray]], result: list[list[np.ndarray]]
) -> dict[str, float]:
    """Mean cosine similarity of each output to the reference (%), and top-1 agreement (%) when
    the first output looks like class scores."""
    cosines, agree, rows = [], 0, 0
    for ref_outs, res_outs in zip(reference, result, strict=True):
        for ref, res in zip(ref_outs, res_outs, strict=True):
            a, b = ref.astype(np.float64).ravel(), res.astype(np.float64).ravel()
            denom = np.linalg.norm(a) * np.linalg.norm(b)
            cosines.append(float(a @ b / denom) if denom else float(np.allclose(a, b)))
        first_ref, first_res = ref_outs[0], res_outs[0]
        if first_ref.ndim == 2 and first_ref.shape[1] > 1:
            agree += int((first_ref.argmax(1) == first_res.argmax(1)).sum())
            rows += first_ref.shape[0]
    scores = {"output_cosine": 100 * float(np.mean(cosines)) if cosines else 0.0}
    if rows:
        scores["top1_agreement"] = 100 * agree / rows
    return scores


def _shape_problems(model: onnx.ModelProto, inputs: dict[str, Any], path: Path) -> list[Problem]:
    """Samples whose shape the model cannot take: a rank other than the input's minus the
    batch axis, or a size other than a fixed (numbered) dimension. Found now, not by ONNX
    Runtime during calibration."""
    problems = []
    for value in model.graph.input:
        sample = inputs.get(value.name)
        if sample is None:
            continue
        dims = [
            d.dim_value if d.HasField("dim_value") else None
            for d in value.type.tensor_type.shape.dim
        ]
        wanted = ["?" if d is None else d for d in dims[1:]]
        seen = sample.get("shapes") or [{"shape": sample["shape"], "file": "the .npz files"}]
        for entry in seen:
            shape = [int(n) for n in entry["shape"]]
            fits = len(dims) == len(shape) + 1 and all(
                d is None or d == n for d, n in zip(dims[1:], shape, strict=True)
            )
            if dims and not fits:
                problems.append(
                    Problem(
                        "model.path",
                        str(path),
                        f"input '{value.name}' takes samples of shape {wanted} (after the batch "
                        f"axis), but {entry['file']} holds {shape}",
                        "save each sample without a batch dimension, in the shape the model takes",
                    )
                )
    return problems


class GenericFamily(ModelFamily):
    name = "generic"
    artifact_name = "model.onnx"

    def arch_problems(self, arch: str) -> list[Problem]:
        return []

    def resolve_source(self, ctx: RunContext) -> Path | None:
        if not ctx.cfg.model.path:
            raise SparsifyError("a custom use case needs model.path: an .onnx or TorchScript file")
        return Path(str(ctx.cfg.model.path)).expanduser().resolve()

    def checkpoint_problems(
        self, path: Path, ctx: RunContext, data: dict[str, Any]
    ) -> list[Problem]:
        fix = "give an ONNX model whose input names are the keys of your .npz files"
        if path.suffix not in (".onnx", ".pt", ".pth", ".ts"):
            return [
                Problem("model.path", str(path), "is neither .onnx nor a TorchScript file", fix)
            ]
        expected = set(data.get("inputs", {}))
        if path.suffix == ".onnx":
            try:
                model = onnx.load(str(path), load_external_data=False)
            except Exception as exc:  # noqa: BLE001
                return [
                    Problem("model.path", str(path), f"is not a readable ONNX model: {exc}", fix)
                ]
            inits = {i.name for i in model.graph.initializer}
            names = {i.name for i in model.graph.input if i.name not in inits}
            if names != expected:
                return [
                    Problem(
                        "model.path",
                        str(path),
                        f"takes inputs {sorted(names)} but the .npz files hold {sorted(expected)}",
                        fix,
                    )
                ]
            return _shape_problems(model, data.get("inputs", {}), path)
        try:
            import torch

            torch.jit.load(str(path), map_location="cpu")
        except Exception as exc:  # noqa: BLE001
            return [
                Problem(
                    "model.path",
                    str(path),
                    f"is not a TorchScript model: {exc}",
                    "save it with torch.jit.save(torch.jit.script(model), path), or export ONNX",
                )
            ]
        return []

    def needs_baseline(self, ctx: RunContext, source: Path) -> bool:
        return source.suffix != ".onnx"  # TorchScript: converted to ONNX in fetch

    def train_baseline(
        self, ctx: RunContext, source: Path | None, out_path: Path
    ) -> dict[str, Any]:
        """Not training: a TorchScript model is exported to ONNX with an NPZ sample as example."""
        import torch

        module = torch.jit.load(str(source), map_location="cpu").eval()
        sample = _samples(ctx, 1)[0]
        names = list(sample)
        args = tuple(torch.from_numpy(sample[n]) for n in names)
        with torch.no_grad():
            outputs = module(*args)
        n_out = len(outputs) if isinstance(outputs, tuple | list) else 1
        torch.onnx.export(
            module,
            args,
            str(out_path),
            dynamo=False,
            opset_version=int(ctx.cfg.export.opset),
            input_names=names,
            output_names=[f"output_{i}" for i in range(n_out)],
            dynamic_axes={n: {0: "batch"} for n in names},
        )
        return {"converted_from": str(source)}

    def load(self, path: Path, ctx: RunContext) -> onnx.ModelProto:
        return onnx.load(str(path))

    def save(self, model: onnx.ModelProto, path: Path, ctx: RunContext) -> None:
        onnx.save(model, str(path))

    def export(self, model: onnx.ModelProto, path: Path, ctx: RunContext) -> Path:
        path.parent.mkdir(parents=True, exist_ok=True)
        onnx.save(model, str(path))
        return path

    def calibration_feeds(self, ctx: RunContext, n: int) -> list[dict[str, np.ndarray]]:
        return _samples(ctx, n)

    def evaluate_onnx(self, engine: Any, ctx: RunContext, split: str = "val") -> dict[str, float]:
        # output fidelity against the dense model on sample inputs: no labels, no splits
        from sparsify.engines.ort import OnnxRuntimeEngine

        samples = _samples(ctx, ctx.cfg.data.max_eval_samples)
        baseline_onnx = str(ctx.output(SparsifyOutput).baseline_onnx)
        baseline = OnnxRuntimeEngine(ctx.artifact(baseline_onnx))
        reference = [baseline.run(s) for s in samples]
        return {
            **output_fidelity(reference, [engine.run(s) for s in samples]),
            "samples": len(samples),
        }

    def deployment_files(self, ctx: RunContext, out_dir: Path) -> dict[str, Any]:
        return {"preprocessing": {"type": "none"}, "postprocessing": {"type": "none"}, "labels": []}
