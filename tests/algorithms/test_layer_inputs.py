"""Sequential calibration on cached block inputs gives what full forward passes per layer give."""

from __future__ import annotations

import copy
from typing import Any
from unittest import mock

import pytest
import torch
from torch import nn

from sparsify.algorithms import layer_inputs
from sparsify.algorithms.batchnorm import recalibrate_batchnorm
from sparsify.algorithms.gptq import gptq_round_model
from sparsify.algorithms.layer_inputs import LayerInputs, layer_hessians
from sparsify.algorithms.pruning import select_layers
from sparsify.algorithms.sparsegpt import sparsegpt_prune_model


class Block(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int = 1) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.down = None
        if stride != 1 or cin != cout:
            self.down = nn.Sequential(nn.Conv2d(cin, cout, 1, stride), nn.BatchNorm2d(cout))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.down is None else self.down(x)
        out = self.bn2(self.conv2(self.relu(self.bn1(self.conv1(x)))))
        out += identity
        return self.relu(out)


class TinyResNet(nn.Module):
    """torchvision's ResNet layout: a stem, stages of blocks, a flatten before the head."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 8, 3, 1, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(8)
        self.relu = nn.ReLU(inplace=True)
        self.layer1 = nn.Sequential(Block(8, 8), Block(8, 8))
        self.layer2 = nn.Sequential(Block(8, 16, 2))
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(16, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.layer2(self.layer1(self.relu(self.bn1(self.conv1(x)))))
        return self.fc(torch.flatten(self.pool(x), 1))


class Attention(nn.Module):
    def __init__(self, dim: int) -> None:
        super().__init__()
        self.q, self.k, self.v = nn.Linear(dim, dim), nn.Linear(dim, dim), nn.Linear(dim, dim)
        self.o = nn.Linear(dim, dim)
        self.up, self.down = nn.Linear(dim, 2 * dim), nn.Linear(2 * dim, dim)

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> tuple[torch.Tensor]:
        scores = self.q(x) @ self.k(x).transpose(1, 2) + mask[:, None, :]
        x = x + self.o(scores.softmax(-1) @ self.v(x))
        return (x + self.down(torch.relu(self.up(x))),)


class TinyEncoder(nn.Module):
    """Transformer layers in a ModuleList, fed an attention mask by keyword."""

    def __init__(self, dim: int = 8) -> None:
        super().__init__()
        self.embed = nn.Embedding(20, dim)
        self.layers = nn.ModuleList(Attention(dim) for _ in range(2))
        self.head = nn.Linear(dim, 3)

    def forward(self, ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        x = self.embed(ids)
        mask = (1.0 - attention_mask.float()) * -1e4
        for layer in self.layers:
            x = layer(x, mask=mask)[0]
        return self.head(x[:, 0])


class InPlaceBetween(TinyResNet):
    """Changes a block's output in place between blocks: replaying blocks cannot know."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.layer1(self.relu(self.bn1(self.conv1(x))))
        x.mul_(0.5)
        return self.fc(torch.flatten(self.pool(self.layer2(x)), 1))


def _model(build: type[nn.Module]) -> nn.Module:
    torch.manual_seed(0)
    model = build()
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.uniform_(-0.1, 0.1)
            m.running_var.uniform_(0.5, 2.0)
    return model.eval()


def _batches(build: type[nn.Module]) -> list[Any]:
    torch.manual_seed(1)
    if build is TinyEncoder:
        masks = [torch.ones(4, 6, dtype=torch.long) for _ in range(2)]
        masks[1][:, 4:] = 0
        return [(torch.randint(0, 20, (4, 6)), mask) for mask in masks]
    return [(torch.randn(4, 3, 8, 8),) for _ in range(2)]


def _full_passes() -> Any:
    return mock.patch.object(layer_inputs, "plan_block_run", lambda *args: (None, {}))


