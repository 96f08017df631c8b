"""Command-line overrides: unknown keys (`+` included), quoting, custom use case names,
and the calibration sample count checked before anything runs."""

from __future__ import annotations

import pytest

from sparsify.config import compose_config, normalize_overrides
from sparsify.config.checks import config_problems
from sparsify.config.overrides import hydra_quote
from sparsify.errors import ValidationError


def test_unknown_keys_are_refused_with_or_without_plus_all_in_one_error() -> None:
    with pytest.raises(ValidationError) as info:
        compose_config(["+foo=1", "++data.pth=./x", "data.no_such_key=1", "+optim_levle=0.5"])
    problems = {p.key: p for p in info.value.problems}
    assert list(problems) == ["+foo", "++data.pth", "data.no_such_key", "+optim_levle"]
    assert "data.path" in problems["++data.pth"].fix
    assert "optim_level" in problems["+optim_levle"].fix
    assert "`+` cannot add keys" in problems["+foo"].message
    assert "4 problem(s)" in str(info.value)


@pytest.mark.parametrize(
    "override",
    [
        "++data.path=./x",  # force-setting a known key is fine
        "+hydra.job.env_set.OMP_NUM_THREADS=1",  # Hydra's own settings are Hydra's to check
        "benchmark.batch_sizes=[1,2]",
        "baseline.margin=1.0",
        "zoo.offline=false",
    ],
)
def test_known_keys_pass(override: str) -> None:
    assert normalize_overrides([override])[0] == override


def test_options_and_their_values_are_no_overrides() -> None:
    argv = ["-m", "--config-dir", "/a=b", "--cfg", "job", "optim_level=0.5"]
    assert normalize_overrides(argv)[:5] == argv[:5]


@pytest.mark.parametrize(
    "value",
    [
        "my data/with spaces",
        "it's here",
        "a=b,c",
        "[1,2]",
        "{a: 1}",
        'say "hi"',
        "back\\slash\\",
        "q\\'uote",
        "cost ${HOME}",
        "null",
        "1.5",
    ],
)
def test_a_quoted_value_reaches_the_config_as_typed(value: str) -> None:
    cfg = compose_config([f"data.path={hydra_quote(value)}", f"model={hydra_quote(value)}"])
    assert cfg.data.path == value
    assert cfg.model.path == value


def test_quoted_use_case_alias_and_sweep_of_quoted_values() -> None:
    assert compose_config([f"use_case={hydra_quote('Object Detection')}"]).use_case.name == (
        "cv-detection"
    )
    assert "use_case=cv-detection,nlp-question_answering" in normalize_overrides(
        [f"use_case={hydra_quote('od')},qa"]
    )


@pytest.mark.parametrize("name", ["not a use case!", "a/b", "-x"])
def test_unusable_custom_use_case_name_lists_the_known_ones(name: str) -> None:
    with pytest.raises(ValidationError) as info:
        compose_config([f"use_case={hydra_quote(name)}"])
    (problem,) = info.value.problems
    assert problem.key == "use_case" and problem.value == name
    assert "cv-classification" in problem.fix and "nlp-question_answering" in problem.fix


def test_every_bad_level_of_a_sweep_is_listed() -> None:
    with pytest.raises(ValidationError) as info:
        normalize_overrides(["optim_level=nan,0.5,abc"])
    assert [p.value for p in info.value.problems] == ["nan", "abc"]
    assert {p.message for p in info.value.problems} == {"is not a number"}


def _calibration(*overrides: str) -> list[str]:
    cfg = compose_config(["data.path=/x", *overrides])
    return [p.message for p in config_problems(cfg) if p.key == "experiment.calibration_samples"]


def test_negative_calibration_samples_are_refused_at_any_level() -> None:
    for level in ("0.0", "0.5"):
        (message,) = _calibration("experiment.calibration_samples=-5", f"optim_level={level}")
        assert message == "must not be negative"


@pytest.mark.parametrize(
    ("overrides", "reads"),
    [
        (["optim_level=0.5"], "SparseGPT pruning"),  # one_shot's default recipe
        (["optim_level=0.2"], "static INT8 calibration"),  # INT8 only
        (["optim_level=0.2", "quantization.format=dynamic"], "GPTQ weight rounding"),
        (["experiment=training_aware", "optim_level=0.5"], "static INT8 calibration"),
    ],
)
def test_zero_calibration_samples_refused_where_the_run_calibrates(
    overrides: list[str], reads: str
) -> None:
    (message,) = _calibration("experiment.calibration_samples=0", *overrides)
    assert message.startswith("must be >= 1") and reads in message


@pytest.mark.parametrize(
    "overrides",
    [
        ["optim_level=0.0"],  # the dense baseline: nothing calibrated
        ["optim_level=0.2", "quantization.format=dynamic", "quantization.weight_rounding=nearest"],
    ],
)
def test_zero_calibration_samples_pass_where_nothing_calibrates(overrides: list[str]) -> None:
    assert _calibration("experiment.calibration_samples=0", *overrides) == []
