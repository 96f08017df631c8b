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


@pytest.mark.parametrize("ffn", [0.0, 0.5])
def test_block_recipes_load(script, tmp_path: Path, ffn: float) -> None:  # noqa: ANN001
    path = script.block_recipe(tmp_path, "block4", ffn)
    recipe = load_recipe(str(path), run_variables("training_aware", 0.9))
    gmp = recipe.find("GMPruningModifier").kwargs
    assert gmp["mask_type"] == "block4" and gmp["final_sparsity"] == pytest.approx(0.9)
    structured = recipe.find("StructuredPruningModifier")
    if not ffn:
        assert structured is None
        return
    kw = structured.kwargs
    assert kw["structure"] == "ffn_neurons" and kw["final_sparsity"] == 0.5
    assert recipe.window(structured) == (0.0, pytest.approx(0.3 * recipe.epochs()))


def test_targets_per_package_kind(script) -> None:  # noqa: ANN001
    assert script.target_of("int8", "onnxruntime") == 2.5
    assert script.target_of("int8", "deepsparse") is None
    assert script.target_of("sparse", "deepsparse") == 5.0
    assert script.target_of("sparse", "onnxruntime") is None
    assert script.target_of("structured", "onnxruntime") == 2.5
    assert script.target_of("structured", "deepsparse") == 5.0
