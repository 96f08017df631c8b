"""Channel pruning through grouped convolutions (ResNeXt / RegNet blocks, groups 2 and 4): the
same offsets go from every group's block, so each group keeps an equal width; removal equals
masking; the thin model exports to ONNX and reloads from its recorded widths."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort
import pytest
import torch
from torch import nn

from sparsify.algorithms.channel_widths import layer_widths, set_layer_widths
from sparsify.algorithms.channels import ChannelGraph, count_macs
from sparsify.errors import SparsifyError
from tests.algorithms.test_channels import _randomize_bn

pytest.importorskip("torch_pruning")


class ResNeXtBlock(nn.Module):
    """1x1 -> grouped 3x3 -> 1x1 with a residual (identity or projection)."""

    def __init__(self, cin: int, cout: int, width: int, groups: int, stride: int = 1) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(cin, width, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.conv2 = nn.Conv2d(width, width, 3, stride, 1, groups=groups, bias=False)
        self.bn2 = nn.BatchNorm2d(width)
        self.conv3 = nn.Conv2d(width, cout, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(cout)
        self.down = (
            nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))
            if stride != 1 or cin != cout
            else nn.Identity()
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = torch.relu(self.bn1(self.conv1(x)))
        y = torch.relu(self.bn2(self.conv2(y)))
        return torch.relu(self.bn3(self.conv3(y)) + self.down(x))


class TinyResNeXt(nn.Module):
    def __init__(self, classes: int = 4) -> None:
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, 16, 3, 1, 1, bias=False), nn.BatchNorm2d(16))
        self.layer1 = ResNeXtBlock(16, 16, 32, groups=4)
        self.layer2 = ResNeXtBlock(16, 32, 32, groups=2, stride=2)
        self.fc = nn.Linear(32, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.layer2(self.layer1(torch.relu(self.stem(x))))
        return self.fc(torch.flatten(nn.functional.adaptive_avg_pool2d(x, 1), 1))


def tiny_regnet() -> nn.Module:
    """torchvision's RegNetY (grouped 3x3 convs of group width 8, squeeze-excitation) at
    widths 16..48, random init."""
    from torchvision.models.regnet import BlockParams, RegNet

    params = BlockParams.from_init_params(
        depth=3, w_0=16, w_a=8.0, w_m=2.0, group_width=8, se_ratio=0.25
    )
    return RegNet(params, num_classes=4, stem_width=16)


def _grouped(model: nn.Module) -> dict[str, nn.Conv2d]:
    return {
        n: m
        for n, m in model.named_modules()
        if isinstance(m, nn.Conv2d) and 1 < m.groups < m.in_channels
    }


MODELS = [
    pytest.param(TinyResNeXt, id="resnext"),
    pytest.param(tiny_regnet, id="regnet_y_se"),
]


@pytest.mark.parametrize("build", MODELS)
@pytest.mark.parametrize("global_ranking", [False, True], ids=["per_group", "global"])
def test_grouped_convs_lose_whole_channels_per_group_and_removal_equals_masking(
    build: Any, global_ranking: bool
) -> None:
    torch.manual_seed(0)
    model = _randomize_bn(build())
    x = torch.randn(2, 3, 32, 32)
    before = {n: (m.in_channels, m.out_channels, m.groups) for n, m in _grouped(model).items()}
    assert before
    macs, _ = count_macs(model, x)
    graph = ChannelGraph(model, x)
    assert any(g.blocks > 1 for g in graph.groups)
    chosen = graph.choose(0.5, global_ranking=global_ranking)
    for g in graph.groups:  # one pattern of offsets, repeated in every block
        drop = chosen.get(g.root, [])
        block = g.width // g.blocks
        offsets = {i % block for i in drop}
        assert len(drop) == len(offsets) * g.blocks, g.root
    graph.mask(chosen)
    with torch.no_grad():
        masked = model(x)
    graph.remove(chosen)
    with torch.no_grad():
        thin = model(x)
    torch.testing.assert_close(thin, masked, rtol=1e-4, atol=1e-4 * float(masked.abs().max()))
    assert count_macs(model, x)[0] < 0.75 * macs
    narrowed = 0
    for name, conv in _grouped(model).items():
        cin, cout, groups = before[name]
        assert conv.groups == groups  # the groups stay, each narrower alike
        assert conv.in_channels % groups == 0 and conv.out_channels % groups == 0
        assert conv.weight.shape[:2] == (conv.out_channels, conv.in_channels // groups)
        narrowed += (conv.in_channels, conv.out_channels) != (cin, cout)
    assert narrowed == len(before)


def test_thin_grouped_model_exports_and_reloads_from_its_widths(tmp_path: Path) -> None:
    from sparsify.models.classifier.model import export_onnx

    torch.manual_seed(0)
    model = _randomize_bn(tiny_regnet())
    dense = copy.deepcopy(model)
    graph = ChannelGraph(model, torch.randn(1, 3, 32, 32))
    graph.remove(graph.choose(0.5))
    path = export_onnx(model, tmp_path / "thin.onnx", image_size=32, opset=17)
    x = np.random.default_rng(0).standard_normal((2, 3, 32, 32)).astype(np.float32)
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    got = session.run(None, {"input": x})[0]
    with torch.no_grad():
        want = model(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)
    # the widths a checkpoint records rebuild the grouped layers' shapes
    widths = layer_widths(model, dense)
    assert any(counts[2] > 1 for counts in widths.values() if len(counts) == 3)
    rebuilt = tiny_regnet()
    set_layer_widths(rebuilt, widths)
    rebuilt.load_state_dict(model.state_dict())
    with torch.no_grad():
        np.testing.assert_allclose(rebuilt.eval()(torch.from_numpy(x)).numpy(), want, rtol=1e-5)


def test_one_shot_taylor_with_reconstruction_on_grouped_convs() -> None:
    from sparsify.algorithms.channel_reconstruction import reconstruct_consumers
    from sparsify.algorithms.channels import taylor_gradients

    torch.manual_seed(0)
    model = _randomize_bn(TinyResNeXt())
    batches = [(torch.randn(4, 3, 16, 16),) for _ in range(2)]
    graph = ChannelGraph(model, batches[0])
    taylor_gradients(model, batches)
    chosen = graph.choose(0.5, "taylor")
    consumers = graph.consumers(chosen)
    assert consumers and all(
        getattr(m, "groups", 1) == 1 for m in consumers
    )  # grouped convs: not re-fit
    assert reconstruct_consumers(model, consumers, batches)
    graph.remove(chosen)
    assert model.layer1.conv2.in_channels == 16 and model.layer1.conv2.groups == 4
    assert model(batches[0][0]).shape == (4, 4)


def test_training_aware_channels_thin_grouped_convs_and_training_goes_on(tmp_path: Path) -> None:
    from sparsify.algorithms.session import RecipeSession
    from tests.algorithms.test_channels import _recipe

    torch.manual_seed(0)
    model = TinyResNeXt()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    session = RecipeSession(_recipe(tmp_path), model, steps_per_epoch=2)
    x, y = torch.randn(4, 3, 16, 16), torch.tensor([0, 1, 2, 3])
    for step in range(session.total_steps):
        session.before_step(step)
        loss = nn.functional.cross_entropy(model(x), y)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        session.after_step(step, optimizer)
    session.finish()
    conv = model.layer1.conv2
    assert conv.in_channels == conv.out_channels == 16 and conv.groups == 4
    assert optimizer.state[conv.weight]["exp_avg"].shape == conv.weight.shape == (16, 4, 3, 3)


class ConcatIntoGrouped(nn.Module):
    """A grouped conv reading a Concat of two convs: the producers' channels stay (their
    indices would not line up with the grouped conv's blocks); the others are pruned."""

    def __init__(self) -> None:
        super().__init__()
        self.a = nn.Conv2d(3, 8, 3, padding=1)
        self.b = nn.Conv2d(3, 8, 3, padding=1)
        self.grouped = nn.Conv2d(16, 16, 3, padding=1, groups=4)
        self.c = nn.Conv2d(16, 8, 1)
        self.fc = nn.Linear(8, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = torch.relu(self.grouped(torch.relu(torch.cat([self.a(x), self.b(x)], 1))))
        y = torch.relu(self.c(y))
        return self.fc(y.mean((2, 3)))


def test_grouped_conv_behind_a_concat_keeps_its_inputs() -> None:
    torch.manual_seed(0)
    model = ConcatIntoGrouped().eval()
    x = torch.randn(2, 3, 16, 16)
    graph = ChannelGraph(model, x)
    roots = {g.root for g in graph.groups}
    assert not roots & {"a", "b"} and "grouped" in roots
    chosen = graph.choose(0.5)
    graph.mask(chosen)
    with torch.no_grad():
        masked = model(x)
    graph.remove(chosen)
    with torch.no_grad():
        torch.testing.assert_close(model(x), masked, rtol=1e-4, atol=1e-5)
    assert model.grouped.in_channels == 16 and model.grouped.out_channels == 8


def test_grouped_transposed_conv_is_refused_naming_the_layer() -> None:
    model = nn.Sequential(
        nn.Conv2d(3, 8, 3), nn.ConvTranspose2d(8, 8, 2, groups=2), nn.Conv2d(8, 4, 1)
    )
    with pytest.raises(
        SparsifyError, match=r"1 \(ConvTranspose2d with groups=2: a grouped transposed"
    ):
        ChannelGraph(model, torch.randn(1, 3, 8, 8))
