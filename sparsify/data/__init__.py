"""Dataset formats: each name maps to a validator `(root) -> (summary dict | None, problems)`.

`DATA_FORMATS.get(name)` fails with the list of registered formats.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from sparsify.errors import Problem
from sparsify.registry import Registry

Validator = Callable[[Path], tuple[dict[str, Any] | None, list[Problem]]]

DATA_FORMATS: Registry[Validator] = Registry("data format")


def _validate_image_folder(root: Path) -> tuple[dict[str, Any] | None, list[Problem]]:
    # imported here so `import sparsify.data` stays light (no torch) until a format is used
    from sparsify.data.image_folder import validate_image_folder

    summary, problems = validate_image_folder(root)
    return (summary.to_dict() if summary else None), problems


DATA_FORMATS.register("image_folder", _validate_image_folder)
