"""Which keys a command-line override may name, checked before Hydra composes.

Hydra refuses an unknown `key=value` with a hint to write `+key=value`, and then accepts
that (and `++key=value`) into the config without a word: a typo such as `+data.pth=./x`
ends up in config.yaml while the run uses the default. Every override key is checked here
against the schema (`SparsifyConfig`) and the config groups, and all unknown keys are
refused together, each with the closest known keys.
"""

from __future__ import annotations

import dataclasses
import difflib
import importlib.resources
import typing
from collections.abc import Iterator
from functools import cache
from pathlib import Path

from sparsify.config.schema import SparsifyConfig
from sparsify.errors import Problem

CONFIG_PACKAGE = "sparsify.conf"


def _field_keys(cls: type, prefix: str = "") -> Iterator[tuple[str, bool]]:
    """(dotted key, whether it holds a section) for every field of a schema dataclass."""
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        key = f"{prefix}{f.name}"
        kind = hints[f.name]
        if dataclasses.is_dataclass(kind):
            yield key, True
            yield from _field_keys(kind, f"{key}.")  # type: ignore[arg-type]
        else:
            yield key, False


@cache
def schema_keys() -> dict[str, bool]:
    """Every dotted key of the run config -> whether it is a section (has keys below it)."""
    return dict(_field_keys(SparsifyConfig))


def config_groups(config_dir: str | None = None) -> set[str]:
    """Config group names (`data`, `use_case_experiment`, ...) of the shipped conf/ and of
    a `--config-dir` copy, which may add groups of its own."""
    roots = [importlib.resources.files(CONFIG_PACKAGE)]
    if config_dir:
        roots.append(Path(config_dir).expanduser())  # type: ignore[arg-type]
    groups: set[str] = set()
    for root in roots:
        if not root.is_dir():
            continue
        groups.update(p.name for p in root.iterdir() if p.is_dir() and p.name[0] not in "._")
    return groups


def _is_known(key: str, groups: set[str]) -> bool:
    if key == "hydra" or key.startswith(("hydra.", "hydra/")):  # Hydra's own settings
        return True
    key = key.split("@", 1)[0]  # `group@package=option`
    if key in groups or "/" in key:  # a group (nested groups are Hydra's to check)
        return True
    keys = schema_keys()
    if key in keys:
        return True
    # below a list / dict / Any field (e.g. `benchmark.batch_sizes.0`) Hydra checks the rest
    parts = key.split(".")
    return any(
        ".".join(parts[:i]) in keys and not keys[".".join(parts[:i])] for i in range(1, len(parts))
    )


def unknown_key_problem(
    prefix: str, key: str, value: str, config_dir: str | None = None
) -> Problem | None:
    """A Problem naming `prefix + key` (`+`, `++` or nothing) and the closest known keys;
    None when the key is known."""
    groups = config_groups(config_dir)
    if _is_known(key, groups):
        return None
    candidates = sorted(set(schema_keys()) | groups)
    close = difflib.get_close_matches(key, candidates, n=3, cutoff=0.6)
    section = key.rsplit(".", 1)[0] if "." in key else ""
    if not close and section in schema_keys():
        close = [k for k in candidates if k.startswith(f"{section}.")][:8]
    fix = (
        f"did you mean {' or '.join(close)}?"
        if close
        else "see `sparsify --cfg job` for every key, or docs/configuration.md"
    )
    # `+` would add the key to config.yaml, where nothing reads it
    adds = " (`+` cannot add keys: nothing would read them)" if "+" in prefix else ""
    return Problem(f"{prefix}{key}", value, f"is not a key of the run config{adds}", fix)
