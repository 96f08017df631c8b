"""Image classifiers: architectures, checkpoints, heads, training, export."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader, TensorDataset

from sparsify.engines.ort import OnnxRuntimeEngine
from sparsify.errors import SparsifyError
from sparsify.models.classifier.model import (
    available_archs,
    build_model,
    checkpoint_problems,
    export_onnx,
    head_fits,
    head_keys,
    load_model,
    save_checkpoint,
)
from sparsify.models.classifier.training import evaluate_classifier, train_classifier


def test_torchvision_and_builtin_archs_are_available() -> None:
    archs = available_archs()
    for name in (
        "resnet18",
        "resnet50",
        "mobilenet_v2",
        "mobilenet_v3_small",
        "efficientnet_b0",
        "tinynet",
    ):
        assert name in archs
    with pytest.raises(SparsifyError, match="resnet18"):
        build_model("resnet19", 3)


@pytest.mark.parametrize(
    ("arch", "expected"),
    [
        ("resnet18", ["fc.weight", "fc.bias"]),
        ("mobilenet_v2", ["classifier.1.weight", "classifier.1.bias"]),
        ("tinynet", ["classifier.weight", "classifier.bias"]),
    ],
)
def test_head_keys(arch: str, expected: list[str]) -> None:
    assert head_keys(arch, 5) == expected


def test_sparseml_style_checkpoint_and_head_resize(tmp_path: Path) -> None:
    model = build_model("tinynet", 10)
    path = tmp_path / "m.pth"
    torch.save(
        {
            "state_dict": {f"module.{k}": v for k, v in model.state_dict().items()},
            "arch_key": "tinynet",
            "epoch": 3,
        },
        path,
    )
    assert checkpoint_problems(path, "tinynet", 4) == []  # only the head differs: fixable
    assert not head_fits(path, "tinynet", list("abcd"))
    with pytest.raises(SparsifyError):
        load_model(path, "tinynet", 4)  # strict
    resized = load_model(path, "tinynet", 4, new_head=True)
    assert resized.classifier.weight.shape == (4, 64)
    torch.testing.assert_close(resized.features[0][0].weight, model.features[0][0].weight)


def test_saved_classes_must_match(tmp_path: Path) -> None:
    path = tmp_path / "m.pth"
    save_checkpoint(build_model("tinynet", 2), path, "tinynet", ["cat", "dog"])
    assert head_fits(path, "tinynet", ["cat", "dog"])
    assert not head_fits(path, "tinynet", ["dog", "cat"])  # same count, other order


def test_wrong_architecture_is_a_problem(tmp_path: Path) -> None:
    path = tmp_path / "m.pth"
    torch.save(build_model("tinynet", 3).state_dict(), path)
    problems = checkpoint_problems(path, "resnet18", 3)
    assert problems and "does not fit architecture 'resnet18'" in problems[0].message
    torch.save({"state_dict": build_model("tinynet", 3).state_dict(), "arch_key": "tinynet"}, path)
    assert "model.arch=tinynet" in checkpoint_problems(path, "resnet18", 3)[0].fix


def test_training_learns_and_keeps_the_best_epoch() -> None:
    torch.manual_seed(0)
    x = torch.randn(64, 3, 8, 8)
    y = (x[:, 0].mean(dim=(1, 2)) > 0).long()
    x[:, 1] += y[:, None, None] * 2.0  # an easy signal
    loader = DataLoader(TensorDataset(x, y), batch_size=16, shuffle=True)
    model = build_model("tinynet", 2)
    epochs: list[int] = []
    stats = train_classifier(
        model,
        loader,
        epochs=6,
        lr=1e-2,
        val_loader=loader,
        on_epoch_end=lambda e, m: epochs.append(e),
    )
    assert epochs == [1, 2, 3, 4, 5, 6] and stats["steps"] == 24
    assert evaluate_classifier(model, loader)["top1"] >= 90.0


def test_onnx_export_matches_torch(tmp_path: Path) -> None:
    model = build_model("resnet18", 7).eval()
    path = export_onnx(model, tmp_path / "r.onnx", image_size=32, opset=17)
    engine = OnnxRuntimeEngine(path)
    x = np.random.default_rng(0).standard_normal((3, 3, 32, 32)).astype(np.float32)
    with torch.no_grad():
        expected = model(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(engine.run({"input": x})[0], expected, atol=1e-4, rtol=1e-3)
