"""The accuracy-budget search against a plain uniform sweep, side by side, on trained models.

Issue #25's target: with `budget.max_drop=1.0` and at most 8 trials, the budget search
(`hydra/sweeper=sparsify_budget`, docs/budget.md) returns a package within 1.0 point of
dense on val (and on test where the data has one) whose speedup on the chosen engine is at
least that of the best package within 1.0 point of a uniform sweep
`optim_level=0.0,0.25,0.5,0.75,1.0`. Per model (the setups of `accuracy_recovery.py`, as in
`package_speedups.py`: `cnn` ImageNet MobileNetV2 fine-tuned on digits, `bert` MiniLM on the
VADER-lexicon sentiment task, `yolo` YOLOv8s on generated shapes) the script runs, as a user
would, in one working dir (so both reuse one cached dense baseline):

1. `sparsify -m optim_level=0.0,0.25,0.5,0.75,1.0 experiment=one_shot ...` (the uniform sweep);
2. `sparsify -m hydra/sweeper=sparsify_budget budget.max_drop=1.0 budget.trials=8
   budget.engine=onnxruntime ...` (the budget search);

then reads both back with sparsify's own readers (every run judged by
`sparsify.budget.trials.read_trial`, the function the search judges its trials with; the
search's outcome from its budget.json) and prints one table per model: each uniform level's
drop and speedup, the best uniform level within budget, the search's chosen trial (val, and
test where present) with its trial count, and whether the target holds. `--experiment
training_aware` runs both as training-aware runs instead. `--tiny` runs the whole thing on
a generated tiny image folder and a tiny CNN (about a minute; the test's setting). Exit
status 1 when a model misses the target.

.venv/bin/python benchmarks/budget_vs_uniform.py [--models cnn,bert,yolo] [--engine onnxruntime]
    [--levels 0,0.25,0.5,0.75,1] [--trials 8] [--max-drop 1.0] [--experiment one_shot] [--image-size 96] [--batch 16]
    [--time 3] [--baseline-epochs N] [--set KEY=VALUE ...] [--out DIR] [--tiny]
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, NamedTuple

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout
sys.path.insert(0, str(Path(__file__).resolve().parent))  # accuracy_recovery

from accuracy_recovery import Setup, detection_setup, image_setup, text_setup  # noqa: E402

from sparsify.budget.held_out import measure_on_test  # noqa: E402
from sparsify.budget.results import read_budget  # noqa: E402
from sparsify.budget.trials import DONE, TrialResult, read_trial, select  # noqa: E402
from sparsify.report.collect import find_run_dirs, row_from_record  # noqa: E402
from sparsify.run_record import RunRecord  # noqa: E402

LEVELS = (0.0, 0.25, 0.5, 0.75, 1.0)
MODELS = ("cnn", "bert", "yolo")
# the tiny setting: a few optimizer steps on 16 px images, a few calibration samples, one INT8
# graph, no baseline gate (a model that trained 6 steps beats no trivial predictor)
TINY = [
    "model.arch=tinynet",
    "data.image_size=16",
    "data.resize_size=16",
    "data.batch_size=8",
    "experiment.train.batch_size=8",
    "experiment.train.max_steps=6",
    "experiment.calibration_samples=8",
    "benchmark.warmup_s=0.02",
    "baseline.gate=off",
    "quantization.variants=[]",
    "recipe=one_shot",  # magnitude: no SparseGPT solve per layer
]


class Comparison(NamedTuple):
    """One model's two searches, read back from their sweep dirs (a NamedTuple: the docs test
    loads this script without registering it as a module, which a dataclass needs)."""

    model: str
    what: str
    metric: str
    engine: str
    max_drop: float
    uniform: list[TrialResult]  # one per level, params {"optim_level": level}
    budget: dict[str, Any] | None  # the search's budget.json; None: it did not finish
    chosen: TrialResult | None  # the chosen trial's run, read as the uniform runs are
    uniform_test: dict[str, Any] | None = None  # the best uniform package on test
    seconds: tuple[float, float] = (0.0, 0.0)  # uniform, budget

    @property
    def best_uniform(self) -> TrialResult | None:
        """The fastest uniform level within budget (the search's own choice rule)."""
        return select(self.uniform, self.max_drop).chosen

    @property
    def budget_test(self) -> dict[str, Any] | None:
        return (self.budget or {}).get("test")

    def verdict(self) -> tuple[bool, str]:
        """(met, why): the search's package fits the budget on val and on test (where
        measured) and is at least as fast as the best uniform level within budget."""
        best, chosen, budget = self.best_uniform, self.chosen, self.max_drop
        if chosen is None or not chosen.fits(budget):
            return False, f"the budget search returned no package within {budget:g} point(s)"
        test = self.budget_test or {}
        if test.get("drop") is not None and float(test["drop"]) > budget:
            return False, f"its package drops {test['drop']:g} point(s) on test"
        speed = chosen.speedup or 0.0
        if best is None:
            return True, f"budget {speed:.2f}x; no uniform level is within {budget:g} point(s)"
        best_speed = best.speedup or 0.0
        relation = ">=" if speed >= best_speed else "<"
        return speed >= best_speed, (
            f"budget {speed:.2f}x {relation} best uniform {best_speed:.2f}x "
            f"(optim_level={best.params['optim_level']:g}) within {budget:g} point(s)"
        )


def sparsify_multirun(overrides: list[str], log: Path) -> int:
    """`sparsify -m <overrides>` in a subprocess, as a user types it; output to `log`."""
    command = [sys.executable, "-m", "sparsify", "-m", *overrides]
    with log.open("w", encoding="utf-8") as out:
        out.write(" ".join(command) + "\n")
        out.flush()
        return subprocess.run(command, stdout=out, stderr=subprocess.STDOUT, check=False).returncode


def uniform_overrides(common: list[str], sweep_dir: Path, levels: tuple[float, ...]) -> list[str]:
    return [
        f"optim_level={','.join(f'{x:g}' for x in levels)}",
        f"hydra.sweep.dir={sweep_dir}",
        *common,
    ]


def budget_overrides(
    common: list[str], sweep_dir: Path, max_drop: float, trials: int, engine: str
) -> list[str]:
    return [
        "hydra/sweeper=sparsify_budget",
        f"budget.max_drop={max_drop:g}",
        f"budget.trials={trials}",
        f"budget.engine={engine}",
        f"hydra.sweep.dir={sweep_dir}",
        *common,
    ]


def read_uniform(sweep_dir: Path, engine: str, metric: str | None) -> tuple[list[TrialResult], str]:
    """Every uniform run, judged as the search judges a trial; and the metric (the given one,
    else the one the runs are measured by)."""
    runs = [RunRecord.load(d) for d in find_run_dirs(sweep_dir)] if sweep_dir.is_dir() else []
    if metric is None:
        metric = next((m for r in runs if (m := row_from_record(r).metric)), "accuracy")
    results = [
        read_trial(n, {"optim_level": record.level}, record.run_dir, engine, metric)
        for n, record in enumerate(runs)
    ]
    return sorted(results, key=lambda r: r.params["optim_level"] or 0.0), metric


def compare(
    model: str, what: str, out: Path, engine: str, max_drop: float, seconds: tuple[float, float]
) -> Comparison:
    """Read the two sweeps under `out` (uniform/, budget/) back into a Comparison."""
    budget = read_budget(out / "budget")
    metric = (budget or {}).get("metric")
    uniform, metric = read_uniform(out / "uniform", engine, metric)
    chosen = None
    picked = (budget or {}).get("chosen")
    if picked is not None:
        run_dir = Path(picked["run_dir"])
        chosen = read_trial(picked["trial"], picked["params"], run_dir, engine, metric)
    best = select(uniform, max_drop).chosen
    test = measure_on_test(best, {"metric": metric, "engine": engine}) if best else None
    return Comparison(model, what, metric, engine, max_drop, uniform, budget, chosen, test, seconds)


def run_model(args: argparse.Namespace, model: str, setup: Setup, out: Path) -> Comparison:
    """Both sweeps of one model, one working dir (one cached dense baseline), then read back."""
    out.mkdir(parents=True, exist_ok=True)
    common = [*setup.common, *experiment_overrides(args, setup), *args.set]
    common += [
        *([f"model={setup.source}"] if setup.source else []),
        f"benchmark.batch_sizes=[{args.batch}]",
        f"benchmark.time_s={args.time}",
        f"benchmark.engines=[{args.engine}]",
        f"working_dir={out / 'runs'}",
    ]
    seconds = []
    for name, overrides in (
        ("uniform", uniform_overrides(common, out / "uniform", args.levels)),
        (
            "budget",
            budget_overrides(common, out / "budget", args.max_drop, args.trials, args.engine),
        ),
    ):
        start = time.perf_counter()
        code = sparsify_multirun(overrides, out / f"{name}.log")
        seconds.append(time.perf_counter() - start)
        print(
            f"   [{model} {name}: {seconds[-1]:.0f} s, exit {code}, log {out / f'{name}.log'}]",
            flush=True,
        )
    return compare(model, setup.what, out, args.engine, args.max_drop, (seconds[0], seconds[1]))


def experiment_overrides(args: argparse.Namespace, setup: Setup) -> list[str]:
    """The experiment and its training: one-shot fine-tunes the dense baseline (the setup's
    epochs and lr), training-aware trains at its own (`--epochs`)."""
    if args.experiment == "one_shot":
        epochs, lr = args.baseline_epochs or setup.baseline_epochs or 4, setup.lr
    else:
        epochs, lr = args.epochs or setup.epochs or 10, setup.ta_lr
    if args.tiny:
        return [f"experiment={args.experiment}"]  # TINY caps the steps
    return [
        f"experiment={args.experiment}",
        f"experiment.train.epochs={epochs:g}",
        f"experiment.train.lr={lr:g}",
    ]


def tiny_setup(out: Path) -> Setup:
    """3 classes of generated 20x16 images, train / val / test, and a tiny CNN."""
    from tests.fixtures.images import make_image_folder

    data = out / "tiny_images"
    if not (data / "test").is_dir():
        classes = ("a", "b", "c")
        make_image_folder(data, classes=classes, per_class=8, splits=("train",), seed=1)
        make_image_folder(data, classes=classes, per_class=4, splits=("val",), seed=2)
        make_image_folder(data, classes=classes, per_class=4, splits=("test",), seed=3)
    what = "tinynet on 3 classes of generated 16 px images; top-1 % on 12 val / 12 test"
    return Setup(what, [f"data.path={data}", *TINY], None, 1e-3, 1e-3)


def _num(value: float | None, spec: str = ".2f") -> str:
    return "-" if value is None else format(value, spec)


def _settings(params: dict[str, Any]) -> str:
    """`optim_level=0.62, format=qdq, mask_type=block4`: the last part of each key."""
    return ", ".join(
        f"{k.rsplit('.', 1)[-1]}={v:.3g}" if isinstance(v, float) else f"{k.rsplit('.', 1)[-1]}={v}"
        for k, v in params.items()
    )


def table(c: Comparison) -> str:
    """The side-by-side table of one model and the target line."""
    head = (
        f"{'search':<8} | {'settings':<58} | {'val':>6} | {'dense':>6} | {'drop':>6} | "
        f"{'test drop':>9} | {'speedup':>7} | fits"
    )
    lines = [
        f"{c.model}: {c.what}",
        f"  {c.metric} on val; speedup: throughput over dense on {c.engine} at the largest batch, "
        f"same run; budget {c.max_drop:g} point(s); uniform {c.seconds[0]:.0f} s, "
        f"budget {c.seconds[1]:.0f} s",
        head,
        "-" * len(head),
    ]

    def row(search: str, r: TrialResult | None, test: dict[str, Any] | None, note: str = "") -> str:
        if r is None:
            return f"{search:<8} | {note:<58} |"
        if r.status != DONE:
            return f"{search:<8} | {_settings(r.params):<58} | failed: {(r.error or '')[:80]}"
        fits = "yes" if r.fits(c.max_drop) else "no"
        test_drop = (test or {}).get("drop")
        return (
            f"{search:<8} | {(_settings(r.params) + note)[:58]:<58} | {_num(r.value):>6} | "
            f"{_num(r.dense):>6} | {_num(r.drop):>6} | {_num(test_drop):>9} | "
            f"{_num(r.speedup):>6}x | {fits}"
        )

    for r in c.uniform:
        lines.append(row("uniform", r, None))
    best = c.best_uniform
    lines.append(row("best", best, c.uniform_test, "" if best else "no level within budget"))
    budget = c.budget or {}
    if c.chosen is None:
        closest = budget.get("closest")
        note = "search did not finish: see budget.log" if not budget else "no trial within budget"
        note += f"; closest drop {closest['drop']:g}" if closest else ""
        lines.append(row("budget", None, None, note))
    else:
        lines.append(row("budget", c.chosen, c.budget_test))
    if budget:
        lines.append(
            f"budget search: {budget['trials_ran']} trial(s) of at most {budget['trials']}, "
            f"{budget['finished']} finished, {budget['within_budget']} within budget"
            + (f"; chose trial {c.chosen.number}" if c.chosen else "")
        )
    met, why = c.verdict()
    lines.append(f"target {'MET' if met else 'NOT MET'}: {why}")
    return "\n".join(lines)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default=",".join(MODELS))
    parser.add_argument("--engine", default="onnxruntime", help="budget.engine: whose speedup")
    parser.add_argument(
        "--levels",
        type=lambda text: tuple(float(x) for x in text.split(",")),
        default=LEVELS,
        help="the uniform sweep's optim levels (0,0.25,0.5,0.75,1)",
    )
    parser.add_argument("--trials", type=int, default=8, help="budget.trials")
    parser.add_argument("--max-drop", type=float, default=1.0, help="budget.max_drop, points")
    parser.add_argument("--experiment", default="one_shot", choices=["one_shot", "training_aware"])
    parser.add_argument("--epochs", type=float, default=None, help="training-aware epochs")
    parser.add_argument(
        "--baseline-epochs", type=float, default=None, help="one-shot: dense fine-tune epochs"
    )
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="one more override for every run (repeatable), e.g. --set baseline.min_steps=100",
    )
    parser.add_argument("--image-size", type=int, default=None, help="cnn 96, yolo 160")
    parser.add_argument("--batch", type=int, default=None, help="benchmark batch (16; tiny 4)")
    parser.add_argument("--time", type=float, default=None, help="seconds per model (3; tiny 0.1)")
    parser.add_argument("--out", type=Path, default=None, help="where the sweeps go (kept)")
    parser.add_argument("--tiny", action="store_true", help="a generated tiny model and data set")
    args = parser.parse_args(argv)
    args.models = ["tiny"] if args.tiny else args.models.split(",")
    if unknown := set(args.models) - {*MODELS, "tiny"}:
        parser.error(
            f"--models: unknown {', '.join(sorted(unknown))}; choose from {', '.join(MODELS)}"
        )
    args.batch = args.batch or (4 if args.tiny else 16)
    args.time = args.time or (0.1 if args.tiny else 3.0)
    return args


def _terminated(signum: int, frame: object) -> None:
    # SystemExit inside subprocess.run kills the running sweep: no orphan keeps training
    raise SystemExit(128 + signum)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if argv is None:  # the command line, not a test calling main()
        signal.signal(signal.SIGTERM, _terminated)
    out = args.out or Path(tempfile.mkdtemp(prefix="sparsify-budget-vs-uniform-"))
    out.mkdir(parents=True, exist_ok=True)
    setups: dict[str, Callable[[], Setup]] = {
        "cnn": lambda: image_setup(out, args.image_size or 96),
        "bert": lambda: text_setup(out),
        "yolo": lambda: detection_setup(out, args.image_size or 160),
        "tiny": lambda: tiny_setup(out),
    }
    print(
        f"{os.cpu_count()} cores; batch {args.batch}; {args.experiment}; runs in {out}", flush=True
    )
    tables, met = [], True
    for model in args.models:
        result = run_model(args, model, setups[model](), out / model)
        tables.append(table(result))
        met = met and result.verdict()[0]
    print("\n\n".join(tables))
    return 0 if met else 1


if __name__ == "__main__":
    sys.exit(main())
