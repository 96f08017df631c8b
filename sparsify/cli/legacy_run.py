"""`sparsify.run`: the original Sparsify CLI, mapped onto the same composed config.

sparsify.run one-shot --use-case image-classification --data ./flowers --optim-level 0.5
"""

from __future__ import annotations

import argparse
import sys

from sparsify.errors import SparsifyError

EXPERIMENTS = {
    "one-shot": "one_shot",
    "sparse-transfer": "sparse_transfer",
    "training-aware": "training_aware",
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="sparsify.run",
        description="Run a sparsify experiment (seed-compatible CLI; `sparsify` takes Hydra overrides).",
    )
    parser.add_argument("experiment", choices=sorted(EXPERIMENTS), help="experiment type")
    parser.add_argument("--use-case", required=True, help="e.g. image-classification, ner, qa")
    parser.add_argument("--data", required=True, help="dataset folder")
    parser.add_argument("--optim-level", default=None, help="0.0-1.0 (or integer percent 1-100)")
    parser.add_argument("--model", default=None, help="model checkpoint / directory")
    parser.add_argument("--working-dir", default=None, help="where runs are written")
    parser.add_argument("--recipe", default=None, help="recipe YAML overriding the experiment's")
    parser.add_argument(
        "overrides", nargs="*", help="extra Hydra overrides, e.g. model.arch=resnet50"
    )
    return parser


def to_overrides(args: argparse.Namespace) -> list[str]:
    overrides = [
        f"experiment={EXPERIMENTS[args.experiment]}",
        f"use_case={args.use_case}",
        f"data.path={args.data}",
    ]
    if args.optim_level is not None:
        overrides.append(f"optim_level={args.optim_level}")
    if args.model:
        overrides.append(f"model.path={args.model}")
    if args.working_dir:
        overrides.append(f"working_dir={args.working_dir}")
    if args.recipe:
        overrides.append(f"recipe={args.recipe}")
    return overrides + list(args.overrides)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_intermixed_args(argv)
    from sparsify.runner import run

    try:
        result = run(to_overrides(args))
    except SparsifyError as exc:
        print(f"sparsify.run: {exc}", file=sys.stderr)
        return 2
    return 0 if result.status == "done" else 1


def console() -> None:
    sys.exit(main())


if __name__ == "__main__":
    console()
