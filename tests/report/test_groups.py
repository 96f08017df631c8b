"""A report over runs of several use cases and data sets: named runs, a table and a plot per
(use case, metric), one dense star and one Pareto front per dense baseline."""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any

import pytest
from matplotlib.axes import Axes

from sparsify.report import build_report, row_from_record
from sparsify.report.collect import collect
from sparsify.report.groups import group_rows
from sparsify.run_record import RunRecord
from tests.report.fabricate import fake_run, make_sweep_root

CLS, NER, QA = "cv-classification", "nlp-named_entity_recognition", "nlp-question_answering"


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    """Two sweeps (classification on two data sets; NER with a failed job) and a lone QA run."""
    cls = make_sweep_root(tmp_path / "multirun" / "a")
    fake_run(cls / "0_cls_level-0.0", CLS, "flowers", 0.0, 90.0, 10.0)
    fake_run(cls / "1_cls_level-0.5", CLS, "flowers", 0.5, 88.0, 6.0)
    fake_run(cls / "2_cls_level-0.5", CLS, "birds", 0.5, 70.0, 7.0, dense=(75.0, 11.0))
    ner = make_sweep_root(tmp_path / "multirun" / "b")
    fake_run(ner / "0_ner_level-0.5", NER, "conll", 0.5, 80.0, 20.0, dense=(85.0, 30.0))
    fake_run(ner / "1_ner_level-0.9", NER, "conll", 0.9, None, None, failed="RuntimeError: x")
    fake_run(tmp_path / "qa" / "2026-05-01", QA, "squad_tiny/", 0.5, 50.0, 12.0)
    return tmp_path


def test_the_hook_turns_a_finished_or_failed_run_into_a_row(tree: Path) -> None:
    done = row_from_record(RunRecord.load(tree / "multirun" / "b" / "0_ner_level-0.5"))
    assert (done.run, done.use_case, done.data, done.model) == (
        "0_ner_level-0.5",
        NER,
        "conll",
        "resnet18",
    )
    assert (done.metric, done.accuracy, done.baseline_accuracy) == ("entity_f1", 80.0, 85.0)
    failed = row_from_record(RunRecord.load(tree / "multirun" / "b" / "1_ner_level-0.9"), "trial 1")
    assert (failed.run, failed.status, failed.error) == ("trial 1", "failed", "RuntimeError: x")
    assert failed.metric == "entity_f1"  # from its config: it still belongs to the NER table


def test_runs_are_named_by_job_or_relative_path(tree: Path) -> None:
    rows = {r.run: r for r in collect(tree)}
    assert set(rows) == {
        "0_cls_level-0.0",
        "1_cls_level-0.5",
        "2_cls_level-0.5",
        "0_ner_level-0.5",
        "1_ner_level-0.9",
        "qa/2026-05-01",  # not a sweep job: its path under the report root
    }
    assert rows["qa/2026-05-01"].data == "squad_tiny"  # a trailing slash does not hide it
    (only,) = collect(tree / "qa" / "2026-05-01")  # the report root is the run itself
    assert only.run == "2026-05-01"


def test_two_sweeps_with_the_same_job_names_are_told_apart(tmp_path: Path) -> None:
    for sweep in ("x", "y"):
        fake_run(make_sweep_root(tmp_path / sweep) / "0_job", CLS, "flowers", 0.5, 88.0, 6.0)
    assert sorted(r.run for r in collect(tmp_path)) == ["x/0_job", "y/0_job"]


def test_a_budget_sweeps_best_copy_is_not_a_second_row(tmp_path: Path) -> None:
    sweep = make_sweep_root(tmp_path / "budget")
    fake_run(sweep / "0_trial", CLS, "flowers", 0.5, 88.0, 6.0)
    fake_run(sweep / "best", CLS, "flowers", 0.5, 88.0, 6.0)  # a copy of the best trial
    assert sorted(r.run for r in collect(sweep)) == ["0_trial", "best"]  # no trials.csv: a run
    (sweep / "trials.csv").write_text("run,accuracy\n0_trial,88.0\n")
    assert [r.run for r in collect(sweep)] == ["0_trial"]


