"""benchmarks/package_speedups.py writes recipes the pipeline accepts, and holds each package
to the right target."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

from sparsify.recipes.recipe import load_recipe
from tests.recipes.test_recipe_schema import run_variables

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "package_speedups.py"


@pytest.fixture(scope="module")
def script():  # noqa: ANN201
    sys.path.insert(0, str(SCRIPT.parent))
    try:
        spec = importlib.util.spec_from_file_location("package_speedups", SCRIPT)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        return module
    finally:
        sys.path.remove(str(SCRIPT.parent))


@pytest.mark.parametrize(("ffn", "heads"), [(0.0, 0.0), (0.5, 0.0), (0.5, 0.5)])
def test_block_recipes_load(script, tmp_path: Path, ffn: float, heads: float) -> None:  # noqa: ANN001
    path = script.block_recipe(tmp_path, "block4", ffn, heads)
    recipe = load_recipe(str(path), run_variables("training_aware", 0.9))
    gmp = recipe.find("GMPruningModifier").kwargs
    assert gmp["mask_type"] == "block4" and gmp["final_sparsity"] == pytest.approx(0.9)
    structured = [m for m in recipe.modifiers if m.name == "StructuredPruningModifier"]
    expected = [("attention_heads", heads)] if heads else []
    expected += [("ffn_neurons", ffn)] if ffn else []
    assert [(m.kwargs["structure"], m.kwargs["final_sparsity"]) for m in structured] == expected
    for modifier in structured:
        assert recipe.window(modifier) == (0.0, pytest.approx(0.3 * recipe.epochs()))


def test_targets_per_package_kind(script) -> None:  # noqa: ANN001
    assert script.target_of("int8", "onnxruntime") == 2.5
    assert script.target_of("int8", "deepsparse") is None
    assert script.target_of("sparse", "deepsparse") == 5.0
    assert script.target_of("sparse", "onnxruntime") is None
    assert script.target_of("structured", "onnxruntime") == 2.5
    assert script.target_of("structured", "deepsparse") == 5.0
    # the issues' per-model targets
    assert script.target_of("channels", "onnxruntime", "resnet50") == 4.0
    assert script.target_of("channels", "onnxruntime", "mobilenet_v2") == 2.0
    assert script.target_of("channels", "openvino", "resnet50") is None
    assert script.target_of("int8", "openvino", "minilm") == 2.5
    assert script.target_of("int8", "openvino", "resnet18") is None


def _args(script, *argv: str):  # noqa: ANN001, ANN202
    """The script's own command line, parsed."""
    return script.parse_args(list(argv))


def _setup(script):  # noqa: ANN001, ANN202
    return script.Setup("text", [], None, 1e-4, 1e-4, epochs=30)


def test_text_model_gets_both_ffn_packages(script, tmp_path: Path) -> None:  # noqa: ANN001
    built = script.packages(_args(script), tmp_path, _setup(script), "bert")
    labels = [label for label, _, _ in built]
    assert labels == [
        "INT8 (QOperator)", "INT8 (QDQ)", "INT8 (dynamic)", "block4 sparse + INT8",
        "ffn50 + h50 + block4 + INT8", "ffn50 + INT8 (QDQ)",
    ]  # fmt: skip
    _, kind, overrides = built[-1]
    assert kind == "int8"  # held to ONNX Runtime's INT8 target
    assert "optim_level=0.2" in overrides and "quantization.format=qdq" in overrides
    assert not any(o.startswith("benchmark.engines") for o in overrides)  # --engines: common
    recipe = next(o.split("=", 1)[1] for o in overrides if o.startswith("recipe="))
    assert Path(recipe).name == "training_aware_block4_ffn50.yaml"  # no heads removed
    _, _, overrides = built[-2]
    recipe = next(o.split("=", 1)[1] for o in overrides if o.startswith("recipe="))
    assert Path(recipe).name == "training_aware_block4_ffn50_heads50.yaml"
    args = _args(script, "--head-sparsity", "0")
    no_heads = script.packages(args, tmp_path, _setup(script), "bert")
    assert no_heads[-2][0] == "ffn50 + block4 + INT8"
    # a CNN gets neither, and a channel-pruned package instead
    cnn = script.packages(_args(script), tmp_path, _setup(script), "cnn")
    assert [label for label, _, _ in cnn] == [
        *labels[:2], labels[3], "channels + INT8 (QDQ)", "channels (trained) + INT8",
    ]  # fmt: skip
    trained = dict((label, overrides) for label, _, overrides in cnn)["channels (trained) + INT8"]
    assert "recipe=training_aware_channels" in trained and "optim_level=1.0" in trained


def test_packages_select_keeps_the_baseline_run(script, tmp_path: Path) -> None:  # noqa: ANN001
    args = _args(script, "--packages", "ffn-qdq")
    built = script.packages(args, tmp_path, _setup(script), "bert")
    assert [label for label, _, _ in built] == ["INT8 (QOperator)", "ffn50 + INT8 (QDQ)"]
    args = _args(script, "--packages", "ffn-qdq", "--ffn-sparsity", "0")
    assert [label for label, _, _ in script.packages(args, tmp_path, _setup(script), "bert")] == [
        "INT8 (QOperator)"
    ]


def test_unknown_package_is_refused(script, monkeypatch, capsys) -> None:  # noqa: ANN001
    monkeypatch.setattr(sys, "argv", ["package_speedups.py", "--packages", "qdq,ffn-qd"])
    with pytest.raises(SystemExit) as exc:
        script.main()  # reads sys.argv
    assert exc.value.code == 2
    assert "unknown ffn-qd" in capsys.readouterr().err
