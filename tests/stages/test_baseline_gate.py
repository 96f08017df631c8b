"""The baseline gate: a dense baseline no better than a trivial predictor stops the run in
fetch, with what was measured, the trivial score and the fixes; the headline metric is the
use case's everywhere; a small val split is called out.

The measured metric is injected through the family's `evaluate_onnx` (set to the trivial
predictor's own score), so the real path runs: the model is fetched or trained, exported,
loaded in ONNX Runtime, scored, compared and refused.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

import sparsify
from sparsify.baseline import (
    baseline_epochs,
    required_score,
    small_val_note,
    trivial_score,
)
from sparsify.benchmark.table import comparison, footnotes, format_table
from sparsify.config import compose_config
from sparsify.deploy.model_card import render_model_card
from sparsify.models.classifier.family import ImageClassifierFamily
from sparsify.report.collect import read_run
from sparsify.report.summary import table_rows, to_csv

FETCH_ONLY = "stages=[validate,fetch]"


def _as_trivial(metric: str, calls: list[int] | None = None) -> Any:
    """An `evaluate_onnx` whose score is exactly the trivial predictor's, on the same items."""

    def evaluate(self: Any, engine: Any, ctx: Any) -> dict[str, float]:
        if calls is not None:
            calls.append(1)
        engine.run  # noqa: B018 - a real engine was built from the exported dense model
        trivial = trivial_score(ctx)
        assert trivial is not None
        return {metric: trivial.value, "samples": trivial.items}

    return evaluate


def _run(overrides: list[str], tmp_path: Path, name: str = "run") -> sparsify.runner.RunResult:
    # a cache per test: the measured-metric cache must not carry one test's injection over
    return sparsify.run(
        [*overrides, FETCH_ONLY, f"cache_dir={tmp_path / 'cache'}"], run_dir=tmp_path / name
    )


def _log(result: sparsify.runner.RunResult) -> str:
    return (result.run_dir / "run.log").read_text(encoding="utf-8")


