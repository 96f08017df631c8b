"""Reading torch checkpoints without running code from them (docs/security.md).

A pickle can call any function while it loads (a `__reduce__` returning `os.system`), so every
checkpoint goes through `torch.load(weights_only=True)`: tensors, plain containers and numbers,
plus the classes the caller's allow-list admits for this one load (`safe_globals`, never a
process-wide registration). Anything else is refused before it runs, with the globals the file
asked for and the opt-in `model.trust_pickle=true`, which loads the full pickle and so runs
whatever code the file holds.
"""

from __future__ import annotations

import logging
import pickle
import re
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from sparsify.errors import Problem, SparsifyError

if TYPE_CHECKING:
    from sparsify.context import RunContext

log = logging.getLogger("sparsify")

TRUST_KEY = "model.trust_pickle"
# a global's dotted name -> the object to rebuild it with, or None to refuse it
AllowList = Callable[[str], Any]
_GLOBAL = re.compile(r"GLOBAL ([\w.]+)")
_warned: set[str] = set()  # files already warned about: a run reads its model several times


class UnsafePickleError(SparsifyError):
    """A checkpoint that weights-only loading refuses: `names` are the globals it needs."""

    def __init__(self, path: Path, names: list[str]) -> None:
        self.path, self.names = Path(path), list(names)
        super().__init__(f"{path} {_refusal(self.names)}. {trust_fix()}")


def trusted(ctx: RunContext) -> bool:
    """The user's `model.trust_pickle`: true lets model files run code while loading."""
    return bool(ctx.cfg.model.trust_pickle)


def trust_fix() -> str:
    return (
        "Re-save it as a state dict (torch.save(model.state_dict(), path)) or safetensors; "
        f"only for a file you trust, {TRUST_KEY}=true loads it fully (DANGEROUS: that runs "
        "any code the file holds)"
    )


def torch_load(path: Path, trust: bool = False, allow: AllowList | None = None) -> Any:
    """`torch.load` on CPU: weights-only with `allow`'s classes, or a full unpickle if `trust`.

    Raises UnsafePickleError when the weights-only load refuses a global of the file, and
    SparsifyError when it is no pickle it can read (e.g. a damaged or foreign file).
    """
    if trust:
        if str(path) not in _warned:
            _warned.add(str(path))
            log.warning("%s=true: loading %s as a full pickle (it may run code)", TRUST_KEY, path)
        return torch.load(str(path), map_location="cpu", weights_only=False)
    entries = _entries(path, allow) if allow is not None else []
    while True:
        try:
            with torch.serialization.safe_globals(entries):
                return torch.load(str(path), map_location="cpu", weights_only=True)
        except pickle.UnpicklingError as exc:
            parsed = _GLOBAL.findall(str(exc))[:1]
            allowed = allow(parsed[0]) if parsed and allow is not None else None
            if allowed is not None and (allowed, parsed[0]) not in entries:
                # a legacy (pre-zip) file has no scanner: admit its allowed globals one by one
                entries.append((allowed, parsed[0]))
                continue
            names = _refused(path, allow) or parsed
            if names:
                raise UnsafePickleError(path, names) from None
            raise SparsifyError(f"cannot read checkpoint {path}: {_reason(exc)}") from None


def refused_globals(path: Path, allow: AllowList | None = None) -> list[str]:
    """The globals of `path`'s pickle outside torch's safe set and `allow`, read without
    unpickling (a file torch.save did not write is loaded weights-only to find out)."""
    try:
        torch.serialization.get_unsafe_globals_in_checkpoint(str(path))
    except ValueError:  # the legacy (pre-zip) format has no scanner: try the restricted load
        try:
            torch_load(path, allow=allow)
        except UnsafePickleError as exc:
            return exc.names
        except SparsifyError:
            return []  # unreadable, not unsafe: the loader reports it
        return []
    return _refused(path, allow)


def unsafe_problem(path: Path, names: list[str], key: str = "model.path") -> Problem:
    """The validation problem of a file that asks for the globals `names`."""
    return Problem(key, str(path), f"{_refusal(names)}", trust_fix())


def _refusal(names: list[str]) -> str:
    return f"asks to run or rebuild {', '.join(names)}: a weights-only load refuses it"


def _entries(path: Path, allow: AllowList) -> list[Any]:
    """(object, name) pairs for the allowed globals this checkpoint names: registering only
    those keeps the restricted unpickler fast and the allow-list as narrow as the file."""
    try:
        needed = torch.serialization.get_unsafe_globals_in_checkpoint(str(path))
    except ValueError:
        return []  # not a torch.save archive: torch.load reports the format
    found = [(allow(name), name) for name in needed]
    return [(obj, name) for obj, name in found if obj is not None]


def _refused(path: Path, allow: AllowList | None) -> list[str]:
    """All the offending globals of a torch.save archive (torch's message names only the
    first); [] for a file it cannot scan."""
    try:
        needed = torch.serialization.get_unsafe_globals_in_checkpoint(str(path))
    except ValueError:
        return []
    return [name for name in needed if allow is None or allow(name) is None]


def _reason(exc: Exception) -> str:
    """torch's reason, without its generic preamble and its pointer to the docs."""
    boilerplate = ("Weights only load failed", "Check the documentation")
    lines = [ln.strip() for ln in str(exc).splitlines() if ln.strip()]
    reasons = [ln for ln in lines if not ln.startswith(boilerplate)]
    return reasons[0] if reasons else (lines[0] if lines else type(exc).__name__)
