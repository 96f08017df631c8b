"""A model file never runs code unless the user says model.trust_pickle=true.

Each malicious checkpoint carries a payload whose side effect is a marker file (it calls
`open(marker, "w")` while unpickling); the marker must not exist after validate / load. The
trusted case uses a benign full pickle (a whole module, or a Fraction beside the weights),
never the payload.
"""

from __future__ import annotations

import fractions
from pathlib import Path
from typing import Any

import pytest
import torch

import sparsify
from sparsify.errors import SparsifyError
from sparsify.models.classifier.model import load_model
from sparsify.models.safe_load import TRUST_KEY, UnsafePickleError
from sparsify.models.tiny import tinynet
from sparsify.zoo.local import LocalZoo
from tests.conftest import TINY_RUN
from tests.fixtures.yolo import (  # noqa: F401 - ultralytics_offline is an autouse fixture
    DETECT,
    HAS_ULTRALYTICS,
    TINY,
    make_ctx,
    make_yolo_dataset,
    ultralytics_offline,
)
from tests.zoo.conftest import entry

PAYLOAD = f"{open.__module__}.{open.__qualname__}"  # the global the payload pickles


class Payload:
    """Unpickling this creates `marker`: proof that loading ran code from the file."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[Any, tuple[str, str]]:
        return (open, (str(self.marker), "w"))


def _refused(result: sparsify.runner.RunResult, marker: Path, name: str = PAYLOAD) -> None:
    assert result.status != "done"
    assert name in str(result.error) and TRUST_KEY in str(result.error), result.error
    assert not marker.exists()


# ------------------------------------------------------------------------ image classifier


def test_classifier_payload_is_refused_at_validate(tiny_images: Path, tmp_path: Path) -> None:
    marker, evil = tmp_path / "ran", tmp_path / "evil.pth"
    torch.save({"state_dict": tinynet(3).state_dict(), "x": Payload(marker)}, evil)
    result = sparsify.run(
        [f"data.path={tiny_images}", f"model={evil}", *TINY_RUN, "stages=[validate]"],
        run_dir=tmp_path / "run",
    )
    _refused(result, marker)
    with pytest.raises(UnsafePickleError, match=TRUST_KEY):
        load_model(evil, "tinynet", 3)
    assert not marker.exists()


def test_classifier_full_module_needs_trust(tiny_images: Path, tmp_path: Path) -> None:
    model = tinynet(3)
    whole = tmp_path / "whole.pth"
    torch.save(model, whole)  # a benign full pickle: the class is rebuilt by import
    base = [f"data.path={tiny_images}", f"model={whole}", *TINY_RUN, "stages=[validate]"]
    refused = sparsify.run(base, run_dir=tmp_path / "refused")
    assert "sparsify.models.tiny.TinyNet" in str(refused.error) and TRUST_KEY in str(refused.error)
    trusted = sparsify.run([*base, f"{TRUST_KEY}=true"], run_dir=tmp_path / "trusted")
    assert trusted.status == "done", trusted.error
    loaded = load_model(whole, "tinynet", 3, trust=True)
    for name, value in model.state_dict().items():
        assert torch.equal(loaded.state_dict()[name], value)


def test_zoo_payload_is_refused(tiny_images: Path, tmp_path: Path) -> None:
    marker, evil = tmp_path / "ran", tmp_path / "model.pth"
    torch.save({"state_dict": tinynet(3).state_dict(), "x": Payload(marker)}, evil)
    zoo = tmp_path / "zoo"
    LocalZoo(zoo).add(entry("evil-tiny", tier="medium", variant="pruned_int8"), evil)
    result = sparsify.run(
        [
            f"data.path={tiny_images}",
            *TINY_RUN,
            "experiment=sparse_transfer",
            "optim_level=0.6",  # medium tier, pruned + INT8
            f"zoo.dir={zoo}",
            "zoo.arch=tinynet",
            "stages=[validate,fetch]",
        ],
        run_dir=tmp_path / "run",
    )
    _refused(result, marker)


# ------------------------------------------------------------------------------- transformers


def _bert_with_bin(directory: Path, extra: Any) -> Path:
    """The tiny BERT classifier with its weights as a pickled pytorch_model.bin + `extra`."""
    from safetensors.torch import load_file

    from tests.fixtures.hf_models import make_tiny_bert

    folder = make_tiny_bert(directory, head="text-classification")
    state: dict[str, Any] = dict(load_file(str(folder / "model.safetensors")))
    (folder / "model.safetensors").unlink()
    torch.save({**state, "extra": extra}, folder / "pytorch_model.bin")
    return folder


def test_transformers_bin_payload_is_one_validation_problem(tmp_path: Path) -> None:
    pytest.importorskip("transformers")
    from tests.fixtures.text import make_text_classification

    marker = tmp_path / "ran"
    folder = _bert_with_bin(tmp_path / "bert", Payload(marker))
    data = make_text_classification(tmp_path / "data")
    base = ["use_case=sentiment", f"data.path={data}", f"model={folder}", "stages=[validate]"]
    result = sparsify.run(base, run_dir=tmp_path / "run")
    _refused(result, marker)
    assert "pytorch_model.bin" in str(result.error) and "Traceback" not in str(result.error)
    assert str(result.error).count(TRUST_KEY) == 1  # one problem, not one per loader


def test_transformers_trusted_bin_loads(tmp_path: Path) -> None:
    pytest.importorskip("transformers")
    from sparsify.models.transformers.family import load_hf

    folder = _bert_with_bin(tmp_path / "bert", fractions.Fraction(1, 3))
    with pytest.raises(Exception, match="fractions.Fraction|Weights only"):
        load_hf(folder, "text-classification")
    model, _, fresh = load_hf(folder, "text-classification", trust=True)
    assert fresh == [] and not model.training
    _, _, fresh = load_hf(folder, "text-classification", ["a", "b", "c"], trust=True)
    assert fresh and all(k.startswith("classifier.") for k in fresh)  # a new head only


# ------------------------------------------------------------------------------------- YOLO

needs_ultralytics = pytest.mark.skipif(not HAS_ULTRALYTICS, reason="ultralytics not installed")


@pytest.fixture(scope="module")
def trained_yolo(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """A yolov8n trained for one batch by Ultralytics itself: its best.pt, as written."""
    from sparsify.models.yolo.family import YoloFamily

    base = tmp_path_factory.mktemp("safe_yolo")
    root = make_yolo_dataset(base / "data", task=DETECT)
    ctx = make_ctx(root, DETECT, base / "run")
    out = base / "cache" / "model.pt"
    out.parent.mkdir()
    YoloFamily().train_baseline(ctx, None, out)
    return {"root": root, "ctx": ctx, "model": out}


def _yolo_validate(root: Path, model: Path, run_dir: Path, *more: str) -> Any:
    overrides = ["use_case=cv-detection", "data=yolo", f"data.path={root}", f"model={model}"]
    return sparsify.run([*overrides, *TINY, "stages=[validate]", *more], run_dir=run_dir)


@needs_ultralytics
def test_yolo_payload_is_refused(trained_yolo: dict[str, Any], tmp_path: Path) -> None:
    from sparsify.models.yolo.family import YoloFamily

    marker, evil = tmp_path / "ran", tmp_path / "evil_det.pt"
    torch.save(Payload(marker), evil)  # the reproduction from the issue
    _refused(_yolo_validate(trained_yolo["root"], evil, tmp_path / "run"), marker)
    hidden = tmp_path / "hidden.pt"  # a real checkpoint with the payload inside
    ckpt = torch.load(trained_yolo["model"], weights_only=False)  # our own, trusted file
    torch.save({**ckpt, "git": Payload(marker)}, hidden)
    family, ctx = YoloFamily(), trained_yolo["ctx"]
    with pytest.raises(UnsafePickleError, match=PAYLOAD):
        family.load(hidden, ctx)
    with pytest.raises(UnsafePickleError, match=PAYLOAD):
        family.fine_tune(hidden, ctx, tmp_path / "ft")
    with pytest.raises(UnsafePickleError, match=TRUST_KEY):
        family.train_baseline(ctx, hidden, tmp_path / "out.pt")
    assert not marker.exists()


@needs_ultralytics
def test_ultralytics_and_own_checkpoints_load_without_trust(
    trained_yolo: dict[str, Any], tmp_path: Path
) -> None:
    from sparsify.models.yolo.family import YoloFamily

    family, ctx = YoloFamily(), trained_yolo["ctx"]
    assert _yolo_validate(trained_yolo["root"], trained_yolo["model"], tmp_path / "a").status == (
        "done"
    )
    model = family.load(trained_yolo["model"], ctx)
    for name in ("model.pt", "model.pth"):  # what the sparsify stage and fetch write
        family.save(model, tmp_path / name, ctx)
        again = family.load(tmp_path / name, ctx)
        assert again.names == model.names and torch.equal(
            again.model[0].conv.weight, model.model[0].conv.weight
        )


@needs_ultralytics
def test_yolo_trusted_full_pickle_loads(trained_yolo: dict[str, Any], tmp_path: Path) -> None:
    benign = tmp_path / "benign.pt"
    ckpt = torch.load(trained_yolo["model"], weights_only=False)  # our own, trusted file
    torch.save({**ckpt, "git": fractions.Fraction(1, 3)}, benign)
    refused = _yolo_validate(trained_yolo["root"], benign, tmp_path / "refused")
    assert "fractions.Fraction" in str(refused.error) and TRUST_KEY in str(refused.error)
    trusted = _yolo_validate(
        trained_yolo["root"], benign, tmp_path / "trusted", f"{TRUST_KEY}=true"
    )
    assert trusted.status == "done", trusted.error


@needs_ultralytics
def test_yolo_allow_list_admits_only_module_classes() -> None:
    from torch import nn

    from sparsify.models.yolo.model import yolo_global

    assert yolo_global("ultralytics.nn.tasks.DetectionModel").__name__ == "DetectionModel"
    assert yolo_global("torch.nn.modules.conv.Conv2d") is nn.Conv2d
    assert yolo_global("ultralytics.nn.modules.block.Silence") is nn.Identity  # renamed
    tasks = yolo_global("ultralytics.yolo.utils.IterableSimpleNamespace")  # old module name
    assert tasks is not None and tasks.__name__ == "IterableSimpleNamespace"
    for name in (
        PAYLOAD,
        "posix.system",
        "builtins.getattr",
        "ultralytics.nn.tasks.torch",  # a module, not a class
        "ultralytics.nn.tasks.torch_safe_load",  # a function
        "torch.nn.modules.module.Module.__init__",
    ):
        assert yolo_global(name) is None, name


def test_unreadable_file_is_not_called_unsafe(tmp_path: Path) -> None:
    garbage = tmp_path / "garbage.pth"
    garbage.write_bytes(b"\x00not a checkpoint")
    with pytest.raises(SparsifyError) as info:
        load_model(garbage, "tinynet", 3)
    assert not isinstance(info.value, UnsafePickleError) and "cannot read" in str(info.value)
