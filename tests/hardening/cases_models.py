"""Model files: missing, not a model, truncated, of another architecture or task, and
malicious pickles whose payload would write a marker file in the working directory (the
sandbox check then sees it: no code may run from a model file)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from tests.hardening.cases_data import validate_args
from tests.hardening.harness import Call, Case, Sandbox, known_bug

TRUST = "model.trust_pickle"
PAYLOAD = f"{open.__module__}.{open.__qualname__}"  # the global the payload pickles


class Payload:
    """Unpickling this creates `marker` (under the watched working dir)."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[Any, tuple[str, str]]:
        return (open, (str(self.marker), "w"))


Maker = Callable[[Sandbox], tuple[Path, list[str]]]  # -> (model path, what must be named)


def model_case(kind: str, id: str, make: Maker, about: str, *extra: str) -> Case:
    def build(sb: Sandbox) -> Call:
        data = sb.copy(kind, "data")
        path, names = make(sb)
        args = validate_args(sb, kind, data, model=False)
        return Call([*args, f"model.path={path}", *extra], names)

    case_id = f"model-{kind}-{id}"
    return Case(case_id, "sparsify", build, about, known_bug(f"sparsify:{case_id}"))


def file_with(name: str, data: bytes | str) -> Maker:
    def make(sb: Sandbox) -> tuple[Path, list[str]]:
        path = sb.inputs / name
        path.write_bytes(data.encode() if isinstance(data, str) else data)
        return path, [str(path)]

    return make


def saved(name: str, obj: Callable[[Sandbox], Any], *names: str) -> Maker:
    """torch.save(obj(sb)) at inputs/name; the message names the file and `names`."""

    def make(sb: Sandbox) -> tuple[Path, list[str]]:
        import torch

        path = sb.inputs / name
        torch.save(obj(sb), path)
        return path, [str(path), *names]

    return make


def cut(asset: str, keep: float) -> Maker:
    def make(sb: Sandbox) -> tuple[Path, list[str]]:
        path = sb.copy(asset)
        data = path.read_bytes()
        path.write_bytes(data[: int(len(data) * keep)])
        return path, [str(path)]

    return make


def missing(name: str) -> Maker:
    return lambda sb: (sb.inputs / name, ["model.path", str(sb.inputs / name)])


def payload(sb: Sandbox) -> Payload:
    return Payload(sb.work / "pwned")


def tinynet_state(classes: int) -> Callable[[Sandbox], dict[str, Any]]:
    def make(sb: Sandbox) -> dict[str, Any]:
        from sparsify.models.tiny import tinynet

        names = [f"c{i}" for i in range(classes)]
        return {
            "state_dict": tinynet(classes).state_dict(),
            "arch_key": "tinynet",
            "classes": names,
        }

    return make


def arch_key(arch: str) -> Callable[[Sandbox], dict[str, Any]]:
    """tinynet weights in a checkpoint that says it holds `arch`."""
    return lambda sb: {**tinynet_state(2)(sb), "arch_key": arch}


def whole_module(sb: Sandbox) -> Any:
    from sparsify.models.tiny import tinynet

    return tinynet(2)


def with_payload(sb: Sandbox) -> dict[str, Any]:
    return {**tinynet_state(2)(sb), "extra": payload(sb)}


def bert_with_bin(sb: Sandbox) -> tuple[Path, list[str]]:
    """The tiny BERT with its weights as a pickled pytorch_model.bin carrying the payload."""
    import torch
    from safetensors.torch import load_file

    folder = sb.copy("bert")
    state: dict[str, Any] = dict(load_file(str(folder / "model.safetensors")))
    (folder / "model.safetensors").unlink()
    torch.save({**state, "extra": payload(sb)}, folder / "pytorch_model.bin")
    return folder, ["pytorch_model.bin", TRUST]


def bert_edit(edit: Callable[[Path], None], named: str) -> Maker:
    def make(sb: Sandbox) -> tuple[Path, list[str]]:
        folder = sb.copy("bert")
        edit(folder)
        return folder, [str(folder) if named == "folder" else named]

    return make


def onnx_renamed(sb: Sandbox) -> tuple[Path, list[str]]:
    from tests.hardening.assets import tiny_onnx

    path = tiny_onnx(sb.inputs / "renamed.onnx", name="pixels")
    return path, [str(path), "pixels"]


