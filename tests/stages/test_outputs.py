"""Typed stage outputs: the manifest keeps the keys it always had, in both directions."""

from __future__ import annotations

import pytest

from sparsify.outputs import (
    BenchmarkOutput,
    FetchOutput,
    PackageOutput,
    SparsifyOutput,
    StageOutput,
    ValidateOutput,
)

# outputs as manifest.json held them before the stages returned dataclasses
OLD_MANIFEST = {
    ValidateOutput: {
        "optim_level": 0.5,
        "derived": {"sparsity": 0.51, "quantize": True, "tier": None, "variant": None},
        "data_path": "/data/flowers",
        "data": {"classes": ["a", "b"], "splits": {"train": 8}},
        "recipe": "one_shot_sparsegpt",
        "artifacts": [],  # the pipeline always added the key
    },
    FetchOutput: {
        "baseline": {"epochs": 1, "top1": 50.0},
        "source": "a new tinynet, prepared here as the dense baseline (cached at /c)",
        "foundation": "fetch/foundation.pth",
        "foundation_entry": {"name": "z", "sha256": "ab"},
        "foundation_sparsity": 0.8,
        "sha256": "cd",
        "foundation_sha256": "ab",
        "config_overrides": {"model.arch": "tinynet"},
        "artifacts": ["fetch/model.pth", "fetch/foundation.pth"],
    },
    SparsifyOutput: {
        "sparsity": 0.51,
        "per_layer_sparsity": {"conv1.weight": 0.5},
        "qat": True,
        "qat_input_ranges": {"conv1": [0.0, 1.0]},  # a family's own report: kept as is
        "epochs_trained": 2,
        "quantization": {"format": "qoperator", "weight_rounding": "gptq"},
        "artifacts": [
            "sparsify/baseline.onnx",
            "sparsify/model.pth",
            "sparsify/model_fp32.onnx",
            "sparsify/model.onnx",
            "sparsify/recipe.yaml",
        ],
        "baseline_onnx": "sparsify/baseline.onnx",
        "model_onnx": "sparsify/model.onnx",
        "recipe_applied": "sparsify/recipe.yaml",
    },
    BenchmarkOutput: {
        "artifacts": ["benchmark/benchmark.json", "benchmark/metrics.json"],
        "benchmark_json": "benchmark/benchmark.json",
        "metrics_json": "benchmark/metrics.json",
        "table": [{"model": "baseline", "latency_ms_b1": 1.0}],
    },
    PackageOutput: {
        "artifacts": ["deployment/model.onnx"],
        "deployment_dir": "/runs/r/deployment",
        "task": "image-classification",
    },
}


@pytest.mark.parametrize("kind", list(OLD_MANIFEST), ids=lambda k: k.stage)
def test_an_old_manifest_reads_and_writes_back_the_same_keys(kind: type[StageOutput]) -> None:
    stored = OLD_MANIFEST[kind]
    assert kind.from_dict(stored).to_dict() == stored


def test_typed_fields_and_what_later_stages_derive() -> None:
    produced = SparsifyOutput.from_dict(OLD_MANIFEST[SparsifyOutput])
    assert produced.checkpoint == "sparsify/model.pth"
    assert produced.quantization == {"format": "qoperator", "weight_rounding": "gptq"}
    assert produced.extra == {"qat_input_ranges": {"conv1": [0.0, 1.0]}, "epochs_trained": 2}
    fetched = FetchOutput.from_dict(OLD_MANIFEST[FetchOutput])
    assert fetched.model == "fetch/model.pth" and fetched.foundation == "fetch/foundation.pth"
    assert fetched.config_overrides == {"model.arch": "tinynet"}
    validated = ValidateOutput.from_dict(OLD_MANIFEST[ValidateOutput])
    assert str(validated.data_dir) == "/data/flowers" and validated.summary["classes"] == ["a", "b"]


def test_keys_a_stage_did_not_write_stay_out_of_the_manifest() -> None:
    # an unquantized, unpruned result and a fetch of the user's own model
    produced = SparsifyOutput(artifacts=["sparsify/model.onnx"], model_onnx="sparsify/model.onnx")
    assert "quantization" not in produced.to_dict() and "structured" not in produced.to_dict()
    fetched = FetchOutput(source="/m.pth", sha256="ef", artifacts=["fetch/model.pth"]).to_dict()
    assert fetched == {"source": "/m.pth", "sha256": "ef", "artifacts": ["fetch/model.pth"]}


def test_a_partial_output_reads_with_defaults() -> None:
    """Test fixtures and interrupted old runs hand over only part of an output."""
    validated = ValidateOutput.from_dict({"data": {"labels": ["x"]}})
    assert validated.summary == {"labels": ["x"]} and validated.data_path is None
    with pytest.raises(ValueError, match="no data path"):
        validated.data_dir  # noqa: B018
    with pytest.raises(ValueError, match="no model"):
        FetchOutput().model  # noqa: B018
