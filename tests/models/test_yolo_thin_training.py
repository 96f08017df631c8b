"""Channel-pruned (thin) YOLO models trained by Ultralytics' own trainer through sparsify's
YOLO training path: the thin widths and weights survive the trainer's rebuild from the YAML,
its EMA copy and its saved checkpoints, and what comes back reloads weights-only.

Tiny yolov8n (width 0.125) at 64 px on a few generated images, one epoch of one or two
batches: only the code paths are under test, not the mAP.
"""

from __future__ import annotations

import copy
import math
from pathlib import Path
from typing import Any

import pytest
import torch
from torch import nn

from sparsify.algorithms.channels import ChannelGraph
from tests.fixtures.yolo import (  # noqa: F401 - ultralytics_offline is an autouse fixture
    DETECT,
    HAS_ULTRALYTICS,
    make_ctx,
    make_yolo_dataset,
    ultralytics_offline,
)

pytest.importorskip("torch_pruning")
pytestmark = pytest.mark.skipif(not HAS_ULTRALYTICS, reason="ultralytics not installed")

X = torch.rand(1, 3, 64, 64)


def _shapes(model: nn.Module) -> dict[str, torch.Size]:
    return {n: t.shape for n, t in model.state_dict().items()}


def _thin_yolo() -> tuple[nn.Module, dict[str, torch.Size]]:
    """A tiny yolov8n with half of its prunable channels removed; and its dense shapes."""
    from sparsify.models.yolo.family import PRUNE_IGNORE
    from tests.algorithms.test_channels import _randomize_bn, tiny_yolo

    torch.manual_seed(0)
    model = _randomize_bn(tiny_yolo())
    dense = _shapes(model)
    graph = ChannelGraph(model, X, PRUNE_IGNORE)
    graph.remove(graph.choose(0.5))
    return model, dense


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_yolo_dataset(tmp_path_factory.mktemp("yolo") / "data", n_train=4, n_val=2)


def _convs(model: nn.Module) -> dict[str, torch.Tensor]:
    return {n: m.weight.detach().clone() for n, m in model.named_modules() if type(m) is nn.Conv2d}


def test_thin_yolo_trains_a_step_and_its_checkpoints_reload(data: Path, tmp_path: Path) -> None:
    from sparsify.models.yolo.family import YoloFamily
    from sparsify.models.yolo.model import read_checkpoint

    family = YoloFamily()
    ctx = make_ctx(data, DETECT, tmp_path / "run")
    model, dense = _thin_yolo()
    thin = _shapes(model)
    assert sum(thin[n] != dense[n] for n in thin) > 50  # really thin
    start = _convs(model)
    tuned = family.fine_tune(model, ctx, tmp_path / "ft", epochs=1)
    assert _shapes(tuned) == thin
    # the thin weights themselves were trained (one AdamW step), not a fresh dense init
    # narrowed to the thin shapes
    after = _convs(tuned)
    moved = 0.0
    for name, weight in start.items():
        torch.testing.assert_close(after[name], weight, rtol=0, atol=0.02)
        moved += float((after[name] - weight).abs().sum())
    assert moved > 0
    # Ultralytics' own checkpoints (its EMA copy) and ours keep the thin shapes
    weights = tmp_path / "ft" / "ultralytics" / "train" / "weights"
    for saved in (weights / "last.pt", weights / "best.pt"):
        assert _shapes(read_checkpoint(saved)[0]) == thin, saved.name
    path = tmp_path / "tuned.pt"
    family.save(tuned, path, ctx)
    loaded, _ = read_checkpoint(path)  # weights-only with the Ultralytics allow-list
    assert _shapes(loaded) == thin
    with torch.no_grad():
        torch.testing.assert_close(loaded(X)[0], tuned(X)[0])


def test_thin_checkpoint_fine_tunes_for_other_classes(data: Path, tmp_path: Path) -> None:
    from sparsify.models.yolo.family import YoloFamily
    from sparsify.models.yolo.model import detect_head, read_checkpoint

    family = YoloFamily()
    model, _ = _thin_yolo()
    thin = _shapes(model)
    path = tmp_path / "thin.pt"
    family.save(model, path, make_ctx(data, DETECT, tmp_path / "run"))
    root = make_yolo_dataset(tmp_path / "data3", classes=("cat", "dog", "bird"), n_train=4)
    ctx = make_ctx(root, DETECT, tmp_path / "run3")
    tuned = family.fine_tune(path, ctx, tmp_path / "ft", epochs=1)
    assert tuned.names == {0: "cat", 1: "dog", 2: "bird"}
    classes = {f"{n}.weight" for n, m in tuned.named_modules() if m in _class_convs(tuned)}
    got = _shapes(tuned)
    for name, shape in thin.items():
        if name in classes:  # 3 classes now, from the thin channels before it
            assert got[name] == (3, shape[1], *shape[2:]), name
        elif not name.startswith(tuple(c.rpartition(".")[0] for c in classes)):
            assert got[name] == shape, name
    assert detect_head(tuned).nc == 3
    assert _shapes(read_checkpoint(path)[0]) == thin  # the start is untouched


