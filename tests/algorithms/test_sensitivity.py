"""Per-layer sensitivity: the ranking finds planted fragile layers, the non-uniform allocation
keeps the overall count exact, the FP32 fallback restores the layer INT8 destroys."""

from __future__ import annotations

import csv
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from sparsify.algorithms.one_shot import torch_batches
from sparsify.algorithms.quantization import quantize_onnx_static
from sparsify.algorithms.sensitivity import (
    Row,
    allocate_sparsity,
    fp32_fallback,
    int8_sensitivity,
    prune_sensitivity,
    ranking,
)
from sparsify.errors import SparsifyError
from sparsify.recipes.modifiers.one_shot import prune_one_shot


class Chain(nn.Module):
    """Three Linears registered in an order other than the one they run in, so a ranking
    that merely follows registration order cannot pass."""

    def __init__(self, sizes: tuple[int, int, int, int]) -> None:
        super().__init__()
        a, b, c, d = sizes
        self.head = nn.Linear(c, d)
        self.mid = nn.Linear(b, c)
        self.first = nn.Linear(a, b)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(torch.relu(self.mid(torch.relu(self.first(x)))))


def _heavy_tailed(layer: nn.Linear, gen: torch.Generator) -> None:
    """Most weights tiny, a tenth large: pruning up to 90 % costs little."""
    with torch.no_grad():
        w = torch.randn(layer.weight.shape, generator=gen) * 1e-3
        big = torch.rand(layer.weight.shape, generator=gen) < 0.1
        layer.weight.copy_(torch.where(big, torch.randn(w.shape, generator=gen), w))


def fragile_chain() -> Chain:
    """`mid` holds weights of one magnitude, all essential: pruning any half destroys it."""
    gen = torch.Generator().manual_seed(0)
    model = Chain((16, 32, 32, 4))
    _heavy_tailed(model.first, gen)
    _heavy_tailed(model.head, gen)
    with torch.no_grad():
        signs = torch.randint(0, 2, model.mid.weight.shape, generator=gen) * 2 - 1
        model.mid.weight.copy_(signs.float() / math.sqrt(32))
    return model


def feeds(n: int, width: int, seed: int = 1) -> list[dict[str, np.ndarray]]:
    rng = np.random.default_rng(seed)
    return [{"input": rng.standard_normal((1, width)).astype(np.float32)} for _ in range(n)]


def test_pruning_sensitivity_ranks_the_fragile_layer_first() -> None:
    model = fragile_chain()
    layers = {n: m for n, m in model.named_modules() if isinstance(m, nn.Linear)}
    before = {n: m.weight.detach().clone() for n, m in layers.items()}
    rows = prune_sensitivity(model, layers, torch_batches(feeds(32, 16)))
    assert ranking(rows, "prune")[0] == "mid"
    assert len(rows) == 3 * len(layers)
    for name, layer in layers.items():  # every layer restored
        assert torch.equal(layer.weight, before[name])


def test_allocation_hits_the_target_and_spares_the_costly_layer() -> None:
    sizes = {"cheap": 1000, "costly": 3000, "middle": 517}
    rows = [
        Row("prune", name, size, s, cost * s * s)
        for name, size in sizes.items()
        for cost in [{"cheap": 0.01, "costly": 5.0, "middle": 0.3}[name]]
        for s in (0.5, 0.7, 0.9)
    ]
    for target in (0.3, 0.55, 0.8):
        allocated = allocate_sparsity(rows, sizes, target)
        zeros = sum(round(allocated[n] * sizes[n]) for n in sizes)
        assert zeros == round(target * sum(sizes.values()))
        assert allocated["costly"] < target < allocated["cheap"]
        assert all(abs(s - target) <= 0.2 + 1e-3 for s in allocated.values())


@pytest.mark.parametrize("modifier", ["MagnitudePruningModifier", "SparseGPTModifier"])
def test_profile_sensitivity_prunes_non_uniformly_to_the_exact_total(modifier: str) -> None:
    model = fragile_chain()
    layers = {n: m for n, m in model.named_modules() if isinstance(m, nn.Linear)}
    target = 0.6
    key = "final_sparsity" if modifier == "MagnitudePruningModifier" else "sparsity"
    calib = feeds(32, 16)
    done = prune_one_shot(model, modifier, {key: target, "profile": "sensitivity"}, lambda: calib)
    zeros = {n: int((m.weight == 0).sum()) for n, m in layers.items()}
    total = sum(m.weight.numel() for m in layers.values())
    assert sum(zeros.values()) == round(target * total)  # whole weights per layer: exact
    per_layer = done["per_layer_sparsity"]
    assert per_layer["mid"] < target < per_layer["first"]
    assert abs(done["sparsity"] - target) <= len(layers) / total


def test_profile_sensitivity_refuses_nm_masks() -> None:
    model = fragile_chain()
    fields = {"sparsity": 0.5, "mask_structure": "2:4", "profile": "sensitivity"}
    with pytest.raises(SparsifyError, match="N:M"):
        prune_one_shot(model, "SparseGPTModifier", fields, lambda: feeds(8, 16))


