"""The one rule for recipe `ignore` / `targets` entries, and every algorithm following it."""

from __future__ import annotations

import logging
import warnings
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
from torch import nn

from sparsify.algorithms.gptq import int8_layers
from sparsify.algorithms.onnx_pruning import weight_initializers
from sparsify.algorithms.pruning import select_layers
from sparsify.algorithms.qat import prepare_qat
from sparsify.algorithms.quantization import excluded_nodes, quantize_onnx_static
from sparsify.algorithms.structured import ffn_pairs
from sparsify.errors import SparsifyError
from sparsify.matching import (
    collect_unmatched,
    match_modules,
    match_onnx_nodes,
    module_classes,
    onnx_node_module_path,
)
from sparsify.models.transformers.family import OUTSIDE_BLOCKS
from sparsify.models.yolo.family import PRUNE_IGNORE
from sparsify.recipes.modifiers import prune_one_shot

WEIGHT_TYPES = (nn.Conv2d, nn.Linear)
WEIGHT_OPS = ("Conv", "Gemm", "MatMul")


class Block(nn.Module):
    """A transformer-style feed-forward block (what structured pruning pairs up)."""

    def __init__(self) -> None:
        super().__init__()
        self.up = nn.Linear(16, 64)
        self.down = nn.Linear(64, 16)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.down(torch.relu(self.up(x)))


