"""A channel-pruned (thin) model downstream of its run (issue #23, point 4): `sparsify serve`
of its deployment, `sparsify zoo add` of the run, and sparse transfer from it (through the
zoo, or `model=` the thin checkpoint) rebuilding the thin widths. Export, INT8, Pipeline,
reload and the model card are in tests/algorithms/test_channels.py."""

from __future__ import annotations

import json
from pathlib import Path

import onnx
import pytest
import torch

import sparsify
from sparsify.config.compose import compose_config
from sparsify.context import RunContext
from sparsify.errors import SparsifyError
from sparsify.runner import RunResult
from sparsify.zoo import add_run
from sparsify.zoo.first_use import from_model, narrowed_layers
from tests.conftest import TINY_RUN
from tests.deploy.builders import blue_png_request, serving
from tests.fixtures.yolo import HAS_ULTRALYTICS

pytest.importorskip("torch_pruning")


@pytest.fixture(scope="module")
def thin_run(tiny_images: Path, tmp_path_factory: pytest.TempPathFactory) -> RunResult:
    """A tinynet with half its coupled channels removed, INT8 (one-shot, level 1.0)."""
    runs = tmp_path_factory.mktemp("thin_runs")
    result = sparsify.run(
        [
            f"data.path={tiny_images}",
            f"working_dir={runs}",
            *TINY_RUN,
            "recipe=one_shot_channels",
            "optim_level=1.0",
        ]
    )
    assert result.status == "done", result.error
    assert result.outputs["sparsify"]["structured"][0]["structure"] == "channels"
    return result


def _conv_widths(path: Path) -> list[int]:
    """Output channels of the ONNX model's conv weights (FP32 or INT8), in graph order."""
    graph = onnx.load(str(path)).graph
    return [int(t.dims[0]) for t in graph.initializer if len(t.dims) == 4]


def test_a_thin_deployment_serves(thin_run: RunResult, tmp_path: Path) -> None:
    httpx = pytest.importorskip("httpx")
    pytest.importorskip("fastapi")
    deploy = thin_run.deployment_dir
    dense = _conv_widths(thin_run.run_dir / "sparsify" / "baseline.onnx")
    thin = _conv_widths(deploy / "model.onnx")
    assert len(thin) == len(dense) and sum(thin) < 0.75 * sum(dense)
    with serving(deploy, ["--threads", "1"], tmp_path / "serve.log") as url:
        reply = httpx.post(f"{url}/predict", json=blue_png_request(), timeout=30, trust_env=False)
        assert reply.status_code == 200, reply.text
        assert reply.json()["predictions"][0]["label"] in "abc"


def test_sparse_transfer_from_a_channel_pruned_zoo_model(
    thin_run: RunResult, tiny_images: Path, tmp_path: Path
) -> None:
    from sparsify.deploy import Pipeline

    zoo = tmp_path / "zoo"
    entry = add_run(thin_run.run_dir, "tinynet-thin", "largest", zoo)
    assert entry["variant"] == "pruned_int8"  # pruned, whatever its zeros
    channels = entry["structured"][0]
    assert channels["structure"] == "channels" and channels["kept"] < channels["width"]
    assert channels["macs"][1] < channels["macs"][0]
    # the zoo's checkpoint records the thin widths (plain ints: weights-only)
    saved = torch.load(zoo / "tinynet-thin" / "model.pth", weights_only=True)["channels"]
    assert saved["features.1.0"][1] < 32

    result = sparsify.run(
        [
            f"data.path={tiny_images}",
            f"working_dir={tmp_path / 'runs'}",
            *TINY_RUN,
            "experiment=sparse_transfer",
            f"zoo.dir={zoo}",
            "optim_level=0.4",  # largest tier, pruned_int8
        ]
    )
    assert result.status == "done", result.error
    fetched = result.outputs["fetch"]
    assert fetched["foundation_entry"]["name"] == "tinynet-thin"
    assert fetched["foundation_entry"]["structured"] == entry["structured"]
    # rebuilt at the foundation's widths, trained, saved thin, deployed thin
    transferred = torch.load(result.run_dir / "sparsify" / "model.pth", weights_only=True)
    assert transferred["channels"] == saved
    foundation = _conv_widths(thin_run.run_dir / "sparsify" / "model_fp32.onnx")
    assert _conv_widths(result.deployment_dir / "model.onnx") == foundation
    assert _conv_widths(result.run_dir / "sparsify" / "baseline.onnx") == foundation
    assert result.outputs["sparsify"]["quantization"]
    images = sorted((tiny_images / "val" / "b").glob("*.png"))[:2]
    assert len(Pipeline(result.deployment_dir)(images)) == 2


