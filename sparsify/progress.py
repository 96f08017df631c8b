"""Progress bars for long work: on a terminal only, nothing in non-interactive logs."""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from tqdm import tqdm


def progress(iterable: Iterable[Any], total: int | None = None, desc: str = "") -> Any:
    """`iterable` wrapped in a tqdm bar when stderr is a terminal (else a disabled bar)."""
    return tqdm(iterable, total=total, desc=desc, leave=False, disable=not sys.stderr.isatty())


def logged_progress(
    iterable: Iterable[Any],
    total: int,
    desc: str,
    logger: logging.Logger,
    every_s: float = 10.0,
    clock: Callable[[], float] = time.monotonic,
) -> Iterator[Any]:
    """`progress`, plus an INFO line with the count, elapsed time and an ETA at most every
    `every_s` seconds (and after the last item), so that long per-layer work (SparseGPT over
    a YOLO's convolutions) shows it is moving in logs and run.log too. The ETA assumes the
    remaining items take as long as the done ones on average."""
    start = last = clock()
    done = 0
    for item in progress(iterable, total=total, desc=desc):
        yield item
        done += 1
        now = clock()
        if now - last >= every_s or done == total:
            last = now
            elapsed = now - start
            eta = elapsed / done * (total - done)
            logger.info(
                "%s: %d/%d done, %.0f s elapsed, ETA %.0f s", desc, done, total, elapsed, eta
            )