@pytest.mark.parametrize("build", [TinyResNet, TinyEncoder])
def test_cached_block_inputs_prune_as_full_passes_do(build: type[nn.Module]) -> None:
    dense, batches = _model(build), _batches(build)
    results = []
    for cached in (True, False):
        model = copy.deepcopy(dense)
        layers = select_layers(model)
        bn = [(b[0],) for b in batches]
        after = None
        if build is TinyResNet:
            after = lambda m=model, bn=bn: recalibrate_batchnorm(m, bn)  # noqa: E731
        with mock.patch.object(layer_inputs, "log") if cached else _full_passes():
            result = sparsegpt_prune_model(model, layers, batches, 0.5, after_layer=after)
            gptq_round_model(model, select_layers(model), batches)
        results.append((model.state_dict(), result))
    (cached_state, cached_result), (full_state, full_result) = results
    for name, mask in full_result.masks.items():
        assert torch.equal(cached_result.masks[name], mask), name
    for key, value in full_state.items():
        torch.testing.assert_close(cached_state[key], value, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("build", [TinyResNet, TinyEncoder])
def test_a_run_of_blocks_is_found_and_runs_the_stem_once(build: type[nn.Module]) -> None:
    model, batches = _model(build), _batches(build)
    layers = select_layers(model)
    inputs = LayerInputs(model, layers, batches)
    assert inputs.run is not None
    if build is TinyResNet:  # the stem conv itself starts the run; fc runs after it
        assert inputs.run.names[0] == "conv1" and "fc" not in inputs.run.layer_block
    else:
        assert inputs.run.names == ["layers.0", "layers.1"]
        assert inputs.shared == {"layers.0.k": "layers.0.q", "layers.0.v": "layers.0.q",
                                 "layers.1.k": "layers.1.q", "layers.1.v": "layers.1.q"}  # fmt: skip
    stem = model.conv1 if build is TinyResNet else model.embed
    counts = []
    for patch in (mock.patch.object(layer_inputs, "log"), _full_passes()):
        calls: list[int] = []
        original = stem.forward
        stem.forward = lambda *args, f=original, calls=calls: calls.append(1) or f(*args)
        with patch:
            for name, _, acc in layer_hessians(model, layers, batches):
                assert acc is not None and acc.samples > 0, name
        del stem.forward
        counts.append(len(calls))
    # the stem runs to plan and capture the blocks' inputs, not once per layer
    assert 2 * counts[0] <= counts[1], counts


def test_an_inplace_change_between_blocks_falls_back_to_full_passes(
    caplog: pytest.LogCaptureFixture,
) -> None:
    dense, batches = _model(InPlaceBetween), _batches(InPlaceBetween)
    layers = select_layers(dense)
    inputs = LayerInputs(dense, layers, batches)
    # a run that skips the change is refused (replayed outputs differ), or ends before it
    assert inputs.run is None or "layer2.0" not in inputs.run.names[1:]
    results = []
    for patch in (mock.patch.object(layer_inputs, "log"), _full_passes()):
        model = copy.deepcopy(dense)
        with patch:
            results.append(sparsegpt_prune_model(model, select_layers(model), batches, 0.5))
    for name, mask in results[1].masks.items():
        assert torch.equal(results[0].masks[name], mask), name


def test_layers_reading_one_input_share_its_hessian() -> None:
    model, batches = _model(TinyEncoder), _batches(TinyEncoder)
    layers = select_layers(model)
    shared = {name: acc for name, _, acc in layer_hessians(model, layers, batches)}
    assert shared["layers.0.k"] is shared["layers.0.q"] is shared["layers.0.v"]
    separate = {name: acc for name, _, acc in layer_hessians(model, layers, batches, False)}
    for name in ("layers.0.q", "layers.0.k", "layers.0.v", "layers.1.v"):
        assert separate[name] is not separate["layers.0.q"] or name == "layers.0.q"
        torch.testing.assert_close(shared[name].hessians, separate[name].hessians)
        assert shared[name].samples == separate[name].samples
