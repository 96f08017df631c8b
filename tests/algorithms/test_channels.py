"""Channel pruning (sparsify.algorithms.channels): tiny models of every supported block kind
lose channels physically, and removal is exact."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort
import pytest
import torch
from torch import nn
from torchvision.ops import SqueezeExcitation

from sparsify.algorithms.channel_reconstruction import reconstruct_consumers
from sparsify.algorithms.channels import ChannelGraph, _tensors, count_macs, thin_like
from sparsify.algorithms.session import RecipeSession
from sparsify.errors import SparsifyError
from sparsify.recipes.recipe import load_recipe
from tests.fixtures.yolo import HAS_ULTRALYTICS

pytest.importorskip("torch_pruning")


def _bn(c: int) -> nn.BatchNorm2d:
    return nn.BatchNorm2d(c)


class ResBlock(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = _bn(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = _bn(cout)
        self.down = (
            nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), _bn(cout))
            if stride != 1 or cin != cout
            else nn.Identity()
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = torch.relu(self.bn1(self.conv1(x)))
        return torch.relu(self.bn2(self.conv2(y)) + self.down(x))


class TinyResNet(nn.Module):
    """Stem, two residual stages (identity and projection shortcuts), pooled linear head."""

    def __init__(self, classes: int = 4) -> None:
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, 16, 3, 1, 1, bias=False), _bn(16), nn.ReLU())
        self.layer1 = ResBlock(16, 16, 1)
        self.layer2 = ResBlock(16, 32, 2)
        self.fc = nn.Linear(32, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.layer2(self.layer1(self.stem(x)))
        return self.fc(torch.flatten(nn.functional.adaptive_avg_pool2d(x, 1), 1))


class InvertedResidual(nn.Module):
    """MobileNetV2 / EfficientNet block: expand, depthwise, squeeze-excitation, project."""

    def __init__(self, c: int, expand: int = 4) -> None:
        super().__init__()
        hidden = c * expand
        self.expand = nn.Sequential(nn.Conv2d(c, hidden, 1, bias=False), _bn(hidden), nn.ReLU6())
        self.depthwise = nn.Sequential(
            nn.Conv2d(hidden, hidden, 3, 1, 1, groups=hidden, bias=False), _bn(hidden), nn.ReLU6()
        )
        self.se = SqueezeExcitation(hidden, hidden // 4)
        self.project = nn.Sequential(nn.Conv2d(hidden, c, 1, bias=False), _bn(c))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.project(self.se(self.depthwise(self.expand(x))))


class TinyMobileNet(nn.Module):
    def __init__(self, classes: int = 4) -> None:
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, 16, 3, 2, 1, bias=False), _bn(16), nn.Hardswish())
        self.blocks = nn.Sequential(InvertedResidual(16), InvertedResidual(16))
        self.head = nn.Sequential(nn.Flatten(), nn.Linear(16, classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.blocks(self.stem(x))
        return self.head(nn.functional.adaptive_avg_pool2d(x, 1))


def tiny_yolo(task: str = "detect") -> nn.Module:
    """yolov8n(-seg) at width 0.125 (channels 8..32), 2 classes."""
    from ultralytics.nn.tasks import DetectionModel, SegmentationModel, yaml_model_load

    name, cls = ("yolov8n.yaml", DetectionModel)
    if task == "segment":
        name, cls = ("yolov8n-seg.yaml", SegmentationModel)
    cfg = yaml_model_load(name)
    cfg["scales"], cfg["scale"] = {"n": [0.33, 0.125, 1024]}, "n"
    return cls(cfg, nc=2, verbose=False)


def _randomize_bn(model: nn.Module) -> nn.Module:
    """BatchNorm with non-trivial statistics, so a wrong mapping shows in the outputs."""
    gen = torch.Generator().manual_seed(0)
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            n = m.num_features
            m.running_mean.copy_(torch.rand(n, generator=gen) * 0.2 - 0.1)
            m.running_var.copy_(torch.rand(n, generator=gen) + 0.5)
            m.weight.data.copy_(torch.rand(n, generator=gen) + 0.5)
            m.bias.data.copy_(torch.rand(n, generator=gen) * 0.2 - 0.1)
    return model.eval()


def _models() -> list[Any]:
    params = [
        pytest.param(lambda: TinyResNet(), [], id="resnet"),
        pytest.param(lambda: TinyMobileNet(), [], id="mobilenet_se"),
    ]
    if HAS_ULTRALYTICS:
        from sparsify.models.yolo.family import PRUNE_IGNORE

        params += [
            pytest.param(lambda: tiny_yolo("detect"), PRUNE_IGNORE, id="yolo_detect"),
            pytest.param(lambda: tiny_yolo("segment"), PRUNE_IGNORE, id="yolo_segment"),
        ]
    return params


def _main_outputs(output: Any) -> list[torch.Tensor]:
    """The outputs a deployment reads (YOLO: predictions and mask prototypes, not the
    intermediate feature maps it also returns)."""
    if isinstance(output, tuple) and isinstance(output[-1], dict):  # Ultralytics eval output
        return _tensors(output[0])  # predictions (Segment: and mask prototypes)
    return _tensors(output)


@pytest.mark.parametrize(("build", "ignore"), _models())
def test_every_block_loses_channels_and_removal_equals_masking(build: Any, ignore: list) -> None:
    torch.manual_seed(0)
    model = _randomize_bn(build())
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        dense = _main_outputs(model(x))
    widths = {n: m.weight.shape for n, m in model.named_modules() if isinstance(m, nn.Conv2d)}
    macs, params = count_macs(model, x)
    graph = ChannelGraph(model, x, ignore)
    chosen = graph.choose(0.5)
    assert chosen
    graph.mask(chosen)
    with torch.no_grad():
        masked = _main_outputs(model(x))
    graph.remove(chosen)
    with torch.no_grad():
        thin = _main_outputs(model(x))
    for a, b, c in zip(dense, masked, thin, strict=True):
        assert a.shape == b.shape == c.shape  # outputs keep their shapes
        torch.testing.assert_close(c, b, rtol=1e-4, atol=1e-4 * float(b.abs().max()))
    thin_macs, thin_params = count_macs(model, x)
    assert thin_macs < 0.6 * macs and thin_params < 0.6 * params
    narrowed = {n for n, m in model.named_modules() if isinstance(m, nn.Conv2d)
                and m.weight.shape != widths[n]}  # fmt: skip
    convs = dict(model.named_modules())
    depthwise = [n for n in narrowed if convs[n].groups > 1]
    if "mobilenet" in str(type(model)).lower():
        assert depthwise and all(convs[n].groups == convs[n].in_channels for n in depthwise)
        assert any(n.startswith("blocks.0.se.") for n in narrowed)  # SE squeeze layers
        assert any(n.startswith("blocks.0.expand") for n in narrowed)
    if "resnet" in str(type(model)).lower():
        # the residual stream of layer2 (conv2 + projection shortcut) narrowed together
        assert model.layer2.conv2.out_channels == model.layer2.down[0].out_channels < 32
        assert model.fc.in_features == model.layer2.conv2.out_channels
    if ignore:  # YOLO: stem, DFL and head output convs untouched; C2f / SPPF thinned
        assert "model.0.conv" not in narrowed and not any("dfl" in n for n in narrowed)
        assert any(n.startswith("model.2.") for n in narrowed)  # C2f
        assert any(n.startswith("model.9.") for n in narrowed)  # SPPF


def test_reconstruction_recovers_outputs() -> None:
    torch.manual_seed(0)
    base = _randomize_bn(TinyResNet())
    # correlated channels (a low-rank stem) give least squares something to recover
    with torch.no_grad():
        w = base.stem[0].weight
        w.copy_((w.flatten(1)[:4].T @ torch.randn(4, 16)).T.reshape(w.shape))
    batches = [(torch.randn(8, 3, 32, 32),) for _ in range(4)]
    x = torch.randn(4, 3, 32, 32)
    with torch.no_grad():
        dense = base(x)
    errors = {}
    for refit in (False, True):
        model = copy.deepcopy(base)
        graph = ChannelGraph(model, batches[0])
        chosen = graph.choose(0.5)
        if refit:
            assert reconstruct_consumers(model, graph.consumers(chosen), batches)
        graph.remove(chosen)
        with torch.no_grad():
            errors[refit] = float((model(x) - dense).square().mean())
    assert errors[True] < 0.5 * errors[False]


def test_thin_model_exports_and_onnxruntime_matches_torch(tmp_path: Path) -> None:
    from sparsify.models.classifier.model import export_onnx

    model = _randomize_bn(TinyMobileNet())
    graph = ChannelGraph(model, torch.randn(1, 3, 32, 32))
    graph.remove(graph.choose(0.5))
    path = export_onnx(model, tmp_path / "thin.onnx", image_size=32, opset=17)
    x = np.random.default_rng(0).standard_normal((2, 3, 32, 32)).astype(np.float32)
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    got = session.run(None, {"input": x})[0]
    with torch.no_grad():
        want = model(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5)


def test_thin_classifier_checkpoint_reloads_weights_only(tmp_path: Path) -> None:
    from sparsify.models.classifier.model import build_model, load_model, save_checkpoint

    model = _randomize_bn(build_model("resnet18", 3))
    graph = ChannelGraph(model, torch.randn(1, 3, 32, 32))
    graph.remove(graph.choose(0.5))
    path = tmp_path / "thin.pth"
    save_checkpoint(model, path, "resnet18", ["a", "b", "c"])
    saved = torch.load(path, weights_only=True)  # plain data only
    assert saved["channels"]["layer1.0.conv1"][1] < 64
    loaded = load_model(path, "resnet18", 3).eval()
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(loaded(x), model(x))


@pytest.mark.skipif(not HAS_ULTRALYTICS, reason="needs ultralytics")
def test_thin_yolo_checkpoint_reloads_and_trains_a_step(tmp_path: Path) -> None:
    from ultralytics.cfg import get_cfg

    from sparsify.models.yolo.family import PRUNE_IGNORE
    from sparsify.models.yolo.model import export_onnx, read_checkpoint, save_checkpoint

    model = _randomize_bn(tiny_yolo())
    x = torch.randn(1, 3, 64, 64)
    graph = ChannelGraph(model, x, PRUNE_IGNORE)
    graph.remove(graph.choose(0.5))
    path = tmp_path / "thin.pt"
    save_checkpoint(model, path)
    loaded, _ = read_checkpoint(path)  # weights-only with the Ultralytics allow-list
    with torch.no_grad():
        torch.testing.assert_close(loaded(x)[0], model(x)[0])
    onnx_path = export_onnx(loaded, tmp_path / "thin.onnx", 64, 17)
    session = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    got = session.run(None, {"images": x.numpy()})[0]
    np.testing.assert_allclose(got, loaded(x)[0].detach().numpy(), rtol=1e-3, atol=1e-3)
    # one forward + backward through Ultralytics' detection loss on the thin model
    loaded.args = get_cfg()
    loaded.train()
    batch = {
        "img": torch.rand(2, 3, 64, 64),
        "batch_idx": torch.tensor([0.0, 1.0]),
        "cls": torch.tensor([[0.0], [1.0]]),
        "bboxes": torch.tensor([[0.5, 0.5, 0.3, 0.3], [0.4, 0.4, 0.2, 0.5]]),
    }
    loss, _ = loaded.loss(batch)
    loss.sum().backward()
    assert all(p.grad is not None for p in loaded.parameters() if p.requires_grad)


RECIPE = """
version: 1.1.0
stage:
  training_modifiers:
    EpochRangeModifier: {{start_epoch: 0.0, end_epoch: 4.0}}
  pruning_modifiers:
    StructuredPruningModifier:
      structure: channels
      importance: {importance}
      init_sparsity: 0.0
      final_sparsity: 0.5
      start_epoch: 0.0
      end_epoch: 2.0
      update_frequency: 0.5
