"""Good inputs built once per session and copied into each case's sandbox: a case breaks a
copy, so the only fault is the one it makes (test_controls.py proves the copies pass)."""

from __future__ import annotations

import shutil
from pathlib import Path

from tests.fixtures.images import make_image_folder
from tests.fixtures.npz import make_npz_folder
from tests.fixtures.text import make_qa, make_text_classification, make_token_classification
from tests.fixtures.yolo import make_yolo_dataset

DETECT, SEGMENT = "object-detection", "instance-segmentation"


def tiny_onnx(path: Path, name: str = "input", shape: tuple[int, ...] = (3, 8, 8)) -> Path:
    """A one-node ONNX model (Relu) taking `name` of `shape` with a batch dimension."""
    import onnx
    from onnx import TensorProto, helper

    x = helper.make_tensor_value_info(name, TensorProto.FLOAT, ["batch", *shape])
    y = helper.make_tensor_value_info("output", TensorProto.FLOAT, ["batch", *shape])
    graph = helper.make_graph([helper.make_node("Relu", [name], ["output"])], "tiny", [x], [y])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, str(path))
    return path


def build_assets(root: Path) -> Path:
    """Every dataset format, a tiny BERT folder, a tiny ONNX model and a tinynet checkpoint."""
    import torch

    from sparsify.models.tiny import tinynet
    from tests.fixtures.hf_models import make_tiny_bert

    make_image_folder(root / "ic")
    make_yolo_dataset(root / "det", DETECT, n_train=2, n_val=1)
    make_yolo_dataset(root / "seg", SEGMENT, n_train=2, n_val=1)
    make_text_classification(root / "tc", "csv")
    make_text_classification(root / "tc_json", "json")
    make_text_classification(root / "tc_jsonl", "jsonl")
    make_token_classification(root / "tok", "jsonl")
    make_token_classification(root / "tok_json", "json")
    make_qa(root / "qa", "json")
    make_qa(root / "qa_jsonl", "jsonl")
    make_npz_folder(root / "npz")
    tiny_onnx(root / "tiny.onnx")
    make_tiny_bert(root / "bert")
    # the classifier checkpoint layout (state dict, arch, classes), as sparsify writes it
    state = {
        "state_dict": tinynet(2).state_dict(),
        "arch_key": "tinynet",
        "classes": ["cat", "dog"],
    }
    torch.save(state, root / "tinynet.pth")
    tiny_deployment(root / "deployment")
    return root


def tiny_deployment(out: Path, size: int = 16) -> Path:
    """A cv-classification deployment folder of an untrained tinynet at `size` px, packaged by
    the package stage's own config writer (the Pipeline, not the model, is under test)."""
    from sparsify.config import compose_config
    from sparsify.deploy.preprocess import ImagePreprocess
    from sparsify.fileio import atomic_write_json
    from sparsify.models.classifier.model import export_onnx
    from sparsify.models.tiny import tinynet
    from sparsify.stages.package import deployment_config

    out.mkdir(parents=True)
    labels = ["cat", "dog"]
    model = export_onnx(tinynet(len(labels)), out / "model.onnx", size, 17)
    (out / "labels.txt").write_text("\n".join(labels) + "\n", encoding="utf-8")
    data = compose_config([f"data.image_size={size}", f"data.resize_size={size}"]).data
    part = {
        "preprocessing": {"type": "image", **ImagePreprocess.from_config(data).to_dict()},
        "postprocessing": {"type": "softmax_topk"},
        "labels": labels,
        "labels_file": "labels.txt",
    }
    config = deployment_config(
        model, "image-classification", "cv-classification", part, experiment="none"
    )
    atomic_write_json(out / "config.json", config)
    return out


def copy_asset(assets: Path, name: str, dest: Path) -> Path:
    """A private copy of asset `name` at `dest` (a folder or a file)."""
    source = assets / name
    dest.parent.mkdir(parents=True, exist_ok=True)
    if source.is_dir():
        shutil.copytree(source, dest)
    else:
        shutil.copy2(source, dest)
    return dest
