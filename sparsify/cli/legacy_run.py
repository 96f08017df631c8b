"""`sparsify.run`: the original Sparsify CLI, mapped onto the same composed config.

sparsify.run one-shot --use-case image-classification --data ./flowers --optim-level 0.5
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path
from typing import Any

from sparsify.config.overrides import hydra_quote
from sparsify.errors import SparsifyError

EXPERIMENTS = {
    "one-shot": "one_shot",
    "sparse-transfer": "sparse_transfer",
    "training-aware": "training_aware",
}


EVAL_METRICS = ("kl", "accuracy", "mAP", "recall", "f1")
DEPLOY_ENGINES = ("deepsparse", "onnxruntime", "openvino")
RECIPE_ARG_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def build_parser() -> argparse.ArgumentParser:
    """The original tool's options; each help says which config key it sets
    (docs/legacy_cli.md has the table)."""
    parser = argparse.ArgumentParser(
        prog="sparsify.run",
        description="Run a sparsify experiment (seed-compatible CLI; `sparsify` takes Hydra "
        "overrides). Every option sets a key of the run config, named in its help.",
    )
    # no `choices` here: with --experiment-type, the first extra override lands in this slot
    parser.add_argument(
        "experiment",
        nargs="?",
        metavar="{" + ",".join(sorted(EXPERIMENTS)) + "}",
        help="experiment type -> experiment",
    )
    parser.add_argument(
        "--experiment-type", choices=sorted(EXPERIMENTS), help="the same as the positional"
    )
    parser.add_argument(
        "--use-case", required=True, help="e.g. image-classification, ner, qa -> use_case"
    )
    parser.add_argument("--data", required=True, help="dataset folder -> data.path")
    parser.add_argument(
        "--optim-level",
        default=None,
        help="0.0-1.0, integer percent 1-100, or accuracy (0.0) / balanced (0.5) / "
        "performant (1.0) -> optim_level",
    )
    parser.add_argument("--model", default=None, help="model checkpoint / directory -> model.path")
    parser.add_argument("--working-dir", default=None, help="where runs are written -> working_dir")
    parser.add_argument("--run-dir", default=None, help="this run's own folder -> run_dir")
    parser.add_argument(
        "--recipe", default=None, help="recipe YAML overriding the experiment's -> recipe"
    )
    parser.add_argument(
        "--recipe-args",
        default=None,
        type=_json_object,
        help="JSON object of recipe variables, e.g. '{\"num_epochs\": 5}' -> recipe_args "
        "(a name the recipe does not define is refused)",
    )
    parser.add_argument(
        "--eval-metric",
        choices=EVAL_METRICS,
        default=None,
        help="the metric the result table leads with -> benchmark.metric (kl: divergence of "
        "the result's outputs from the dense model's on val, no labels needed; not for "
        "training-aware); default: the use case's metric",
    )
    parser.add_argument(
        "--teacher",
        default=None,
        help="distillation teacher: a checkpoint, dense (the dense model, default) or off "
        "-> experiment.train.teacher",
    )
    parser.add_argument(
        "--optimizer",
        default=None,
        help="optimizer state to resume fine-tuning from (training-aware / sparse-transfer) "
        "-> experiment.train.optimizer",
    )
    parser.add_argument(
        "--train-samples", type=int, default=None, help="use N train samples -> data.train_samples"
    )
    parser.add_argument(
        "--val-samples", type=int, default=None, help="use N val samples -> data.val_samples"
    )
    parser.add_argument(
        "--deploy-engine",
        choices=DEPLOY_ENGINES,
        default=None,
        help="engine the deployment targets -> deploy.engine (also benchmarked)",
    )
    parser.add_argument(
        "--deploy-hardware", default=None, help="target hardware, recorded -> deploy.hardware"
    )
    parser.add_argument(
        "--deploy-scenario",
        default=None,
        help="sync, or async / elastic (deepsparse only) -> deploy.scenario",
    )
    parser.add_argument("--project-id", default=None, help="recorded -> run.project_id")
    parser.add_argument("--experiment-id", default=None, help="recorded -> run.experiment_id")
    parser.add_argument(
        "overrides", nargs="*", help="extra Hydra overrides, e.g. model.arch=resnet50"
    )
    return parser


def _json_object(text: str) -> dict[str, Any]:
    """--recipe-args: a JSON object whose keys can be recipe variable names."""
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise argparse.ArgumentTypeError(f"not JSON ({exc.msg}): {text!r}") from None
    if not isinstance(value, dict):
        raise argparse.ArgumentTypeError(f'not a JSON object such as {{"num_epochs": 5}}: {text!r}')
    bad = [k for k in value if not RECIPE_ARG_NAME.fullmatch(k)]
    if bad:
        raise argparse.ArgumentTypeError(f"not recipe variable names: {', '.join(bad)}")
    return value


def _hydra_value(value: Any) -> str:
    """A JSON value in Hydra's override grammar, strings quoted as they are."""
    if isinstance(value, str):
        return hydra_quote(value)
    if isinstance(value, dict):
        return "{" + ",".join(f"{k}:{_hydra_value(v)}" for k, v in value.items()) + "}"
    if isinstance(value, list):
        return "[" + ",".join(_hydra_value(v) for v in value) + "]"
    return json.dumps(value)  # numbers, true / false, null


def experiment_of(args: argparse.Namespace) -> str:
    """The experiment from the positional or --experiment-type (the same if both). A first
    positional that is no experiment is an extra override when --experiment-type is given."""
    if args.experiment and args.experiment not in EXPERIMENTS:
        if not args.experiment_type or "=" not in args.experiment:
            raise SparsifyError(
                f"unknown experiment {args.experiment!r}; use one of {', '.join(sorted(EXPERIMENTS))}"
            )
        args.overrides = [args.experiment, *args.overrides]
        args.experiment = None
    given = {e for e in (args.experiment, args.experiment_type) if e}
    if len(given) != 1:
        raise SparsifyError(
            "give the experiment once: one-shot, sparse-transfer or training-aware (as the "
            "first argument or --experiment-type)"
            + (f"; got {' and '.join(sorted(given))}" if given else "")
        )
    return EXPERIMENTS[given.pop()]


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
        "run_dir": args.run_dir or None,
        "recipe": args.recipe or None,
        "benchmark.metric": args.eval_metric,
        "experiment.train.teacher": args.teacher,
        "experiment.train.optimizer": args.optimizer,
        "data.train_samples": args.train_samples,
        "data.val_samples": args.val_samples,
        "deploy.engine": args.deploy_engine,
        "deploy.hardware": args.deploy_hardware,
        "deploy.scenario": args.deploy_scenario,
        "run.project_id": args.project_id,
        "run.experiment_id": args.experiment_id,
    }
    quoted = [f"{key}={hydra_quote(str(v))}" for key, v in options.items() if v is not None]
    if args.recipe_args:
        quoted.append(f"recipe_args={_hydra_value(args.recipe_args)}")  # a dict, not quoted
    return [f"experiment={experiment_of(args)}", *quoted, *args.overrides]


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
