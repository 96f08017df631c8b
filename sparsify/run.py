"""`python -m sparsify.run ...`: the original-style CLI, as the `sparsify.run` console script.

`sparsify.run` is also the Python entry point, the function `sparsify.run(overrides)` defined
in `sparsify/__init__.py`. `python -m` executes this file as `__main__` without importing it
as `sparsify.run`, so the function stays where it is. Should something import this module
anyway (`import sparsify.run`), the import system sets the attribute `sparsify.run` to the
module: the module is therefore made callable, forwarding to the same function, so
`sparsify.run([...])` keeps working either way.
"""

from __future__ import annotations

import sys
import types
from typing import Any


class _CallableModule(types.ModuleType):
    """This module, callable as `sparsify.run(overrides, **kwargs)` (the documented way to
    give a module behaviour: assigning its `__class__`, Python reference 3.3.2.1)."""

    def __call__(self, overrides: list[str] | None = None, **kwargs: Any) -> Any:
        from sparsify.runner import run

        return run(overrides, **kwargs)


if __name__ == "__main__":
    from sparsify.cli.legacy_run import console

    console()
else:
    sys.modules[__name__].__class__ = _CallableModule
