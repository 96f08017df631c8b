"""The dense baseline: how long it trains, and whether it learned anything.

A baseline that scores no better than a trivial predictor (the majority class, "O" for every
token, the empty answer, no detections) makes every later number meaningless: the sparse
model "keeps its accuracy" and the speedup is of a model nobody would deploy. The fetch stage
measures the dense model on val, exactly as the benchmark stage will, and `check_baseline`
stops the run there (`baseline.gate=error`), warns (`warn`) or skips the check (`off`).
"""

from __future__ import annotations

import logging
import math
from collections import Counter
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from omegaconf import DictConfig

from sparsify.errors import SparsifyError

log = logging.getLogger("sparsify")

GATE_MODES = ("error", "warn", "off")
# below this many val items one item moves the metric by more than 1/3 point: a 1-point change
# is then within the noise of which items happen to be in val
MIN_VAL_ITEMS = 300
# SQuAD F1 gives partial credit per question, so fewer questions resolve a point
MIN_VAL_QUESTIONS = 100
ITEM_WORDS = {
    "image-classification": "images",
    "object-detection": "images",
    "instance-segmentation": "images",
    "text-classification": "texts",
    "token-classification": "sentences",
    "question-answering": "questions",
}


class BaselineGateError(SparsifyError):
    """The dense baseline scored no better than a trivial predictor on val."""


@dataclass
class Trivial:
    """What a predictor that learned nothing scores on the run's val split."""

    value: float  # on the use case's metric, in percent
    items: int  # val items scored (after data.max_eval_samples)
    what: str  # the predictor, in words


@dataclass
class GateResult:
    """What fetch measured and decided; recorded in the manifest (fetch's `baseline_gate`)."""

    metric: str
    value: float
    trivial: float
    trivial_predictor: str
    items: int
    required: float
    passed: bool
    gate: str

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


# -- how long the baseline trains ---------------------------------------------------------


def baseline_epochs(cfg: DictConfig, n_train: int, batch_size: int) -> float:
    """`experiment.train.epochs`, raised for a small train split until it makes
    `baseline.min_steps` optimizer steps (at most `baseline.max_epochs` epochs), cut for a
    large one to `baseline.step_budget` steps. `experiment.train.max_steps` still caps the
    loops themselves. Small sets need more passes to fit a new head; large ones converge in
    well under the configured epochs, and a step budget keeps them affordable on a CPU."""
    epochs = float(cfg.experiment.train.epochs)
    per_epoch = max(1, math.ceil(n_train / max(1, batch_size)))
    steps = epochs * per_epoch
    base = cfg.baseline
    if steps < int(base.min_steps):
        chosen = min(float(base.max_epochs), float(math.ceil(int(base.min_steps) / per_epoch)))
        chosen = max(chosen, epochs)
        why = f"below baseline.min_steps {int(base.min_steps)}"
    elif steps > int(base.step_budget):
        chosen = round(int(base.step_budget) / per_epoch, 3)
        why = f"above baseline.step_budget {int(base.step_budget)}"
    else:
        chosen, why = epochs, ""
    if chosen != epochs:
        log.info(
            "Baseline schedule: %d train items at batch %d = %d steps an epoch; "
            "experiment.train.epochs %g = %d steps is %s: training %g epochs (%d steps)",
            n_train,
            batch_size,
            per_epoch,
            epochs,
            steps,
            why,
            chosen,
            round(chosen * per_epoch),
        )
    return chosen


# -- trivial predictors and the size of val -----------------------------------------------


def _limit(items: list[Any], cfg: DictConfig) -> list[Any]:
    limit = cfg.data.max_eval_samples
    return items[: int(limit)] if limit else items


def trivial_score(ctx: Any) -> Trivial | None:
    """The score of the trivial predictor for the run's task on the val items the benchmark
    scores, through the same metric code; None for a use case without a metric (custom)."""
    from sparsify.outputs import ValidateOutput

    cfg, task, metric = ctx.cfg, str(ctx.cfg.use_case.task), str(ctx.cfg.use_case.metric)
    validated = ctx.output(ValidateOutput)
    summary = validated.summary
    if task == "image-classification":
        from sparsify.data.image_folder import list_samples

        classes = [str(c) for c in summary["classes"]]
        labels = [y for _, y in _limit(list_samples(validated.data_dir, "val", classes), cfg)]
        top, count = Counter(labels).most_common(1)[0] if labels else (0, 0)
        value = 100.0 * count / max(1, len(labels))
        return Trivial(value, len(labels), f"always {classes[top]!r} (the most frequent val class)")
    if task in ("object-detection", "instance-segmentation"):
        from sparsify.data.yolo_loader import yolo_samples

        n = len(_limit(yolo_samples(summary, "val"), cfg))
        return Trivial(0.0, n, "no detections")
    if task in ("text-classification", "token-classification", "question-answering"):
        return _trivial_text(ctx, task, metric)
    return None