def _class_convs(model: nn.Module) -> list[nn.Module]:
    from sparsify.models.yolo.model import detect_head

    return [branch[-1] for branch in detect_head(model).cv3]


def test_dense_start_keeps_ultralytics_transfer(data: Path) -> None:
    """A dense start (only the class branch differs, for other classes) is left to
    Ultralytics' own transfer; a thin one gets its widths, the class convs their count."""
    from sparsify.models.yolo.training import start_widths
    from tests.algorithms.test_channels import tiny_yolo

    dense = tiny_yolo()
    assert start_widths(tiny_yolo(), dense) == {}
    thin, _ = _thin_yolo()
    own = tiny_yolo()
    widths = start_widths(own, thin)
    modules = dict(thin.named_modules())
    assert widths and all(
        widths[n][:2] == [modules[n].in_channels, modules[n].out_channels]
        for n in widths
        if isinstance(modules[n], nn.Conv2d)
    )


def _session_for(model: nn.Module, ctx: Any) -> Any:
    from sparsify.algorithms.session import RecipeSession
    from sparsify.models.yolo.family import PRUNE_IGNORE
    from sparsify.recipes.recipe import load_recipe

    variables = {
        "optim_level": 1.0,
        "derived": {"sparsity": 0.5, "quantize": False, "tier": None, "variant": None},
        "experiment": {"train": {"epochs": 1, "lr": 1e-3}},
    }
    recipe = load_recipe("training_aware_channels", variables)

    def session_for(steps: int, live: nn.Module | None = None, qat: bool = True) -> Any:
        return RecipeSession(
            recipe,
            live if live is not None else model,
            steps,
            quantize=False,
            default_ignore=list(PRUNE_IGNORE),
            max_steps=ctx.cfg.experiment.train.max_steps,
        )

    return session_for


def test_training_aware_channels_recipe_on_yolo_then_retrains(data: Path, tmp_path: Path) -> None:
    from sparsify.models.yolo.family import YoloFamily
    from sparsify.models.yolo.model import read_checkpoint
    from tests.algorithms.test_channels import _randomize_bn, tiny_yolo

    family = YoloFamily()
    ctx = make_ctx(data, DETECT, tmp_path / "run", "experiment.train.max_steps=2")
    torch.manual_seed(0)
    model = _randomize_bn(tiny_yolo())
    dense = _shapes(model)
    stats = family.train_sparse(copy.deepcopy(model), ctx, _session_for(model, ctx), None)
    assert stats["steps"] == 2
    channels = stats["structured"][0]
    assert channels["structure"] == "channels" and channels["kept"] < channels["width"]
    assert math.isclose(channels["sparsity"], 0.7, abs_tol=0.1)  # optim_level 1.0: 70 %
    trained = stats["model"]
    thin = _shapes(trained)
    assert sum(thin[n] != dense[n] for n in thin) > 50
    path = tmp_path / "trained.pt"
    family.save(trained, path, ctx)
    assert _shapes(read_checkpoint(path)[0]) == thin
    # the thin result goes on training as it is (e.g. a second fine-tuning run)
    again = family.fine_tune(path, ctx, tmp_path / "ft", epochs=1)
    assert _shapes(again) == thin


@pytest.mark.slow
def test_training_aware_channels_run_on_yolo(tmp_path: Path) -> None:
    """`sparsify.run` with recipe=training_aware_channels on cv-detection: baseline, masked
    training and removal in Ultralytics' trainer, INT8, a deployment of the thin model."""
    import onnxruntime as ort

    import sparsify
    from sparsify.models.yolo.model import read_checkpoint

    root = make_yolo_dataset(tmp_path / "data", task=DETECT)
    result = sparsify.run(
        [
            "use_case=cv-detection",
            f"data.path={root}",
            "model.arch=yolov8n",
            "experiment=training_aware",
            "recipe=training_aware_channels",
            "optim_level=1.0",
            "data.image_size=64",
            "data.batch_size=4",
            "experiment.train.epochs=1",
            "experiment.train.max_steps=2",
            "experiment.train.batch_size=4",
            "experiment.calibration_samples=4",
            "benchmark.time_s=0.1",
            "benchmark.warmup_s=0.02",
            "benchmark.batch_sizes=[1]",
            "baseline.allow_scratch=true",  # random init: only the code path is under test
            "baseline.gate=off",
        ],
        run_dir=tmp_path / "run",
    )
    assert result.status == "done", result.error
    channels = result.outputs["sparsify"]["structured"][0]
    assert channels["structure"] == "channels" and channels["kept"] < channels["width"]
    assert channels["macs"][1] < 0.5 * channels["macs"][0]
    model, _ = read_checkpoint(result.run_dir / "sparsify" / "model.pt")  # weights-only
    assert dict(model.named_modules())["model.2.cv2.conv"].out_channels < 32  # yolov8n: 32
    session = ort.InferenceSession(
        str(result.deployment_dir / "model.onnx"), providers=["CPUExecutionProvider"]
    )
    assert session.run(None, {"images": X.numpy()})[0].shape[0] == 1