"""


def _recipe(tmp_path: Path, importance: str = "magnitude") -> Any:
    path = tmp_path / "channels.yaml"
    path.write_text(RECIPE.format(importance=importance))
    return load_recipe(str(path), {})


@pytest.mark.parametrize("importance", ["magnitude", "bn_scale", "taylor"])
def test_training_aware_masks_then_removes_and_training_goes_on(
    tmp_path: Path, importance: str
) -> None:
    torch.manual_seed(0)
    model = TinyResNet()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    session = RecipeSession(_recipe(tmp_path, importance), model, steps_per_epoch=2)
    width = model.layer1.conv1.out_channels
    x, y = torch.randn(4, 3, 16, 16), torch.tensor([0, 1, 2, 3])
    for step in range(session.total_steps):
        session.before_step(step)
        loss = nn.functional.cross_entropy(model(x), y)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        session.after_step(step, optimizer)
        if step == 1:  # masked, not yet removed
            assert model.layer1.conv1.out_channels == width
            assert (model.layer1.conv1.weight.flatten(1).abs().sum(1) == 0).any()
    report = session.finish()
    assert model.layer1.conv1.out_channels < width
    state = optimizer.state[model.layer1.conv1.weight]  # the optimizer follows the thin model
    assert state["exp_avg"].shape == model.layer1.conv1.weight.shape
    channels = report["structured"][0]
    assert channels["structure"] == "channels" and channels["kept"] < channels["width"]
    assert channels["macs"][1] < channels["macs"][0]


def test_ema_copy_follows_the_thinned_model() -> None:
    model = _randomize_bn(TinyResNet())
    ema = copy.deepcopy(model)
    graph = ChannelGraph(model, torch.randn(1, 3, 16, 16))
    chosen = graph.choose(0.5)
    graph.mask(chosen)
    ChannelGraph(ema, torch.randn(1, 3, 16, 16)).mask(chosen)  # the zeros the EMA took
    graph.remove(chosen)
    thin_like(ema, model)
    assert {n: p.shape for n, p in ema.named_parameters()} == {
        n: p.shape for n, p in model.named_parameters()
    }


class WithAttention(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3)
        self.attn = nn.MultiheadAttention(8, 2, batch_first=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        t = self.conv(x).flatten(2).transpose(1, 2)
        return self.attn(t, t, t)[0]


def test_unsupported_architecture_fails_naming_the_layer(tmp_path: Path) -> None:
    with pytest.raises(SparsifyError, match=r"attn \(MultiheadAttention") as err:
        RecipeSession(_recipe(tmp_path), WithAttention(), steps_per_epoch=2)
    assert str(err.value).count("cannot prune") == 1


def test_one_shot_channels_and_int8_end_to_end(tiny_run: list[str]) -> None:
    import sparsify

    result = sparsify.run([*tiny_run, "recipe=one_shot_channels", "optim_level=1.0"], run_dir=None)
    assert result.status == "done", result.error
    out = result.outputs["sparsify"]
    channels = out["structured"][0]
    assert channels["structure"] == "channels" and channels["kept"] < channels["width"]
    assert channels["macs"][1] < channels["macs"][0]
    assert out["quantization"]
    deploy = result.deployment_dir
    config = json.loads((deploy / "config.json").read_text())
    assert config["structured"][0]["structure"] == "channels"
    assert "MACs" in (deploy / "README.md").read_text()
    from sparsify.deploy import Pipeline

    images = sorted((Path(tiny_run[0].split("=", 1)[1]) / "val" / "a").glob("*.png"))[:2]
    assert len(Pipeline(deploy)(images)) == 2
