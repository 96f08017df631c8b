"""sparsify: prune + INT8-quantize neural networks, measured against their dense baseline."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

if TYPE_CHECKING:
    from sparsify.runner import RunResult


def run(overrides: list[str] | None = None, **kwargs: Any) -> RunResult:
    """Run sparsify from Python: `sparsify.run(["data=digits", "optim_level=0.5"])`."""
    from sparsify.runner import run as _run

    return _run(overrides, **kwargs)
