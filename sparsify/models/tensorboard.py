"""Training metrics as TensorBoard event files in the run directory.

`tensorboard --logdir <run_dir>/sparsify/tensorboard` shows loss, learning rate and sparsity of
a training-aware or sparse-transfer run step by step.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

log = logging.getLogger("sparsify")


class EventLog:
    """A SummaryWriter when TensorBoard is installed; without it, a no-op that says so once."""

    def __init__(self, directory: Path) -> None:
        self.directory = Path(directory)
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError:
            log.warning("tensorboard is not installed: no event files (pip install tensorboard)")
            self._writer: Any = None
            return
        self._writer = SummaryWriter(str(self.directory))
        log.info("Training metrics: tensorboard --logdir %s", self.directory)

    def scalars(self, step: int, **values: float | None) -> None:
        if self._writer is None:
            return
        for name, value in values.items():
            if value is not None:
                self._writer.add_scalar(f"train/{name}", float(value), step)

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()

    def __enter__(self) -> EventLog:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