def test_fp32_fallback_stops_as_soon_as_the_drop_fits_and_caps_its_layers() -> None:
    costs = {"a": 3.0, "b": 1.5, "c": 0.2, "d": 0.1}
    written: list[list[str]] = []

    def quantize(kept: list[str]) -> dict[str, int]:
        written.append(list(kept))
        return {"fp32": len(kept)}

    def evaluate() -> float:
        return sum(v for k, v in costs.items() if k not in written[-1])

    done = fp32_fallback(quantize, evaluate, ["a", "b", "c", "d"], max_drop=0.5, max_layers=4)
    assert done.fits and done.kept == ["a", "b"] and done.summary == {"fp32": 2}
    assert [s["added"] for s in done.steps] == [None, "a", "b"]
    assert written == [[], ["a"], ["a", "b"]]

    written.clear()  # capped at one layer: does not fit, the best model is the one left
    done = fp32_fallback(quantize, evaluate, ["a", "b", "c", "d"], max_drop=0.5, max_layers=1)
    assert not done.fits and done.kept == ["a"] and len(done.steps) == 2

    written.clear()  # a ranking that makes things worse: the smallest drop is written again
    done = fp32_fallback(quantize, lambda: 1.0 + len(written[-1]), ["a"], 0.5, 1)
    assert done.kept == [] and written[-1] == []


class OutlierInput(Chain):
    """`first` reads an input whose feature 0 spans thousands but is never used: INT8 of that
    input leaves the other features no levels, every other layer quantizes well."""

    def __init__(self) -> None:
        super().__init__((8, 16, 16, 4))
        with torch.no_grad():
            self.first.weight[:, 0] = 0.0


def outlier_feeds(n: int) -> list[dict[str, np.ndarray]]:
    out = feeds(n, 8, seed=3)
    for f in out:
        f["input"][0, 0] *= 3000.0
    return out


def test_fp32_fallback_restores_the_layer_int8_destroys(tmp_path: Path) -> None:
    import onnxruntime as ort

    torch.manual_seed(0)
    model = OutlierInput().eval()
    calib = outlier_feeds(32)
    layers = {n: m for n, m in model.named_modules() if isinstance(m, nn.Linear)}
    ranked = ranking(int8_sensitivity(model, layers, torch_batches(calib)), "int8")
    assert ranked[0] == "first"

    fp32, int8 = tmp_path / "fp32.onnx", tmp_path / "int8.onnx"
    example = torch.from_numpy(calib[0]["input"])
    torch.onnx.export(model, (example,), str(fp32), input_names=["input"], dynamo=False)
    inputs = np.concatenate([f["input"] for f in calib])

    def run(path: Path) -> np.ndarray:
        session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        return np.concatenate([session.run(None, {"input": x[None]})[0] for x in inputs])

    reference = run(fp32)

    def quantize(kept: list[str]) -> dict:
        return quantize_onnx_static(
            fp32, int8, calib, fmt="qdq", per_channel=False, op_types=["Gemm"], ignore=kept
        )

    def drop() -> float:  # relative output error in percent: a metric in points
        return 100 * float(np.square(run(int8) - reference).sum() / np.square(reference).sum())

    done = fp32_fallback(quantize, drop, ranked, max_drop=1.0, max_layers=3)
    assert done.steps[0]["drop"] > 10.0  # every layer INT8: destroyed
    assert done.fits and done.kept == ["first"] and len(done.steps) == 2
    assert any("first" in n for n in done.summary["ignored_nodes"])


def test_a_run_writes_sensitivity_csv_and_png(tiny_run: list[str], tmp_path: Path) -> None:
    """profile: sensitivity and quantization.max_drop through the sparsify stage."""
    from sparsify.runner import run

    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(
        "version: 1.1.0\n"
        "oneshot_stage:\n"
        "  pruning_modifiers:\n"
        "    MagnitudePruningModifier:\n"
        "      final_sparsity: 0.5\n"
        "      profile: sensitivity\n"
        "  quantization_modifiers:\n"
        "    QuantizationModifier:\n"
        "      ignore: []\n",
        encoding="utf-8",
    )
    overrides = [
        *tiny_run,
        f"recipe={recipe}",
        "optim_level=0.5",
        "quantization.max_drop=100",
        "stages=[validate,fetch,sparsify]",
    ]
    result = run(overrides)
    assert result.status == "done", result.error
    out = result.run_dir / "sparsify"
    assert (out / "sensitivity.png").stat().st_size > 0
    with (out / "sensitivity.csv").open(encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    assert {r["analysis"] for r in rows} == {"prune", "allocation", "int8"}
    produced = result.outputs["sparsify"]
    allocated = {r["layer"]: float(r["sparsity"]) for r in rows if r["analysis"] == "allocation"}
    assert allocated.keys() == produced["per_layer_sparsity"].keys()
    assert abs(produced["sparsity"] - 0.5) < 0.01
    fallback = produced["quantization"]["fp32_fallback"]
    assert fallback["fits"] and fallback["fp32_layers"] == [] and len(fallback["steps"]) == 1
