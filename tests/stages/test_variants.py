"""quantization.variants end to end: written, timed beside dense, the choice packaged."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import onnx
import pytest

import sparsify
from sparsify.runner import RunResult
from tests.conftest import TINY_RUN

# qoperator is the configured format (written once, as model.onnx); qdq and dynamic are two
# more graphs; benchmark.rounds=1 keeps five candidates x two batch sizes short
VARIANTS = ["quantization.variants=[qoperator,qdq,dynamic]", "benchmark.rounds=1"]


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture(scope="module")
def run(tiny_images: Path, tmp_path_factory: pytest.TempPathFactory) -> RunResult:
    run_dir = tmp_path_factory.mktemp("variants") / "run"
    result = sparsify.run(
        [f"data.path={tiny_images}", "optim_level=0.5", *TINY_RUN, *VARIANTS], run_dir=run_dir
    )
    assert result.status == "done", result.error
    return result


def test_variants_are_written_timed_and_the_choice_packaged(run: RunResult) -> None:
    produced = run.outputs["sparsify"]["variants"]
    assert produced["qoperator"]["path"] == "sparsify/model.onnx"
    for name, op in (("qdq", "QuantizeLinear"), ("dynamic", "DynamicQuantizeLinear")):
        path = run.run_dir / "sparsify" / "variants" / f"{name}.onnx"
        assert produced[name]["path"] == f"sparsify/variants/{name}.onnx"
        assert any(n.op_type == op for n in onnx.load(str(path)).graph.node), name

    bench = json.loads((run.run_dir / "benchmark" / "benchmark.json").read_text())
    variants, chosen = bench["variants"], bench["chosen"]
    assert set(variants) == {"baseline", "fp32", "qoperator", "qdq", "dynamic"}
    for name in ("qdq", "dynamic", "qoperator", "fp32"):
        measured = variants[name]["engines"]["onnxruntime"]
        assert measured["speedup"] > 0 and measured["top1"] is not None, name
        assert measured["status"] in ("chosen", "beaten", "slower", "accuracy"), name
    statuses = [v["engines"]["onnxruntime"]["status"] for v in variants.values()]
    assert statuses.count("chosen") == 1
    assert variants[chosen["variant"]]["engines"]["onnxruntime"]["status"] == "chosen"
    assert chosen["engine"] == "onnxruntime" and chosen["reason"]

    deploy = run.deployment_dir
    assert _sha(deploy / "model.onnx") == _sha(run.run_dir / chosen["path"])
    # the result rows of the table are the packaged file's measurements
    assert bench["engines"]["onnxruntime"]["sparsified"]["model_path"] == chosen["path"]
    config = json.loads((deploy / "config.json").read_text())
    assert config["measured"]["variant"] == chosen["variant"]
    assert config["measured"]["engines"] == ["onnxruntime"]
    assert config["measured"]["fastest_engine"] == "onnxruntime"
    assert config["quantized"] is (chosen["kind"] == "int8")


def test_the_guard_refuses_int8_and_says_why(run: RunResult, tiny_images: Path) -> None:
    """min_speedup=100: no INT8 variant can pass; FP32 pruned or dense ships, with why in the
    table's notes, benchmark.json, config.json and the model card."""
    overrides = [
        f"data.path={tiny_images}",
        "optim_level=0.5",
        *TINY_RUN,
        *VARIANTS,
        "benchmark.min_speedup=100",
        "stages=[benchmark,package]",
    ]
    again = sparsify.run(overrides, run_dir=run.run_dir)
    assert again.status == "done", again.error
    bench = json.loads((run.run_dir / "benchmark" / "benchmark.json").read_text())
    chosen = bench["chosen"]
    assert chosen["fallback"] and chosen["kind"] in ("fp32", "dense")
    assert "below benchmark.min_speedup=100" in chosen["reason"]
    assert "shipping the FP32 pruned model" in chosen["reason"] or (
        "shipping the dense model" in chosen["reason"]
    )
    assert all(
        bench["variants"][n]["engines"]["onnxruntime"]["status"] == "slower"
        for n in ("qoperator", "qdq", "dynamic")
        if bench["variants"][n]["engines"]["onnxruntime"]["status"] != "accuracy"
    )
    notes = again.outputs["benchmark"]["footnotes"]
    assert any(chosen["reason"] in note for note in notes)
    deploy = again.deployment_dir
    assert _sha(deploy / "model.onnx") == _sha(run.run_dir / chosen["path"])
    config = json.loads((deploy / "config.json").read_text())
    assert config["quantized"] is False and config["measured"]["fallback"] is True
    card = (deploy / "README.md").read_text()
    assert "**Why this model**" in card and chosen["reason"] in card


def test_an_unknown_variant_is_refused_before_the_run(tiny_images: Path, tmp_path: Path) -> None:
    result = sparsify.run(
        [f"data.path={tiny_images}", *TINY_RUN, "quantization.variants=[qdq_fast]"],
        run_dir=tmp_path / "run",
    )
    assert result.status != "done"
    assert "quantization.variants" in str(result.error) and "qdq_fast" in str(result.error)


def test_variant_names_resolve_against_the_config() -> None:
    from omegaconf import OmegaConf

    from sparsify.algorithms import quant_variants
    from sparsify.errors import SparsifyError
    from sparsify.models import get_family

    q = OmegaConf.create(
        {"format": "qoperator", "fp32_depthwise": True, "per_channel": False, "ops": ["Conv"]}
    )
    yolo, classifier = get_family("yolo"), get_family("image_classifier")
    assert "Concat" in quant_variants.resolve("qdq", q, yolo).ops
    assert "Concat" not in quant_variants.resolve("qdq_no_concat", q, yolo).ops
    # per-tensor weights: depthwise FP32 as configured, so qdq and qdq_fp32_depthwise are one
    # graph (written once) and qdq_int8_depthwise another
    same, other = (quant_variants.resolve(n, q, classifier) for n in ("qdq", "qdq_int8_depthwise"))
    assert same.key == quant_variants.resolve("qdq_fp32_depthwise", q, classifier).key
    assert same.key != other.key and not other.fp32_depthwise
    assert quant_variants.configured(q, classifier).name == "qoperator"
    with pytest.raises(SparsifyError, match="qdq_fast"):
        quant_variants.parse_variant("qdq_fast")