MODELS: list[tuple[str, str, Maker, str, tuple[str, ...]]] = [
    ("ic", "missing", missing("nope.pth"), "a model file that is not there", ()),
    ("ic", "text-file", file_with("notes.pth", "these are my weights"), "text named .pth", ()),
    ("ic", "empty-file", file_with("empty.pth", b""), "a zero-byte checkpoint", ()),
    ("ic", "zip-not-torch", file_with("a.pth", b"PK\x05\x06" + b"\0" * 18), "an empty zip", ()),
    ("ic", "truncated", cut("tinynet.pth", 0.5), "half a checkpoint", ()),
    (
        "ic",
        "wrong-arch",
        lambda sb: (sb.copy("tinynet.pth"), ["resnet18"]),
        "a tinynet checkpoint for model.arch=resnet18",
        ("model.arch=resnet18",),
    ),
    ("ic", "a-list", saved("list.pth", lambda sb: [1, 2, 3]), "a pickled list", ()),
    (
        "ic",
        "wrong-keys",
        saved("keys.pth", lambda sb: {"state_dict": {"w": __import__("torch").zeros(2)}}),
        "a state dict of another model",
        (),
    ),
    ("ic", "wrong-arch-key", saved("arch.pth", arch_key("resnet50")), "a resnet50 checkpoint", ()),
    (
        "ic",
        "malicious-pickle",
        saved("evil.pth", with_payload, PAYLOAD, TRUST),
        "a checkpoint whose unpickling runs open()",
        (),
    ),
    (
        "ic",
        "whole-module",
        saved("whole.pth", whole_module, "TinyNet", TRUST),
        "torch.save(model): a full pickle needs trust",
        (),
    ),
    (
        "ic",
        "onnx-for-classifier",
        lambda sb: (sb.copy("tiny.onnx"), [str(sb.inputs / "tiny.onnx")]),
        "an ONNX file where a torch checkpoint is expected",
        (),
    ),
    (
        "ic",
        "a-folder",
        lambda sb: (sb.copy("ic", "weights"), [str(sb.inputs / "weights")]),
        "a folder as the checkpoint",
        (),
    ),
    (
        "det",
        "malicious-pt",
        saved("evil_det.pt", payload, PAYLOAD, TRUST),
        "torch.save(Evil()) as a YOLO checkpoint",
        (),
    ),
    (
        "det",
        "classifier-ckpt",
        lambda sb: (sb.copy("tinynet.pth", "tiny.pt"), [str(sb.inputs / "tiny.pt")]),
        "a classifier checkpoint given to YOLO",
        (),
    ),
    ("det", "text-pt", file_with("best.pt", "not a model"), "text named best.pt", ()),
    ("seg", "truncated-pt", cut("tinynet.pth", 0.3), "a cut checkpoint given to YOLO", ()),
    ("tc", "payload-bin", bert_with_bin, "pytorch_model.bin that runs code", ()),
    (
        "tc",
        "no-config",
        bert_edit(lambda f: (f / "config.json").unlink(), "folder"),
        "a model folder without config.json",
        (),
    ),
    (
        "tc",
        "broken-config",
        bert_edit(lambda f: (f / "config.json").write_text("{oops"), "folder"),
        "config.json that is not JSON",
        (),
    ),
    (
        "tok",
        "not-cached-hub-id",
        lambda sb: (Path("no-such-org/no-such-model"), ["no-such-org/no-such-model"]),
        "a hub id not in the cache (offline)",
        (),
    ),
    (
        "qa",
        "a-file",
        lambda sb: (sb.copy("tinynet.pth"), [str(sb.inputs / "tinynet.pth")]),
        "a checkpoint file where a folder is expected",
        (),
    ),
    ("npz", "truncated-onnx", cut("tiny.onnx", 0.5), "half an ONNX file", ()),
    ("npz", "renamed-input", onnx_renamed, "an ONNX input the .npz files do not hold", ()),
    ("npz", "txt-model", file_with("model.txt", "x"), "neither ONNX nor TorchScript", ()),
    (
        "npz",
        "garbage-torchscript",
        file_with("model.pt", b"\x80\x04garbage"),
        "not TorchScript",
        (),
    ),
]

CASES: list[Case] = [model_case(k, id, m, about, *extra) for k, id, m, about, extra in MODELS]
