"""Dataset formats: each name maps to a validator `(root, cfg) -> (summary dict | None, problems)`.

`cfg` is the composed run config: validators read `cfg.use_case.task` (a text file is checked
for the columns its task needs) and `cfg.data.*` (column overrides). A validator reads every
file once, streaming, and returns every problem; it logs a summary of what it found.
`DATA_FORMATS.get(name)` fails with the list of registered formats.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

from omegaconf import DictConfig

from sparsify.errors import Problem
from sparsify.registry import Registry

Validator = Callable[[Path, DictConfig], tuple[dict[str, Any] | None, list[Problem]]]

DATA_FORMATS: Registry[Validator] = Registry("data format")


def _validate_image_folder(
    root: Path, cfg: DictConfig
) -> tuple[dict[str, Any] | None, list[Problem]]:
    # imported here so `import sparsify.data` stays light (no torch) until a format is used
    from sparsify.data.image_folder import log_summary, validate_image_folder

    summary, problems = validate_image_folder(root)
    if summary is not None and not problems:
        log_summary(summary, logging.getLogger("sparsify"))
    return (summary.to_dict() if summary else None), problems


def _validate_yolo(root: Path, cfg: DictConfig) -> tuple[dict[str, Any] | None, list[Problem]]:
    from sparsify.data.yolo import validate_for_config

    return validate_for_config(root, cfg)


def _validate_text(root: Path, cfg: DictConfig) -> tuple[dict[str, Any] | None, list[Problem]]:
    from sparsify.data.text import validate_for_config

    return validate_for_config(root, cfg)


def _validate_npz(root: Path, cfg: DictConfig) -> tuple[dict[str, Any] | None, list[Problem]]:
    from sparsify.data.npz import validate_for_config

    return validate_for_config(root, cfg)


DATA_FORMATS.register("image_folder", _validate_image_folder)
DATA_FORMATS.register("yolo", _validate_yolo)
DATA_FORMATS.register("npz", _validate_npz)
DATA_FORMATS.register("hf_text", _validate_text)
