"""How dataset validators log per-class counts: all of them when few, a spread when many."""

from __future__ import annotations

import logging

MAX_LISTED = 20


def log_class_counts(logger: logging.Logger, what: str, counts: dict[str, int]) -> None:
    """One line: `what: a=3, b=5` for up to 20 classes, else `what per class: min median max`."""
    if len(counts) <= MAX_LISTED:
        logger.info("  %s: %s", what, ", ".join(f"{c}={n}" for c, n in counts.items()))
    elif counts:
        values = sorted(counts.values())
        logger.info(
            "  %s per class: min=%d median=%d max=%d",
            what,
            values[0],
            values[len(values) // 2],
            values[-1],
        )
