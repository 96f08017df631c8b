"""The time estimates the log gives for long loops (sparsify/eta.py)."""

from __future__ import annotations

import logging

import pytest

from sparsify.eta import StepTimer, duration, rate


class Clock:
    """A clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def _run(timer: StepTimer, clock: Clock, steps: int, first: float, each: float) -> None:
    for i in range(steps):
        clock.now += first if i == 0 else each
        timer.step()


def test_duration_and_rate_read_at_the_right_scale() -> None:
    assert duration(0.2) == "1 s" and duration(45) == "45 s"
    assert duration(18 * 60) == "18 min" and duration(5400) == "1.5 h"
    assert rate(0.9) == "0.90 s/step" and rate(0.02) == "50.0 steps/s"


def test_estimate_logged_once_after_the_first_steps(caplog: pytest.LogCaptureFixture) -> None:
    clock = Clock()
    timer = StepTimer("baseline fine-tune", total=1200, after=5, every_s=1e9, clock=clock)
    with caplog.at_level(logging.INFO, logger="sparsify"):
        # the first step pays for warm-up (10 s) and is left out of the rate
        _run(timer, clock, 50, first=10.0, each=0.9)
    lines = [r.getMessage() for r in caplog.records]
    assert lines == ["baseline fine-tune: ~18 min at 0.90 s/step, 1,200 steps"]
    assert timer.remaining_s() == pytest.approx(0.9 * 1150)


def test_progress_with_time_left_every_interval(caplog: pytest.LogCaptureFixture) -> None:
    clock = Clock()
    timer = StepTimer("training", total=100, after=2, every_s=10.0, clock=clock)
    with caplog.at_level(logging.INFO, logger="sparsify"):
        _run(timer, clock, 100, first=1.0, each=1.0)
    lines = [r.getMessage() for r in caplog.records]
    assert lines[0] == "training: ~2 min at 1.00 s/step, 100 steps"
    progress = lines[1:]
    assert progress[0] == "training: 13/100 steps, ~87 s left"
    assert len(progress) == 9  # every 10 s until the end, none at the last step


def test_short_or_unsized_loops_say_nothing(caplog: pytest.LogCaptureFixture) -> None:
    clock = Clock()
    with caplog.at_level(logging.INFO, logger="sparsify"):
        _run(StepTimer("short", total=4, after=5, clock=clock), clock, 4, 1.0, 1.0)
        _run(StepTimer("unsized", after=2, clock=clock), clock, 20, 1.0, 1.0)
    assert caplog.records == []