def _transfer_ctx(tmp_path: Path, use_case: str, validated: dict) -> RunContext:
    cfg = compose_config(
        [
            f"use_case={use_case}",
            "experiment=sparse_transfer",
            "optim_level=0.4",
            f"zoo.dir={tmp_path / 'zoo'}",
            "zoo.build_missing=false",  # a dense model.path stops instead of building
            *(["model.arch=tinynet"] if use_case == "cv-classification" else []),
        ]
    )
    ctx = RunContext(cfg=cfg, run_dir=tmp_path / "run")
    ctx.outputs["validate"] = validated
    return ctx


def test_a_channel_pruned_model_path_is_a_foundation_as_it_is(
    thin_run: RunResult, tiny_images: Path, tmp_path: Path
) -> None:
    """model=THIN at a pruned tier: used as it is (not taken for dense and pruned again);
    a dense model.path still asks for the tier to be built."""
    from sparsify.models.classifier.family import ImageClassifierFamily
    from sparsify.models.classifier.model import build_model, load_model, save_checkpoint

    validated = {"data_path": str(tiny_images), "data": {"classes": ["a", "b", "c"]}}
    ctx = _transfer_ctx(tmp_path, "cv-classification", validated)
    thin = thin_run.run_dir / "sparsify" / "model.pth"
    assert narrowed_layers(load_model(thin, "tinynet", 3), "tinynet")
    assert from_model(ctx, ImageClassifierFamily(), thin) is None
    dense = tmp_path / "dense.pth"
    save_checkpoint(build_model("tinynet", 3), dense, "tinynet", ["a", "b", "c"])
    assert narrowed_layers(load_model(dense, "tinynet", 3), "tinynet") == []
    with pytest.raises(SparsifyError, match="zoo.build_missing is false"):
        from_model(ctx, ImageClassifierFamily(), dense)


@pytest.mark.skipif(not HAS_ULTRALYTICS, reason="needs ultralytics")
def test_a_channel_pruned_yolo_checkpoint_is_a_foundation_as_it_is(tmp_path: Path) -> None:
    from ultralytics.nn.tasks import DetectionModel, yaml_model_load

    from sparsify.algorithms.channels import ChannelGraph
    from sparsify.models.yolo.family import PRUNE_IGNORE, YoloFamily
    from sparsify.models.yolo.model import read_checkpoint, save_checkpoint

    spec = yaml_model_load("yolov8n.yaml")
    spec["scales"], spec["scale"] = {"n": [0.33, 0.125, 1024]}, "n"  # channels 8..32
    model = DetectionModel(spec, nc=2, verbose=False).eval()
    dense = tmp_path / "dense.pt"
    save_checkpoint(model, dense)
    graph = ChannelGraph(model, torch.randn(1, 3, 64, 64), PRUNE_IGNORE)
    graph.remove(graph.choose(0.5))
    thin = tmp_path / "thin.pt"
    save_checkpoint(model, thin)
    assert narrowed_layers(read_checkpoint(thin)[0], "yolov8n")
    assert narrowed_layers(read_checkpoint(dense)[0], "yolov8n") == []
    ctx = _transfer_ctx(tmp_path, "cv-detection", {"data_path": str(tmp_path), "data": {}})
    assert from_model(ctx, YoloFamily(), thin) is None
    with pytest.raises(SparsifyError, match="zoo.build_missing is false"):
        from_model(ctx, YoloFamily(), dense)


def test_zoo_add_of_a_channel_only_run_with_no_zeros_is_pruned(
    thin_run: RunResult, tmp_path: Path
) -> None:
    """A channel-pruned run whose remaining weights hold no zero is still a pruned model."""
    import shutil

    run_dir = tmp_path / "run"
    shutil.copytree(thin_run.run_dir, run_dir, ignore=shutil.ignore_patterns("*.onnx"))
    manifest = json.loads((run_dir / "manifest.json").read_text())
    manifest["stages"]["sparsify"]["outputs"]["sparsity"] = 0.0
    (run_dir / "manifest.json").write_text(json.dumps(manifest))
    entry = add_run(run_dir, "thin-no-zeros", "medium", tmp_path / "zoo")
    assert entry["variant"] == "pruned_int8" and entry["sparsity"] == 0.0
    assert entry["structured"][0]["kept"] < entry["structured"][0]["width"]
    dense = add_run(run_dir, "thin-int8", "largest", tmp_path / "zoo", variant="int8")
    assert "structured" not in dense  # the dense model the run started from
    assert (
        torch.load(tmp_path / "zoo" / "thin-int8" / "model.pth", weights_only=True).get("channels")
        is None
    )
