"""Every shipped config composes; overrides, aliases and the optim level behave."""

from __future__ import annotations

import importlib.resources
import itertools

import pytest
from omegaconf import OmegaConf

from sparsify.config import compose_config, normalize_overrides
from sparsify.config.checks import config_problems
from sparsify.errors import SparsifyError, ValidationError


def _options(group: str) -> list[str]:
    folder = importlib.resources.files("sparsify.conf") / group
    return sorted(
        f.name.removesuffix(".yaml") for f in folder.iterdir() if f.name.endswith(".yaml")
    )


USE_CASES = _options("use_case")
EXPERIMENTS = _options("experiment")
DATA = _options("data")


def test_all_eight_use_cases_and_three_experiments_ship() -> None:
    assert len([u for u in USE_CASES if u != "custom"]) == 8
    assert EXPERIMENTS == ["one_shot", "sparse_transfer", "training_aware"]
    assert {"image_folder", "yolo", "hf_text", "npz", "digits"} <= set(DATA)


@pytest.mark.parametrize(
    ("use_case", "experiment"), list(itertools.product(USE_CASES, EXPERIMENTS))
)
def test_every_use_case_and_experiment_composes(use_case: str, experiment: str) -> None:
    cfg = compose_config([f"use_case={use_case}", f"experiment={experiment}", "data.path=/x"])
    assert cfg.use_case.name == use_case
    assert cfg.experiment.name == experiment
    assert cfg.data.format in list(cfg.use_case.data_formats)  # data follows the use case
    OmegaConf.to_container(cfg, resolve=True)  # every interpolation resolves


@pytest.mark.parametrize("data", DATA)
def test_every_data_preset_composes(data: str) -> None:
    cfg = compose_config([f"data={data}"])
    assert cfg.data.format


def test_use_case_experiment_specialization_applies() -> None:
    cfg = compose_config(["experiment=training_aware", "use_case=cv-classification"])
    assert cfg.experiment.train.lr == pytest.approx(5e-4)


def test_shipped_cv_classification_one_shot_validates() -> None:
    assert config_problems(compose_config(["data.path=/x"])) == []
    assert config_problems(compose_config(["data=digits"])) == []


def test_unknown_key_and_wrong_type_fail_at_compose() -> None:
    with pytest.raises(SparsifyError, match="no_such_key"):
        compose_config(["data.no_such_key=1"])
    with pytest.raises(SparsifyError, match="image_size"):
        compose_config(["data.image_size=big"])


@pytest.mark.parametrize(
    ("given", "canonical"),
    [
        ("image-classification", "cv-classification"),
        ("IC", "cv-classification"),
        ("classification", "cv-classification"),
        ("Object Detection", "cv-detection"),
        ("od", "cv-detection"),
        ("yolo", "cv-detection"),
        ("image_segmentation", "cv-segmentation"),
        ("segmentation", "cv-segmentation"),
        ("qa", "nlp-question_answering"),
        ("question-answering", "nlp-question_answering"),
        ("glue", "nlp-text_classification"),
        ("text_classification", "nlp-text_classification"),
        ("sentiment", "nlp-sentiment_analysis"),
        ("ner", "nlp-named_entity_recognition"),
        ("named entity recognition", "nlp-named_entity_recognition"),
        ("token_classification", "nlp-token_classification"),
        ("nlp-token_classification", "nlp-token_classification"),
    ],
)
def test_use_case_aliases(given: str, canonical: str) -> None:
    assert f"use_case={canonical}" in normalize_overrides([f"use_case={given}"])
    assert compose_config([f"use_case={given}"]).use_case.name == canonical


def test_unknown_use_case_is_custom_and_keeps_its_name() -> None:
    cfg = compose_config(["use_case=my-audio-thing", "data.path=/x"])
    assert cfg.use_case.custom is True
    assert cfg.use_case.name == "my-audio-thing"
    assert cfg.data.format == "npz"


@pytest.mark.parametrize("experiment", ["sparse_transfer", "training_aware"])
def test_unknown_use_case_refused_outside_one_shot(experiment: str) -> None:
    cfg = compose_config(["use_case=my-audio-thing", f"experiment={experiment}", "data.path=/x"])
    problems = config_problems(cfg)
    assert problems[0].key == "use_case"
    assert "cv-classification" in problems[0].fix and "nlp-question_answering" in problems[0].fix


def test_data_format_must_fit_use_case() -> None:
    problems = config_problems(
        compose_config(["use_case=ner", "data=image_folder", "data.path=/x"])
    )
    assert any(p.key == "data" and "hf_text" in p.fix for p in problems)


@pytest.mark.parametrize(
    ("given", "level"),
    [("0", 0.0), ("0.25", 0.25), ("1", 1.0), ("1.0", 1.0), ("50", 0.5), ("75", 0.75), ("100", 1.0)],
)
def test_optim_level_fraction_or_percent(given: str, level: float) -> None:
    from sparsify.recipes.levels import normalize_level

    cfg = compose_config([f"optim_level={given}"])
    assert normalize_level(cfg.optim_level)[0] == pytest.approx(level)


@pytest.mark.parametrize("bad", ["1.7", "abc", "-0.1", "101", "nan"])
def test_bad_optim_level_is_refused_clearly(bad: str) -> None:
    with pytest.raises(ValidationError) as info:
        compose_config([f"optim_level={bad}"])
    assert "optim_level" in str(info.value)
    assert "0.0 to 1.0" in str(info.value)


def test_model_shorthand_sets_model_path() -> None:
    assert compose_config(["model=./m.pth"]).model.path == "./m.pth"


def test_missing_data_is_a_problem_with_a_fix() -> None:
    problems = config_problems(compose_config([]))
    assert [p.key for p in problems] == ["data.path"]
    assert "data.path=" in problems[0].fix


def test_unknown_benchmark_engine_and_bad_timeout_are_reported_together() -> None:
    cfg = compose_config(["benchmark.engines=[onnxruntime,tensorrt]", "benchmark.timeout_s=0"])
    problems = {p.key: p for p in config_problems(cfg)}
    assert "tensorrt" in problems["benchmark.engines"].message
    assert "deepsparse" in problems["benchmark.engines"].fix
    assert "benchmark.timeout_s" in problems


def test_quantization_choices_are_checked_before_anything_runs() -> None:
    cfg = compose_config(
        [
            "quantization.format=qdqq",
            "quantization.calibration=kl",
            "quantization.percentile=0",
            "quantization.weight_rounding=adaround",
        ]
    )
    problems = {p.key: p for p in config_problems(cfg)}
    assert "qoperator" in problems["quantization.format"].fix
    assert "gptq, nearest" in problems["quantization.weight_rounding"].fix
    assert "percentile" in problems["quantization.calibration"].fix
    assert "quantization.percentile" in problems
    defaults = config_problems(compose_config([]))
    assert not [p for p in defaults if p.key.startswith("quantization")]
    dynamic = config_problems(compose_config(["quantization.format=dynamic"]))
    assert not [p for p in dynamic if p.key.startswith("quantization")]
    signed = compose_config(["quantization.format=dynamic", "quantization.activation_type=int8"])
    problems = {p.key: p for p in config_problems(signed)}
    assert "uint8" in problems["quantization.activation_type"].fix
