"""`sparsify.run`: the original Sparsify CLI, mapped onto the same composed config.

sparsify.run one-shot --use-case image-classification --data ./flowers --optim-level 0.5
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from sparsify.config.overrides import hydra_quote
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
    """The options as Hydra overrides. Every value is quoted: a path or name with spaces,
    quotes, `=`, `,` or brackets reaches the config as typed (the extra overrides at the end
    are Hydra syntax already, and pass as they are)."""
    options = {
        "use_case": args.use_case,
        "data.path": args.data,
        "optim_level": args.optim_level,
        "model.path": args.model or None,
        "working_dir": args.working_dir or None,
        "recipe": args.recipe or None,
    }
    quoted = [f"{key}={hydra_quote(str(v))}" for key, v in options.items() if v is not None]
    return [f"experiment={EXPERIMENTS[args.experiment]}", *quoted, *args.overrides]


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_intermixed_args(argv)
    run_dir: Path | None = None
    try:
        from sparsify.config import compose_config
        from sparsify.runner import execute

        cfg = compose_config(to_overrides(args))
        # resolved once: `${now:...}` would give another name at each reading
        run_dir = Path(str(cfg.run_dir)).expanduser().resolve()
        cfg.run_dir = str(run_dir)
        result = execute(cfg, run_dir)
    except SparsifyError as exc:
        print(f"sparsify.run: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        from sparsify.cli.main import interrupted

        return interrupted("sparsify.run", run_dir)
    return 0 if result.status == "done" else 1


def console() -> None:
    sys.exit(main())


if __name__ == "__main__":
    console()
