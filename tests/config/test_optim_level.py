"""optim_level is normalized once, before a run reads it; its INT8 threshold is honoured."""

from __future__ import annotations

import logging
import math
from pathlib import Path

import pytest

from sparsify.config import compose_config
from sparsify.config.checks import config_problems
from sparsify.config.compose import settle_optim_level
from sparsify.context import RunContext
from sparsify.recipes.levels import normalize_level


@pytest.mark.parametrize(
    ("given", "level", "reading"),
    [
        ("50", 0.5, "50 %"),
        ("100", 1.0, "100 %"),
        ("1", 1.0, "the fraction 1.0"),
        ("0.25", 0.25, None),
        ("0", 0.0, None),
    ],
)
def test_the_level_is_settled_once_and_an_integer_reading_logged(
    given: str, level: float, reading: str | None, caplog: pytest.LogCaptureFixture
) -> None:
    cfg = compose_config([f"optim_level={given}"])
    log = logging.getLogger("test.optim_level")
    with caplog.at_level(logging.INFO, logger="test.optim_level"):
        settle_optim_level(cfg, log)
    assert cfg.optim_level == pytest.approx(level) and isinstance(cfg.optim_level, float)
    lines = [r.getMessage() for r in caplog.records]
    if reading is None:
        assert lines == []
    else:
        assert len(lines) == 1 and reading in lines[0] and f"optim_level={given}" in lines[0]
    # what the stages read is the settled fraction as it is
    assert RunContext(cfg=cfg, run_dir=Path(".")).level == pytest.approx(level)


def test_a_bad_level_is_left_for_the_validate_stage_to_report() -> None:
    cfg = compose_config(["data.path=/x"])
    cfg.optim_level = 150.0  # as an experiment YAML could set it
    settle_optim_level(cfg, logging.getLogger("test.optim_level"))
    assert cfg.optim_level == 150.0
    assert [p.key for p in config_problems(cfg)] == ["optim_level"]
    with pytest.raises(ValueError, match="not a fraction"):
        RunContext(cfg=cfg, run_dir=Path(".")).level  # noqa: B018


def test_nan_is_not_a_number() -> None:
    _, problem = normalize_level(math.nan)
    assert problem is not None and problem.message == "is not a number"
    _, problem = normalize_level(-0.5)
    assert problem is not None and problem.message == "must not be negative"


@pytest.mark.parametrize(("level", "quantize"), [(0.1, False), (0.2, False), (0.25, True)])
def test_quantize_from_level_decides_int8(level: float, quantize: bool) -> None:
    cfg = compose_config([f"optim_level={level}", "experiment.quantize_from_level=0.2"])
    derived = RunContext(cfg=cfg, run_dir=Path(".")).derived
    assert derived.quantize is quantize and derived.sparsity == 0.0
