"""One-shot pruning modifiers applied to torch models, alone and through a pipeline run."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

import sparsify
from sparsify.algorithms.masks import check_nm
from sparsify.algorithms.one_shot import global_magnitude_masks, target_sparsity, torch_batches
from sparsify.benchmark.onnx_stats import onnx_weight_sparsity
from sparsify.errors import SparsifyError
from sparsify.recipes.modifiers import prune_one_shot


def net() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(), nn.Flatten(),
        nn.Linear(8 * 4 * 4, 16), nn.ReLU(), nn.Linear(16, 4),
    )  # fmt: skip


def feeds(n: int = 8) -> list[dict[str, np.ndarray]]:
    rng = np.random.default_rng(0)
    return [{"input": rng.normal(size=(1, 3, 4, 4)).astype(np.float32)} for _ in range(n)]


def test_torch_batches_are_tuples_for_one_input_and_dicts_for_several() -> None:
    assert isinstance(torch_batches(feeds(4))[0], tuple)
    multi = [{"input_ids": np.zeros((1, 5), np.int64), "attention_mask": np.ones((1, 5))}] * 3
    batch = torch_batches(multi)[0]
    assert set(batch) == {"input_ids", "attention_mask"} and batch["input_ids"].shape == (3, 5)


def test_text_batches_are_sorted_and_brought_to_their_longest_text(
    tmp_path: Path,
) -> None:
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    from tests.fixtures.hf_models import make_tiny_bert

    folder = make_tiny_bert(tmp_path, head="text-classification")
    tokenizer = AutoTokenizer.from_pretrained(folder)
    model = AutoModelForSequenceClassification.from_pretrained(folder).eval()
    texts = ["good", "a long and rather unbelievable film in new york", "bad film", "fine"] * 3
    lengths = [len(tokenizer(t)["input_ids"]) for t in texts]
    groups = [sorted(lengths)[i : i + 4] for i in (0, 4, 8)]
    order = sorted(range(len(texts)), key=lambda i: lengths[i])
    # as calibration_feeds gives them (one sample each, unpadded), and padded to max_length
    unpadded = [dict(tokenizer(t, return_tensors="np")) for t in texts]
    padded = [
        dict(tokenizer(t, padding="max_length", max_length=32, return_tensors="np")) for t in texts
    ]
    with torch.no_grad():
        alone = torch.cat(
            [model(**{k: torch.from_numpy(v) for k, v in f.items()}).logits for f in unpadded]
        )
        for feeds in (unpadded, padded):
            batches = torch_batches(feeds, batch_size=4)
            # shortest first; each batch as long as its longest text
            assert [tuple(b["input_ids"].shape) for b in batches] == [(4, max(g)) for g in groups]
            assert [int(b["attention_mask"].sum()) for b in batches] == [sum(g) for g in groups]
            # and the same predictions as each text alone
            logits = torch.cat([model(**b).logits for b in batches])
            torch.testing.assert_close(logits, alone[order], atol=1e-5, rtol=1e-4)


def test_target_sparsity_reads_each_modifier_and_nm() -> None:
    assert target_sparsity({"final_sparsity": 0.6}) == 0.6
    assert target_sparsity({"sparsity": 0.7}) == 0.7
    assert target_sparsity({"sparsity": 0.1, "mask_structure": "2:4"}) == 0.5


def test_global_magnitude_prunes_layers_unevenly_to_an_exact_total() -> None:
    layers = {"a": nn.Linear(10, 10), "b": nn.Linear(10, 10)}
    with torch.no_grad():
        layers["b"].weight.mul_(10)  # b's weights are all larger
    masks = global_magnitude_masks(layers, 0.5)
    assert sum(int((~m).sum()) for m in masks.values()) == 100
    assert int((~masks["a"]).sum()) > int((~masks["b"]).sum())


@pytest.mark.parametrize(
    ("name", "kwargs"),
    [
        ("MagnitudePruningModifier", {"final_sparsity": 0.6}),
        ("MagnitudePruningModifier", {"final_sparsity": 0.5, "mask_type": "2:4"}),
        ("GlobalMagnitudePruningModifier", {"final_sparsity": 0.6}),
        ("SparseGPTModifier", {"sparsity": 0.6, "recalibrate_batchnorm": True}),
        ("SparseGPTModifier", {"sparsity": 0.5, "mask_structure": "2:4"}),
        ("SparseGPTModifier", {"sparsity": 0.6, "sequential_update": False}),
    ],
)
def test_each_pruner_reaches_its_target(name: str, kwargs: dict) -> None:
    model = net()
    result = prune_one_shot(model, name, kwargs, feeds)
    assert abs(result["sparsity"] - target_sparsity(kwargs)) < 0.01
    if "2:4" in str(kwargs):
        assert all(check_nm(m.weight, 2, 4) for m in model if isinstance(m, nn.Conv2d | nn.Linear))


def test_ignored_layers_stay_dense_and_unknown_names_are_refused() -> None:
    model = net()
    prune_one_shot(model, "MagnitudePruningModifier", {"final_sparsity": 0.8}, feeds, ["0"])
    assert float((model[0].weight == 0).float().mean()) == 0.0
    with pytest.raises(SparsifyError, match="no prunable layer"):
        prune_one_shot(net(), "SparseGPTModifier", {"sparsity": 0.5, "targets": ["nope"]}, feeds)
    with pytest.raises(SparsifyError, match="one-shot pruning modifier"):
        prune_one_shot(net(), "GMPruningModifier", {"final_sparsity": 0.5}, feeds)


@pytest.mark.slow
def test_sparsegpt_recipe_end_to_end(tiny_run: list[str], tmp_path: Path) -> None:
    result = sparsify.run([*tiny_run, "recipe=one_shot_sparsegpt", "optim_level=0.5"])
    assert result.status == "done", result.error
    produced = result.outputs["sparsify"]
    assert produced["method"] == "SparseGPTModifier"
    exported = onnx_weight_sparsity(result.run_dir / produced["model_onnx"])
    # level 0.5 -> 40 + (0.5 - 0.3) / 0.7 * 40 = 51.43 % sparsity
    assert abs(exported["sparsity"] - 0.5143) < 0.01
    applied = (result.deployment_dir / "recipe.yaml").read_text()
    assert "SparseGPTModifier" in applied