def test_groups_by_use_case_and_metric(tree: Path) -> None:
    groups = group_rows(collect(tree))
    assert [(g.use_case, g.metric, len(g.rows)) for g in groups] == [
        (CLS, "top1", 3),
        (NER, "entity_f1", 2),
        (QA, "f1", 1),
    ]
    assert [set(g.baselines()) for g in groups][0] == {
        ("flowers", "resnet18"),
        ("birds", "resnet18"),
    }


def test_pareto_is_per_dense_baseline(tree: Path) -> None:
    report = build_report(tree, tree / "out")
    pareto = {r.run: r.pareto for r in report.rows if r.status == "done"}
    # 70.0 at 7 ms on birds is dominated by 88.0 at 6 ms on flowers, but they are not comparable
    assert pareto == {
        "0_cls_level-0.0": True,
        "1_cls_level-0.5": True,
        "2_cls_level-0.5": True,
        "0_ner_level-0.5": True,
        "qa/2026-05-01": True,
    }


def test_a_table_and_a_plot_per_group_with_its_metric(tree: Path) -> None:
    out = tree / "out"
    out.mkdir()
    (out / "accuracy_vs_latency.png").write_bytes(b"stale")  # an earlier one-group report
    report = build_report(tree, out)
    plots = sorted(p.name for p in out.glob("accuracy_vs_latency*.png"))
    assert plots == [
        "accuracy_vs_latency_cv-classification_top1.png",
        "accuracy_vs_latency_nlp-named_entity_recognition_entity_f1.png",
        "accuracy_vs_latency_nlp-question_answering_f1.png",
    ]
    assert {p.name for k, p in report.files.items() if k.startswith("plot")} == set(plots)
    md = (out / "summary.md").read_text()
    for title, header in [
        (f"## {CLS}: top1", "| top1 (dense) |"),
        (f"## {NER}: entity_f1", "| entity_f1 (dense) |"),
        (f"## {QA}: f1", "| f1 (dense) |"),
    ]:
        section = md.split(title, 1)[1].split("\n## ", 1)[0]
        assert header in section and section.count("![accuracy vs latency](") == 1
        assert "| run | use case | data |" in section
    assert md.count("| latency ms b1 (dense) |") == 3  # three tables, no more
    console = report.console()
    assert f"{NER}: entity_f1 (2 runs)" in console and "1_ner_level-0.9 " in console
    with (out / "summary.csv").open() as fh:
        rows = list(csv.DictReader(fh))
    assert {r["run"]: (r["use_case"], r["data"], r["metric"]) for r in rows}["2_cls_level-0.5"] == (
        CLS,
        "birds",
        "top1",
    )


def test_one_dense_star_per_dense_baseline(tree: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    stars: list[dict[str, Any]] = []
    scatter = Axes.scatter

    def recording(self: Axes, *args: Any, **kwargs: Any) -> Any:
        if kwargs.get("marker") == "*":
            stars.append({"xy": (args[0][0], args[1][0]), "label": kwargs.get("label")})
        return scatter(self, *args, **kwargs)

    monkeypatch.setattr(Axes, "scatter", recording)
    build_report(tree, tree / "out")
    # classification: flowers (two runs, one dense model) and birds; NER; QA
    assert [s["xy"] for s in stars] == [(10.0, 90.0), (11.0, 75.0), (30.0, 85.0), (10.0, 90.0)]
    assert stars[0]["label"] == "dense baseline (flowers) (median of 2)"
    assert stars[1]["label"] == "dense baseline (birds) (median of 1)"
    assert stars[2]["label"] == "dense baseline (median of 1)"  # one baseline: plain legend