class TinyNet(nn.Module):
    """Convs (one depthwise), a feed-forward block in a ModuleList, a `classifier` Sequential
    of Linear layers and a `classifier_head` beside it (a longer name, not a child)."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.features = nn.Sequential(
            nn.Conv2d(3, 8, 3, padding=1),
            nn.ReLU(),
            nn.Conv2d(8, 8, 3, padding=1, groups=8),
            nn.ReLU(),
            nn.Conv2d(8, 16, 1),
        )
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.blocks = nn.ModuleList([Block()])
        self.classifier = nn.Sequential(
            nn.Flatten(), nn.Linear(16, 32), nn.ReLU(), nn.Linear(32, 10)
        )
        self.classifier_head = nn.Linear(10, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.pool(self.features(x)).flatten(1)
        for block in self.blocks:
            x = block(x)
        return self.classifier_head(self.classifier(x))


LAYERS = {
    "features.0",
    "features.2",
    "features.4",
    "blocks.0.up",
    "blocks.0.down",
    "classifier.1",
    "classifier.3",
    "classifier_head",
}


def _ignored(model: nn.Module, ignore: list[str]) -> set[str]:
    return set(match_modules(model, ignore, types=WEIGHT_TYPES).ignored)


@pytest.mark.parametrize(
    ("entry", "expected"),
    [
        ("classifier.1", {"classifier.1"}),  # exact
        ("classifier", {"classifier.1", "classifier.3"}),  # prefix at a dot: not classifier_head
        ("classifier.1.weight", {"classifier.1"}),  # a parameter names its module
        ("re:features\\.0", {"features.0"}),  # full match
        ("re:features", set()),  # a pattern does not extend to the modules inside a match
        ("re:.*head", {"classifier_head"}),
        ("Linear", LAYERS - {"features.0", "features.2", "features.4"}),  # class names
        ("__DEPTHWISE__", {"features.2"}),
        ("__ALL_PRUNABLE__", LAYERS),
    ],
)
def test_the_rule(entry: str, expected: set[str]) -> None:
    assert _ignored(TinyNet(), [entry]) == expected


def test_targets_follow_the_same_rule() -> None:
    model = TinyNet()
    assert set(select_layers(model, ["classifier", "Conv2d"], ["__DEPTHWISE__"])) == {
        "features.0",
        "features.4",
        "classifier.1",
        "classifier.3",
    }
    assert set(select_layers(model, "__ALL__")) == LAYERS  # the schema's __ALL__ works too


def test_family_defaults_keep_working() -> None:
    names = [
        "bert.embeddings.word_embeddings",
        "bert.encoder.layer.0.attention.self.query",
        "bert.encoder.layer.1.output.dense",
        "bert.pooler.dense",
        "classifier",
    ]
    named = [(n, nn.Linear(2, 2)) for n in names]
    kept = set(match_modules(named, [OUTSIDE_BLOCKS]).selected)
    assert kept == {n for n in names if ".layer." in n}
    yolo = [
        "model.0.conv",
        "model.1.conv",
        "model.22.dfl.conv",
        "model.22.cv2.0.2",
        "model.22.cv3.1.2",
        "model.22.cv2.0.0.conv",
    ]
    named = [(n, nn.Conv2d(2, 2, 1)) for n in yolo]
    assert set(match_modules(named, PRUNE_IGNORE).ignored) == {
        "model.0.conv",
        "model.22.dfl.conv",
        "model.22.cv2.0.2",
        "model.22.cv3.1.2",
    }


def test_a_malformed_entry_is_refused_with_the_fix() -> None:
    with pytest.raises(SparsifyError, match=r"'re:\(' is not a valid regular expression"):
        match_modules(TinyNet(), ["re:("])


@pytest.mark.parametrize(
    ("node", "path"),
    [
        ("/classifier/classifier.1/Gemm", "classifier.1"),
        ("/layer1/layer1.0/conv1/Conv", "layer1.0.conv1"),
        ("/layer1.0/conv1/Conv", "layer1.0.conv1"),  # a ModuleList's item called directly
        ("/features/features.2/features.2.0/Conv", "features.2.0"),  # Sequential in Sequential
        ("/model.22/cv2.0/cv2.0.2/Conv", "model.22.cv2.0.2"),  # YOLO's head
        (
            "/bert/encoder/layer.0/attention/self/query/MatMul",
            "bert.encoder.layer.0.attention.self.query",
        ),
        ("/Add", ""),  # the root module's own op
        ("Conv_12", None),  # not named by torch's exporter
    ],
)
def test_onnx_node_names_map_to_module_paths(node: str, path: str | None) -> None:
    assert onnx_node_module_path(node) == path


def _export(model: nn.Module, path: Path) -> Path:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            model.eval(), (torch.randn(1, 3, 8, 8),), str(path), dynamo=False, input_names=["input"]
        )
    return path


def test_every_exported_weight_node_maps_to_its_module(tmp_path: Path) -> None:
    model = TinyNet().eval()
    called: list[str] = []
    hooks = [
        module.register_forward_hook(lambda *_, n=name: called.append(n))
        for name, module in model.named_modules()
        if isinstance(module, WEIGHT_TYPES)
    ]
    model(torch.randn(1, 3, 8, 8))
    for hook in hooks:
        hook.remove()
    graph = onnx.load(str(_export(model, tmp_path / "m.onnx"))).graph
    paths = [onnx_node_module_path(n.name) for n in graph.node if n.op_type in WEIGHT_OPS]
    assert paths == called


def test_an_entry_matching_nothing_is_warned_about_and_returned(
    caplog: pytest.LogCaptureFixture,
) -> None:
    model = TinyNet()
    ignore = ["classifer", "classifier.0", "__DEPTHWISE__", "re:nothing.*"]
    with caplog.at_level(logging.WARNING, logger="sparsify"), collect_unmatched() as found:
        match = match_modules(model, ignore, types=WEIGHT_TYPES)
        select_layers(model, ignore=["classifer"])  # the same entry again: recorded once
    # a real module that is just not a candidate (Flatten) and a token are no typos
    assert match.unmatched == ["classifer", "re:nothing.*"] == found
    warning = next(r.getMessage() for r in caplog.records if "'classifer'" in r.getMessage())
    assert "closest names: classifier" in warning
    with collect_unmatched() as outside:
        pass
    assert outside == []  # nothing leaks from one collection into the next


def test_onnx_nodes_follow_the_rule_and_report_unmatched(tmp_path: Path) -> None:
    graph = onnx.load(str(_export(TinyNet(), tmp_path / "m.onnx")))
    match = match_onnx_nodes(graph, ["classifier", "Linear", "/features/features.0/Conv"])
    paths = {onnx_node_module_path(n.name) for n in match.ignored}
    assert paths == {"classifier.0", "classifier.1", "classifier.2", "classifier.3", "features.0"}
    assert match.unmatched == ["Linear"]  # a class name needs the torch model's classes
    classes = module_classes(TinyNet())
    with_classes = match_onnx_nodes(graph, ["Linear"], classes=classes)
    assert with_classes.unmatched == []
    assert {n.op_type for n in with_classes.ignored} == {"Gemm"}
    # ONNX-only pruning reads the same rule: the classifier's weights stay dense
    dense = set(weight_initializers(graph)) - set(weight_initializers(graph, ["classifier"]))
    assert dense == {"classifier.1.weight", "classifier.3.weight"}


IGNORE_LISTS = {
    "names, pattern, token": (
        ["classifier", "re:features\\.0", "__DEPTHWISE__"],
        {"features.0", "features.2", "classifier.1", "classifier.3"},
    ),
    "class name, exact": (
        ["Linear", "features.4"],
        LAYERS - {"features.0", "features.2"},
    ),
    "half a block, suffix pattern": (
        ["blocks.0.down", "re:.*head"],
        {"blocks.0.down", "classifier_head"},
    ),
}


@pytest.mark.parametrize("case", list(IGNORE_LISTS))
def test_every_path_keeps_the_same_modules(case: str, tmp_path: Path) -> None:
    """One `ignore` list through every algorithm: the same layers stay dense / FP32."""
    ignore, expected = IGNORE_LISTS[case]
    batch = (torch.randn(2, 3, 8, 8),)

    pruned_model = TinyNet()
    prune_one_shot(
        pruned_model,
        "MagnitudePruningModifier",
        {"final_sparsity": 0.5, "ignore": ignore},
        lambda: [],
    )
    pruned = {
        n
        for n, m in pruned_model.named_modules()
        if isinstance(m, WEIGHT_TYPES) and (m.weight == 0).any()
    }

    pairs = ffn_pairs(TinyNet(), ignore)
    structured = {name for p in pairs for name in (p.up_name, p.down_name)}

    rounded = set(int8_layers(TinyNet(), batch, list(WEIGHT_OPS), ignore))

    qat = set(prepare_qat(TinyNet(), ignore))

    model = TinyNet()
    fp32 = _export(model, tmp_path / "fp32.onnx")
    classes = module_classes(model)
    exported = onnx.load(str(fp32))
    graph = exported.graph
    weight_nodes = {
        n.name: onnx_node_module_path(n.name) for n in graph.node if n.op_type in WEIGHT_OPS
    }
    excluded = {
        weight_nodes[n] for n in excluded_nodes(exported, ignore, classes) if n in weight_nodes
    }
    calibration = [
        {"input": np.random.default_rng(i).standard_normal((1, 3, 8, 8), np.float32)}
        for i in range(4)
    ]
    info = quantize_onnx_static(
        fp32,
        tmp_path / "int8.onnx",
        calibration,
        fmt="qoperator",
        op_types=list(WEIGHT_OPS),
        ignore=ignore,
        module_classes=classes,
    )
    int8 = onnx.load(str(tmp_path / "int8.onnx")).graph
    still_float = {onnx_node_module_path(n.name) for n in int8.node if n.op_type in WEIGHT_OPS}

    kept = LAYERS - expected
    assert pruned == kept
    assert rounded == kept
    assert qat == kept  # before: QAT quantized classifier.1 for `ignore: [classifier]`
    assert excluded == expected
    assert {weight_nodes[n] for n in info["ignored_nodes"] if n in weight_nodes} == expected
    assert still_float == expected
    # structured pruning works on whole feed-forward pairs: one only while both layers are kept
    assert structured == (
        {"blocks.0.up", "blocks.0.down"} if {"blocks.0.up", "blocks.0.down"} <= kept else set()
    )
    assert structured <= kept


def test_unmatched_ignore_is_recorded_by_the_sparsify_stage(
    tiny_run: list[str], tmp_path: Path
) -> None:
    """A run whose recipe ignores a layer that does not exist finishes, and says so in the
    manifest and at the top of the applied recipe."""
    from sparsify.runner import run

    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(
        "version: 1.1.0\n"
        "oneshot_stage:\n"
        "  pruning_modifiers:\n"
        "    MagnitudePruningModifier:\n"
        "      final_sparsity: 0.5\n"
        "      ignore: [clasifier, classifier]\n",
        encoding="utf-8",
    )
    result = run([*tiny_run, f"recipe={recipe}", "optim_level=0.5"])
    assert result.status == "done", result.error
    assert result.outputs["sparsify"]["ignore_unmatched"] == ["clasifier"]
    applied = (result.run_dir / "sparsify" / "recipe.yaml").read_text(encoding="utf-8")
    assert applied.startswith("# ignore entries that matched no layer") and "clasifier" in applied