def test_classifier_no_better_than_the_majority_class_is_stopped(
    tiny_run: list[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(ImageClassifierFamily, "evaluate_onnx", _as_trivial("top1"))
    result = _run([*tiny_run, "baseline.gate=error"], tmp_path)
    assert result.status == "failed"
    error = result.error or ""
    # 3 classes x 4 val images: always one class is right on 4 of 12
    assert "top1 33.33 on val (12 items) against 33.33 for always 'a'" in error
    assert "it needs 38.33" in error
    for fix in ("experiment.train.epochs=", "experiment.train.lr=", "model=", "baseline.gate=warn"):
        assert fix in error
    manifest = json.loads((result.run_dir / "manifest.json").read_text())
    assert manifest["stages"]["fetch"]["status"] == "failed"
    assert "sparsify" not in manifest["stages"]  # stopped before sparsifying


def test_warn_goes_on_and_records_the_verdict(
    tiny_run: list[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(ImageClassifierFamily, "evaluate_onnx", _as_trivial("top1"))
    result = _run([*tiny_run, "baseline.gate=warn"], tmp_path)
    assert result.status == "done", result.error
    verdict = result.outputs["fetch"]["baseline_gate"]
    assert verdict["passed"] is False and verdict["gate"] == "warn"
    assert verdict["value"] == pytest.approx(100 / 3) and verdict["items"] == 12
    text = _log(result)
    assert "[WARNING] The dense baseline is not clearly better than a trivial predictor" in text
    # the baseline's score, said when it is made
    assert "Dense baseline: top1 33.33 on val (12 items; trivial predictor 33.33" in text
    # and the small val split, with what one item is worth
    assert "val has 12 images: one item = 8.3 points; a 1-point change cannot be" in text


def test_off_measures_nothing(
    tiny_run: list[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[int] = []
    monkeypatch.setattr(ImageClassifierFamily, "evaluate_onnx", _as_trivial("top1", calls))
    result = _run([*tiny_run, "baseline.gate=off"], tmp_path)
    assert result.status == "done", result.error
    assert calls == [] and "baseline_gate" not in result.outputs["fetch"]
    assert "baseline.gate=off" in _log(result)


def test_a_baseline_clearly_better_passes(
    tiny_run: list[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def good(self: Any, engine: Any, ctx: Any) -> dict[str, float]:
        return {"top1": 75.0, "samples": 12}

    monkeypatch.setattr(ImageClassifierFamily, "evaluate_onnx", good)
    result = _run([*tiny_run, "baseline.gate=error", "baseline.margin=40"], tmp_path)
    assert result.status == "done", result.error
    verdict = result.outputs["fetch"]["baseline_gate"]
    assert verdict["passed"] and verdict["required"] == pytest.approx(100 / 3 + 100 / 3)


def test_an_unknown_gate_mode_fails_before_training(tiny_run: list[str], tmp_path: Path) -> None:
    result = _run([*tiny_run, "baseline.gate=maybe"], tmp_path)
    assert result.status == "failed"
    assert "baseline.gate = 'maybe' is not one of error, warn, off" in (result.error or "")
    assert not (tmp_path / "cache" / "baselines").exists()


# -- the NLP tasks ------------------------------------------------------------------------


@pytest.fixture(scope="module")
def encoder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    pytest.importorskip("transformers")
    from tests.fixtures.hf_models import make_tiny_bert

    return make_tiny_bert(tmp_path_factory.mktemp("bert") / "model")


NLP = [
    "experiment.train.max_steps=2",
    "experiment.train.batch_size=4",
    "data.max_length=48",
    "data.batch_size=4",
]


@pytest.mark.parametrize(
    ("use_case", "metric", "trivial"),
    [
        ("ner", "entity_f1", "0.00 for 'O' for every token"),
        ("qa", "f1", "14.29 for the empty answer to every question"),
    ],
)
def test_nlp_baseline_equal_to_the_trivial_predictor_is_stopped(
    use_case: str,
    metric: str,
    trivial: str,
    encoder: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from sparsify.models.transformers.family import TransformersFamily
    from tests.fixtures.text import make_qa, make_token_classification

    make = make_token_classification if use_case == "ner" else make_qa
    data = make(tmp_path / "data")
    monkeypatch.setattr(TransformersFamily, "evaluate_onnx", _as_trivial(metric))
    overrides = [f"use_case={use_case}", f"data.path={data}", f"model={encoder}", *NLP]
    result = _run([*overrides, "baseline.gate=error"], tmp_path)
    assert result.status == "failed"
    assert f"{metric} " in (result.error or "") and trivial in (result.error or "")
    assert "experiment.train.lr=" in (result.error or "")


# -- YOLO ---------------------------------------------------------------------------------


def test_yolo_without_a_model_is_refused_with_the_fix(tmp_path: Path) -> None:
    pytest.importorskip("ultralytics")
    from tests.fixtures.yolo import make_yolo_dataset

    data = make_yolo_dataset(tmp_path / "data")
    result = _run(["use_case=cv-detection", f"data.path={data}", "data.image_size=64"], tmp_path)
    assert result.status == "failed"
    error = result.error or ""
    assert "from random weights" in error and "model=<path to best.pt>" in error
    assert "baseline.allow_scratch=true" in error


def test_yolo_with_no_better_than_no_detections_is_stopped(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    pytest.importorskip("ultralytics")
    from sparsify.models.yolo.family import YoloFamily
    from tests.deploy.builders import yolo_deployment
    from tests.fixtures.yolo import offline_settings

    with offline_settings(tmp_path / "ultralytics"):
        _, checkpoint = yolo_deployment(tmp_path / "built", "cv-detection")  # classes box, disc
        monkeypatch.setattr(YoloFamily, "evaluate_onnx", _as_trivial("map50-95"))
        data = tmp_path / "built" / "data"
        overrides = ["use_case=cv-detection", f"data.path={data}", f"model={checkpoint}"]
        result = _run([*overrides, "data.image_size=64", "baseline.gate=error"], tmp_path)
    assert result.status == "failed"
    assert "map50-95 0.00 on val" in (result.error or "")
    assert "0.00 for no detections" in (result.error or "")


# -- the rules ----------------------------------------------------------------------------


def test_small_val_notes_say_what_one_item_is_worth() -> None:
    assert small_val_note(48, "image-classification") == (
        "val has 48 images: one item = 2.1 points; a 1-point change cannot be resolved"
    )
    assert small_val_note(300, "image-classification") is None
    assert small_val_note(17, "question-answering").startswith(
        "val has 17 questions: one item = 5.9"
    )
    assert small_val_note(100, "question-answering") is None


def test_margin_never_asks_for_more_than_half_the_headroom() -> None:
    assert required_score(0.0, 5.0) == 5.0
    assert required_score(95.0, 5.0) == 97.5  # a 95 % majority leaves 5 points


def test_baseline_epochs_scale_with_the_train_split() -> None:
    cfg = compose_config(["use_case=ner"])
    # 1,900 sentences at batch 32: 60 steps an epoch; 3 epochs = 180 < 500 steps -> 9 epochs
    assert baseline_epochs(cfg, 1900, 32) == 9
    assert baseline_epochs(cfg, 8000, 32) == 3  # 750 steps: as configured
    assert baseline_epochs(cfg, 100_000, 32) == pytest.approx(5000 / 3125)  # the step budget
    assert baseline_epochs(cfg, 41, 32) == 50  # at most baseline.max_epochs


# -- the headline metric ------------------------------------------------------------------


def _qa_report() -> dict[str, Any]:
    def model(em: float, f1: float) -> dict[str, Any]:
        return {
            "accuracy": {"exact_match": em, "f1": f1, "samples": 48},
            "benchmarks": [
                {"batch_size": 1, "benchmark_result": {"items_per_sec": 10.0, "median": 100.0}}
            ],
            "size_mb": 1.0,
            "sparsity": 0.5,
        }

    engines = {"onnxruntime": {"baseline": model(40.0, 60.0), "sparsified": model(38.0, 59.0)}}
    report: dict[str, Any] = {"engines": engines, "metric": "f1"}
    report["table"] = comparison(report)
    return report


def test_qa_leads_with_f1_in_table_card_and_summary(tmp_path: Path) -> None:
    report = _qa_report()
    rows = {r["model"]: r for r in report["table"]}
    assert rows["sparsified"]["metric"] == "f1" and rows["sparsified"]["accuracy"] == 59.0
    assert rows["baseline"]["accuracy"] == 60.0
    notes = footnotes(report, "question-answering")
    assert notes == [
        "f1: val has 48 questions: one item = 2.1 points; a 1-point change cannot be resolved"
    ]
    assert format_table(report["table"], notes).endswith("\n* " + notes[0])

    config = {
        "task": "question-answering",
        "use_case": "nlp-question_answering",
        "experiment": "one_shot",
        "optim_level": 0.5,
        "inputs": [{"name": "input_ids", "dtype": "int64", "shape": ["batch", "sequence"]}],
        "preprocessing": {"type": "tokenizer", "max_length": 48},
        "postprocessing": {"type": "best_span"},
    }
    card = render_model_card(config, report, "a model", "test")
    assert "f1 60.0 (dense) -> 59.0 (this model); also exact_match 40 -> 38" in card
    assert "one item = 2.1 points" in card

    run = tmp_path / "run"
    (run / "benchmark").mkdir(parents=True)
    (run / "benchmark" / "benchmark.json").write_text(json.dumps(report))
    (run / "config.yaml").write_text("use_case:\n  name: nlp-question_answering\n")
    manifest = {"status": "done", "stages": {"benchmark": {"status": "done", "outputs": {}}}}
    (run / "manifest.json").write_text(json.dumps(manifest))
    row = read_run(run)
    assert (row.metric, row.accuracy, row.baseline_accuracy) == ("f1", 59.0, 60.0)
    headers, _ = table_rows([row])
    assert "f1 (dense)" in headers
    csv = to_csv([row]).splitlines()
    assert dict(zip(csv[0].split(","), csv[1].split(","), strict=False))["metric"] == "f1"
