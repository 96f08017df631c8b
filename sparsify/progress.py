"""Progress bars for long work: on a terminal only, nothing in non-interactive logs."""

from __future__ import annotations

import sys
from collections.abc import Iterable
from typing import Any

from tqdm import tqdm


def progress(iterable: Iterable[Any], total: int | None = None, desc: str = "") -> Any:
    """`iterable` wrapped in a tqdm bar when stderr is a terminal (else a disabled bar)."""
    return tqdm(iterable, total=total, desc=desc, leave=False, disable=not sys.stderr.isatty())