def _trivial_text(ctx: Any, task: str, metric: str) -> Trivial:
    from sparsify.data.text import load_split
    from sparsify.models.transformers.metrics import accuracy_f1, entity_f1, squad_scores
    from sparsify.outputs import ValidateOutput

    validated = ctx.output(ValidateOutput)
    records = _limit(load_split(validated.data_dir, validated.summary, "val"), ctx.cfg)
    if task == "text-classification":
        refs = [str(r["label"]) for r in records]
        top = Counter(refs).most_common(1)[0][0] if refs else ""
        ids = {label: i for i, label in enumerate(sorted(set(refs)))}
        scores = accuracy_f1([ids[top]] * len(refs), [ids[r] for r in refs])
        what = f"always {top!r} (the most frequent val label)"
    elif task == "token-classification":
        refs = [[str(t) for t in r["tags"]] for r in records]
        counts = Counter(t for row in refs for t in row)
        outside = "O" if "O" in counts or not counts else counts.most_common(1)[0][0]
        scores = entity_f1([[outside] * len(row) for row in refs], refs)
        what = f"{outside!r} for every token"
    else:
        answers = [list(r["answers"]["text"]) for r in records]
        scores = squad_scores([""] * len(answers), answers)
        what = "the empty answer to every question"
    return Trivial(float(scores.get(metric, 0.0)), len(records), what)


def small_val_note(items: int, task: str) -> str | None:
    """Why a 1-point difference cannot be read off a val split this small (None when it can)."""
    least = MIN_VAL_QUESTIONS if task == "question-answering" else MIN_VAL_ITEMS
    if items <= 0 or items >= least:
        return None
    return (
        f"val has {items} {ITEM_WORDS.get(task, 'items')}: one item = {100.0 / items:.1f} "
        "points; a 1-point change cannot be resolved"
    )


# -- measuring the dense model and the gate -----------------------------------------------


def measure_dense(ctx: Any, family: Any, model_path: Path) -> dict[str, float]:
    """The use case's metrics of the dense model on val, as the benchmark stage measures them:
    exported to ONNX and scored by the family's `evaluate_onnx` on ONNX Runtime."""
    from sparsify.engines.ort import OnnxRuntimeEngine

    work = ctx.stage_dir("fetch") / ".measure"
    work.mkdir(parents=True, exist_ok=True)
    try:
        onnx_path = family.export(family.load(model_path, ctx), work / "dense.onnx", ctx)
        engine = OnnxRuntimeEngine(onnx_path, ctx.cfg.benchmark.num_threads)
        try:
            return dict(family.evaluate_onnx(engine, ctx))
        finally:
            engine.close()
    finally:
        import shutil

        shutil.rmtree(work, ignore_errors=True)


def check_gate_mode(cfg: DictConfig) -> str:
    """`baseline.gate`, checked before any training so a typo costs nothing."""
    mode = str(cfg.baseline.gate).strip().lower()
    if mode not in GATE_MODES:
        raise SparsifyError(
            f"baseline.gate = {cfg.baseline.gate!r} is not one of {', '.join(GATE_MODES)}; "
            "fix: baseline.gate=error (stop a run whose dense baseline learned nothing), "
            "warn (log it) or off"
        )
    return mode


def required_score(trivial: float, margin: float) -> float:
    """`margin` points above the trivial score, or half the headroom left above it when that
    is less (a 95 %-majority set leaves 5 points: 97.5 is then clearly better)."""
    return trivial + min(margin, (100.0 - trivial) / 2)


def gate_message(result: GateResult, ctx: Any) -> str:
    cfg = ctx.cfg
    train = cfg.experiment.train
    return (
        f"The dense baseline is not clearly better than a trivial predictor: "
        f"{result.metric} {result.value:.2f} on val ({result.items} items) against "
        f"{result.trivial:.2f} for {result.trivial_predictor} (baseline.margin="
        f"{float(cfg.baseline.margin):g}: it needs {result.required:.2f}). Sparsifying and "
        "benchmarking it would measure a model that learned nothing.\n"
        "  fix: train longer (experiment.train.epochs="
        f"{max(10, 3 * math.ceil(float(train.epochs)))}, or baseline.min_steps="
        f"{2 * int(cfg.baseline.min_steps)}), try another learning rate (experiment.train.lr="
        f"{_other_lr(float(train.lr))}; now {float(train.lr):g}), give a trained model "
        "(model=<path>), or add training data.\n"
        "  to go on anyway: baseline.gate=warn (or off)"
    )


def _other_lr(lr: float) -> str:
    """A rate worth trying: encoders fine-tune at 2e-5..1e-4, CNNs from 1e-4 to 1e-3."""
    return "5e-5" if lr > 1e-4 else "1e-4" if lr < 5e-5 else "3e-5"


def check_baseline(ctx: Any, scores: dict[str, float], trivial: Trivial) -> GateResult:
    """Log the baseline's score beside the trivial one; stop or warn when it is not clearly
    better (baseline.gate / baseline.margin)."""
    metric = str(ctx.cfg.use_case.metric)
    if metric not in scores:
        raise SparsifyError(
            f"use_case.metric {metric!r} is not among what the {ctx.cfg.use_case.family} "
            f"family measures ({', '.join(k for k in scores if k != 'samples')}); "
            "fix: set use_case.metric to one of them"
        )
    value = float(scores[metric])
    items = int(scores.get("samples") or trivial.items)
    mode = check_gate_mode(ctx.cfg)
    required = required_score(trivial.value, float(ctx.cfg.baseline.margin))
    result = GateResult(
        metric, value, trivial.value, trivial.what, items, required, value >= required, mode
    )
    ctx.log.info(
        "Dense baseline: %s %.2f on val (%d items; trivial predictor %.2f: %s)",
        metric,
        value,
        items,
        trivial.value,
        trivial.what,
    )
    if not result.passed:
        message = gate_message(result, ctx)
        if mode == "error":
            raise BaselineGateError(message)
        ctx.log.warning("%s", message)
    return result
