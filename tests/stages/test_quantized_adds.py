"""Image classifiers quantize their residual Adds too (QOperator); other families do not."""

from __future__ import annotations

from collections import Counter

import onnx
import pytest

import sparsify


@pytest.mark.slow
@pytest.mark.parametrize(("fmt", "expected"), [("qoperator", True), ("qdq", False)])
def test_resnet_residual_adds_are_int8_in_qoperator(
    tiny_run: list[str], fmt: str, expected: bool
) -> None:
    result = sparsify.run(
        [
            *tiny_run,
            "model.arch=resnet18",
            "optim_level=0.5",
            f"quantization.format={fmt}",
            "quantization.weight_rounding=nearest",  # this test is about the Adds: save the time
        ]
    )
    assert result.status == "done", result.error
    ops = Counter(
        n.op_type for n in onnx.load(str(result.deployment_dir / "model.onnx")).graph.node
    )
    assert (ops["QLinearAdd"] == 8) is expected, ops  # ResNet-18: 8 residual blocks
    assert result.outputs["sparsify"]["quantization"]["op_types"][:2] == ["Conv", "MatMul"]
