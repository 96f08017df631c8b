"""Time estimates for long loops, in the log (where a tqdm bar on a terminal is not).

`StepTimer` times the first steps of a loop and logs once how long the whole loop will take
("baseline fine-tune: ~18 min at 0.90 s/step, 1,200 steps"), then a progress line with the
time left at most every `every_s` seconds, so a run that will take an hour says so in its
first minute, and a log read later shows where a slow run was. The first step is left out
of the rate: it pays for one-time work (allocation, lazy imports, graph warm-up).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

log = logging.getLogger("sparsify")


def duration(seconds: float) -> str:
    """'45 s', '18 min', '1.5 h': the scale a reader plans around, not a stopwatch."""
    if seconds < 90:
        return f"{max(1, round(seconds))} s"
    if seconds < 90 * 60:
        return f"{round(seconds / 60)} min"
    return f"{seconds / 3600:.1f} h"


def rate(seconds_per_step: float) -> str:
    """'0.90 s/step', or '12.5 steps/s' when a step takes under a tenth of a second."""
    if seconds_per_step >= 0.1:
        return f"{seconds_per_step:.2f} s/step"
    return f"{1.0 / max(seconds_per_step, 1e-9):.1f} steps/s"


class StepTimer:
    """Call `step()` after every step of a loop of `total` steps (`total` may be set later,
    when the loop's owner learns it). After `after` timed steps the estimate for the whole
    loop is logged once; then progress with the time left every `every_s` seconds."""

    def __init__(
        self,
        what: str,
        total: int | None = None,
        after: int = 5,
        every_s: float = 60.0,
        unit: str = "steps",
        clock: Callable[[], float] = time.perf_counter,
    ) -> None:
        self.what = what
        self.total = total
        self.after = max(1, after)
        self.every_s = every_s
        self.unit = unit
        self.clock = clock
        self.done = 0
        self.started: float | None = None  # when the first step ended (the rate starts there)
        self.last_report = 0.0
        self.estimated = False

    def seconds_per_step(self) -> float | None:
        """The mean time of the steps after the first (None before the second step)."""
        if self.started is None or self.done < 2:
            return None
        return (self.clock() - self.started) / (self.done - 1)

    def remaining_s(self) -> float | None:
        per = self.seconds_per_step()
        if per is None or not self.total:
            return None
        return per * max(0, self.total - self.done)

    def step(self, n: int = 1) -> None:
        self.done += n
        now = self.clock()
        if self.started is None:
            self.started = now
            self.last_report = now
            return
        if not self.total:
            return
        if not self.estimated and self.done - 1 >= self.after and self.done < self.total:
            self.estimated = True
            self.last_report = now
            per = self.seconds_per_step() or 0.0
            log.info(
                "%s: ~%s at %s, %s %s",
                self.what,
                duration(per * self.total),
                rate(per),
                f"{self.total:,}",
                self.unit,
            )
        elif self.estimated and now - self.last_report >= self.every_s and self.done < self.total:
            self.last_report = now
            log.info(
                "%s: %s/%s %s, ~%s left",
                self.what,
                f"{self.done:,}",
                f"{self.total:,}",
                self.unit,
                duration(self.remaining_s() or 0.0),
            )
