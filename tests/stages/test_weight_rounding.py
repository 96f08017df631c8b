"""Post-training INT8 rounds the weights with GPTQ by default; a model it cannot handle falls
back to ONNX Runtime's nearest rounding instead of failing the run."""

from __future__ import annotations

from typing import Any

import onnx
import pytest
from onnx import numpy_helper

import sparsify
from sparsify.errors import SparsifyError
from sparsify.stages import sparsify_stage


def _int8_initializers(path: Any) -> int:
    """How many int8 weight initializers the QOperator graph holds."""
    model = onnx.load(str(path))
    return sum(numpy_helper.to_array(i).dtype.name == "int8" for i in model.graph.initializer)


def test_gptq_is_the_default_and_recorded(tiny_run: list[str]) -> None:
    result = sparsify.run([*tiny_run, "optim_level=0.5"])
    assert result.status == "done", result.error
    quantization = result.outputs["sparsify"]["quantization"]
    assert quantization["weight_rounding"] == "gptq"
    assert quantization["rounded_layers"] > 0 and quantization["folded_batchnorm"] >= 0
    assert _int8_initializers(result.deployment_dir / "model.onnx") > 0
    leftovers = list((result.run_dir / "sparsify").glob(".model_rounded*"))
    assert not leftovers  # the rounded export is only the quantizer's input


def test_a_model_gptq_cannot_round_falls_back_to_nearest(
    tiny_run: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    def refuse(*args: Any, **kwargs: Any) -> dict[str, Any]:
        raise SparsifyError("folding BatchNorm into the layers before it changed the output")

    monkeypatch.setattr(sparsify_stage, "round_weights_for_int8", refuse)
    result = sparsify.run([*tiny_run, "optim_level=0.5"])
    assert result.status == "done", result.error
    quantization = result.outputs["sparsify"]["quantization"]
    assert quantization["weight_rounding"] == "nearest"
    assert "changed the output" in quantization["gptq_failed"]
    assert "GPTQ rounding not possible" in (result.run_dir / "run.log").read_text()
